//! The Markdown rendering, for a pull request, a ticket or a wiki page.

use std::fmt::Write as _;

use crate::{Report, duration, evidence_line, percent, summary_line};

/// The report as GitHub-flavoured Markdown.
pub fn render_markdown(report: &Report) -> String {
    let mut out = String::from("# chokepoint report\n\n");
    match &report.bottleneck {
        Some(b) => {
            let _ = writeln!(out, "**Bottleneck: `{}`** — {}\n", b.detector, cell(&b.title));
        }
        None => out.push_str("**No bottleneck found** by the detectors that had evidence to look at.\n\n"),
    }
    if !report.findings.is_empty() {
        out.push_str(
            "| # | detector | endpoint | saved / request | share of endpoint | s/s | confidence |\n",
        );
        out.push_str("|--:|---|---|--:|--:|--:|---|\n");
        for (rank, f) in report.findings.iter().enumerate() {
            let _ = writeln!(
                out,
                "| {} | `{}` | {} | {} | {} | {:.3} | {} |",
                rank + 1,
                f.detector,
                cell(&f.endpoint),
                duration(f.impact.saved_ms_per_request),
                percent(f.impact.share_of_endpoint_time),
                f.impact.recoverable_s_per_s,
                f.confidence.as_str()
            );
        }
        out.push('\n');
    }
    for (rank, f) in report.findings.iter().enumerate() {
        let _ = writeln!(out, "## {}. `{}` — {}\n", rank + 1, f.detector, cell(&f.endpoint));
        let _ = writeln!(out, "{}\n", f.title);
        let _ = writeln!(
            out,
            "- **Where:** `{}` ({})",
            f.location.replace('`', "'"),
            f.service
        );
        let _ = writeln!(out, "- **Fix:** {}", f.fix);
        let _ = writeln!(out, "- **Evidence:** {}", evidence_line(f));
        for assumption in &f.assumptions {
            let _ = writeln!(out, "- *Assumes* {assumption}");
        }
        out.push('\n');
    }
    if !report.skipped.is_empty() {
        out.push_str("**Skipped for lack of evidence:**\n\n");
        for s in &report.skipped {
            let _ = writeln!(out, "- `{}`: {}", s.detector, s.reason);
        }
        out.push('\n');
    }
    let _ = writeln!(out, "_{}_", summary_line(report));
    for warning in &report.warnings {
        let _ = writeln!(out, "\n> **Warning:** {warning}");
    }
    for problem in &report.problems {
        let _ = writeln!(out, "\n> **Error:** {problem}");
    }
    out
}

/// Text safe inside a table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}
