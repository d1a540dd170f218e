//! SARIF 2.1.0, for code scanning: one rule per detector id with its `explain` text as help, one
//! result per finding that names a line of source — its rule, file, line and column, its
//! message, its fix — and whether it was measured or only read in the source.

use chokepoint_detect::{Confidence, Finding, Impact};
use chokepoint_evidence::{Anchor, Subject};
use serde_json::{Value, json};

use crate::Report;

/// The schema the output follows: OASIS's, as committed in `docs/sarif-schema-2.1.0.json`.
const SCHEMA: &str =
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json";

/// A report as a SARIF 2.1.0 log. Findings with no line of source (a database's, a ramp's that
/// nothing joined to code) have no place in it; `--format json` carries them.
pub fn render_sarif(report: &Report) -> String {
    let detectors: Vec<_> = chokepoint_detect::detectors().collect();
    let rules: Vec<Value> = detectors
        .iter()
        .map(|meta| {
            let help = meta.doc_markdown();
            json!({
                "id": meta.id.as_str(),
                "name": meta.id.as_str(),
                "shortDescription": { "text": meta.summary },
                "help": { "text": help, "markdown": help },
                "defaultConfiguration": { "level": "warning" },
            })
        })
        .collect();
    let results: Vec<Value> = report
        .findings
        .iter()
        .filter_map(|finding| {
            let (file, line) = place(finding)?;
            let column = report
                .source
                .as_ref()
                .and_then(|s| s.shapes.iter().find(|s| s.file == file && s.line == line))
                .map_or(1, |s| s.column);
            let index = detectors.iter().position(|m| m.id == finding.detector)?;
            let (level, impact) = match &finding.impact {
                Impact::Potential(_) if finding.confidence == Confidence::Low => ("note", "potential"),
                Impact::Potential(_) => ("warning", "potential"),
                Impact::Consumer(_) => ("error", "measured"),
                Impact::Limit(_) => ("error", "limit"),
            };
            Some(json!({
                "ruleId": finding.detector.as_str(),
                "ruleIndex": index,
                "level": level,
                "message": { "text": format!("{} Fix: {}", finding.title, finding.fix) },
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": { "uri": uri(&file) },
                        "region": { "startLine": line, "startColumn": column },
                    }
                }],
                "partialFingerprints": { "chokepoint/v1": finding.id },
                "properties": {
                    "impact": impact,
                    "confidence": finding.confidence.as_str(),
                    "measured": !matches!(finding.impact, Impact::Potential(_)),
                },
            }))
        })
        .collect();
    let log = json!({
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": "chokepoint",
                    "version": report.run.chokepoint_version,
                    "rules": rules,
                }
            },
            "results": results,
        }]
    });
    let mut text = serde_json::to_string_pretty(&log).unwrap_or_default();
    text.push('\n');
    text
}

/// The line a finding is about: its subject's, or the first line its anchors name.
fn place(finding: &Finding) -> Option<(String, u32)> {
    if let Subject::Code {
        file,
        line: Some(line),
        ..
    } = &finding.subject
    {
        return Some((file.clone(), *line));
    }
    finding.anchors.iter().find_map(|a| match a {
        Anchor::Code {
            file,
            line: Some(line),
            ..
        } => Some((file.clone(), *line)),
        _ => None,
    })
}

/// A path as a URI reference: relative paths stay relative (to the folder scanned from),
/// absolute ones become `file://` URIs.
fn uri(path: &str) -> String {
    let path = path.replace('\\', "/");
    let encoded: String = path
        .chars()
        .map(|c| match c {
            ' ' => "%20".to_owned(),
            '#' => "%23".to_owned(),
            '?' => "%3F".to_owned(),
            '%' => "%25".to_owned(),
            c => c.to_string(),
        })
        .collect();
    if path.starts_with('/') {
        format!("file://{encoded}")
    } else {
        encoded
    }
}
