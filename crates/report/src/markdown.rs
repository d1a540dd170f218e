//! The Markdown rendering, for a pull request, a ticket or a wiki page.

use std::fmt::Write as _;

use crate::{
    Report, evidence_line, impact_cell, impact_sentence, item_lines, per_second_cell, skipped_groups,
    summary_lines,
};

/// The report as GitHub-flavoured Markdown.
pub fn render_markdown(report: &Report) -> String {
    let mut out = String::from("# chokepoint report\n\n");
    match report.bottleneck() {
        Some(b) => {
            let _ = writeln!(out, "**Bottleneck: `{}`** — {}\n", b.detector, cell(&b.title));
            let _ = writeln!(out, "{}\n", impact_sentence(b));
            if let Some(limit) = report.limit() {
                let _ = writeln!(
                    out,
                    "It explains the limit: `{}` — {}{}\n",
                    limit.detector,
                    cell(&limit.title),
                    report.share_of_limit_words()
                );
            }
            if let Some(prediction) = report.prediction_sentence() {
                let _ = writeln!(out, "**Predicted:** {prediction}\n");
            }
        }
        None if !report.findings.is_empty() => {
            let _ = writeln!(out, "{}\n", crate::potential_sentence(report.findings.len()));
        }
        None => out.push_str("**No bottleneck found** by the detectors that had evidence to look at.\n\n"),
    }
    if !report.findings.is_empty() {
        out.push_str("| # | detector | scope | impact | s/s | confidence |\n");
        out.push_str("|--:|---|---|--:|--:|---|\n");
        for (rank, f) in report.findings.iter().enumerate() {
            let _ = writeln!(
                out,
                "| {} | `{}` | {} | {} | {} | {} |",
                rank + 1,
                f.detector,
                cell(&f.scope.label()),
                impact_cell(f),
                per_second_cell(f),
                f.confidence.as_str()
            );
        }
        out.push('\n');
    }
    for (rank, f) in report.findings.iter().enumerate() {
        let _ = writeln!(
            out,
            "## {}. `{}` — {}\n",
            rank + 1,
            f.detector,
            cell(&f.scope.label())
        );
        let _ = writeln!(out, "{}\n", f.title);
        let _ = writeln!(
            out,
            "- **Where:** `{}` ({})",
            f.location.replace('`', "'"),
            f.scope.owner()
        );
        let _ = writeln!(out, "- **Fix:** {}", f.fix);
        let _ = writeln!(out, "- **Evidence:** {}", evidence_line(f));
        for (name, line) in item_lines(f) {
            let _ = writeln!(out, "- **{}:** {line}", capitalized(name));
        }
        for assumption in &f.assumptions {
            let _ = writeln!(out, "- *Assumes* {assumption}");
        }
        out.push('\n');
    }
    let skipped = skipped_groups(&report.skipped);
    if !skipped.is_empty() {
        out.push_str("**Skipped for lack of evidence:**\n\n");
        for (reason, ids) in skipped {
            let ids: Vec<String> = ids.iter().map(|id| format!("`{id}`")).collect();
            let _ = writeln!(out, "- {reason}: {}", ids.join(", "));
        }
        out.push('\n');
    }
    for line in summary_lines(report) {
        let _ = writeln!(out, "_{}_\n", line.replace('\n', " "));
    }
    for note in &report.notes {
        let _ = writeln!(out, "> **{}:** {note}\n", capitalized(note.severity.as_str()));
    }
    out
}

/// Text safe inside a table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
