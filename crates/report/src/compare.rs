//! A comparison of two runs (`chokepoint compare A B`), as text, Markdown or JSON. Every number
//! and status was decided by `chokepoint_detect::compare`.

use std::fmt::Write as _;

use chokepoint_detect::{Comparison, Status};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{RampSeries, percent, rate};

/// The JSON output of `chokepoint compare`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ComparisonReport {
    /// The version of chokepoint that compared.
    pub chokepoint_version: String,
    /// The first run (before), as given.
    pub before: String,
    /// The second run (after), as given.
    pub after: String,
    /// What changed.
    #[serde(flatten)]
    pub comparison: Comparison,
    /// The first run's ramp, drawn beside the second's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_ramp: Option<RampSeries>,
    /// The second run's ramp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_ramp: Option<RampSeries>,
}

impl ComparisonReport {
    /// The report of a comparison of runs named `before` and `after`.
    pub fn new(before: &str, after: &str, comparison: Comparison) -> ComparisonReport {
        ComparisonReport {
            chokepoint_version: env!("CARGO_PKG_VERSION").to_owned(),
            before: before.to_owned(),
            after: after.to_owned(),
            comparison,
            before_ramp: None,
            after_ramp: None,
        }
    }
}

pub(crate) fn status_word(status: Status) -> &'static str {
    match status {
        Status::Fixed => "fixed",
        Status::Better => "better",
        Status::Unchanged => "unchanged",
        Status::Worse => "worse",
        Status::New => "new",
    }
}

fn signed(relative: f64) -> String {
    let text = percent(relative.abs());
    if relative > 0.0 {
        format!("+{text}")
    } else if relative < 0.0 {
        format!("−{text}")
    } else {
        text
    }
}

/// A statement cut to 100 characters.
fn short(query: &str) -> String {
    match query.char_indices().nth(100) {
        Some((at, _)) => format!("{}…", &query[..at]),
        None => query.to_owned(),
    }
}

/// The comparison in lines of text (Markdown-friendly: no colour, no box drawing).
pub fn render_comparison(report: &ComparisonReport, markdown: bool) -> String {
    let c = &report.comparison;
    let mut out = String::new();
    let heading = |out: &mut String, text: &str| {
        if markdown {
            let _ = writeln!(out, "\n## {text}\n");
        } else {
            let _ = writeln!(out, "\n{text}");
        }
    };
    if markdown {
        let _ = writeln!(
            out,
            "# chokepoint compare\n\n`{}` → `{}`",
            report.before, report.after
        );
    } else {
        let _ = writeln!(
            out,
            "Comparing {} (before) with {} (after)",
            report.before, report.after
        );
    }
    let bottleneck = &c.bottleneck;
    let moved = match (&bottleneck.before, &bottleneck.after, bottleneck.moved) {
        (Some(before), Some(after), true) => format!("The bottleneck moved from {before} to {after}."),
        (Some(before), None, _) => format!("The bottleneck ({before}) is gone: no finding after."),
        (None, Some(after), _) => format!("A bottleneck appeared: {after}."),
        (Some(before), Some(_), false) => format!("The bottleneck is still {before}."),
        (None, None, _) => "Neither run has a bottleneck.".to_owned(),
    };
    let _ = writeln!(out, "{moved}");
    if let Some(capacity) = &c.capacity {
        let _ = writeln!(
            out,
            "Capacity: {} → {} ({}).",
            rate(capacity.before),
            rate(capacity.after),
            signed(capacity.relative)
        );
    }
    if let Some(prediction) = &c.prediction {
        let _ = writeln!(
            out,
            "Predicted {} ({} to {}) after the fix; measured {}{} (the prediction {} off it, {} its range).",
            rate(prediction.predicted_rps),
            rate(prediction.predicted_range_rps[0]),
            rate(prediction.predicted_range_rps[1]),
            rate(prediction.measured_rps),
            if prediction.at_limit {
                ""
            } else {
                " or more (the ramp did not reach the new limit)"
            },
            signed(prediction.error),
            if prediction.in_range { "within" } else { "outside" }
        );
    }
    if !c.plans.is_empty() {
        heading(&mut out, "Plans that changed");
        let side = |side: &chokepoint_detect::PlanSide| {
            let scans = if side.scans.is_empty() {
                "no scan".to_owned()
            } else {
                side.scans.join(", ")
            };
            match side.mean_ms {
                Some(ms) => format!("{scans} (cost {:.0}, {ms:.2} ms mean)", side.cost),
                None => format!("{scans} (cost {:.0})", side.cost),
            }
        };
        for plan in &c.plans {
            let _ = writeln!(
                out,
                "- `{}`: {} → {}",
                short(&plan.query),
                side(&plan.before),
                side(&plan.after)
            );
        }
    }
    if !c.equal_load.is_empty() {
        heading(&mut out, "At equal load");
        let _ = writeln!(out, "| offered | throughput | p50 | p99 |");
        let _ = writeln!(out, "|--:|--:|--:|--:|");
        for step in &c.equal_load {
            let _ = writeln!(
                out,
                "| {} | {} → {} ({}) | {:.1} → {:.1} ms ({}) | {:.1} → {:.1} ms ({}) |",
                step.offered,
                rate(step.throughput_rps.before),
                rate(step.throughput_rps.after),
                signed(step.throughput_rps.relative),
                step.p50_ms.before,
                step.p50_ms.after,
                signed(step.p50_ms.relative),
                step.p99_ms.before,
                step.p99_ms.after,
                signed(step.p99_ms.relative),
            );
        }
    }
    if !c.findings.is_empty() {
        heading(&mut out, "Findings");
        let _ = writeln!(out, "| status | detector | scope | where | before | after |");
        let _ = writeln!(out, "|---|---|---|---|--:|--:|");
        let number = |v: Option<f64>| v.map_or("—".to_owned(), |v| format!("{v:.3}"));
        for f in &c.findings {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                status_word(f.status),
                f.detector,
                f.scope.qualified(),
                f.location
                    .replace('|', "\\|")
                    .chars()
                    .take(70)
                    .collect::<String>(),
                number(f.before),
                number(f.after)
            );
        }
        let _ = writeln!(
            out,
            "\nbefore/after: recoverable service time per second for a consumer, capacity in requests/s for a limit."
        );
    }
    out
}
