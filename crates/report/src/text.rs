//! The terminal rendering: the bottleneck in one sentence with its numbers, then the ranked
//! table, then what each finding needs done.

use std::fmt::Write as _;

use anstyle::{AnsiColor, Style};
use comfy_table::{CellAlignment, Table, presets};

use crate::{Report, duration, evidence_line, percent, summary_line};

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
    if let Some(run) = &report.load {
        let _ = writeln!(out, "{}\n", step_table(run));
        let _ = writeln!(out, "{}", crate::render_chart_text(run));
    }
    match &report.bottleneck {
        Some(b) => {
            let _ = writeln!(out, "{h}Bottleneck:{h:#} {id}{}{id:#} — {}", b.detector, b.title);
            let _ = writeln!(
                out,
                "  Fixing it saves {} per affected request ({} of {}'s time), {:.3} s of service time per second of traffic; confidence {}.",
                duration(b.impact.saved_ms_per_request),
                percent(b.impact.share_of_endpoint_time),
                b.endpoint,
                b.impact.recoverable_s_per_s,
                b.confidence.as_str(),
            );
            let _ = writeln!(out, "  {label}where{label:#}     {} ({})", b.location, b.service);
            let _ = writeln!(out, "  {label}fix{label:#}       {}", b.fix);
            let _ = writeln!(out, "  {label}evidence{label:#}  {}", evidence_line(b));
            for assumption in &b.assumptions {
                let _ = writeln!(out, "  {dim}assumes   {assumption}{dim:#}");
            }
        }
        None if report.summary.spans == 0 => {
            let _ = writeln!(
                out,
                "{}No spans were analysed: there is no verdict.{:#}",
                p.warn, p.warn
            );
        }
        None => {
            let _ = writeln!(
                out,
                "No bottleneck found by the detectors that had evidence to look at."
            );
        }
    }
    if report.findings.len() > 1 {
        let _ = writeln!(
            out,
            "\n{label}All findings, ranked by recoverable service time{label:#}"
        );
        let _ = writeln!(out, "{}", table(report));
        for (rank, f) in report.findings.iter().enumerate().skip(1).take(DETAILED - 1) {
            let _ = writeln!(out, "\n{}. {id}{}{id:#} — {}", rank + 1, f.detector, f.title);
            let _ = writeln!(out, "   {label}fix{label:#}       {}", f.fix);
            let _ = writeln!(out, "   {label}evidence{label:#}  {}", evidence_line(f));
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
    if !report.skipped.is_empty() {
        let skipped: Vec<String> = report
            .skipped
            .iter()
            .map(|s| format!("{} ({})", s.detector, s.reason))
            .collect();
        let _ = writeln!(out, "{dim}Skipped, no evidence: {}.{dim:#}", skipped.join("; "));
    }
    if report.summary.below_noise_gate > 0 {
        let _ = writeln!(
            out,
            "{dim}{} candidate finding(s) seen in too few requests to report (fewer than 2, or under 5 % of the endpoint).{dim:#}",
            report.summary.below_noise_gate
        );
    }
    let _ = writeln!(out, "{dim}{}{dim:#}", summary_line(report));
    for warning in &report.warnings {
        let _ = writeln!(out, "{}warning:{:#} {warning}", p.warn, p.warn);
    }
    for problem in &report.problems {
        let _ = writeln!(out, "{}error:{:#} {problem}", p.error, p.error);
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

fn step_table(run: &chokepoint_evidence::LoadRun) -> String {
    // `--pg`: the database's sessions, known once the ramp is over.
    let pg = run.steps.iter().any(|s| s.pg_active.is_some());
    let mut table = format!(
        "Load ramp on {} ({:?} model)\n{}{}",
        run.url,
        run.model,
        step_header(),
        if pg { "  pg active/waiting" } else { "" }
    );
    for step in &run.steps {
        table.push('\n');
        table.push_str(&step_row(step));
        if let (true, Some(active), Some(waiting)) = (pg, step.pg_active, step.pg_lock_waiting) {
            table.push_str(&format!("  {active:>9.1}/{waiting:<.1}"));
        }
    }
    table
}

fn table(report: &Report) -> String {
    let mut table = Table::new();
    table.load_preset(presets::UTF8_BORDERS_ONLY).set_header(vec![
        "#",
        "detector",
        "endpoint",
        "saved/req",
        "share",
        "s/s",
        "conf",
        "where",
    ]);
    for (rank, f) in report.findings.iter().enumerate() {
        let mut location: String = f.location.chars().take(LOCATION_CHARS).collect();
        if f.location.chars().count() > LOCATION_CHARS {
            location.pop();
            location.push('…');
        }
        table.add_row(vec![
            (rank + 1).to_string(),
            f.detector.clone(),
            f.endpoint.clone(),
            duration(f.impact.saved_ms_per_request),
            percent(f.impact.share_of_endpoint_time),
            format!("{:.3}", f.impact.recoverable_s_per_s),
            f.confidence.as_str().to_owned(),
            location,
        ]);
    }
    for column in [0, 3, 4, 5] {
        if let Some(c) = table.column_mut(column) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    table.to_string()
}
