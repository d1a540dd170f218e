//! The JSON rendering and its schema (the published contract, `docs/report.schema.json`).

use crate::Report;

/// The report as pretty-printed JSON, ending with a newline.
pub fn render_json(report: &Report) -> String {
    let mut json = serde_json::to_string_pretty(report).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    json.push('\n');
    json
}

/// The JSON Schema of [`render_json`]'s output.
pub fn schema() -> String {
    let schema = schemars::schema_for!(Report);
    let mut json = serde_json::to_string_pretty(&schema).unwrap_or_default();
    json.push('\n');
    json
}
