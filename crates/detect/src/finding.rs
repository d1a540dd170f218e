//! A finding: what a detector concluded, with the numbers that let a reader check it.
//!
//! This is the public contract of chokepoint's JSON output (`docs/report.schema.json` is
//! generated from these types and checked by a test).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One problem found, its cost, its evidence and its fix.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Finding {
    /// The detector id (`n-plus-one`, `slow-query`, …): see `chokepoint detectors`.
    pub detector: String,
    /// One sentence with the numbers.
    pub title: String,
    /// The service (`service.name`) whose endpoint is affected.
    pub service: String,
    /// The endpoint: `GET /orders/{id}`, or the root span's name.
    pub endpoint: String,
    /// What exactly: the normalized statement, the downstream call, the peer.
    pub location: String,
    /// What fixing it recovers.
    pub impact: Impact,
    /// What it was concluded from.
    pub evidence: Evidence,
    /// How sure the detector is.
    pub confidence: Confidence,
    /// The fix, with the specifics (statement, ORM call, calls to run together).
    pub fix: String,
    /// Assumptions behind the impact estimate, so the arithmetic can be checked.
    pub assumptions: Vec<String>,
}

/// What fixing a finding recovers, in the common currency and in its endpoint's terms.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Impact {
    /// Service time (handler, database or wire) the fix removes per affected request, in ms.
    pub saved_ms_per_request: f64,
    /// Latency the fix removes per affected request, in ms (less than the service time when
    /// the wasted work ran concurrently).
    pub latency_saved_ms_per_request: f64,
    /// Service time the fix removes over all the evidence, in ms.
    pub saved_ms_total: f64,
    /// `saved_ms_total` as a share of the endpoint's total time (0–1; capped at 1 for wire time
    /// that lies outside the endpoint's own span).
    pub share_of_endpoint_time: f64,
    /// The common currency: seconds of service time recoverable per second of observed
    /// traffic (`saved_ms_total` / the evidence's wall-clock span). The ranker orders by it.
    pub recoverable_s_per_s: f64,
}

/// The evidence behind a finding.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Evidence {
    /// Requests of the endpoint that showed the problem.
    pub affected_requests: u64,
    /// Requests of the endpoint seen in all.
    pub endpoint_requests: u64,
    /// Times the problem occurred (repeated statements, slow calls, connects, …).
    pub occurrences: u64,
    /// Trace ids to look at in a trace viewer.
    pub example_trace_ids: Vec<String>,
    /// Detector-specific numbers, units in their names (`repeats_per_request_mean`,
    /// `statement_ms_max`, `response_bytes_mean`).
    pub metrics: BTreeMap<String, f64>,
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
