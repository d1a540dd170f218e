//! The verdict: which finding is *the* bottleneck. When a load ramp named the resource that caps
//! throughput (a limit), the bottleneck is what consumes most of that resource — the limit says
//! where the ceiling is, its top consumer what to fix — or the limit itself when nothing seen
//! consumes it. Without a limit, it is the consumer whose fix gives back the most service time.
//! Computed from the findings alone.

use chokepoint_evidence::Resource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::finding::{Finding, Impact};
use crate::rank::by_impact;

/// The verdict, as indices into the ranked findings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Verdict {
    /// The bottleneck: always the first finding when there is one.
    pub bottleneck: Option<usize>,
    /// The finding that names the resource capping throughput, when a load ramp showed one.
    pub limit: Option<usize>,
    /// Findings that consume the limit's resource, most first.
    pub consumers: Vec<usize>,
    /// What fixing the bottleneck is predicted to give (`chokepoint diagnose`); not predicted
    /// otherwise.
    pub predicted_gain: Option<PredictedGain>,
}

/// A capacity predicted after a fix, and how.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PredictedGain {
    /// Capacity measured now, in requests per second.
    pub capacity_rps: f64,
    /// Capacity predicted after the fix, in requests per second.
    pub capacity_after_fix_rps: f64,
    /// What the prediction assumes.
    pub assumptions: Vec<String>,
}

/// Whether work on `consumer` holds `limit`: a worker waits through database time, lock waits,
/// the wire, downstream calls and connection setup; database time is spent partly waiting on
/// locks; requests that never overlap (an event loop held) look the same from a ramp as requests
/// queued one at a time on a lock, so lock waits explain that limit too; every other resource is
/// consumed only by work on itself.
pub(crate) fn consumes(limit: Resource, consumer: Resource) -> bool {
    use Resource::*;
    limit == consumer
        || match limit {
            Workers => matches!(consumer, Database | Locks | Network | Downstream | Connections),
            Database | EventLoop => matches!(consumer, Locks),
            _ => false,
        }
}

/// Orders `findings` — the bottleneck first, then the limit, then its other consumers, then the
/// rest by impact — and returns the verdict.
pub(crate) fn decide(findings: &mut Vec<Finding>) -> Verdict {
    findings.sort_by(by_impact);
    let limit = findings.iter().position(|f| matches!(f.impact, Impact::Limit(_)));
    let Some(limit_at) = limit else {
        return Verdict {
            bottleneck: (!findings.is_empty()).then_some(0),
            ..Verdict::default()
        };
    };
    let resource = findings[limit_at].impact.resource();
    let consumers: Vec<usize> = findings
        .iter()
        .enumerate()
        .filter(|(_, f)| matches!(f.impact, Impact::Consumer(_)) && consumes(resource, f.impact.resource()))
        .map(|(i, _)| i)
        .collect();
    let mut order: Vec<usize> = Vec::with_capacity(findings.len());
    match consumers.first() {
        Some(&top) => {
            order.push(top);
            order.push(limit_at);
            order.extend(consumers.iter().skip(1));
        }
        None => order.push(limit_at),
    }
    let rest: Vec<usize> = (0..findings.len()).filter(|i| !order.contains(i)).collect();
    order.extend(rest);
    let mut taken: Vec<Option<Finding>> = std::mem::take(findings).into_iter().map(Some).collect();
    findings.extend(order.iter().filter_map(|&i| taken[i].take()));
    let limit = if consumers.is_empty() { 0 } else { 1 };
    Verdict {
        bottleneck: Some(0),
        limit: Some(limit),
        consumers: (0..consumers.len())
            .map(|i| if i == 0 { 0 } else { i + 1 })
            .collect(),
        predicted_gain: None,
    }
}

#[cfg(test)]
mod tests {
    use chokepoint_evidence::{DetectorId, Scope, Subject};

    use super::*;
    use crate::finding::{Basis, Confidence, Consumption, FindingEvidence, Limit, Sample, SampleUnit};

    fn finding(detector: DetectorId, impact: Impact) -> Finding {
        Finding {
            detector,
            title: String::new(),
            scope: Scope::Database {
                database: "shop".into(),
            },
            subject: Subject::Resource {
                resource: impact.resource(),
            },
            location: String::new(),
            impact,
            evidence: FindingEvidence {
                sample: Sample {
                    affected: 1,
                    total: 1,
                    unit: SampleUnit::Requests,
                },
                occurrences: 1,
                example_trace_ids: Vec::new(),
                metrics: Default::default(),
                items: Vec::new(),
            },
            confidence: Confidence::High,
            fix: String::new(),
            assumptions: Vec::new(),
        }
    }

    fn limit(resource: Resource) -> Impact {
        Impact::Limit(Limit {
            resource,
            basis: Basis::Measured,
            capacity_rps: 20.0,
            knee_offered: 2.0,
            demand_ms_per_request: None,
            queueing_ms: 100.0,
            capacity_after_fix_rps: None,
        })
    }

    fn consumer(resource: Resource, s_per_s: f64) -> Impact {
        Impact::Consumer(Consumption {
            resource,
            basis: Basis::Measured,
            saved_ms_per_request: 1.0,
            latency_saved_ms_per_request: 1.0,
            saved_ms_total: 1.0,
            share_of_scope_time: 0.1,
            recoverable_s_per_s: s_per_s,
        })
    }

    #[test]
    fn the_top_consumer_of_the_limited_resource_is_the_bottleneck() {
        let mut findings = vec![
            finding(DetectorId::SlowQuery, consumer(Resource::Database, 0.1)),
            finding(DetectorId::LargePayload, consumer(Resource::Link, 0.9)),
            finding(DetectorId::WorkerExhaustion, limit(Resource::Workers)),
            finding(DetectorId::LockContention, consumer(Resource::Locks, 0.4)),
        ];
        let verdict = decide(&mut findings);
        let order: Vec<_> = findings.iter().map(|f| f.detector).collect();
        assert_eq!(
            order,
            [
                DetectorId::LockContention,
                DetectorId::WorkerExhaustion,
                DetectorId::SlowQuery,
                DetectorId::LargePayload
            ]
        );
        assert_eq!(verdict.bottleneck, Some(0));
        assert_eq!(verdict.limit, Some(1));
        assert_eq!(verdict.consumers, [0, 2]);
    }

    #[test]
    fn a_limit_nothing_consumes_is_the_bottleneck_itself() {
        let mut findings = vec![
            finding(DetectorId::ConnectionChurn, consumer(Resource::Connections, 0.5)),
            finding(DetectorId::BlockingCall, limit(Resource::EventLoop)),
        ];
        let verdict = decide(&mut findings);
        assert_eq!(findings[0].detector, DetectorId::BlockingCall);
        assert_eq!(verdict.limit, Some(0));
        assert!(verdict.consumers.is_empty());
    }

    #[test]
    fn without_a_limit_the_largest_consumer_is_the_bottleneck() {
        let mut findings = vec![
            finding(DetectorId::SlowQuery, consumer(Resource::Database, 0.1)),
            finding(DetectorId::NPlusOne, consumer(Resource::Database, 0.3)),
        ];
        let verdict = decide(&mut findings);
        assert_eq!(findings[0].detector, DetectorId::NPlusOne);
        assert_eq!(verdict.bottleneck, Some(0));
        assert_eq!(verdict.limit, None);
        assert_eq!(decide(&mut Vec::new()).bottleneck, None);
    }
}
