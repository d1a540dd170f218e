//! One cause, one finding, then the order: findings that see the same cause from different
//! angles — different detectors, different kinds of evidence — are merged, keeping the
//! best-proven; the rest are ordered by what fixing each gives back. Reads nothing but the
//! findings.
//!
//! Two findings are one cause when their detectors name the same problem (the same id, or one
//! declares the other in its `same_cause`: a statement slow because an index is missing, the
//! profiled line that runs an N+1's statement) and they share a specific [`Anchor`] — the same
//! statement, code place, call, lock or relation — in scopes that can hold one cause (an
//! endpoint holds only its own findings; a database, a profile or a ramp sees every endpoint).
//! Which detectors name the same problem is declared by the detectors; nothing here lists them.
//!
//! A limit (the resource a load ramp found capping throughput) is never merged: it is what the
//! other findings are attributed to, not one of them.
//!
//! The kept finding is the strongest — its impact proven before measured before assumed, then the
//! more specific scope, then the higher confidence, then the larger impact — and the others
//! become [`EvidenceItem::Corroboration`]s in its evidence, their anchors and costs its own.

use std::cmp::Ordering;

use chokepoint_evidence::{Anchor, EvidenceKind, Scope, Subject};

use crate::finding::{Cost, EvidenceItem, Finding, Impact};
use crate::registry::same_problem;

/// Merges findings about the same cause; the result is ordered strongest first.
pub(crate) fn merge(mut findings: Vec<Finding>) -> Vec<Finding> {
    findings.sort_by(stronger);
    let mut kept: Vec<Finding> = Vec::with_capacity(findings.len());
    for finding in findings {
        match kept.iter_mut().find(|k| one_cause(k, &finding)) {
            Some(keeper) => fold(keeper, finding),
            None => kept.push(finding),
        }
    }
    // A keeper that took in another angle may now meet a finding kept before it did (a slow
    // statement folded into its unbounded result meets the index that explains it): fold until
    // nothing more is one cause, whatever order the findings came in.
    while let Some((i, j)) = (0..kept.len())
        .flat_map(|i| (i + 1..kept.len()).map(move |j| (i, j)))
        .find(|&(i, j)| one_cause(&kept[i], &kept[j]))
    {
        let other = kept.remove(j);
        fold(&mut kept[i], other);
    }
    kept
}

/// Whether two findings are one cause: neither is a limit, their detectors name the same
/// problem, their scopes can hold one cause, and they share a specific anchor.
pub(crate) fn one_cause(a: &Finding, b: &Finding) -> bool {
    !matches!(a.impact, Impact::Limit(_))
        && !matches!(b.impact, Impact::Limit(_))
        && detectors_of(a).any(|x| detectors_of(b).any(|y| same_problem(x, y)))
        && compatible(a, b)
        && (shares_anchor(a, b) || on_its_route(a, b) || on_its_route(b, a))
}

/// Whether `line` is a shape in the source on the route `runtime` measured, of the same detector:
/// the source names the route the handler serves, and one handler's N+1 is the N+1 its route's
/// traces show. Two shapes of one route stay two (each is its own line).
fn on_its_route(line: &Finding, runtime: &Finding) -> bool {
    matches!(line.impact, Impact::Potential(_))
        && !matches!(runtime.impact, Impact::Potential(_))
        && line.detector == runtime.detector
        && line
            .anchors
            .iter()
            .filter(|x| matches!(x, Anchor::Endpoint { .. }))
            .any(|x| runtime.anchors.iter().any(|y| x.meets(y)))
}

/// A finding's detector and those of the angles folded into it: a slow statement folded into its
/// unbounded result still meets the index that explains it.
fn detectors_of(finding: &Finding) -> impl Iterator<Item = chokepoint_evidence::DetectorId> + '_ {
    std::iter::once(finding.detector).chain(finding.evidence.items.iter().filter_map(|item| match item {
        EvidenceItem::Corroboration { detector, .. } => Some(*detector),
        _ => None,
    }))
}

/// Whether the two share an anchor that names one thing (not only an endpoint).
pub(crate) fn shares_anchor(a: &Finding, b: &Finding) -> bool {
    a.anchors
        .iter()
        .filter(|x| x.is_specific())
        .any(|x| b.anchors.iter().any(|y| x.meets(y)))
}

/// Whether two findings' scopes can hold one cause. An endpoint's finding is about that endpoint
/// alone: the other must be of the same endpoint, or seen where every endpoint is (a database, a
/// profile, a ramp) and not placed on another endpoint by a join.
fn compatible(a: &Finding, b: &Finding) -> bool {
    match (&a.scope, &b.scope) {
        (Scope::Endpoint { .. }, Scope::Endpoint { .. }) => a.scope == b.scope,
        (Scope::Endpoint { service, endpoint }, _) => placed_on(b, service, endpoint),
        (_, Scope::Endpoint { service, endpoint }) => placed_on(a, service, endpoint),
        _ => true,
    }
}

/// Whether a finding seen outside any endpoint may be this endpoint's: it names no endpoint, or
/// this one among those it names.
fn placed_on(finding: &Finding, service: &str, endpoint: &str) -> bool {
    let this = Anchor::endpoint(service, endpoint);
    let mut named = finding
        .anchors
        .iter()
        .filter(|x| matches!(x, Anchor::Endpoint { .. }))
        .peekable();
    named.peek().is_none() || named.any(|x| x.meets(&this))
}

/// How specific a scope is: an endpoint names the code path, a database does not.
fn specificity(scope: &Scope) -> u8 {
    match scope {
        Scope::Endpoint { .. } => 2,
        Scope::Target { .. } | Scope::Process { .. } | Scope::Source { .. } => 1,
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

/// Folds `other` into `keeper`: its view becomes a corroboration, its typed evidence, anchors and
/// costs are kept — the resource its own impact used becomes a cost of the keeper's when it is
/// another (the CPU a profile saw the N+1's line burn) — and the confidence is the higher of the
/// two.
fn fold(keeper: &mut Finding, other: Finding) {
    if let Impact::Consumer(c) = &other.impact
        && c.resource != keeper.impact.resource()
    {
        let seen_by = if other.evidence.sample.unit.is_profile() {
            EvidenceKind::Profile
        } else {
            match other.scope {
                Scope::Endpoint { .. } => EvidenceKind::Traces,
                Scope::Database { .. } => EvidenceKind::Database,
                Scope::Target { .. } => EvidenceKind::Load,
                Scope::Process { .. } => EvidenceKind::Profile,
                Scope::Source { .. } => EvidenceKind::Source,
            }
        };
        add_cost(
            keeper,
            Cost {
                resource: c.resource,
                share: c.share_of_scope_time,
                s_per_s: c.recoverable_s_per_s,
                share_range: None,
                basis: c.basis,
                seen_by,
                how: format!("{}: {}", other.detector, other.title),
            },
        );
    }
    // The other angle's remedy, when the database proved it another one: a statement both
    // unbounded and sorting on disk wants its LIMIT and, if every row is needed, the memory to
    // sort them.
    let proved = other.evidence.items.iter().any(|item| match item {
        EvidenceItem::Plan { reasons, .. } => !reasons.is_empty(),
        EvidenceItem::Index { .. } => true,
        _ => false,
    });
    if other.detector != keeper.detector && proved && !same_remedy(keeper, &other) {
        keeper.fix = format!(
            "{} Also, as {} sees it: {}",
            keeper.fix, other.detector, other.fix
        );
    }
    // The line in the source behind a measured finding, and its fix in the framework's words.
    if let (Impact::Potential(_), false, Subject::Code { line: Some(_), .. }) = (
        &other.impact,
        matches!(keeper.impact, Impact::Potential(_)),
        &other.subject,
    ) {
        keeper.fix = format!("{} At {}: {}", keeper.fix, other.location, other.fix);
    }
    for cost in other.costs {
        add_cost(keeper, cost);
    }
    for anchor in other.anchors {
        if !keeper.anchors.contains(&anchor) {
            keeper.anchors.push(anchor);
        }
    }
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

/// Whether two fixes are one remedy: the same text, or the same index created.
fn same_remedy(a: &Finding, b: &Finding) -> bool {
    let index = |fix: &str| {
        fix.find("CREATE INDEX")
            .map(|at| fix[at..].split(';').next().unwrap_or_default().to_owned())
    };
    a.fix == b.fix || a.fix.contains(&b.fix) || index(&a.fix).is_some_and(|i| index(&b.fix) == Some(i))
}

/// Adds a cost, one per resource: the larger share stands when two kinds saw it.
pub(crate) fn add_cost(finding: &mut Finding, cost: Cost) {
    match finding.costs.iter_mut().find(|c| c.resource == cost.resource) {
        Some(existing) if existing.share >= cost.share => {}
        Some(existing) => *existing = cost,
        None => finding.costs.push(cost),
    }
}

/// The order of findings of one kind by what fixing each gives back: limits by the latency they
/// add at the highest load then the lower capacity; consumers by recoverable service time per
/// second, then total saving; then by id, so the order is stable.
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
        (Impact::Potential(x), Impact::Potential(y)) => y
            .per_request
            .cmp(&x.per_request)
            .then_with(|| b.confidence.cmp(&a.confidence)),
        (Impact::Limit(_), _) | (Impact::Consumer(_), Impact::Potential(_)) => Ordering::Less,
        (_, Impact::Limit(_)) | (Impact::Potential(_), Impact::Consumer(_)) => Ordering::Greater,
    };
    primary.then_with(|| {
        (a.detector.as_str(), a.scope.label(), &a.location).cmp(&(
            b.detector.as_str(),
            b.scope.label(),
            &b.location,
        ))
    })
}
