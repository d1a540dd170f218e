//! What the end-to-end targets check of a report: it renders as text and Markdown, and its JSON
//! reads back and writes the same JSON (no `null` where a number belongs; numbers are rounded
//! when rendered, so the JSON is a fixed point, not the report to the last bit).

use chokepoint_evidence::Evidence;
use chokepoint_report::{Report, render_json, render_markdown, render_text};

/// Analyses `evidence` as `command` would, renders the report three ways and reads its JSON back.
pub fn analyse_and_render(command: &str, evidence: Evidence) {
    let outcome = chokepoint_detect::analyse(&evidence);
    let report = Report::new(command, evidence, outcome, Vec::new(), Vec::new());
    let _ = render_text(&report, true);
    let _ = render_markdown(&report);
    let json = render_json(&report);
    let back: Report = serde_json::from_str(&json).unwrap_or_else(|e| {
        let context: Vec<&str> = json.lines().skip(e.line().saturating_sub(8)).take(10).collect();
        panic!("the JSON report does not read back: {e}\n{}", context.join("\n"))
    });
    assert_eq!(render_json(&back), json);
    assert_eq!(back.findings.len(), report.findings.len());
}
