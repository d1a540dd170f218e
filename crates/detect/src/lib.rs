//! chokepoint's detectors: pure functions from evidence to findings, the ranker that reports one
//! cause once, and the verdict that picks the bottleneck.
//!
//! Each detector lives in its own file under `detectors/`, with its documentation (what
//! `chokepoint explain <id>` prints) as the doc comment of its struct and, in its metadata, the
//! evidence it reads. Traces are read in two stages: [`TraceAnalysis`] streams them, request by
//! request, into mergeable aggregates; [`analyse`] reads those with every other kind of
//! [`Evidence`](chokepoint_evidence::Evidence).
//!
//! ```
//! use chokepoint_detect::{analyse, detectors, TraceAnalysis};
//! use chokepoint_evidence::Evidence;
//!
//! assert!(detectors().any(|d| d.id.as_str() == "n-plus-one"));
//! let traces = TraceAnalysis::default().finish();
//! let outcome = analyse(&Evidence { traces: Some(traces), ..Evidence::default() });
//! assert_eq!(outcome.verdict.bottleneck, None);
//! ```

mod analyse;
mod compare;
mod db;
mod detectors;
mod finding;
mod fixture;
mod impact;
mod joins;
mod load;
mod profile;
mod rank;
mod registry;
mod request;
mod source;
pub mod sql;
mod stack;
mod trace_analysis;
mod traces;
mod usl;
mod verdict;

pub use analyse::{Outcome, analyse};
pub use compare::{
    BottleneckMove, Change, Comparison, FindingChange, PlanChange, PlanSide, PredictionCheck, Status,
    StepChange, UNCHANGED, compare,
};
pub use db::statements_to_explain;
pub use finding::{
    Basis, Confidence, Consumption, Cost, CpuCost, CpuCostBasis, EvidenceItem, Finding, FindingEvidence,
    Impact, Limit, LimitInputs, LinkCost, PlanReason, Sample, SampleUnit, Skipped, round,
};
pub use fixture::evidence_from_fixture;
pub use load::StepSessions;
pub use profile::{CategoryShare, FlameInput, HotFrameShare, ProfileSummary, flame_input};
pub use registry::{Meta, detectors, find_detector};
pub use trace_analysis::TraceAnalysis;
pub use traces::{MIN_AFFECTED_REQUESTS, MIN_AFFECTED_SHARE, SMALL_SAMPLE};
pub use usl::UslFit;
pub use verdict::{LimitConsumer, PredictedGain, Verdict};

/// The traces' statement normalizer (literals out, a fingerprint), on any text: for the fuzz
/// targets, which must reach it without the rest of the analysis.
#[doc(hidden)]
pub fn normalize_statement(text: &str) -> (String, u64) {
    let statement = sql::normalize(text);
    (statement.normalized, statement.fingerprint.0)
}
