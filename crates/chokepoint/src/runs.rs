//! Saved runs, for the commands: `--save` keeps a run (through `chokepoint_run`, which owns the
//! folder's layout and reads it back checked), `chokepoint report RUN` analyses a saved run again
//! with today's detectors, `chokepoint compare A B` compares two, `chokepoint merge RUN…` joins
//! shards.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use chokepoint_evidence::{Evidence, Note, Severity};
use chokepoint_report::{Input, Report, render_html, render_json, render_markdown};
use chokepoint_run::{RunMeta, SavedRun, Shard};

use crate::args::{ReportConfig, SaveConfig};

/// Analyses `evidence`, saves the run when asked, and builds the report; with the run's folder
/// when it was saved.
pub(crate) fn report(
    command: &str,
    mut evidence: Evidence,
    mut inputs: Vec<Input>,
    mut notes: Vec<Note>,
    config: &ReportConfig,
    attachments: &[PathBuf],
) -> (Report, Option<PathBuf>) {
    add_source(&mut evidence, config, &mut inputs, &mut notes);
    let outcome = chokepoint_detect::analyse(&evidence);
    let Some(save) = &config.save else {
        return (Report::new(command, evidence, outcome, inputs, notes), None);
    };
    let saved = save_evidence(command, &evidence, &inputs, &notes, save, attachments);
    match &saved {
        Ok(dir) => notes.push(Note::new(
            Severity::Info,
            dir.display().to_string(),
            format!(
                "the run is saved here: `chokepoint report {0}` shows it again, `chokepoint compare {0} <later run>` compares",
                dir.display()
            ),
        )),
        Err(error) => notes.push(Note::new(Severity::Error, "--save", format!("{error:#}"))),
    }
    let mut report = Report::new(command, evidence, outcome, inputs, notes);
    if let Ok(dir) = &saved {
        let written = write_renderings(dir, &report);
        if let Err(e) = written {
            // The report is still printed; the folder lacks it, and the exit code says so.
            report.notes.push(Note::new(
                Severity::Error,
                dir.display().to_string(),
                format!("cannot write the report into the run folder: {e}"),
            ));
        }
    }
    (report, saved.ok())
}

/// `diagnose --baseline RUN`: the new run compared with the baseline, after its report (text and
/// Markdown), and kept beside it as `compare.json` and `compare.md`.
pub(crate) fn compare_with_baseline(
    baseline: &Path,
    run: &Path,
    format: crate::args::Format,
) -> anyhow::Result<()> {
    let a = load(baseline)?;
    let b = load(run)?;
    let outcome_a = chokepoint_detect::analyse(&a.evidence);
    let outcome_b = chokepoint_detect::analyse(&b.evidence);
    let comparison = chokepoint_detect::compare((&a.evidence, &outcome_a), (&b.evidence, &outcome_b));
    let report = chokepoint_report::ComparisonReport::new(
        &baseline.display().to_string(),
        &run.display().to_string(),
        comparison,
    );
    let report = with_ramps(report, &a.evidence, &outcome_a, &b.evidence, &outcome_b);
    let markdown = chokepoint_report::render_comparison(&report, true);
    std::fs::write(run.join("compare.json"), serde_json::to_string_pretty(&report)?)
        .and_then(|()| std::fs::write(run.join("compare.md"), &markdown))
        .and_then(|()| {
            std::fs::write(
                run.join("compare.html"),
                chokepoint_report::render_comparison_html(&report),
            )
        })
        .with_context(|| format!("cannot write the comparison into {}", run.display()))?;
    match format {
        crate::args::Format::Json | crate::args::Format::Sarif | crate::args::Format::Html => eprintln!(
            "chokepoint: compared with {}: {}",
            baseline.display(),
            run.join("compare.json").display()
        ),
        crate::args::Format::Markdown => print!("\n{markdown}"),
        crate::args::Format::Text => print!("\n{}", chokepoint_report::render_comparison(&report, false)),
    }
    Ok(())
}

/// Saves a run: evidence and description (the shard, when the receiver is one).
pub(crate) fn save_evidence(
    command: &str,
    evidence: &Evidence,
    inputs: &[Input],
    notes: &[Note],
    save: &SaveConfig,
    attachments: &[PathBuf],
) -> anyhow::Result<PathBuf> {
    let dir = save.folder(command);
    let mut meta = RunMeta::new(command, save.label.as_deref(), inputs.to_vec(), notes.to_vec());
    meta.shard = save.shard.as_ref().map(|id| Shard {
        id: id.clone(),
        routing_key: save.routing_key.clone(),
        window: evidence.window(),
    });
    chokepoint_run::save(&dir, &meta, evidence, attachments)?;
    Ok(dir)
}

/// Reads a saved run, checked.
pub(crate) fn load(path: &Path) -> anyhow::Result<SavedRun> {
    Ok(chokepoint_run::load(path)?)
}

/// `chokepoint report RUN`: the saved run analysed again with today's detectors.
pub(crate) fn show(path: &Path, config: &ReportConfig) -> anyhow::Result<u8> {
    let run = load(path)?;
    let older = run.older_layout();
    let mut notes = run.meta.notes;
    notes.extend(older);
    if run.meta.chokepoint_version != env!("CARGO_PKG_VERSION") {
        notes.push(Note::new(
            Severity::Info,
            path.display().to_string(),
            format!(
                "saved by chokepoint {}, analysed again by {}",
                run.meta.chokepoint_version,
                env!("CARGO_PKG_VERSION")
            ),
        ));
    }
    let mut evidence = run.evidence;
    let mut inputs = run.meta.inputs;
    add_source(&mut evidence, config, &mut inputs, &mut notes);
    let outcome = chokepoint_detect::analyse(&evidence);
    let report = Report::new(&run.meta.command, evidence, outcome, inputs, notes);
    Ok(crate::output::finish(&report, config))
}

/// `chokepoint merge RUN…`: the shards' runs checked and merged, saved as one run when asked,
/// and reported.
pub(crate) fn merge(paths: &[PathBuf], config: &ReportConfig) -> anyhow::Result<u8> {
    let runs = paths
        .iter()
        .map(|p| load(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (meta, evidence) =
        chokepoint_run::merge(&runs, config.save.as_ref().and_then(|s| s.label.as_deref()))?;
    let mut notes = meta.notes.clone();
    notes.push(Note::new(
        Severity::Info,
        "merge",
        format!(
            "{} run(s) merged: {}",
            runs.len(),
            meta.merged
                .iter()
                .map(|s| s.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    ));
    let outcome = chokepoint_detect::analyse(&evidence);
    if let Some(save) = &config.save {
        let dir = save.folder("merge");
        chokepoint_run::save(&dir, &meta, &evidence, &[])?;
        notes.push(Note::new(
            Severity::Info,
            dir.display().to_string(),
            format!(
                "the merged run is saved here: `chokepoint report {}` shows it again",
                dir.display()
            ),
        ));
        let report = Report::new("merge", evidence, outcome, meta.inputs, notes);
        write_renderings(&dir, &report)
            .with_context(|| format!("cannot write the report into {}", dir.display()))?;
        return Ok(crate::output::finish(&report, config));
    }
    let report = Report::new("merge", evidence, outcome, meta.inputs, notes);
    Ok(crate::output::finish(&report, config))
}

/// `chokepoint compare A B`.
pub(crate) fn compare(
    before: &Path,
    after: &Path,
    format: crate::args::Format,
    fail_over: Option<f64>,
) -> anyhow::Result<u8> {
    let a = load(before)?;
    let b = load(after)?;
    for run in [&a, &b] {
        if let Some(note) = run.older_layout() {
            eprintln!("chokepoint: {}: {}", note.source, note.message);
        }
    }
    let outcome_a = chokepoint_detect::analyse(&a.evidence);
    let outcome_b = chokepoint_detect::analyse(&b.evidence);
    let comparison = chokepoint_detect::compare((&a.evidence, &outcome_a), (&b.evidence, &outcome_b));
    let worst = comparison.worst_regression();
    let report = chokepoint_report::ComparisonReport::new(
        &before.display().to_string(),
        &after.display().to_string(),
        comparison,
    );
    let report = with_ramps(report, &a.evidence, &outcome_a, &b.evidence, &outcome_b);
    match format {
        crate::args::Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report).context("cannot write JSON")?
        ),
        crate::args::Format::Markdown => print!("{}", chokepoint_report::render_comparison(&report, true)),
        crate::args::Format::Text => print!("{}", chokepoint_report::render_comparison(&report, false)),
        crate::args::Format::Html => print!("{}", chokepoint_report::render_comparison_html(&report)),
        crate::args::Format::Sarif => {
            anyhow::bail!("a comparison has no lines of source to report: --format text, json or markdown")
        }
    }
    match fail_over {
        Some(limit) if worst > limit => {
            eprintln!(
                "chokepoint: a regression of {:.0} % (capacity or a percentile at equal load), over --fail-on-regression {:.0} %",
                worst * 100.0,
                limit * 100.0
            );
            Ok(crate::EXIT_FINDINGS)
        }
        _ => Ok(crate::EXIT_OK),
    }
}

/// `--source DIR`: the service's source scanned into the bundle (a saved run's scan replaced by
/// today's), so every report joins what runs to its lines.
fn add_source(
    evidence: &mut Evidence,
    config: &ReportConfig,
    inputs: &mut Vec<Input>,
    notes: &mut Vec<Note>,
) {
    if config.sources.is_empty() {
        return;
    }
    let tree = chokepoint_collect::source::SourceTree {
        paths: config.sources.clone(),
        options: Default::default(),
    };
    let part = chokepoint_collect::source::scan(&tree);
    evidence.source = part.evidence.source;
    inputs.extend(part.inputs);
    notes.extend(part.notes);
}

/// A run's renderings beside its evidence: `report.json`, `report.md`, `report.html`.
fn write_renderings(dir: &Path, report: &Report) -> std::io::Result<()> {
    std::fs::write(dir.join("report.json"), render_json(report))?;
    std::fs::write(dir.join("report.md"), render_markdown(report))?;
    std::fs::write(dir.join("report.html"), render_html(report))
}

/// A comparison with each run's ramp, to draw side by side.
fn with_ramps(
    mut report: chokepoint_report::ComparisonReport,
    a: &Evidence,
    outcome_a: &chokepoint_detect::Outcome,
    b: &Evidence,
    outcome_b: &chokepoint_detect::Outcome,
) -> chokepoint_report::ComparisonReport {
    report.before_ramp = chokepoint_report::Series::new(a, &outcome_a.findings).ramp;
    report.after_ramp = chokepoint_report::Series::new(b, &outcome_b.findings).ramp;
    report
}
