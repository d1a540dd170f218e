//! Renders a chokepoint [`Report`] as text for a terminal, JSON for tools, or Markdown for a
//! pull request or a ticket. Renderers only render: every number and every word of a finding
//! was decided by a detector, the ranker or the verdict.
//!
//! One report shape serves every command: the run (version, command, inputs, window), the
//! verdict, the findings, what was skipped, a section per kind of evidence that was there, and
//! notes with their severity, source and position.
//!
//! ```
//! use chokepoint_detect::{analyse, TraceAnalysis};
//! use chokepoint_evidence::Evidence;
//! use chokepoint_report::{render_json, render_text, Report};
//!
//! let evidence = Evidence { traces: Some(TraceAnalysis::default().finish()), ..Evidence::default() };
//! let outcome = analyse(&evidence);
//! let report = Report::new("traces", evidence, outcome, Vec::new(), Vec::new());
//! assert!(render_text(&report, false).contains("No spans were analysed"));
//! assert!(render_json(&report).contains("\"schema_version\": 4"));
//! ```

mod chart;
mod compare;
mod flamegraph;
mod html;
mod json;
mod markdown;
mod sarif;
mod series;
mod text;

pub use chart::{render_chart_svg, render_chart_text};
pub use compare::{ComparisonReport, render_comparison};
pub use flamegraph::render_flamegraph;
pub use html::{MAX_PAGE_BYTES, render_comparison_html, render_html};
pub use json::{render_json, schema};
pub use markdown::render_markdown;
pub use sarif::render_sarif;
pub use series::{EndpointTime, FindingExample, FlameSeries, PlanPair, RampPoint, RampSeries, Series};
pub use text::{render_text, step_header, step_row};

use chokepoint_detect::{
    Finding, Impact, Outcome, PredictedGain, ProfileSummary, SampleUnit, Skipped, StepSessions, UslFit,
    Verdict,
};
use chokepoint_evidence::{Evidence, LoadRun, Note, PgSnapshot, Severity, TracesSummary, Window};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The version of the JSON contract. Version 2 (chokepoint 0.2) gave every command one shape:
/// `run`, `verdict`, typed `scope`, `subject` and `impact` in findings, sections per evidence
/// kind, and `notes` in place of `problems` and `warnings`. Version 3 gave findings a stable
/// `id`, their `anchors` and the `costs` other evidence measured, and the verdict's `consumers`
/// their share of the limit (`{finding, share_of_limit, how}` in place of bare indices);
/// `compare`'s findings carry their `id` and typed `scope`. Version 4 names findings in the
/// verdict by their `id` (`bottleneck`, `limit`, `consumers[].finding` are strings, not indices)
/// and adds `series`, what the HTML page draws.
pub const SCHEMA_VERSION: u32 = 4;

/// The report: the JSON output's top level, and what every renderer reads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Report {
    /// The version of this contract ([`SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// What ran, on what.
    pub run: Run,
    /// The verdict, naming findings by their `id`: the bottleneck is always the first finding.
    pub verdict: ReportVerdict,
    /// Every finding, one per cause, the bottleneck first.
    pub findings: Vec<Finding>,
    /// What the HTML page draws, typed: the ramp's curve, each endpoint's time by cause, the
    /// profile's stacks, the plans before and after an index.
    #[serde(default)]
    pub series: Series,
    /// Detectors that could not judge for lack of evidence: not a clean bill of health.
    pub skipped: Vec<Skipped>,
    /// Traces: what they held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traces: Option<TracesSection>,
    /// A load ramp: its steps and what they show.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<LoadSection>,
    /// PostgreSQL: the statistics read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<PgSnapshot>,
    /// A profile: busy time per category and the hottest application code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<ProfileSummary>,
    /// The source scanned: what was read, and each shape found with its column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<chokepoint_evidence::SourceScan>,
    /// What the collectors and the analysis have to say about the evidence: input that could not
    /// be read (with where), evidence that could not be gathered, measurements to read with care.
    pub notes: Vec<Note>,
}

/// The verdict: the bottleneck, the limit it explains, the limit's consumers and the predicted
/// gain, each finding named by its `id` (stable across runs: `compare` keys on it).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReportVerdict {
    /// The bottleneck's id: the limit's top consumer, or the limit itself when nothing seen
    /// consumes it. Always the first finding.
    pub bottleneck: Option<String>,
    /// The id of the finding naming the resource that caps throughput, when a load ramp showed one.
    pub limit: Option<String>,
    /// Findings that consume the limit's resource, the largest share first.
    pub consumers: Vec<Consumer>,
    /// What fixing the bottleneck is predicted to give (`chokepoint diagnose`).
    pub predicted_gain: Option<PredictedGain>,
    /// When no gain was predicted, what a prediction needs that the evidence lacks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_predicted: Option<String>,
}

/// A finding that consumes the limit's resource, and how much of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Consumer {
    /// The finding's id.
    pub finding: String,
    /// The share of the limit's demand per request that fixing it removes (0–1), when it can be
    /// put per request.
    pub share_of_limit: Option<f64>,
    /// What fixing it removes of the demand, in ms per request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed_ms_per_request: Option<f64>,
    /// How the share was reached.
    pub how: Option<String>,
}

impl ReportVerdict {
    /// The analysis's verdict (indices into `findings`) with the findings named by id.
    pub fn new(verdict: Verdict, findings: &[Finding]) -> ReportVerdict {
        let id = |index: usize| findings.get(index).map(|f| f.id.clone());
        ReportVerdict {
            bottleneck: verdict.bottleneck.and_then(id),
            limit: verdict.limit.and_then(id),
            consumers: verdict
                .consumers
                .into_iter()
                .filter_map(|c| {
                    Some(Consumer {
                        finding: id(c.finding)?,
                        share_of_limit: c.share_of_limit.map(chokepoint_detect::round),
                        removed_ms_per_request: c.removed_ms_per_request.map(chokepoint_detect::round),
                        how: c.how,
                    })
                })
                .collect(),
            predicted_gain: verdict.predicted_gain,
            not_predicted: verdict.not_predicted,
        }
    }
}

/// The renderings of a report, one interface for all: every one reads the same [`Report`] and
/// says a finding with the same sentences (`impact_sentence`, `evidence_line`, `item_lines`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rendering {
    /// For a terminal; `color` adds ANSI styles.
    Text {
        /// Whether to add ANSI styles.
        color: bool,
    },
    /// For tools (`chokepoint schema`).
    Json,
    /// For a pull request or a ticket.
    Markdown,
    /// SARIF 2.1.0: the findings that name a line of source.
    Sarif,
    /// One self-contained HTML page.
    Html,
}

impl Rendering {
    /// The report rendered.
    pub fn render(self, report: &Report) -> String {
        match self {
            Rendering::Text { color } => render_text(report, color),
            Rendering::Json => render_json(report),
            Rendering::Markdown => render_markdown(report),
            Rendering::Sarif => render_sarif(report),
            Rendering::Html => render_html(report),
        }
    }
}

/// What ran, on what.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Run {
    /// The version of chokepoint that wrote the report.
    pub chokepoint_version: String,
    /// The command: `traces`, `listen`, `load`, `db`.
    pub command: String,
    /// Each input read, and what came of it.
    pub inputs: Vec<Input>,
    /// The wall-clock span the evidence covers, when it is stamped.
    pub window: Option<Window>,
}

/// One input source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Input {
    /// The path, `-` for standard input, the receiver's addresses, the URL loaded, the database.
    pub source: String,
    /// The format recognised (`OTLP/JSON`, `OTLP/protobuf`, `Jaeger JSON`, `Zipkin v2 JSON`), or
    /// the kind of source (`load ramp`, `PostgreSQL`).
    pub format: Option<String>,
    /// Spans read from it (0 for a source that is not traces).
    pub spans: u64,
}

/// What the traces held.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TracesSection {
    /// The traces, spans, requests and endpoints analysed.
    pub summary: TracesSummary,
    /// Candidate findings seen in too few requests to report.
    pub below_noise_gate: u64,
}

/// A load ramp and what its steps show.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LoadSection {
    /// The ramp, step by step.
    #[serde(flatten)]
    pub run: LoadRun,
    /// The Universal Scalability Law fitted to a closed-model ramp.
    pub usl: Option<UslFit>,
    /// The database's sessions per step, when a watch ran beside the ramp (`--pg`).
    pub step_sessions: Vec<StepSessions>,
}

impl Report {
    /// The report of one analysis: `evidence` and what `analyse` made of it, with the inputs read
    /// and the collectors' notes (the analysis's own notes follow them).
    pub fn new(
        command: &str,
        evidence: Evidence,
        outcome: Outcome,
        inputs: Vec<Input>,
        mut notes: Vec<Note>,
    ) -> Report {
        let window = evidence.window();
        notes.extend(outcome.notes);
        Report {
            schema_version: SCHEMA_VERSION,
            run: Run {
                chokepoint_version: env!("CARGO_PKG_VERSION").to_owned(),
                command: command.to_owned(),
                inputs,
                window,
            },
            verdict: ReportVerdict::new(outcome.verdict, &outcome.findings),
            series: Series::new(&evidence, &outcome.findings),
            findings: outcome.findings,
            skipped: outcome.skipped,
            traces: evidence.traces.map(|traces| TracesSection {
                summary: traces.summary,
                below_noise_gate: outcome.below_noise_gate,
            }),
            load: evidence.load.map(|run| LoadSection {
                run,
                usl: outcome.usl,
                step_sessions: outcome.step_sessions,
            }),
            database: evidence.database,
            profile: outcome.profile,
            source: evidence.source,
            notes,
        }
    }

    /// The finding with this id.
    pub fn finding(&self, id: &str) -> Option<&Finding> {
        self.findings.iter().find(|f| f.id == id)
    }

    /// The bottleneck, when there is one.
    pub fn bottleneck(&self) -> Option<&Finding> {
        self.finding(self.verdict.bottleneck.as_deref()?)
    }

    /// The finding naming the limit the bottleneck explains, when it is another finding.
    pub fn limit(&self) -> Option<&Finding> {
        let limit = self.verdict.limit.as_deref()?;
        (Some(limit) != self.verdict.bottleneck.as_deref())
            .then(|| self.finding(limit))
            .flatten()
    }

    /// ", and takes 81 % of it": the bottleneck's share of the limit it explains, when the verdict
    /// could put it per request.
    pub fn share_of_limit_words(&self) -> String {
        self.verdict
            .consumers
            .iter()
            .find(|c| Some(&c.finding) == self.verdict.bottleneck.as_ref())
            .and_then(|c| c.share_of_limit)
            .map_or_else(String::new, |share| {
                format!("; the bottleneck takes {} of it", percent(share))
            })
    }

    /// The predicted gain in one sentence, when the verdict made a prediction.
    /// When a limit was measured but no gain predicted, what the prediction needs.
    pub fn prediction_sentence(&self) -> Option<String> {
        let bottleneck = self.bottleneck()?;
        let Some(gain) = self.verdict.predicted_gain.as_ref() else {
            let needs = self
                .verdict
                .not_predicted
                .as_ref()
                .filter(|_| self.verdict.limit.is_some())?;
            return Some(format!("No gain predicted: it needs {needs}."));
        };
        let (low, high) = (rate(gain.range_rps[0]), rate(gain.range_rps[1]));
        Some(format!(
            "Fixing {} should raise capacity from {} to about {}{}, then bounded by {} (predicted by the operational \
             laws: {}).",
            bottleneck.detector,
            rate(gain.capacity_rps),
            rate(gain.capacity_after_fix_rps),
            if low == high {
                String::new()
            } else {
                format!(" ({low} to {high})")
            },
            gain.bound_by.describe(),
            gain.assumptions.join("; ")
        ))
    }

    /// Whether evidence was lost: a note of severity error.
    pub fn has_errors(&self) -> bool {
        self.notes.iter().any(|n| n.severity == Severity::Error)
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

/// "77.5/s", "1200/s": requests per second, readable.
pub(crate) fn rate(rps: f64) -> String {
    if rps >= 10.0 {
        format!("{rps:.0}/s")
    } else {
        format!("{rps:.1}/s")
    }
}

/// What a report of shapes found in the source, and nothing measured, says first.
pub(crate) fn potential_sentence(shapes: usize) -> String {
    format!(
        "Nothing measured: {shapes} shape(s) of a bottleneck found in the source, the likeliest first. Each is potential \
         until measured — `chokepoint diagnose URL --source DIR` joins what runs to these lines and says what each costs."
    )
}

/// The impact in one sentence, as the verdict states it.
pub(crate) fn impact_sentence(finding: &Finding) -> String {
    match &finding.impact {
        Impact::Potential(p) => format!(
            "Potential, not measured: it would use {} {}; confidence {}. Measure it under load with `chokepoint diagnose URL --source DIR`.",
            time_of(p.resource),
            if p.per_request {
                "on every request that reaches it"
            } else {
                "where it runs (no request handler was seen reaching it)"
            },
            finding.confidence.as_str(),
        ),
        Impact::Consumer(c) if finding.evidence.sample.unit.is_profile() => format!(
            "Fixing it gives back {} of {} over the profile ({} of the busy time): {:.3} s per second; confidence {}, impact {}.",
            duration(c.saved_ms_total),
            time_of(c.resource),
            percent(c.share_of_scope_time),
            c.recoverable_s_per_s,
            finding.confidence.as_str(),
            c.basis.as_str(),
        ),
        Impact::Consumer(c) => format!(
            "Fixing it saves {} of {} per affected {} ({} of {}'s time), {:.3} s of service time per second of traffic; confidence {}, impact {}.",
            duration(c.saved_ms_per_request),
            time_of(c.resource),
            finding.evidence.sample.unit.noun(1),
            percent(c.share_of_scope_time),
            finding.scope.label(),
            c.recoverable_s_per_s,
            finding.confidence.as_str(),
            c.basis.as_str(),
        ),
        Impact::Limit(l) => {
            let demand = l
                .demand_ms_per_request
                .map(|d| format!(", {} of it per request", duration(d)))
                .unwrap_or_default();
            let after = l
                .capacity_after_fix_rps
                .map(|a| format!("; after the fix about {} (predicted)", rate(a)))
                .unwrap_or_default();
            let slo = l
                .slo_missed
                .as_ref()
                .map(|m| {
                    format!(
                        "; the objective p{} < {} broke at {} requests/s (p{} {}), where it added {} of queueing",
                        m.percentile,
                        duration(m.limit_ms),
                        rate(m.throughput_rps).trim_end_matches("/s"),
                        m.percentile,
                        duration(m.observed_ms),
                        duration(m.queueing_ms)
                    )
                })
                .unwrap_or_default();
            format!(
                "Capacity {} requests/s, capped by {}{demand}{after}; at the highest load it added {} of queueing to the median{slo}; confidence {}.",
                rate(l.capacity_rps).trim_end_matches("/s"),
                l.resource.describe(),
                duration(l.queueing_ms),
                finding.confidence.as_str(),
            )
        }
    }
}

/// The impact in a table cell: "92 ms/req (66 %)", "caps 77/s".
pub(crate) fn impact_cell(finding: &Finding) -> String {
    match &finding.impact {
        Impact::Consumer(c) => format!(
            "{}/{} ({})",
            duration(c.saved_ms_per_request),
            match finding.evidence.sample.unit {
                SampleUnit::Requests => "req",
                SampleUnit::Calls => "call",
                SampleUnit::Samples => "sample",
                SampleUnit::Sessions => "session",
                SampleUnit::ProfileSamples | SampleUnit::ProfileMs => "s",
                SampleUnit::Lines => "line",
            },
            percent(c.share_of_scope_time)
        ),
        Impact::Limit(l) => format!("caps {}", rate(l.capacity_rps)),
        Impact::Potential(_) => "potential (not measured)".to_owned(),
    }
}

/// The recoverable service time per second, or a dash for a limit.
pub(crate) fn per_second_cell(finding: &Finding) -> String {
    match &finding.impact {
        Impact::Consumer(c) => format!("{:.3}", c.recoverable_s_per_s),
        Impact::Limit(_) | Impact::Potential(_) => "—".to_owned(),
    }
}

/// What a resource's time is called: "database time", "wire time".
fn time_of(resource: chokepoint_evidence::Resource) -> &'static str {
    use chokepoint_evidence::Resource::*;
    match resource {
        Cpu => "CPU time",
        HostCpu => "host CPU time",
        Workers => "worker time",
        EventLoop => "event-loop time",
        Database => "database time",
        Locks => "lock waiting",
        Connections => "connection setup",
        Network => "wire time",
        Link => "transfer time",
        Downstream => "time in called services",
    }
}

/// The evidence line: the sample, occurrences, example traces.
pub(crate) fn evidence_line(finding: &Finding) -> String {
    let e = &finding.evidence;
    let mut line = format!(
        "in {} of {} {}, {} occurrence{}",
        e.sample.affected,
        e.sample.total,
        e.sample.unit.noun(e.sample.total),
        e.occurrences,
        if e.occurrences == 1 { "" } else { "s" }
    );
    if !e.example_trace_ids.is_empty() {
        line.push_str("; traces ");
        let ids: Vec<String> = e.example_trace_ids.iter().map(ToString::to_string).collect();
        line.push_str(&ids.join(", "));
    }
    line
}

/// The typed evidence of a finding, a line each: ("plan", "…"); first the resources other
/// evidence saw it use ("uses": the share of a profile's busy samples on its lines).
pub(crate) fn item_lines(finding: &Finding) -> Vec<(&'static str, String)> {
    use chokepoint_detect::EvidenceItem;
    let costs = finding.costs.iter().map(|cost| {
        (
            "uses",
            format!(
                "{} of {} as {} measured it ({}): {}",
                percent(cost.share),
                cost.resource.describe(),
                cost.seen_by.noun(),
                cost.basis.as_str(),
                cost.how
            ),
        )
    });
    costs
        .chain(finding.evidence.items.iter().map(|item| match item {
            EvidenceItem::Plan {
                database,
                cost,
                reasons,
                ..
            } => {
                let shown: Vec<String> = reasons.iter().map(|r| r.describe()).collect();
                let what = if shown.is_empty() {
                    "nothing slow".to_owned()
                } else {
                    shown.join("; ")
                };
                ("plan", format!("in {database}, cost {cost:.0}: {what}"))
            }
            EvidenceItem::Index {
                create,
                cost_before,
                cost_after,
                ..
            } => (
                "index",
                match cost_after {
                    Some(after) => format!("{create} — plan cost {cost_before:.0} → {after:.0} (hypothetical)"),
                    None => format!("{create} — not costed (no HypoPG)"),
                },
            ),
            EvidenceItem::StatementStats {
                database,
                calls,
                mean_ms,
                rows_per_call,
                window_s,
            } => (
                "database",
                format!("{database} counts {calls} calls at {mean_ms:.3} ms, {rows_per_call:.1} rows each, over {window_s:.0} s"),
            ),
            EvidenceItem::LockWait {
                waiting,
                blocker,
                blocker_state,
                relation,
                samples,
                ..
            } => {
                let on = if relation.is_empty() {
                    String::new()
                } else {
                    format!(" on {relation}")
                };
                (
                    "lock",
                    format!("`{waiting}` waits{on} behind `{blocker}` ({blocker_state}), {samples} session samples"),
                )
            }
            EvidenceItem::Transaction {
                service,
                endpoint,
                statements,
                held_ms,
                outside_statements_ms,
            } => (
                "transaction",
                format!(
                    "{endpoint} ({service}) holds it {} per request, {} of it outside any statement: {}",
                    duration(*held_ms),
                    duration(*outside_statements_ms),
                    statements.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(" → ")
                ),
            ),
            EvidenceItem::HotFrame {
                function,
                file,
                line,
                source,
                share_of_busy,
                seconds,
                inferred_from_source,
            } => {
                let place = if *line > 0 {
                    format!("{function} ({file}:{line})")
                } else if file.is_empty() {
                    function.clone()
                } else {
                    format!("{function} ({file})")
                };
                let code = source.as_deref().map(|s| format!(": `{s}`")).unwrap_or_default();
                let told = if *inferred_from_source { ", told from the line" } else { "" };
                (
                    "frame",
                    format!("{place}{code} — {} of the busy time, {seconds:.2} s{told}", percent(*share_of_busy)),
                )
            }
            EvidenceItem::Corroboration {
                detector,
                scope,
                title,
                basis,
                ..
            } => (
                "also",
                format!("{detector} ({}, {}): {title}", scope.label(), basis.as_str()),
            ),
        }))
        .collect()
}

/// Skipped detectors grouped by what was missing: "no load ramp: cpu-saturation, …".
pub(crate) fn skipped_groups(skipped: &[Skipped]) -> Vec<(String, Vec<String>)> {
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for s in skipped {
        match groups.iter_mut().find(|(reason, _)| *reason == s.reason) {
            Some((_, ids)) => ids.push(s.detector.to_string()),
            None => groups.push((s.reason.clone(), vec![s.detector.to_string()])),
        }
    }
    groups
}

/// The closing summary: a paragraph per kind of evidence.
pub(crate) fn summary_lines(report: &Report) -> Vec<String> {
    let mut lines = Vec::new();
    let plural = |n: u64, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    if let Some(traces) = &report.traces {
        let s = &traces.summary;
        let trace_inputs = report.run.inputs.iter().filter(|i| i.format.is_some()).count();
        let mut line = format!(
            "Analysed {} in {} ({} to {}) over {:.1} s of traffic",
            plural(s.spans, "span"),
            plural(s.traces, "trace"),
            plural(s.requests, "request"),
            plural(s.endpoints, "endpoint"),
            s.window_s(),
        );
        if trace_inputs > 0 {
            line.push_str(" from ");
            line.push_str(&plural(trace_inputs as u64, "source"));
        }
        line.push('.');
        lines.push(line);
    }
    if let Some(load) = &report.load {
        let requests: u64 = load.run.steps.iter().map(|s| s.requests).sum();
        let seconds: f64 = load.run.steps.iter().map(|s| s.duration_s).sum();
        let usl = load
            .usl
            .map(|fit| format!(" {}", usl_sentence(&fit)))
            .unwrap_or_default();
        lines.push(format!(
            "Measured {requests} requests in {} steps over {seconds:.1} s; the ramp stopped: {}.{usl}",
            load.run.steps.len(),
            load.run.stopped_because
        ));
    }
    if let Some(db) = &report.database {
        lines.push(database_summary(db));
    }
    if let Some(profile) = &report.profile {
        lines.push(profile_summary(profile));
    }
    lines
}

/// What a profile showed, in a few sentences.
fn profile_summary(profile: &ProfileSummary) -> String {
    let how = if profile.sampled {
        format!("{} at {:.0} samples/s", profile.format, profile.rate_hz)
    } else {
        format!("{}, measured time", profile.format)
    };
    let mut text = format!(
        "Profiled {:.1} s ({how}): threads busy {:.1} s",
        profile.wall_s, profile.busy_s
    );
    if !profile.categories.is_empty() {
        let shares: Vec<String> = profile
            .categories
            .iter()
            .take(6)
            .map(|c| format!("{} {}", c.category, percent(c.share_of_busy)))
            .collect();
        text.push_str(&format!("; {}", shares.join(", ")));
    }
    text.push('.');
    if !profile.hot_frames.is_empty() {
        let hot: Vec<String> = profile
            .hot_frames
            .iter()
            .take(3)
            .map(|f| {
                format!(
                    "{} ({} own, {} with what it calls)",
                    f.frame,
                    percent(f.self_share),
                    percent(f.inclusive_share)
                )
            })
            .collect();
        text.push_str(&format!(" Hottest application code: {}.", hot.join("; ")));
    }
    text
}

/// What `chokepoint db` read, in a few sentences: statements, database counters, open
/// transactions, settings.
fn database_summary(db: &PgSnapshot) -> String {
    let calls: u64 = db.statements.iter().map(|s| s.calls).sum();
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
        let settings: Vec<String> = db
            .settings
            .iter()
            .map(|s| format!("{} = {}", s.name, s.value))
            .collect();
        text.push_str(&format!("\nSettings: {}.", settings.join(", ")));
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
