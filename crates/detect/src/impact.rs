//! The impact arithmetic, in one place: how each kind of evidence turns a conclusion into a
//! [`Limit`] or a [`Consumption`], rounding consumers' numbers by the one rule every number of a
//! finding follows ([`crate::finding::round`]).
//!
//! Consumers share one currency — service time recoverable per second of observed traffic — so
//! findings from traces, a database and a ramp can be ranked together; a limit is stated in
//! capacity.

use chokepoint_evidence::{ObservedGroup, Resource, StatementStat, StopReason};

use crate::finding::{Basis, Consumption, Limit, SloMissed};
use crate::load::Curve;

pub(crate) use crate::finding::round;

/// Seconds per second, 0 without a window.
fn per_second(saved_ms_total: f64, window_s: f64) -> f64 {
    if window_s > 0.0 {
        round(saved_ms_total / 1e3 / window_s)
    } else {
        0.0
    }
}

/// Traces: the saving observed request by request, over the endpoint's time and the traces'
/// window.
pub(crate) fn observed(
    resource: Resource,
    basis: Basis,
    group: &ObservedGroup,
    endpoint_time_ms: f64,
    window_s: f64,
) -> Consumption {
    let requests = group.requests.max(1) as f64;
    Consumption {
        resource,
        basis,
        saved_ms_per_request: round(group.saved_ms / requests),
        latency_saved_ms_per_request: round(group.latency_saved_ms / requests),
        saved_ms_total: round(group.saved_ms),
        // Wire time can lie outside the endpoint's own span: at most all of it.
        share_of_scope_time: round((group.saved_ms / endpoint_time_ms.max(1e-9)).min(1.0)),
        recoverable_s_per_s: per_second(group.saved_ms, window_s),
    }
}

/// A statement: `share` of its time in the window, over all the statements' time.
pub(crate) fn statement_share(
    resource: Resource,
    basis: Basis,
    stat: &StatementStat,
    share: f64,
    all_statements_ms: f64,
    window_s: f64,
) -> Consumption {
    let saved_ms_total = stat.total_ms * share;
    Consumption {
        resource,
        basis,
        saved_ms_per_request: round(stat.mean_ms * share),
        latency_saved_ms_per_request: round(stat.mean_ms * share),
        saved_ms_total: round(saved_ms_total),
        share_of_scope_time: round((saved_ms_total / all_statements_ms.max(1e-9)).min(1.0)),
        recoverable_s_per_s: per_second(saved_ms_total, window_s),
    }
}

/// The database as a whole: time recovered over the window, per occurrence, and its share of
/// the database's session time.
pub(crate) fn recovered(
    resource: Resource,
    basis: Basis,
    saved_ms_total: f64,
    occurrences: u64,
    share: f64,
    window_s: f64,
) -> Consumption {
    let per_occurrence = saved_ms_total / occurrences.max(1) as f64;
    Consumption {
        resource,
        basis,
        saved_ms_per_request: round(per_occurrence),
        latency_saved_ms_per_request: round(per_occurrence),
        saved_ms_total: round(saved_ms_total),
        share_of_scope_time: round(share.clamp(0.0, 1.0)),
        recoverable_s_per_s: per_second(saved_ms_total, window_s),
    }
}

/// A profile: `saved_s` of busy time over `wall_s` seconds profiled. A profile does not see
/// requests, so the saving "per request" is per second of profile.
pub(crate) fn profiled(
    resource: Resource,
    basis: Basis,
    saved_s: f64,
    share: f64,
    wall_s: f64,
) -> Consumption {
    let per_second_ms = if wall_s > 0.0 { saved_s * 1e3 / wall_s } else { 0.0 };
    Consumption {
        resource,
        basis,
        saved_ms_per_request: round(per_second_ms),
        latency_saved_ms_per_request: round(per_second_ms),
        saved_ms_total: round(saved_s * 1e3),
        share_of_scope_time: round(share.clamp(0.0, 1.0)),
        recoverable_s_per_s: per_second(saved_s * 1e3, wall_s),
    }
}

/// A load ramp: `saved_ms` of every request at the knee, over the ramp's requests and length.
pub(crate) fn per_request(resource: Resource, basis: Basis, curve: &Curve<'_>, saved_ms: f64) -> Consumption {
    let requests: u64 = curve.run.steps.iter().map(|s| s.requests).sum();
    let window_s: f64 = curve.run.steps.iter().map(|s| s.duration_s).sum();
    let saved_ms_total = saved_ms * requests as f64;
    Consumption {
        resource,
        basis,
        saved_ms_per_request: round(saved_ms),
        latency_saved_ms_per_request: round(saved_ms),
        saved_ms_total: round(saved_ms_total),
        share_of_scope_time: round((saved_ms / curve.knee.latency.mean_ms.max(1e-9)).min(1.0)),
        recoverable_s_per_s: per_second(saved_ms_total, window_s),
    }
}

/// A load ramp: the capacity the limit allows, and the median latency it adds at the highest
/// load measured.
/// Kept unrounded, as the predictions read them: rounded when rendered.
pub(crate) fn limit(
    resource: Resource,
    basis: Basis,
    curve: &Curve<'_>,
    demand_ms: Option<f64>,
    inputs: crate::finding::LimitInputs,
) -> Limit {
    let queueing_ms = (curve.top().latency.p50_ms - curve.low.latency.p50_ms).max(0.0);
    let slo_missed = match curve.run.stopped_because {
        StopReason::Slo {
            step,
            percentile,
            observed_ms,
            limit_ms,
        } => curve
            .run
            .steps
            .get(step.saturating_sub(1))
            .map(|missed| SloMissed {
                percentile,
                limit_ms,
                observed_ms: round(observed_ms),
                offered: missed.offered,
                throughput_rps: round(missed.throughput_rps),
                queueing_ms: round((missed.latency.p50_ms - curve.low.latency.p50_ms).max(0.0)),
            }),
        _ => None,
    };
    Limit {
        resource,
        basis,
        capacity_rps: curve.capacity_rps,
        knee_offered: curve.knee.offered,
        demand_ms_per_request: demand_ms,
        queueing_ms,
        capacity_after_fix_rps: None,
        slo_missed,
        inputs: Box::new(inputs),
    }
}
