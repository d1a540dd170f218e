//! Saved runs: `--save` (or `--run-dir DIR`) keeps a run's evidence and its report in a folder;
//! `chokepoint report RUN` analyses a saved run again with today's detectors; `chokepoint compare
//! A B` compares two.
//!
//! The folder is a contract, like the JSON schema (README, "Saved runs"):
//!
//! ```text
//! .chokepoint/runs/20261130T153000Z-<label>/
//!   run.json       layout version, chokepoint version, command, label, time, inputs, the collectors' notes
//!   evidence.json  the evidence bundle, as analysed (chokepoint_evidence::Evidence)
//!   report.json    the report as `--format json` printed it
//!   report.md      the report as `--format markdown` printed it
//!   <recording>    recordings chokepoint made (a py-spy profile), by their file name
//! ```

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context as _, bail};
use chokepoint_evidence::{Evidence, Note, Severity, SourceScan};
use chokepoint_report::{Input, Report, render_json, render_markdown};
use serde::{Deserialize, Serialize};

use crate::args::{ReportConfig, SaveConfig};

/// The layout version of a run folder. Layout 2 (chokepoint 0.1, with anchors): the traces'
/// endpoints keep the statements they run and the instrumentation scopes that recorded them, a
/// ramp the target's command line. Layout 1 runs read as they are: what they lack is absent (a
/// database finding stays on its database, fixes name every ORM), and the report says so.
const LAYOUT: u32 = 2;

/// `run.json`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RunMeta {
    pub(crate) layout: u32,
    pub(crate) chokepoint_version: String,
    pub(crate) command: String,
    pub(crate) label: String,
    /// RFC 3339, UTC.
    pub(crate) created: String,
    pub(crate) inputs: Vec<Input>,
    /// What the collectors had to say (the analysis's own notes are made again on reading).
    pub(crate) notes: Vec<Note>,
    /// Recordings kept in the folder, by file name.
    pub(crate) attachments: Vec<String>,
}

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
        let written = std::fs::write(dir.join("report.json"), render_json(&report))
            .and_then(|()| std::fs::write(dir.join("report.md"), render_markdown(&report)));
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
    let markdown = chokepoint_report::render_comparison(&report, true);
    std::fs::write(run.join("compare.json"), serde_json::to_string_pretty(&report)?)
        .and_then(|()| std::fs::write(run.join("compare.md"), &markdown))
        .with_context(|| format!("cannot write the comparison into {}", run.display()))?;
    match format {
        crate::args::Format::Json | crate::args::Format::Sarif => eprintln!(
            "chokepoint: compared with {}: {}",
            baseline.display(),
            run.join("compare.json").display()
        ),
        crate::args::Format::Markdown => print!("\n{markdown}"),
        crate::args::Format::Text => print!("\n{}", chokepoint_report::render_comparison(&report, false)),
    }
    Ok(())
}

fn save_evidence(
    command: &str,
    evidence: &Evidence,
    inputs: &[Input],
    notes: &[Note],
    save: &SaveConfig,
    attachments: &[PathBuf],
) -> anyhow::Result<PathBuf> {
    let label = save.label.clone().unwrap_or_else(|| command.to_owned());
    let now = SystemTime::now();
    let created = humantime::format_rfc3339_seconds(now).to_string();
    let dir = match &save.dir {
        Some(dir) => dir.clone(),
        None => {
            let stamp: String = created.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
            let safe: String = label
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                        c
                    } else {
                        '-'
                    }
                })
                .collect();
            PathBuf::from(".chokepoint/runs").join(format!("{stamp}-{safe}"))
        }
    };
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the run folder {}", dir.display()))?;
    let mut kept = Vec::new();
    for path in attachments {
        let Some(name) = path.file_name() else { continue };
        std::fs::copy(path, dir.join(name))
            .with_context(|| format!("cannot copy {} into the run", path.display()))?;
        kept.push(name.to_string_lossy().into_owned());
    }
    let meta = RunMeta {
        layout: LAYOUT,
        chokepoint_version: env!("CARGO_PKG_VERSION").to_owned(),
        command: command.to_owned(),
        label,
        created,
        inputs: inputs.to_vec(),
        notes: notes.to_vec(),
        attachments: kept,
    };
    write_json(&dir.join("run.json"), &meta)?;
    write_json(&dir.join("evidence.json"), evidence)?;
    Ok(dir)
}

fn write_json(path: &Path, value: &impl Serialize) -> anyhow::Result<()> {
    let file = std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
    let mut writer = std::io::BufWriter::new(file);
    // Flushed here, not on drop, which would swallow a full disk's error.
    serde_json::to_writer(&mut writer, value)
        .map_err(std::io::Error::from)
        .and_then(|()| writer.flush())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// A saved run, read back.
pub(crate) struct SavedRun {
    pub(crate) meta: RunMeta,
    pub(crate) evidence: Evidence,
}

impl SavedRun {
    /// What reading a run of an older layout leaves out, when it is one.
    pub(crate) fn older_layout(&self, dir: &Path) -> Option<Note> {
        (self.meta.layout < LAYOUT).then(|| {
            Note::new(
                Severity::Info,
                dir.display().to_string(),
                format!(
                    "saved in run layout {} (this chokepoint writes {LAYOUT}): its traces lack the statements each endpoint \
                     runs and the instrumentation that recorded them, so its database findings stay on the database and its \
                     fixes do not know the framework",
                    self.meta.layout
                ),
            )
        })
    }
}

/// Reads a run folder (or its `run.json`).
pub(crate) fn load(path: &Path) -> anyhow::Result<SavedRun> {
    let dir = if path.file_name().is_some_and(|n| n == "run.json") {
        path.parent().unwrap_or(Path::new(".")).to_path_buf()
    } else {
        path.to_path_buf()
    };
    if !dir.is_dir() {
        bail!(
            "{}: no such run folder (runs are saved with --save, under .chokepoint/runs/)",
            dir.display()
        );
    }
    let meta: RunMeta = read_json(&dir.join("run.json"))?;
    if meta.layout > LAYOUT {
        bail!(
            "{}: saved by chokepoint {} in run layout {}, newer than this chokepoint reads ({LAYOUT}): upgrade",
            dir.display(),
            meta.chokepoint_version,
            meta.layout
        );
    }
    let evidence: Evidence = read_json(&dir.join("evidence.json"))?;
    Ok(SavedRun { meta, evidence })
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let file = std::fs::File::open(path).with_context(|| {
        format!(
            "{}: cannot open it — is {} a chokepoint run folder?",
            path.display(),
            path.parent().map_or("?".into(), |p| p.display().to_string())
        )
    })?;
    serde_json::from_reader(std::io::BufReader::new(file)).map_err(|e| {
        anyhow::anyhow!(
            "{}: line {}, column {}: not what a chokepoint run holds ({e}); the folder is damaged",
            path.display(),
            e.line(),
            e.column()
        )
    })
}

/// `chokepoint report RUN`: the saved run analysed again with today's detectors.
pub(crate) fn show(path: &Path, config: &ReportConfig) -> anyhow::Result<u8> {
    let run = load(path)?;
    let older = run.older_layout(path);
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

/// `chokepoint compare A B`.
pub(crate) fn compare(
    before: &Path,
    after: &Path,
    format: crate::args::Format,
    fail_over: Option<f64>,
) -> anyhow::Result<u8> {
    let a = load(before)?;
    let b = load(after)?;
    for (run, dir) in [(&a, before), (&b, after)] {
        if let Some(note) = run.older_layout(dir) {
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
    match format {
        crate::args::Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report).context("cannot write JSON")?
        ),
        crate::args::Format::Markdown => print!("{}", chokepoint_report::render_comparison(&report, true)),
        crate::args::Format::Text => print!("{}", chokepoint_report::render_comparison(&report, false)),
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
    if !config.sources.is_empty() {
        evidence.source = Some(scan_sources(&config.sources, &Default::default(), inputs, notes));
    }
}

/// Scans the service's source: its Python files read, the notes on what could not be, an input
/// per path. Nothing read at all is an error; a path missing beside others that were read is
/// said and the rest scanned.
pub(crate) fn scan_sources(
    paths: &[PathBuf],
    options: &chokepoint_scan::Options,
    inputs: &mut Vec<Input>,
    notes: &mut Vec<Note>,
) -> SourceScan {
    let scanned = chokepoint_scan::scan(paths, options);
    for path in paths {
        inputs.push(Input {
            source: path.display().to_string(),
            format: Some("Python source".to_owned()),
            spans: 0,
        });
    }
    let read = scanned.scan.files > 0;
    notes.extend(scanned.notes.into_iter().map(|mut note| {
        if read && note.severity == Severity::Error {
            note.severity = Severity::Warning;
        }
        note
    }));
    if !read {
        notes.push(Note::new(
            Severity::Error,
            "source",
            format!(
                "no Python file could be read under {}: give the folder of the service's code",
                paths
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    if scanned.suppressed > 0 {
        notes.push(Note::new(
            Severity::Info,
            "source",
            format!(
                "{} shape(s) silenced by `# chokepoint: ignore` comments",
                scanned.suppressed
            ),
        ));
    }
    scanned.scan
}
