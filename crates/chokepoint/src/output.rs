//! Printing reports, choosing exit codes, and the `detectors` and `explain` commands.

use anyhow::bail;
use chokepoint_report::{Report, render_json, render_markdown, render_text};

use crate::args::{FailOn, Format, ReportConfig};
use crate::{EXIT_BAD_INPUT, EXIT_FINDINGS, EXIT_OK};

/// Prints the report and returns the exit code: 2 when input was bad (even though what could be
/// read is reported), else 1 when a finding matches `--fail-on`, else 0.
pub(crate) fn finish(report: &Report, config: &ReportConfig) -> u8 {
    let rendered = match config.format {
        Format::Text => render_text(report, config.color),
        Format::Json => render_json(report),
        Format::Markdown => render_markdown(report),
    };
    print!("{rendered}");
    if config.format != Format::Text {
        // Tools read stdout; people still need to see what went wrong.
        for warning in &report.warnings {
            eprintln!("warning: {warning}");
        }
        for problem in &report.problems {
            eprintln!("error: {problem}");
        }
    }
    let bad_input = !report.problems.is_empty() || report.inputs.iter().any(|i| i.spans == 0);
    let failing = match &config.fail_on {
        FailOn::Never => false,
        FailOn::Any => !report.findings.is_empty(),
        FailOn::Ids(ids) => report.findings.iter().any(|f| ids.contains(&f.detector)),
    };
    if bad_input {
        EXIT_BAD_INPUT
    } else if failing {
        EXIT_FINDINGS
    } else {
        EXIT_OK
    }
}

/// `chokepoint detectors`.
pub(crate) fn print_detectors() {
    let width = chokepoint_detect::detectors()
        .map(|d| d.id.len())
        .max()
        .unwrap_or(0);
    for meta in chokepoint_detect::detectors() {
        println!("{:width$}  {}", meta.id, meta.summary);
    }
    println!("\n`chokepoint explain <id>` prints what a detector looks for and how to fix what it finds.");
}

/// `chokepoint explain <id>`.
pub(crate) fn explain(id: &str) -> anyhow::Result<u8> {
    let Some(meta) = chokepoint_detect::find_detector(id) else {
        let known: Vec<_> = chokepoint_detect::detectors().map(|d| d.id).collect();
        bail!("no detector {id:?}; the detectors are: {}", known.join(", "));
    };
    println!("# {} — {}\n", meta.id, meta.summary);
    print!("{}", meta.doc_markdown());
    Ok(EXIT_OK)
}
