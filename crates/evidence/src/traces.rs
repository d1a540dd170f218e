//! What traces leave behind once analysed: per endpoint, the mergeable aggregates of what each
//! detector observed request by request (counts, sums, maxima, a few example trace ids), grouped
//! by what was observed. Traces themselves are dropped as they are read; these aggregates are
//! the traces' part of the evidence.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{DetectorId, LatencyHistogram, Subject, TraceId, Window};

/// Example trace ids kept per group: the smallest ids that showed it, so the choice does not
/// depend on the order traces arrived in, or on how a stream was split into shards.
pub const EXAMPLE_TRACES: usize = 3;

/// Endpoints (service and name) kept apart; past it, the lightest (by time spent) are folded
/// into one [`OTHER_ENDPOINTS`] entry per service, so memory does not grow with an input whose
/// every request names a new endpoint.
pub const MAX_ENDPOINTS: usize = 1_000;
/// Subjects (statements, calls, peers) kept per detector and endpoint; past it, the lightest (by
/// time to save) are dropped, and counted.
pub const MAX_SUBJECTS: usize = 256;
/// The endpoint the lightest endpoints are folded into.
pub const OTHER_ENDPOINTS: &str = "(other endpoints)";

/// Adds `theirs` to the example trace ids `ours`, keeping the [`EXAMPLE_TRACES`] smallest,
/// sorted: the same ids whatever the order examples arrive in. Returns whether `theirs` held a
/// smaller id than any of `ours` (then what was "first observed" comes from theirs).
pub fn merge_examples(ours: &mut Vec<TraceId>, theirs: &[TraceId]) -> bool {
    let theirs_first = match (ours.first(), theirs.iter().min()) {
        (Some(a), Some(b)) => b < a,
        (None, Some(_)) => true,
        (_, None) => false,
    };
    ours.extend_from_slice(theirs);
    ours.sort_unstable();
    ours.dedup();
    ours.truncate(EXAMPLE_TRACES);
    theirs_first
}

/// Sum, count and maximum of a per-request number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Stat {
    /// The sum of the values.
    pub sum: f64,
    /// How many values.
    pub count: u64,
    /// The largest value.
    pub max: f64,
}

impl Stat {
    /// Adds one value.
    pub fn add(&mut self, value: f64) {
        self.max = if self.count == 0 {
            value
        } else {
            self.max.max(value)
        };
        self.sum += value;
        self.count += 1;
    }

    /// Adds another aggregate's values.
    pub fn merge(&mut self, other: Stat) {
        if other.count == 0 {
            return;
        }
        self.max = if self.count == 0 {
            other.max
        } else {
            self.max.max(other.max)
        };
        self.sum += other.sum;
        self.count += other.count;
    }

    /// The mean, 0 when empty.
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum / self.count as f64
        }
    }
}

/// What one detector observed about one subject across an endpoint's requests.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ObservedGroup {
    /// The detector that observed it.
    pub detector: DetectorId,
    /// What it is about.
    pub subject: Subject,
    /// The subject in words, as first observed (calls in the order they ran). "First" is the
    /// example with the smallest trace id, so a merge of shards keeps the same words.
    pub location: String,
    /// Requests that showed it.
    pub requests: u64,
    /// Times it occurred over those requests.
    pub occurrences: u64,
    /// Service time the fix would remove, over all those requests, in ms.
    pub saved_ms: f64,
    /// Latency the fix would remove, over all those requests, in ms.
    pub latency_saved_ms: f64,
    /// Per-request numbers, by name (units in the name).
    pub metrics: BTreeMap<String, Stat>,
    /// Traces that showed it: the smallest ids, sorted ([`EXAMPLE_TRACES`]).
    pub examples: Vec<TraceId>,
    /// The call that led to it, as first observed: the statement that loaded the parent rows of
    /// an N+1 (its foreign-key column names the relation to load with them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub related: Option<Subject>,
    /// The code that ran it, as first observed, when a span said (`code.*` attributes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<crate::Anchor>,
    /// One request that showed it, span by span, its spans marked: the one of the smallest
    /// trace id kept (examples are kept for at most [`MAX_EXAMPLES`] groups of an analysis).
    /// Absent in runs saved before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub example: Option<ExampleTrace>,
}

/// Spans kept in an example trace; past it, the rest are counted in `folded_spans`.
pub const MAX_EXAMPLE_SPANS: usize = 40;
/// Groups of one analysis that keep an example trace; past it, new groups keep none.
pub const MAX_EXAMPLES: usize = 2_000;
/// Characters of a span's name kept in an example.
pub const EXAMPLE_NAME_CHARS: usize = 100;

/// One request of a trace as a compact span list, for a waterfall: each span's offset from the
/// request's start, its duration, its name (a statement normalized, literals redacted), its kind
/// and depth, and whether it is one the finding is about.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ExampleTrace {
    /// The trace.
    pub trace_id: TraceId,
    /// The request's spans in the order they started, the request's own first.
    pub spans: Vec<ExampleSpan>,
    /// Spans past [`MAX_EXAMPLE_SPANS`], not kept.
    pub folded_spans: u64,
}

/// A span of an example trace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ExampleSpan {
    /// When it started, in ms after the request's start.
    pub start_ms: f64,
    /// How long it ran, in ms.
    pub duration_ms: f64,
    /// What it did: a statement (normalized), an HTTP call, or the span's name.
    pub name: String,
    /// Its kind.
    pub kind: crate::SpanKind,
    /// How deep below the request's span (0 for it).
    pub depth: u32,
    /// Whether the finding is about it.
    pub marked: bool,
}

/// Of two examples, the one of the smaller trace id: the same choice in any order of merging.
pub fn first_example(a: Option<ExampleTrace>, b: Option<ExampleTrace>) -> Option<ExampleTrace> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b.trace_id < a.trace_id { b } else { a }),
        (a, b) => a.or(b),
    }
}

impl ObservedGroup {
    /// Adds another group's observations of the same detector and subject. What was first
    /// observed comes from the group with the smallest example trace id, so merging is
    /// commutative and associative.
    pub fn merge(&mut self, other: ObservedGroup) {
        self.requests += other.requests;
        self.occurrences += other.occurrences;
        self.saved_ms += other.saved_ms;
        self.latency_saved_ms += other.latency_saved_ms;
        for (name, stat) in other.metrics {
            self.metrics.entry(name).or_default().merge(stat);
        }
        if merge_examples(&mut self.examples, &other.examples) {
            self.location = other.location;
            self.related = other.related;
            self.code = other.code;
        }
        self.example = first_example(self.example.take(), other.example);
    }
}

/// Statements kept per endpoint: past it, the lightest (by time) are dropped, and counted.
pub const MAX_STATEMENTS_PER_ENDPOINT: usize = 32;

/// A statement an endpoint's requests run: how often, how long, and where in the request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StatementUse {
    /// Its fingerprint.
    pub fingerprint: crate::Fingerprint,
    /// Its normalized text (literals as `?`), clipped to 300 characters.
    pub text: String,
    /// Requests that ran it.
    pub requests: u64,
    /// Times it ran.
    pub calls: u64,
    /// Its time in all, in ms.
    pub time_ms: f64,
    /// When it started, in ms after its request's start (its first run in each request).
    pub offset_ms: Stat,
}

impl StatementUse {
    /// Adds another count of the same statement.
    pub fn merge(&mut self, other: &StatementUse) {
        self.requests += other.requests;
        self.calls += other.calls;
        self.time_ms += other.time_ms;
        self.offset_ms.merge(other.offset_ms);
    }

    /// Its mean time per call, in ms.
    pub fn mean_ms(&self) -> f64 {
        self.time_ms / self.calls.max(1) as f64
    }
}

/// Instrumentation scopes kept per endpoint: a service is recorded by a handful (its framework,
/// its ORM or driver, its HTTP client).
pub const MAX_INSTRUMENTATION_SCOPES: usize = 8;

/// One endpoint of one service: its requests, their time, and what the detectors observed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EndpointAggregate {
    /// The `service.name`.
    pub service: String,
    /// `GET /orders/{id}`, or the root span's name.
    pub endpoint: String,
    /// Requests seen.
    pub requests: u64,
    /// Their time in all, in ms.
    pub time_ms: f64,
    /// How long each request ran in its own process outside the calls it made (database, HTTP,
    /// messaging): its own work, plus any wait nothing recorded. Absent in runs saved before it
    /// was kept.
    #[serde(default, skip_serializing_if = "LatencyHistogram::is_empty")]
    pub in_process: LatencyHistogram,
    /// The instrumentation scopes that recorded its requests' spans
    /// (`opentelemetry.instrumentation.django`, `…psycopg2`), sorted, at most
    /// [`MAX_INSTRUMENTATION_SCOPES`]: the framework, ORM and driver it speaks. Absent in runs
    /// saved before it was kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instrumentation: Vec<String>,
    /// The statements its requests run, in the order they start (at most
    /// [`MAX_STATEMENTS_PER_ENDPOINT`], the heaviest): how the database's findings find the
    /// endpoint that runs their statement, and a lock its holding transaction. Absent in runs
    /// saved before it was kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub statements: Vec<StatementUse>,
    /// What the detectors observed, by detector and subject.
    pub groups: Vec<ObservedGroup>,
}

/// What the traces held, in numbers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct TracesSummary {
    /// Traces analysed.
    pub traces: u64,
    /// Spans analysed.
    pub spans: u64,
    /// Requests (server spans, and roots) analysed.
    pub requests: u64,
    /// Distinct endpoints.
    pub endpoints: u64,
    /// From the first span's start to the last span's end.
    pub window: Option<Window>,
    /// Spans whose parent is not in the evidence (not exported, sampled out, or lost); each is
    /// analysed as the root of what lies below it.
    pub orphan_spans: u64,
    /// A trace with such a span, to look at.
    pub example_orphan_trace: Option<TraceId>,
    /// Endpoints folded into "(other endpoints)" to bound memory: past the 1,000 kept, the
    /// lightest by time spent.
    pub folded_endpoints: u64,
    /// Subjects (statements, calls, peers) dropped to bound memory: past 256 per detector and
    /// endpoint, the lightest by time to save.
    pub dropped_subjects: u64,
}

impl TracesSummary {
    /// Seconds of traffic the traces cover.
    pub fn window_s(&self) -> f64 {
        self.window.map_or(0.0, |w| w.duration_s())
    }
}

/// The traces' part of the evidence.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct TraceAggregates {
    /// What the traces held.
    pub summary: TracesSummary,
    /// Per endpoint, what was observed.
    pub endpoints: Vec<EndpointAggregate>,
    /// Spans each detector could judge (the evidence it reads was there), by detector: zero or
    /// absent means it had nothing to look at.
    pub evaluated: BTreeMap<DetectorId, u64>,
}
