//! The terminal rendering: the bottleneck in one sentence with its numbers, then the ranked
//! table, then what each finding needs done.

use std::fmt::Write as _;

use anstyle::{AnsiColor, Style};
use comfy_table::{CellAlignment, Table, presets};

use chokepoint_evidence::Severity;

use crate::{
    LoadSection, Report, duration, evidence_line, impact_cell, impact_sentence, item_lines, per_second_cell,
    skipped_groups, summary_lines,
};

/// Longest location shown in the table, in characters.
const LOCATION_CHARS: usize = 60;
/// Findings shown with their fix below the table.
const DETAILED: usize = 10;

struct Palette {
    headline: Style,
    id: Style,
    label: Style,
    dim: Style,
    warn: Style,
    error: Style,
}

impl Palette {
    fn new(color: bool) -> Palette {
        if !color {
            let plain = Style::new();
            return Palette {
                headline: plain,
                id: plain,
                label: plain,
                dim: plain,
                warn: plain,
                error: plain,
            };
        }
        Palette {
            headline: Style::new().bold().fg_color(Some(AnsiColor::Red.into())),
            id: Style::new().bold().fg_color(Some(AnsiColor::Yellow.into())),
            label: Style::new().bold(),
            dim: Style::new().dimmed(),
            warn: Style::new().fg_color(Some(AnsiColor::Yellow.into())),
            error: Style::new().bold().fg_color(Some(AnsiColor::Red.into())),
        }
    }
}

/// The report as text; `color` adds ANSI styles.
pub fn render_text(report: &Report, color: bool) -> String {
    let p = Palette::new(color);
    let mut out = String::new();
    let (h, id, label, dim) = (p.headline, p.id, p.label, p.dim);
    if let Some(load) = &report.load {
        let _ = writeln!(out, "{}\n", step_table(load));
        let _ = writeln!(out, "{}", crate::render_chart_text(&load.run));
    }
    match report.bottleneck() {
        Some(b) => {
            let _ = writeln!(out, "{h}Bottleneck:{h:#} {id}{}{id:#} — {}", b.detector, b.title);
            let _ = writeln!(out, "  {}", impact_sentence(b));
            if let Some(limit) = report.limit() {
                let _ = writeln!(
                    out,
                    "  {label}explains{label:#}  the limit: {} — {}{}",
                    limit.detector,
                    limit.title,
                    report.share_of_limit_words()
                );
            }
            if let Some(prediction) = report.prediction_sentence() {
                let _ = writeln!(out, "  {label}predicts{label:#}  {prediction}");
            }
            let _ = writeln!(
                out,
                "  {label}where{label:#}     {} ({})",
                b.location,
                b.scope.owner()
            );
            let _ = writeln!(out, "  {label}fix{label:#}       {}", b.fix);
            let _ = writeln!(out, "  {label}evidence{label:#}  {}", evidence_line(b));
            for (name, line) in item_lines(b) {
                let _ = writeln!(out, "  {label}{name:<9}{label:#} {line}");
            }
            for assumption in &b.assumptions {
                let _ = writeln!(out, "  {dim}assumes   {assumption}{dim:#}");
            }
        }
        None if report.traces.as_ref().is_some_and(|t| t.summary.spans == 0)
            && report.load.is_none()
            && report.database.is_none() =>
        {
            let _ = writeln!(
                out,
                "{}No spans were analysed: there is no verdict.{:#}",
                p.warn, p.warn
            );
        }
        None if !report.findings.is_empty() => {
            let _ = writeln!(out, "{}", crate::potential_sentence(report.findings.len()));
        }
        None => {
            let _ = writeln!(
                out,
                "No bottleneck found by the detectors that had evidence to look at."
            );
        }
    }
    let shown = usize::from(report.bottleneck().is_some());
    if report.findings.len() > shown {
        let heading = if shown == 1 {
            "All findings, the bottleneck first"
        } else {
            "All findings, the likeliest first"
        };
        let _ = writeln!(out, "\n{label}{heading}{label:#}");
        let _ = writeln!(out, "{}", table(report));
        for (rank, f) in report
            .findings
            .iter()
            .enumerate()
            .skip(shown)
            .take(DETAILED - shown)
        {
            let _ = writeln!(out, "\n{}. {id}{}{id:#} — {}", rank + 1, f.detector, f.title);
            let _ = writeln!(out, "   {label}fix{label:#}       {}", f.fix);
            let _ = writeln!(out, "   {label}evidence{label:#}  {}", evidence_line(f));
            for (name, line) in item_lines(f).into_iter().filter(|(name, _)| *name == "also") {
                let _ = writeln!(out, "   {label}{name:<9}{label:#} {line}");
            }
        }
        if report.findings.len() > DETAILED {
            let _ = writeln!(
                out,
                "\n{dim}… {} more in --format json.{dim:#}",
                report.findings.len() - DETAILED
            );
        }
    }
    out.push('\n');
    for (reason, ids) in skipped_groups(&report.skipped) {
        let _ = writeln!(out, "{dim}Skipped, {reason}: {}.{dim:#}", ids.join(", "));
    }
    if let Some(traces) = report.traces.as_ref().filter(|t| t.below_noise_gate > 0) {
        let _ = writeln!(
            out,
            "{dim}{} candidate finding(s) seen in too few requests to report (fewer than 2 — 1 when the endpoint has only 1 or 2 — or under 5 % of the endpoint).{dim:#}",
            traces.below_noise_gate
        );
    }
    for line in summary_lines(report) {
        let _ = writeln!(out, "{dim}{line}{dim:#}");
    }
    for note in &report.notes {
        let style = match note.severity {
            Severity::Error => p.error,
            Severity::Warning => p.warn,
            Severity::Info => p.dim,
        };
        let _ = writeln!(out, "{style}{}:{style:#} {note}", note.severity.as_str());
    }
    out
}

/// The header of the step table, printed before the first step when steps are shown live.
pub fn step_header() -> String {
    format!(
        "{:>9} {:>11} {:>9} {:>9} {:>9} {:>8} {:>10} {:>9} {:>8}",
        "offered", "throughput", "p50", "p99", "errors", "new conn", "target CPU", "accept q", "gen CPU"
    )
}

/// One row of the step table.
pub fn step_row(step: &chokepoint_evidence::LoadStep) -> String {
    let (cpu, queue) = match &step.target {
        Some(t) => (
            format!("{:.2} cores", t.cpu_cores),
            format!("{:.1}", t.accept_queue),
        ),
        None => ("-".to_owned(), "-".to_owned()),
    };
    format!(
        "{:>9} {:>9.0}/s {:>9} {:>9} {:>9} {:>8} {:>10} {:>9} {:>8.2}",
        step.offered,
        step.throughput_rps,
        duration(step.latency.p50_ms),
        duration(step.latency.p99_ms),
        step.errors,
        step.new_connections,
        cpu,
        queue,
        step.generator_cpu_cores
    )
}

fn step_table(load: &LoadSection) -> String {
    let run = &load.run;
    // `--pg`: the database's sessions, known once the ramp is over.
    let pg = !load.step_sessions.is_empty();
    let mut table = format!(
        "Load ramp on {} ({:?} model)\n{}{}",
        run.url,
        run.model,
        step_header(),
        if pg { "  pg active/waiting" } else { "" }
    );
    for (i, step) in run.steps.iter().enumerate() {
        table.push('\n');
        table.push_str(&step_row(step));
        if let Some(sessions) = load.step_sessions.iter().find(|s| s.step == i) {
            table.push_str(&format!(
                "  {:>9.1}/{:<.1}",
                sessions.active, sessions.lock_waiting
            ));
        }
    }
    table
}

fn table(report: &Report) -> String {
    let mut table = Table::new();
    table
        .load_preset(presets::UTF8_BORDERS_ONLY)
        .set_header(vec!["#", "detector", "scope", "impact", "s/s", "conf", "where"]);
    for (rank, f) in report.findings.iter().enumerate() {
        let mut location: String = f.location.chars().take(LOCATION_CHARS).collect();
        if f.location.chars().count() > LOCATION_CHARS {
            location.pop();
            location.push('…');
        }
        table.add_row(vec![
            (rank + 1).to_string(),
            f.detector.to_string(),
            f.scope.label(),
            impact_cell(f),
            per_second_cell(f),
            f.confidence.as_str().to_owned(),
            location,
        ]);
    }
    for column in [0, 3, 4] {
        if let Some(c) = table.column_mut(column) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    table.to_string()
}
