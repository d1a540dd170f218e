//! `chokepoint scan`, and the scan of `--source` beside every other kind of evidence.

use std::path::PathBuf;

use chokepoint_evidence::{Evidence, Note, Severity, SourceScan};
use chokepoint_report::Input;

use crate::args::ScanConfig;
use crate::output;

pub(crate) fn run(config: ScanConfig) -> anyhow::Result<u8> {
    let mut inputs = Vec::new();
    let mut notes = Vec::new();
    let source = scan_sources(&config.paths, &config.options, &mut inputs, &mut notes);
    let evidence = Evidence {
        source: Some(source),
        ..Evidence::default()
    };
    let (mut report, _) = crate::runs::report("scan", evidence, inputs, notes, &config.report, &[]);
    // Detectors that read other kinds are not the scan's to mention.
    report.skipped.clear();
    Ok(output::finish(&report, &config.report))
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
