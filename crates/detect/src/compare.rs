//! Two runs compared (`chokepoint compare A B`): capacity before and after, latency at equal
//! load, every finding matched across the runs — fixed, better, worse, unchanged or new — whether
//! a predicted gain happened, and where the bottleneck moved. Pure: it reads two evidence bundles
//! and their outcomes.

use chokepoint_evidence::{DetectorId, Evidence, Scope};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::analyse::Outcome;
use crate::finding::{Finding, Impact};
use crate::impact::round;

/// A change smaller than this (relative) is no change: runs are noisy.
pub const UNCHANGED: f64 = 0.1;

/// What changed between two runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Comparison {
    /// The capacity each run measured (its limit's, else its highest throughput), in requests
    /// per second, when both ran a ramp.
    pub capacity: Option<Change>,
    /// Latency at the loads both ramps offered, step by step.
    pub equal_load: Vec<StepChange>,
    /// Every finding of either run, matched by its id (detector, scope, what it is about) or,
    /// failing that, as one cause seen from another angle (a shared anchor, detectors that name
    /// the same problem, the same scope).
    pub findings: Vec<FindingChange>,
    /// The bottleneck before and after, in words, and whether it moved.
    pub bottleneck: BottleneckMove,
    /// The first run's predicted capacity after its fix, against what the second measured.
    pub prediction: Option<PredictionCheck>,
    /// Statements both databases planned whose plan changed (an index added, a query
    /// rewritten): the plan and the mean time before and after.
    pub plans: Vec<PlanChange>,
}

/// One statement's plan in each run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PlanChange {
    /// The statement, as `pg_stat_statements` normalized it.
    pub query: String,
    /// Its plan in the first run.
    pub before: PlanSide,
    /// Its plan in the second run.
    pub after: PlanSide,
}

/// A statement's plan and cost in one run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PlanSide {
    /// The plan's scans, in words: `Seq Scan on public.users`.
    pub scans: Vec<String>,
    /// The planner's total cost.
    pub cost: f64,
    /// Mean execution time in the run's window, ms, when `pg_stat_statements` had it.
    pub mean_ms: Option<f64>,
}

/// A number before and after.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Change {
    /// In the first run.
    pub before: f64,
    /// In the second run.
    pub after: f64,
    /// `after / before − 1`.
    pub relative: f64,
}

impl Change {
    fn new(before: f64, after: f64) -> Change {
        Change {
            before: round(before),
            after: round(after),
            relative: round(if before.abs() > 1e-12 {
                after / before - 1.0
            } else {
                0.0
            }),
        }
    }
}

/// One load both ramps offered, before and after.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StepChange {
    /// The load offered (concurrency or requests per second).
    pub offered: f64,
    /// Throughput, requests per second.
    pub throughput_rps: Change,
    /// Median latency, ms.
    pub p50_ms: Change,
    /// 99th percentile latency, ms.
    pub p99_ms: Change,
}

/// What became of a finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// In the first run only.
    Fixed,
    /// In both, costing less (or capping at a higher capacity) by more than 10 %.
    Better,
    /// In both, within 10 %.
    Unchanged,
    /// In both, costing more (or capping lower) by more than 10 %.
    Worse,
    /// In the second run only.
    New,
}

/// A finding matched across the runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FindingChange {
    /// The finding's id in the first run (in the second, for a new one).
    pub id: String,
    /// The detector.
    pub detector: DetectorId,
    /// Where it was seen: an endpoint of a service, a database, a load target.
    pub scope: Scope,
    /// Where, in words.
    pub location: String,
    /// What became of it.
    pub status: Status,
    /// Its size before and after: recoverable service time per second for a consumer, capacity
    /// for a limit (absent in the run it is not in).
    pub before: Option<f64>,
    /// See `before`.
    pub after: Option<f64>,
}

/// The bottleneck of each run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BottleneckMove {
    /// "n-plus-one on GET /orders", or none.
    pub before: Option<String>,
    /// See `before`.
    pub after: Option<String>,
    /// Whether it is another finding now.
    pub moved: bool,
}

/// A prediction checked.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PredictionCheck {
    /// Capacity the first run predicted after its fix, requests per second.
    pub predicted_rps: f64,
    /// The prediction's range (low, high), requests per second.
    #[serde(default)]
    pub predicted_range_rps: [f64; 2],
    /// Whether the capacity measured lies in that range.
    #[serde(default)]
    pub in_range: bool,
    /// Capacity the second run measured.
    pub measured_rps: f64,
    /// How far the prediction was from the capacity measured, as a share of it:
    /// `predicted / measured − 1` (positive: it promised more than came).
    pub error: f64,
    /// Whether the second run's ramp reached a limit (a capacity finding, or throughput that
    /// stopped rising before the last step); `false`: its capacity is the most it carried, a
    /// lower bound.
    pub at_limit: bool,
}

/// The finding of `others` that is `finding` in the other run: the same id (detector, scope and
/// what it is about), else one cause seen from another angle — a slow statement in one run, the
/// index that explains it in the other; a limit by detector and scope alone (its knee moves with
/// the fix).
fn matching<'a>(finding: &Finding, others: &'a [Finding]) -> Option<&'a Finding> {
    others.iter().find(|f| f.id == finding.id).or_else(|| {
        others.iter().find(|f| {
            f.scope == finding.scope
                && (crate::rank::one_cause(f, finding)
                    || (matches!(f.impact, Impact::Limit(_))
                        && matches!(finding.impact, Impact::Limit(_))
                        && f.detector == finding.detector))
        })
    })
}

/// A finding's size: a consumer's recoverable time per second, a limit's capacity.
fn size(finding: &Finding) -> f64 {
    match &finding.impact {
        Impact::Consumer(c) => c.recoverable_s_per_s,
        Impact::Limit(l) => l.capacity_rps,
        Impact::Potential(_) => 0.0,
    }
}

fn capacity(evidence: &Evidence, outcome: &Outcome) -> Option<f64> {
    let run = evidence.load.as_ref()?;
    let limit = outcome
        .verdict
        .limit
        .and_then(|i| outcome.findings.get(i))
        .and_then(|f| f.impact.limit())
        .map(|l| l.capacity_rps);
    limit.or_else(|| run.steps.iter().map(|s| s.throughput_rps).reduce(f64::max))
}

fn bottleneck_words(outcome: &Outcome) -> Option<String> {
    let finding = outcome.findings.get(outcome.verdict.bottleneck?)?;
    Some(format!("{} on {}", finding.detector, finding.scope.label()))
}

/// Compares run `a` (before) with run `b` (after).
pub fn compare(a: (&Evidence, &Outcome), b: (&Evidence, &Outcome)) -> Comparison {
    let (evidence_a, outcome_a) = a;
    let (evidence_b, outcome_b) = b;
    let capacity = match (capacity(evidence_a, outcome_a), capacity(evidence_b, outcome_b)) {
        (Some(before), Some(after)) => Some(Change::new(before, after)),
        _ => None,
    };
    let mut equal_load = Vec::new();
    if let (Some(ramp_a), Some(ramp_b)) = (&evidence_a.load, &evidence_b.load)
        && ramp_a.model == ramp_b.model
    {
        for step in &ramp_a.steps {
            if let Some(other) = ramp_b
                .steps
                .iter()
                .find(|s| (s.offered - step.offered).abs() < 1e-9)
            {
                equal_load.push(StepChange {
                    offered: step.offered,
                    throughput_rps: Change::new(step.throughput_rps, other.throughput_rps),
                    p50_ms: Change::new(step.latency.p50_ms, other.latency.p50_ms),
                    p99_ms: Change::new(step.latency.p99_ms, other.latency.p99_ms),
                });
            }
        }
    }
    let mut findings = Vec::new();
    // Shapes read in the source are not measured: a comparison of runs has nothing to say of them.
    let measured = |f: &&Finding| !matches!(f.impact, Impact::Potential(_));
    for finding in outcome_a.findings.iter().filter(measured) {
        let matched = matching(finding, &outcome_b.findings);
        let before = size(finding);
        let (status, after) = match matched {
            None => (Status::Fixed, None),
            Some(other) => {
                let after = size(other);
                // A limit is better when its capacity rose; a consumer when it costs less.
                let grew = after > before * (1.0 + UNCHANGED);
                let shrank = after < before * (1.0 - UNCHANGED);
                let status = match (&finding.impact, grew, shrank) {
                    (Impact::Limit(_), true, _) | (Impact::Consumer(_), _, true) => Status::Better,
                    (Impact::Limit(_), _, true) | (Impact::Consumer(_), true, _) => Status::Worse,
                    _ => Status::Unchanged,
                };
                (status, Some(after))
            }
        };
        findings.push(FindingChange {
            id: finding.id.clone(),
            detector: finding.detector,
            scope: finding.scope.clone(),
            location: finding.location.clone(),
            status,
            before: Some(before),
            after,
        });
    }
    for finding in outcome_b.findings.iter().filter(measured) {
        if matching(finding, &outcome_a.findings).is_none() {
            findings.push(FindingChange {
                id: finding.id.clone(),
                detector: finding.detector,
                scope: finding.scope.clone(),
                location: finding.location.clone(),
                status: Status::New,
                before: None,
                after: Some(size(finding)),
            });
        }
    }
    let before = bottleneck_words(outcome_a);
    let after = bottleneck_words(outcome_b);
    let moved = before != after;
    let prediction = match (&outcome_a.verdict.predicted_gain, &capacity) {
        (Some(gain), Some(change)) => Some(PredictionCheck {
            predicted_rps: round(gain.capacity_after_fix_rps),
            predicted_range_rps: gain.range_rps.map(round),
            in_range: (gain.range_rps[0]..=gain.range_rps[1]).contains(&change.after),
            measured_rps: change.after,
            error: round(gain.capacity_after_fix_rps / change.after.max(1e-9) - 1.0),
            at_limit: outcome_b.verdict.limit.is_some()
                || evidence_b
                    .load
                    .as_ref()
                    .and_then(|run| crate::load::Curve::of(run).ok())
                    .is_some_and(|curve| curve.plateaus()),
        }),
        _ => None,
    };
    Comparison {
        capacity,
        equal_load,
        findings,
        bottleneck: BottleneckMove { before, after, moved },
        prediction,
        plans: plan_changes(evidence_a, evidence_b),
    }
}

/// Statements planned in both runs whose scans changed.
fn plan_changes(a: &Evidence, b: &Evidence) -> Vec<PlanChange> {
    let (Some(db_a), Some(db_b)) = (&a.database, &b.database) else {
        return Vec::new();
    };
    let side = |db: &chokepoint_evidence::PgSnapshot, plan: &chokepoint_evidence::StatementPlan| PlanSide {
        scans: plan.scans.clone(),
        cost: round(plan.cost),
        mean_ms: db
            .statements
            .iter()
            .find(|s| s.query == plan.query)
            .map(|s| round(s.mean_ms)),
    };
    db_a.plans
        .iter()
        .filter_map(|before| {
            let after = db_b.plans.iter().find(|p| p.query == before.query)?;
            (after.scans != before.scans).then(|| PlanChange {
                query: before.query.clone(),
                before: side(db_a, before),
                after: side(db_b, after),
            })
        })
        .collect()
}

impl Comparison {
    /// The largest regression, relative (0 when nothing got worse): capacity that fell, or a
    /// median or 99th percentile at equal load that rose.
    pub fn worst_regression(&self) -> f64 {
        let capacity = self.capacity.map_or(0.0, |c| (-c.relative).max(0.0));
        let latency = self
            .equal_load
            .iter()
            .flat_map(|s| [s.p50_ms.relative, s.p99_ms.relative])
            .fold(0.0, f64::max);
        capacity.max(latency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(json: &str) -> (Evidence, Outcome) {
        let evidence = crate::evidence_from_fixture(json).expect("fixture");
        let outcome = crate::analyse(&evidence);
        (evidence, outcome)
    }

    #[test]
    fn a_fixed_n_plus_one_is_fixed_and_the_bottleneck_moves() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let read = |p: &str| std::fs::read_to_string(dir.join(p)).expect("fixture");
        let before = run(&read("n-plus-one/positive-lazy-loading.json"));
        let after = run(&read("slow-query/positive-unindexed-filter.json"));
        let comparison = compare((&before.0, &before.1), (&after.0, &after.1));
        assert!(
            comparison
                .findings
                .iter()
                .any(|f| f.detector == DetectorId::NPlusOne && f.status == Status::Fixed)
        );
        assert!(comparison.findings.iter().any(|f| f.status == Status::New));
        assert!(comparison.bottleneck.moved);
        let same = compare((&before.0, &before.1), (&before.0, &before.1));
        assert!(same.findings.iter().all(|f| f.status == Status::Unchanged));
        assert!(!same.bottleneck.moved);
        assert_eq!(same.worst_regression(), 0.0);
        assert!(same.plans.is_empty());
    }

    #[test]
    fn a_prediction_is_checked_against_the_capacity_measured_after() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let read = |p: &str| std::fs::read_to_string(dir.join(p)).expect("fixture");
        let before = run(&read(
            "lock-contention/positive-load-and-db-requests-queue-on-a-row.json",
        ));
        let after = run(&read("cpu-saturation/positive-gil-bound-handler.json"));
        let predicted = before.1.verdict.predicted_gain.clone().expect("a prediction");
        let check = compare((&before.0, &before.1), (&after.0, &after.1))
            .prediction
            .expect("checked");
        assert_eq!(check.predicted_rps, predicted.capacity_after_fix_rps);
        assert_eq!(check.measured_rps, 45.2);
        // It promised more than came: positive, as a share of what was measured.
        assert_eq!(check.error, round(predicted.capacity_after_fix_rps / 45.2 - 1.0));
        assert!(check.error > 0.0);
        assert!(check.at_limit, "the second ramp reached the CPU's limit");
    }

    #[test]
    fn a_statement_whose_plan_changed_shows_both_plans() {
        use chokepoint_evidence::{PgSnapshot, StatementPlan, StatementStat};
        let query = "SELECT id FROM users WHERE email = $1";
        let snapshot = |scan: &str, cost: f64, mean_ms: f64| {
            let evidence = Evidence {
                database: Some(PgSnapshot {
                    statements: vec![StatementStat {
                        query: query.into(),
                        calls: 10,
                        mean_ms,
                        ..StatementStat::default()
                    }],
                    plans: vec![StatementPlan {
                        query: query.into(),
                        cost,
                        scans: vec![scan.into()],
                        ..StatementPlan::default()
                    }],
                    ..PgSnapshot::default()
                }),
                ..Evidence::default()
            };
            let outcome = crate::analyse(&evidence);
            (evidence, outcome)
        };
        let before = snapshot("Seq Scan on public.users", 17562.0, 80.0);
        let after = snapshot("Index Scan using users_email_idx on public.users", 8.1, 0.03);
        let comparison = compare((&before.0, &before.1), (&after.0, &after.1));
        assert_eq!(comparison.plans.len(), 1);
        let plan = &comparison.plans[0];
        assert_eq!(plan.before.scans, ["Seq Scan on public.users"]);
        assert_eq!(
            plan.after.scans,
            ["Index Scan using users_email_idx on public.users"]
        );
        assert_eq!(
            (plan.before.mean_ms, plan.after.mean_ms),
            (Some(80.0), Some(0.03))
        );
        // The same plan twice is no change.
        let same = compare((&before.0, &before.1), (&before.0, &before.1));
        assert!(same.plans.is_empty());
    }
}
