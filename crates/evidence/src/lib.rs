//! The evidence model of chokepoint: what collectors gather and detectors read.
//!
//! Everything here is plain data with serde — no I/O, no async, no clock — so a detector can
//! be fed from a fixture file and a collector can be swapped without touching a detector. Every
//! kind of evidence is stamped on one time base (seconds or nanoseconds since the Unix epoch),
//! so evidence gathered together lines up.
//!
//! [`Evidence`] is the bundle one analysis reads: the traces' aggregates, a load ramp, a
//! PostgreSQL snapshot, a profile — each there or not.
//!
//! ```
//! use chokepoint_evidence::{AttrValue, Evidence, EvidenceKind, Span, SpanKind, SpanId, Trace, TraceId};
//!
//! let root = Span {
//!     span_id: SpanId(1),
//!     parent_span_id: None,
//!     name: "GET /orders".into(),
//!     kind: SpanKind::Server,
//!     service: "shop".into(),
//!     start_unix_nano: 0,
//!     end_unix_nano: 20_000_000,
//!     attributes: vec![("http.route".into(), AttrValue::from("/orders"))],
//!     status_error: false,
//!     scope: None,
//! };
//! let trace = Trace { trace_id: TraceId(7), spans: vec![root], continued: false };
//! assert_eq!(trace.spans[0].attr_str("http.route"), Some("/orders"));
//! assert!(!Evidence::default().has(EvidenceKind::Traces));
//! ```

pub mod fixture;
mod histogram;
mod load;
mod merge;
mod note;
mod pg;
mod profile;
mod source;
mod span;
mod taxonomy;
mod time;
mod traces;
mod validate;

pub use histogram::LatencyHistogram;
pub use load::{Latency, LoadModel, LoadRun, LoadStep, StopReason, TargetSample};
pub use merge::MergeConflict;
pub use note::{Note, Position, Severity};
pub use pg::{
    Activity, ActivitySecond, CandidateCost, DatabaseStats, Gap, IndexCheck, IndexMethod, LockWait,
    MissingExtension, OpenTransaction, PgSnapshot, PlanProblem, Setting, StatementPlan, StatementStat,
    TableStat,
};
pub use profile::{Frame, Profile, ProfileBuilder, Stack};
pub use source::{Certainty, Handler, Shape, SourceScan};
pub use span::{AttrKey, AttrValue, Span, SpanId, SpanKind, Trace, TraceId, attr_key, attr_key_owned};
pub use taxonomy::{Anchor, DetectorId, Fingerprint, HttpTarget, Resource, Scope, Subject};
pub use time::Window;
pub use traces::{
    EXAMPLE_NAME_CHARS, EXAMPLE_TRACES, EndpointAggregate, ExampleSpan, ExampleTrace, MAX_ENDPOINTS,
    MAX_EXAMPLE_SPANS, MAX_EXAMPLES, MAX_INSTRUMENTATION_SCOPES, MAX_STATEMENTS_PER_ENDPOINT, MAX_SUBJECTS,
    OTHER_ENDPOINTS, ObservedGroup, Stat, StatementUse, TraceAggregates, TracesSummary, first_example,
    merge_examples,
};
pub use validate::Invalid;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Everything one analysis reads. Each kind is there or not; detectors say which they read, and
/// a detector whose evidence is absent is reported as skipped, not as clean.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Evidence {
    /// Traces, as the aggregates of what the trace detectors observed.
    pub traces: Option<TraceAggregates>,
    /// A load ramp.
    pub load: Option<LoadRun>,
    /// A PostgreSQL snapshot, with its watch when there was one.
    pub database: Option<PgSnapshot>,
    /// A profile of the service's process.
    pub profile: Option<Profile>,
    /// What a scan of the service's source found.
    pub source: Option<SourceScan>,
}

/// A kind of evidence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EvidenceKind {
    /// Traces (files, or the live receiver).
    Traces,
    /// A load ramp.
    Load,
    /// A PostgreSQL snapshot.
    Database,
    /// A profile of the service's process.
    Profile,
    /// The service's source, scanned.
    Source,
}

impl EvidenceKind {
    /// The kind in words: "traces", "a load ramp", "PostgreSQL".
    pub fn noun(self) -> &'static str {
        match self {
            EvidenceKind::Traces => "traces",
            EvidenceKind::Load => "a load ramp",
            EvidenceKind::Database => "PostgreSQL",
            EvidenceKind::Profile => "a profile",
            EvidenceKind::Source => "the source",
        }
    }

    /// What is missing when this kind is absent, as the end of "skipped: no …".
    pub fn absent(self) -> &'static str {
        match self {
            EvidenceKind::Traces => "no traces",
            EvidenceKind::Load => "no load ramp (chokepoint load)",
            EvidenceKind::Database => "no PostgreSQL evidence (chokepoint db, --pg)",
            EvidenceKind::Profile => "no profile (chokepoint profile)",
            EvidenceKind::Source => "no source (chokepoint scan, --source)",
        }
    }
}

impl Evidence {
    /// Whether this kind of evidence is there.
    pub fn has(&self, kind: EvidenceKind) -> bool {
        match kind {
            EvidenceKind::Traces => self.traces.is_some(),
            EvidenceKind::Load => self.load.is_some(),
            EvidenceKind::Database => self.database.is_some(),
            EvidenceKind::Profile => self.profile.is_some(),
            EvidenceKind::Source => self.source.is_some(),
        }
    }

    /// When the profile was taken, as (start, end) in seconds since the Unix epoch, when it is
    /// stamped.
    pub fn profile_window(&self) -> Option<(f64, f64)> {
        let profile = self.profile.as_ref()?;
        (profile.started_unix_s > 0.0)
            .then(|| (profile.started_unix_s, profile.started_unix_s + profile.wall_s()))
    }

    /// The wall-clock span all the evidence covers, when any of it is stamped.
    pub fn window(&self) -> Option<Window> {
        let traces = self.traces.as_ref().and_then(|t| t.summary.window);
        let load = self.load.as_ref().and_then(|run| {
            let first = run.steps.first()?;
            let last = run.steps.last()?;
            (first.started_unix_s > 0.0).then_some(Window {
                start_unix_s: first.started_unix_s,
                end_unix_s: last.started_unix_s + last.duration_s,
            })
        });
        let database = self.database.as_ref().and_then(|db| {
            let activity = db.activity.as_ref()?;
            (activity.started_unix_s > 0.0).then_some(Window {
                start_unix_s: activity.started_unix_s,
                end_unix_s: activity.started_unix_s + activity.duration_s,
            })
        });
        let profile = self.profile.as_ref().and_then(|p| {
            (p.started_unix_s > 0.0).then_some(Window {
                start_unix_s: p.started_unix_s,
                end_unix_s: p.started_unix_s + p.wall_s(),
            })
        });
        [traces, load, database, profile]
            .into_iter()
            .flatten()
            .reduce(Window::union)
    }
}
