//! A finding: what a detector concluded, with the numbers that let a reader check it.
//!
//! This is the public contract of chokepoint's JSON output (`docs/report.schema.json` is
//! generated from these types and checked by a test). Everything the ranker and the verdict need
//! is here, typed: the detector, what the finding is about ([`Subject`]) and where ([`Scope`]),
//! and its [`Impact`] — a capacity [`Limit`], or the [`Consumption`] of a resource its fix
//! removes.

use std::collections::BTreeMap;

use chokepoint_evidence::{
    Anchor, CandidateCost, DetectorId, EvidenceKind, IndexMethod, Resource, Scope, Subject, TraceId,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One problem found, its cost, its evidence and its fix.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Finding {
    /// A stable id, 16 hex digits: a hash of the detector, the scope and what the finding is
    /// about (a statement's fingerprint, a call, a lock, a code place without its line; nothing
    /// for a limit) — never of text. The same cause keeps its id across runs; `compare` matches
    /// on it.
    pub id: String,
    /// The detector id (`n-plus-one`, `slow-query`, …): see `chokepoint detectors`.
    pub detector: DetectorId,
    /// One sentence with the numbers.
    pub title: String,
    /// Where it was seen: an endpoint, a database, a load target.
    pub scope: Scope,
    /// What it is about: a statement, a call, a peer, a resource.
    pub subject: Subject,
    /// The subject in words, for reading (the typed `subject` is what tools should match on).
    pub location: String,
    /// The identities by which every kind of evidence sees this cause: the code that runs it, the
    /// statement, the endpoint, the call, the lock, the relation. Findings of detectors that name
    /// the same problem and share one of these (an endpoint aside) are one cause.
    pub anchors: Vec<Anchor>,
    /// What fixing it gives back.
    pub impact: Impact,
    /// What the cause uses of other resources than its impact's, as another kind of evidence
    /// measured it: the service's CPU a profile puts on the lines that run its statement. A limit
    /// on such a resource counts it among its consumers.
    pub costs: Vec<Cost>,
    /// What it was concluded from.
    pub evidence: FindingEvidence,
    /// How sure the detector is that the problem is there.
    pub confidence: Confidence,
    /// The fix, with the specifics (statement, ORM call, calls to run together).
    pub fix: String,
    /// Assumptions behind the impact estimate, so the arithmetic can be checked.
    pub assumptions: Vec<String>,
}

/// What fixing a finding gives back: two kinds, because a limit and what consumes the limited
/// resource are different things.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Impact {
    /// A resource that caps throughput (from a load ramp).
    Limit(Limit),
    /// Time of a resource that the fix stops using.
    Consumer(Consumption),
    /// A shape in the source that would use the resource if it runs: not measured, ranked after
    /// every measured finding.
    Potential(Potential),
}

/// A shape in the source, not measured: what it would use if it runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Potential {
    /// The resource it would use.
    pub resource: Resource,
    /// Whether the line is in a request handler or a function one calls (else a script's, or
    /// start-up's, or a helper no handler in its module was seen calling).
    pub per_request: bool,
}

impl Impact {
    /// The resource limited or consumed.
    pub fn resource(&self) -> Resource {
        match self {
            Impact::Limit(limit) => limit.resource,
            Impact::Consumer(consumption) => consumption.resource,
            Impact::Potential(potential) => potential.resource,
        }
    }

    /// How the estimate was reached.
    pub fn basis(&self) -> Basis {
        match self {
            Impact::Limit(limit) => limit.basis,
            Impact::Consumer(consumption) => consumption.basis,
            Impact::Potential(_) => Basis::Source,
        }
    }

    /// The consumption, for a consumer.
    pub fn consumption(&self) -> Option<&Consumption> {
        match self {
            Impact::Consumer(consumption) => Some(consumption),
            Impact::Limit(_) | Impact::Potential(_) => None,
        }
    }

    /// The limit, for a limit.
    pub fn limit(&self) -> Option<&Limit> {
        match self {
            Impact::Limit(limit) => Some(limit),
            Impact::Consumer(_) | Impact::Potential(_) => None,
        }
    }

    /// The common currency of consumers: seconds of service time recoverable per second of
    /// observed traffic (0 for a limit).
    pub fn recoverable_s_per_s(&self) -> f64 {
        self.consumption().map_or(0.0, |c| c.recoverable_s_per_s)
    }
}

/// A resource that caps throughput, and what that costs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Limit {
    /// The resource that caps throughput.
    pub resource: Resource,
    /// How the numbers were reached.
    pub basis: Basis,
    /// The highest throughput measured, in requests per second: the capacity the limit allows.
    #[serde(serialize_with = "rounded")]
    pub capacity_rps: f64,
    /// The load at which throughput stopped rising (concurrency, or requests per second offered).
    pub knee_offered: f64,
    /// The time each request takes of the limiting resource (its service demand D; capacity is
    /// at most 1/D per unit of it), in ms, when it is known.
    #[serde(serialize_with = "rounded_opt")]
    pub demand_ms_per_request: Option<f64>,
    /// The median latency the limit adds at the highest load measured: the median there less
    /// the median at the lowest load, in ms.
    #[serde(serialize_with = "rounded")]
    pub queueing_ms: f64,
    /// The capacity predicted once the limit is lifted, in requests per second (when a
    /// prediction is made).
    #[serde(serialize_with = "rounded_opt")]
    pub capacity_after_fix_rps: Option<f64>,
    /// The latency objective the ramp was given (`--slo`), when a step missed it: where, and
    /// the queueing the limit added there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo_missed: Option<SloMissed>,
    /// What a prediction reads of the limit beside its capacity and demand.
    #[serde(default)]
    pub inputs: Box<LimitInputs>,
}

/// What a prediction reads of a limit beside its capacity and demand: typed, with units, kept
/// unrounded until rendered. Each is `None` when the evidence did not measure it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LimitInputs {
    /// The target's CPU as a function of its throughput: a fixed part and a part per request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuCost>,
    /// The cores the target can use: those it used where throughput stopped, rounded.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "rounded_opt"
    )]
    pub usable_cores: Option<f64>,
    /// Requests in service at a time where throughput stopped (Little's law): the workers, or
    /// the pool, that cap it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "rounded_opt"
    )]
    pub workers: Option<f64>,
    /// What each request waits, outside the CPU, while it holds what serializes requests, in ms.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "rounded_opt"
    )]
    pub waiting_ms_per_request: Option<f64>,
    /// The host's CPU per request used beside the target and the load generator (a database on
    /// the same host), in ms.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "rounded_opt"
    )]
    pub other_cpu_ms_per_request: Option<f64>,
    /// The link the responses crossed, when it caps throughput.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<LinkCost>,
}

/// The target's CPU as a function of its rate: `fixed_cores + marginal_ms_per_request × rate`.
/// At the few requests per second a limit allows, a process's wakeups and background threads
/// weigh on each request; only the marginal part scales with the rate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CpuCost {
    /// Cores used whatever the rate.
    #[serde(serialize_with = "rounded")]
    pub fixed_cores: f64,
    /// CPU each request adds, in ms.
    #[serde(serialize_with = "rounded")]
    pub marginal_ms_per_request: f64,
    /// The marginal cost's range over the spread of what it was read from, in ms (low, high).
    #[serde(serialize_with = "rounded_pair")]
    pub marginal_range_ms: [f64; 2],
    /// How it was read.
    pub basis: CpuCostBasis,
}

/// How a [`CpuCost`] was read.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CpuCostBasis {
    /// A line fitted across the ramp's steps up to the knee (cores against throughput).
    Fit {
        /// Steps fitted.
        steps: u32,
    },
    /// The least CPU per request a step measured, all of it taken as marginal: the steps did not
    /// span enough rates to fit a line.
    LeastStep {
        /// Steps read.
        steps: u32,
    },
    /// The lower quartile of the endpoint's in-process time in its traces, outside its calls:
    /// the steps ran at one rate, where the process's fixed cost weighs on every request.
    Traced {
        /// Requests it was read from.
        requests: u64,
    },
}

impl CpuCostBasis {
    /// How it was read, in words.
    pub fn describe(&self) -> String {
        match self {
            CpuCostBasis::Fit { steps } => format!("a line fitted across {steps} steps up to the knee"),
            CpuCostBasis::LeastStep { steps } => {
                format!(
                    "the least CPU per request of {steps} step{} (too few, or too close in rate, to fit a line)",
                    if *steps == 1 { "" } else { "s" }
                )
            }
            CpuCostBasis::Traced { requests } => format!(
                "the lower quartile of {requests} traced requests' in-process time, outside their calls (the steps ran \
                 at one rate, where the process's fixed cost weighs on each request)"
            ),
        }
    }
}

/// A link that caps throughput: what each response puts on it and what it carried.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LinkCost {
    /// Bytes per response.
    #[serde(serialize_with = "rounded")]
    pub bytes_per_response: f64,
    /// Bytes per second the link carried where throughput stopped.
    #[serde(serialize_with = "rounded")]
    pub bytes_per_s: f64,
    /// The share of each response compression would cut, when the generator measured it (0–1).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "rounded_opt"
    )]
    pub compressible_share: Option<f64>,
}

/// Rounds for output: 3 decimals from 1 up, 6 below, so JSON is stable and small numbers keep
/// their digits.
pub fn round(value: f64) -> f64 {
    if value.abs() >= 1e12 {
        value // no decimals left to round, and scaling it could overflow
    } else if value.abs() >= 1.0 {
        (value * 1e3).round() / 1e3
    } else {
        (value * 1e6).round() / 1e6
    }
}

/// Serializes a number rounded the way every number of a finding is.
pub(crate) fn rounded<S: serde::Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(round(*value))
}

/// [`rounded`], for an optional number.
pub(crate) fn rounded_opt<S: serde::Serializer>(
    value: &Option<f64>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(value) => rounded(value, serializer),
        None => serializer.serialize_none(),
    }
}

/// [`rounded`], for a range.
pub(crate) fn rounded_pair<S: serde::Serializer>(value: &[f64; 2], serializer: S) -> Result<S::Ok, S::Error> {
    [round(value[0]), round(value[1])].serialize(serializer)
}

/// A latency objective missed at a step of the ramp.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SloMissed {
    /// The percentile of the objective (0–100).
    pub percentile: f64,
    /// The objective, in ms.
    pub limit_ms: f64,
    /// The latency measured at that percentile, in ms.
    pub observed_ms: f64,
    /// The load of the step that missed it (concurrency, or requests per second offered).
    pub offered: f64,
    /// Its throughput, in requests per second.
    pub throughput_rps: f64,
    /// The median latency the limit added at that step (its median less the lowest load's),
    /// in ms.
    pub queueing_ms: f64,
}

/// Time of a resource that a fix stops using.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Consumption {
    /// The resource whose time the fix gives back.
    pub resource: Resource,
    /// How the saving was reached.
    pub basis: Basis,
    /// Service time (handler, database or wire) the fix removes per affected request (or call;
    /// for a profile, which does not see requests, per second of profile), in ms.
    pub saved_ms_per_request: f64,
    /// Latency the fix removes per affected request, in ms (less than the service time when the
    /// wasted work ran concurrently).
    pub latency_saved_ms_per_request: f64,
    /// Service time the fix removes over all the evidence, in ms.
    pub saved_ms_total: f64,
    /// `saved_ms_total` as a share of the scope's time: the endpoint's time, or the database's
    /// statement or session time (0–1).
    pub share_of_scope_time: f64,
    /// The common currency: seconds of service time recoverable per second of observed traffic
    /// (`saved_ms_total` / the evidence's wall-clock span). Consumers are ranked by it.
    pub recoverable_s_per_s: f64,
}

/// A resource a cause uses beyond its impact's, as one kind of evidence measured it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Cost {
    /// The resource.
    pub resource: Resource,
    /// The cause's share of what the evidence saw of the resource (0–1): for the CPU, of a
    /// profile's busy samples.
    pub share: f64,
    /// Seconds of the resource per second of the evidence.
    pub s_per_s: f64,
    /// The range the share may lie in (low, high), when the evidence bounds it rather than
    /// measures it: a profile of a process whose threads waited for the GIL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share_range: Option<[f64; 2]>,
    /// How it was reached.
    pub basis: Basis,
    /// The kind of evidence that measured it.
    pub seen_by: EvidenceKind,
    /// How it was joined to the cause, for the reader.
    pub how: String,
}

/// How an impact estimate was reached, strongest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// The fix was tried without being made: a hypothetical index costed by the planner.
    Proven,
    /// Counted in the evidence: the repeats a batch removes, the wire time observed, the time
    /// sessions waited.
    Measured,
    /// From an assumption about the fixed state, stated in the finding ("a fixed plan answers
    /// in about 1 ms").
    Assumed,
    /// Read in the source, not measured.
    Source,
}

impl Basis {
    /// The lowercase name used in output.
    pub fn as_str(self) -> &'static str {
        match self {
            Basis::Proven => "proven",
            Basis::Measured => "measured",
            Basis::Assumed => "assumed",
            Basis::Source => "source",
        }
    }
}

/// How many of what a finding was seen in: "3 of 8 requests".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Sample {
    /// How many showed the problem.
    pub affected: u64,
    /// How many were looked at.
    pub total: u64,
    /// What was counted.
    pub unit: SampleUnit,
}

/// What a [`Sample`] counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SampleUnit {
    /// Requests of an endpoint (traces), or of a load ramp.
    Requests,
    /// Calls of a statement (`pg_stat_statements`).
    Calls,
    /// Sessions seen at a sampling instant of a watch (one session at one instant).
    Samples,
    /// Database sessions.
    Sessions,
    /// Samples of a sampled profile's busy threads.
    ProfileSamples,
    /// Milliseconds of a measured profile's (cProfile, pyinstrument) busy time.
    ProfileMs,
    /// Lines of source.
    Lines,
}

impl SampleUnit {
    /// Whether it counts a profile (which sees code, not requests).
    pub fn is_profile(self) -> bool {
        matches!(self, SampleUnit::ProfileSamples | SampleUnit::ProfileMs)
    }

    /// The unit's noun, singular or plural.
    pub fn noun(self, count: u64) -> &'static str {
        let one = count == 1;
        match self {
            SampleUnit::Requests if one => "request",
            SampleUnit::Requests => "requests",
            SampleUnit::Calls if one => "call",
            SampleUnit::Calls => "calls",
            SampleUnit::Samples if one => "session sample",
            SampleUnit::Samples => "session samples",
            SampleUnit::Sessions if one => "session",
            SampleUnit::Sessions => "sessions",
            SampleUnit::ProfileSamples if one => "busy profile sample",
            SampleUnit::ProfileSamples => "busy profile samples",
            SampleUnit::ProfileMs => "ms of measured busy time",
            SampleUnit::Lines if one => "line of source",
            SampleUnit::Lines => "lines of source",
        }
    }
}

/// The evidence behind a finding.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FindingEvidence {
    /// How many requests (or calls, samples) showed the problem, of how many.
    pub sample: Sample,
    /// Times the problem occurred (repeated statements, slow calls, connects, …).
    pub occurrences: u64,
    /// Trace ids to look at in a trace viewer.
    pub example_trace_ids: Vec<TraceId>,
    /// Detector-specific numbers, units in their names (`repeats_per_request_mean`,
    /// `statement_ms_max`, `response_bytes_mean`).
    pub metrics: BTreeMap<String, f64>,
    /// Typed evidence: a plan, an index costed, the database's own count, a lock wait, another
    /// detector's view of the same cause.
    pub items: Vec<EvidenceItem>,
}

/// One piece of typed evidence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EvidenceItem {
    /// A statement's generic plan, as `EXPLAIN` estimated it (never executed), and what it
    /// shows.
    Plan {
        /// The database.
        database: String,
        /// The plan's total cost.
        cost: f64,
        /// The rows the planner expects.
        estimated_rows: f64,
        /// Relations scanned sequentially.
        seq_scans: Vec<String>,
        /// Why the statement is slow, each with its fix.
        reasons: Vec<PlanReason>,
    },
    /// A candidate index, costed with a hypothetical index (HypoPG) where that can be done.
    Index {
        /// The relation.
        relation: String,
        /// The columns, in order.
        columns: Vec<String>,
        /// A B-tree, or a trigram GIN index for pattern filters (which HypoPG cannot cost).
        method: IndexMethod,
        /// The plan's cost without the index.
        cost_before: f64,
        /// The plan's cost with it, when HypoPG could cost it.
        cost_after: Option<f64>,
        /// Every candidate costed for the relation, this one among them.
        candidates: Vec<CandidateCost>,
        /// The page size the statement's `LIMIT` parameter was costed with.
        limit_rows: Option<u64>,
        /// The statement that creates it.
        create: String,
    },
    /// The database's own count of a statement (`pg_stat_statements`).
    StatementStats {
        /// The database.
        database: String,
        /// Calls.
        calls: u64,
        /// Mean time per call, in ms.
        mean_ms: f64,
        /// Rows per call.
        rows_per_call: f64,
        /// Seconds the counts cover.
        window_s: f64,
    },
    /// Sessions waiting on a lock, and the session holding it.
    LockWait {
        /// The waiting statement.
        waiting: String,
        /// The blocking session's statement.
        blocker: String,
        /// The blocking session's state.
        blocker_state: String,
        /// The lock's relation.
        relation: String,
        /// The mode the waiters want.
        mode: String,
        /// The modes the blocker holds.
        blocker_modes: Vec<String>,
        /// How long the blocker's transaction had been open, on average, in ms.
        blocker_transaction_ms: f64,
        /// Samples that showed the wait.
        samples: u64,
    },
    /// The transaction that holds a lock, as the traces of the endpoint that runs it show one of
    /// its requests: the statements from the one that takes the lock on, and how long the lock is
    /// held — how much of that outside any statement (the service's own work, or a call made
    /// while the transaction is open).
    Transaction {
        /// The service.
        service: String,
        /// The endpoint whose requests run it.
        endpoint: String,
        /// Its statements from the one that takes the lock, in the order they start, normalized.
        statements: Vec<String>,
        /// From the end of the statement that takes the lock to the end of the last one, per
        /// request, in ms: how long it holds the lock.
        held_ms: f64,
        /// Of that, the time outside any statement, per request, in ms.
        outside_statements_ms: f64,
    },
    /// A hot frame of a profile: where the time of the finding goes.
    HotFrame {
        /// The function.
        function: String,
        /// Its file.
        file: String,
        /// Its line (0 when the profile has none).
        line: u32,
        /// The text of the line, when the source was at hand.
        source: Option<String>,
        /// The share of the profile's busy time under this frame (0–1); for an event loop, of the
        /// loop thread's time.
        share_of_busy: f64,
        /// Seconds of busy time under it.
        seconds: f64,
        /// How its category was told when the frames alone do not show it: the line's text
        /// calls it (a sampler sees Python frames only).
        inferred_from_source: bool,
    },
    /// Another detector's view of the same cause, folded into this finding.
    Corroboration {
        /// The other detector.
        detector: DetectorId,
        /// Where it saw it.
        scope: Scope,
        /// What it said.
        title: String,
        /// How its estimate was reached.
        basis: Basis,
        /// How sure it was.
        confidence: Confidence,
    },
}

/// Why a statement is slow, from its plan and its statistics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PlanReason {
    /// A sequential scan of a large table.
    SeqScan {
        /// The relation.
        relation: String,
        /// Its live rows, when known.
        live_rows: Option<u64>,
    },
    /// A sort or a hash that spills to temporary files.
    Spill {
        /// What spills: `sort`, `hash`, or `sort or hash`.
        operation: String,
        /// Temporary files written per call, in kB.
        temp_kb_per_call: f64,
    },
    /// The planner's row estimate far from what calls return.
    MisEstimate {
        /// Rows the planner expects.
        estimated_rows: f64,
        /// Rows calls return, on average.
        actual_rows_per_call: f64,
    },
}

impl PlanReason {
    /// The reason in words: "a sequential scan on public.users".
    pub fn describe(&self) -> String {
        match self {
            PlanReason::SeqScan { relation, .. } => format!("a sequential scan on {relation}"),
            PlanReason::Spill {
                operation,
                temp_kb_per_call,
            } => {
                let what = match operation.as_str() {
                    "sort" => "a sort spilling to disk",
                    "hash" => "a hash spilling to disk in batches",
                    _ => "sorts or hashes spilling to disk",
                };
                format!("{what} ({temp_kb_per_call:.0} kB of temporary files per call)")
            }
            PlanReason::MisEstimate {
                estimated_rows,
                actual_rows_per_call,
            } => format!(
                "a row mis-estimate: the planner expects {estimated_rows:.0} rows, calls return {actual_rows_per_call:.0} on average"
            ),
        }
    }
}

/// How sure a detector is of a finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    /// Plausible; check the evidence.
    Low,
    /// Likely.
    Medium,
    /// The evidence leaves little doubt.
    High,
}

impl Confidence {
    /// The lowercase name used in output.
    pub fn as_str(self) -> &'static str {
        match self {
            Confidence::Low => "low",
            Confidence::Medium => "medium",
            Confidence::High => "high",
        }
    }

    /// High when most of the endpoint's requests show the problem, medium for a fair share.
    pub(crate) fn from_share(affected_share: f64) -> Confidence {
        if affected_share >= 0.5 {
            Confidence::High
        } else if affected_share >= 0.2 {
            Confidence::Medium
        } else {
            Confidence::Low
        }
    }
}

/// A detector that could not judge, for lack of the evidence it reads: not a clean bill of
/// health.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Skipped {
    /// The detector id.
    pub detector: DetectorId,
    /// What was missing, for each kind of evidence it reads: "no span carries
    /// db.response.returned_rows; no PostgreSQL evidence (chokepoint db, --pg)".
    pub reason: String,
}

/// A subject in words, for a finding's `location`.
pub(crate) fn subject_text(subject: &Subject) -> String {
    match subject {
        Subject::Statement { text, .. } => text.clone(),
        Subject::HttpCall(call) => call.to_string(),
        Subject::CallSequence { calls } => calls.iter().map(subject_text).collect::<Vec<_>>().join(" → "),
        Subject::Peer { address, .. } => address.clone(),
        Subject::Downstream { service } => service.clone(),
        Subject::ResponseBody { call: Some(call) } => format!("response of {call}"),
        Subject::ResponseBody { call: None } => "the response".to_owned(),
        Subject::Relation { name } => name.clone(),
        Subject::Lock { relation, blocker } => format!("{blocker} ({relation})"),
        Subject::Sessions { database } => format!("sessions of {database}"),
        Subject::Resource { resource } => resource.describe().to_owned(),
        Subject::Code {
            file,
            line: Some(line),
            function,
        } => format!("{function} ({file}:{line})"),
        Subject::Code { file, function, .. } => format!("{function} ({file})"),
        Subject::Process { pid } => format!("pid {pid}"),
    }
}
