//! Renders a chokepoint [`Report`] as text for a terminal, JSON for tools, or Markdown for a
//! pull request or a ticket. Renderers only render: every number and every word of a finding
//! was decided by a detector or the ranker.
//!
//! ```
//! use chokepoint_detect::Analysis;
//! use chokepoint_report::{render_json, render_text, Report};
//!
//! let report = Report::new(Analysis::default().finish());
//! assert!(render_text(&report, false).contains("No spans were analysed"));
//! assert!(render_json(&report).contains("\"bottleneck\": null"));
//! ```

mod chart;
mod json;
mod markdown;
mod text;

pub use chart::{render_chart_svg, render_chart_text};
pub use json::{render_json, schema};
pub use markdown::render_markdown;
pub use text::{render_text, step_header, step_row};

use chokepoint_detect::{Finding, Outcome, Skipped, Summary, UslFit};
use chokepoint_evidence::LoadRun;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The report: the JSON output's top level, and what every renderer reads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Report {
    /// The version of chokepoint that wrote it.
    pub chokepoint_version: String,
    /// The bottleneck: the first ranked finding, or `null` when there is none.
    pub bottleneck: Option<Finding>,
    /// All findings, ranked by recoverable service time (the first is the bottleneck).
    pub findings: Vec<Finding>,
    /// Detectors that had no evidence to look at: not a clean bill of health.
    pub skipped: Vec<Skipped>,
    /// What was analysed.
    pub summary: Summary,
    /// Each input read, and what came of it.
    pub inputs: Vec<Input>,
    /// Input that could not be read, with its position (file, line or byte, record).
    pub problems: Vec<String>,
    /// Things to know that are not errors (orphan spans, inputs with no spans).
    pub warnings: Vec<String>,
    /// `chokepoint load`, closed model: the Universal Scalability Law fitted to the steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usl: Option<chokepoint_detect::UslFit>,
    /// `chokepoint db`: the statistics read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<chokepoint_evidence::PgSnapshot>,
    /// `chokepoint load`: the full step series of the ramp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<LoadRun>,
}

/// One input source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Input {
    /// The path, `-` for standard input, or the receiver's addresses.
    pub source: String,
    /// The format recognised (`OTLP/JSON`, `OTLP/protobuf`, `Jaeger JSON`, `Zipkin v2 JSON`).
    pub format: Option<String>,
    /// Spans read from it.
    pub spans: u64,
}

impl Report {
    /// A report of an analysis outcome, with no inputs, problems or warnings yet.
    pub fn new(outcome: Outcome) -> Report {
        Report {
            chokepoint_version: env!("CARGO_PKG_VERSION").to_owned(),
            bottleneck: outcome.findings.first().cloned(),
            findings: outcome.findings,
            skipped: outcome.skipped,
            summary: outcome.summary,
            inputs: Vec::new(),
            problems: Vec::new(),
            warnings: Vec::new(),
            usl: outcome.usl,
            database: None,
            load: None,
        }
    }
}

/// "1.2 s", "340 ms", "0.8 ms": a duration in ms, readable.
pub(crate) fn duration(ms: f64) -> String {
    if ms >= 10_000.0 {
        format!("{:.0} s", ms / 1e3)
    } else if ms >= 1_000.0 {
        format!("{:.1} s", ms / 1e3)
    } else if ms >= 10.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

/// "12 %" from a share.
pub(crate) fn percent(share: f64) -> String {
    if share > 0.0 && share < 0.01 {
        "<1 %".to_owned()
    } else {
        format!("{:.0} %", share * 100.0)
    }
}

/// The evidence line: affected requests, occurrences, example traces.
pub(crate) fn evidence_line(finding: &Finding) -> String {
    let e = &finding.evidence;
    let mut line = format!(
        "{} of {} requests, {} occurrence{}",
        e.affected_requests,
        e.endpoint_requests,
        e.occurrences,
        if e.occurrences == 1 { "" } else { "s" }
    );
    if !e.example_trace_ids.is_empty() {
        line.push_str("; traces ");
        line.push_str(&e.example_trace_ids.join(", "));
    }
    line
}

/// The closing summary line.
pub(crate) fn summary_line(report: &Report) -> String {
    let s = &report.summary;
    if let (Some(db), None) = (&report.database, &report.load) {
        return database_summary(db, s.requests);
    }
    if let Some(run) = &report.load {
        let usl = report
            .usl
            .map(|fit| format!(" {}", usl_sentence(&fit)))
            .unwrap_or_default();
        let database = report
            .database
            .as_ref()
            .map(|db| {
                let statements: u64 = db.statements.iter().map(|s| s.calls).sum();
                format!("\n{}", database_summary(db, statements))
            })
            .unwrap_or_default();
        return format!(
            "Measured {} requests in {} steps over {:.1} s; the ramp stopped: {}.{usl}{database}",
            s.requests,
            run.steps.len(),
            s.window_s,
            run.stopped_because
        );
    }
    let plural = |n: u64, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    let mut line = format!(
        "Analysed {} in {} ({} to {}) over {:.1} s of traffic",
        plural(s.spans, "span"),
        plural(s.traces, "trace"),
        plural(s.requests, "request"),
        plural(s.endpoints, "endpoint"),
        s.window_s,
    );
    if !report.inputs.is_empty() {
        line.push_str(" from ");
        line.push_str(&plural(report.inputs.len() as u64, "source"));
    }
    line.push('.');
    line
}

/// What `chokepoint db` read, in a few sentences: statements, database counters, open
/// transactions, settings.
fn database_summary(db: &chokepoint_evidence::PgSnapshot, calls: u64) -> String {
    let mut text = format!(
        "Read {} statements ({calls} calls) from database {} (PostgreSQL {}) covering {:.0} s, read-only; extensions used: {}; literals {}.",
        db.statements.len(),
        db.database,
        db.server_version,
        db.window_s,
        if db.extensions.is_empty() {
            "none".to_owned()
        } else {
            db.extensions.join(", ")
        },
        if db.literals_shown { "shown" } else { "redacted" }
    );
    let st = &db.stats;
    let mut counters = Vec::new();
    if let Some(sessions) = st.sessions {
        counters.push(format!("{sessions} sessions"));
    }
    counters.push(format!("{} commits, {} rollbacks", st.commits, st.rollbacks));
    counters.push(format!(
        "{} temporary files ({:.1} MB)",
        st.temp_files,
        st.temp_bytes as f64 / 1e6
    ));
    counters.push(format!("{} deadlocks", st.deadlocks));
    if let Some(ratio) = st.cache_hit_ratio {
        counters.push(format!("{:.1} % of block reads from cache", ratio * 100.0));
    }
    let since = match st.window_s {
        Some(seconds) => format!("over the {seconds:.0} s since its statistics were reset"),
        None => "since its statistics began (never reset)".to_owned(),
    };
    text.push_str(&format!("\npg_stat_database, {since}: {}.", counters.join(", ")));
    if !db.open_transactions.is_empty() {
        let listed: Vec<String> = db
            .open_transactions
            .iter()
            .take(3)
            .map(|t| format!("pid {} {} for {:.1} s", t.pid, t.state, t.transaction_ms / 1e3))
            .collect();
        text.push_str(&format!(
            "\nOpen transactions at the snapshot (over 1 s, or idle in transaction): {} ({}).",
            db.open_transactions.len(),
            listed.join("; ")
        ));
    }
    if !db.settings.is_empty() {
        text.push_str(&format!("\nSettings: {}.", db.settings.join(", ")));
    }
    text
}

/// The USL fit in one sentence.
pub(crate) fn usl_sentence(fit: &UslFit) -> String {
    let peak = match fit.peak_concurrency {
        Some(n) => format!(
            "peaks at {:.0} requests/s at {n:.0} connections",
            fit.peak_throughput_rps
        ),
        None => format!("levels off at {:.0} requests/s", fit.peak_throughput_rps),
    };
    format!(
        "Universal Scalability Law fit: σ = {:.3} (contention), κ = {:.4} (coherency), λ = {:.1} requests/s: throughput {peak}.",
        fit.sigma, fit.kappa, fit.lambda_rps
    )
}
