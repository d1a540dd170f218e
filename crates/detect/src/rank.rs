//! One cause, one finding, then the order: findings that are about the same thing from different
//! angles are merged, keeping the best-proven; the rest are ordered by what fixing each gives
//! back. Reads nothing but the findings.
//!
//! Two findings are one cause when they are about the same [`Subject`](chokepoint_evidence::Subject)
//! (a statement by fingerprint, a call, a peer), seen in compatible scopes (the same endpoint, or
//! one of them database-wide), and their detectors name the same problem: the same id, or
//! `slow-query` and `missing-index` (a statement slow because an index is missing). The kept
//! finding is the strongest — its impact proven before measured before assumed, then the more
//! specific scope (an endpoint over a database), then the higher confidence, then the larger
//! impact — and the others become [`EvidenceItem::Corroboration`]s in its evidence.

use std::cmp::Ordering;

use chokepoint_evidence::{DetectorId, Scope};

use crate::finding::{EvidenceItem, Finding, Impact};

/// Merges findings about the same cause; the result is ordered strongest first.
pub(crate) fn merge(mut findings: Vec<Finding>) -> Vec<Finding> {
    findings.sort_by(stronger);
    let mut kept: Vec<Finding> = Vec::with_capacity(findings.len());
    for finding in findings {
        match kept.iter_mut().find(|k| same_cause(k, &finding)) {
            Some(keeper) => fold(keeper, finding),
            None => kept.push(finding),
        }
    }
    kept
}

/// Whether two detectors name the same problem.
fn same_problem(a: DetectorId, b: DetectorId) -> bool {
    use DetectorId::{MissingIndex, SlowQuery};
    a == b || matches!((a, b), (SlowQuery, MissingIndex) | (MissingIndex, SlowQuery))
}

/// Whether two scopes can hold one cause: the same, or one of them a whole database.
fn compatible(a: &Scope, b: &Scope) -> bool {
    a == b || matches!(a, Scope::Database { .. }) || matches!(b, Scope::Database { .. })
}

/// A load ramp's limit and a profile of the same process, by the same detector: the ramp says
/// the resource caps throughput, the profile which code uses it (`cpu-saturation`,
/// `blocking-call`). One cause, whatever code the profile names.
fn ramp_and_its_profile(a: &Finding, b: &Finding) -> bool {
    let pids = |target: &Scope, process: &Scope| match (target, process) {
        (Scope::Target { pid, .. }, Scope::Process { pid: profiled }) => {
            profiled.is_none() || pid == profiled
        }
        _ => false,
    };
    a.detector == b.detector && (pids(&a.scope, &b.scope) || pids(&b.scope, &a.scope))
}

fn same_cause(a: &Finding, b: &Finding) -> bool {
    (same_problem(a.detector, b.detector) && a.subject == b.subject && compatible(&a.scope, &b.scope))
        || ramp_and_its_profile(a, b)
}

/// How specific a scope is: an endpoint names the code path, a database does not.
fn specificity(scope: &Scope) -> u8 {
    match scope {
        Scope::Endpoint { .. } => 2,
        Scope::Target { .. } | Scope::Process { .. } => 1,
        Scope::Database { .. } => 0,
    }
}

/// The stronger finding first.
fn stronger(a: &Finding, b: &Finding) -> Ordering {
    a.impact
        .basis()
        .cmp(&b.impact.basis())
        .then_with(|| specificity(&b.scope).cmp(&specificity(&a.scope)))
        .then_with(|| b.confidence.cmp(&a.confidence))
        .then_with(|| by_impact(a, b))
}

/// Folds `other` into `keeper`: its view becomes a corroboration, its typed evidence is kept,
/// and the confidence is the higher of the two.
fn fold(keeper: &mut Finding, other: Finding) {
    keeper.evidence.items.push(EvidenceItem::Corroboration {
        detector: other.detector,
        scope: other.scope,
        title: other.title,
        basis: other.impact.basis(),
        confidence: other.confidence,
    });
    for item in other.evidence.items {
        if !keeper.evidence.items.contains(&item) {
            keeper.evidence.items.push(item);
        }
    }
    keeper.confidence = keeper.confidence.max(other.confidence);
}

/// The order of findings of one kind by what fixing each gives back: limits by the latency they
/// add at the highest load then the lower capacity; consumers by recoverable service time per
/// second, then total saving; then by name, so the order is stable.
pub(crate) fn by_impact(a: &Finding, b: &Finding) -> Ordering {
    let primary = match (&a.impact, &b.impact) {
        (Impact::Limit(x), Impact::Limit(y)) => y
            .queueing_ms
            .total_cmp(&x.queueing_ms)
            .then_with(|| x.capacity_rps.total_cmp(&y.capacity_rps)),
        (Impact::Consumer(x), Impact::Consumer(y)) => y
            .recoverable_s_per_s
            .total_cmp(&x.recoverable_s_per_s)
            .then_with(|| y.saved_ms_total.total_cmp(&x.saved_ms_total)),
        (Impact::Limit(_), Impact::Consumer(_)) => Ordering::Less,
        (Impact::Consumer(_), Impact::Limit(_)) => Ordering::Greater,
    };
    primary.then_with(|| {
        (a.detector.as_str(), a.scope.label(), &a.location).cmp(&(
            b.detector.as_str(),
            b.scope.label(),
            &b.location,
        ))
    })
}
