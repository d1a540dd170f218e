//! The verdict: which finding is *the* bottleneck. When a load ramp named the resource that caps
//! throughput (a limit), the limit stays the limit and the bottleneck is what consumes most of
//! that resource — the limit says where the ceiling is, its top consumer what to fix — or the
//! limit itself when nothing seen consumes it. A finding consumes the limit's resource by its own
//! impact (a worker held through database time) or by a cost another kind of evidence joined to
//! it (the service's CPU a profile saw on the lines that run an N+1's statement). Without a limit,
//! the bottleneck is the consumer whose fix gives back the most service time. Computed from the
//! findings alone.

use chokepoint_evidence::{Resource, Subject};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::finding::{EvidenceItem, Finding, Impact, SampleUnit};
use crate::rank::by_impact;

/// The verdict, as indices into the ranked findings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Verdict {
    /// The bottleneck: always the first finding when there is one — the limit's top consumer,
    /// or the limit itself when nothing seen consumes it.
    pub bottleneck: Option<usize>,
    /// The finding that names the resource capping throughput, when a load ramp showed one.
    pub limit: Option<usize>,
    /// Findings that consume the limit's resource, the largest share first.
    pub consumers: Vec<LimitConsumer>,
    /// What fixing the bottleneck is predicted to give (`chokepoint diagnose`); not predicted
    /// otherwise.
    pub predicted_gain: Option<PredictedGain>,
}

impl Verdict {
    /// The consumers' findings, the largest share first.
    pub fn consumer_findings(&self) -> Vec<usize> {
        self.consumers.iter().map(|c| c.finding).collect()
    }
}

/// A finding that consumes the limit's resource, and how much of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LimitConsumer {
    /// Index into the findings.
    pub finding: usize,
    /// The share of the limit's demand per request (its D) that fixing it removes (0–1), when
    /// it can be put per request.
    pub share_of_limit: Option<f64>,
    /// How the share was reached.
    pub how: Option<String>,
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
/// locks; the host's CPU runs the service's CPU and a database on the same host; requests that
/// never overlap (an event loop held) look the same from a ramp as requests queued one at a time
/// on a lock, so lock waits explain that limit too; every other resource is consumed only by work
/// on itself.
pub(crate) fn consumes(limit: Resource, consumer: Resource) -> bool {
    use Resource::*;
    limit == consumer
        || match limit {
            Workers => matches!(consumer, Database | Locks | Network | Downstream | Connections),
            Database | EventLoop => matches!(consumer, Locks),
            // The host's CPU runs the service and whatever shares the host with it: a database's
            // execution there is CPU.
            HostCpu => matches!(consumer, Cpu | Database),
            _ => false,
        }
}

/// Whether a finding consumes the limited resource, by its impact or by a cost joined to it.
fn consumes_limit(limit: Resource, finding: &Finding) -> bool {
    matches!(finding.impact, Impact::Consumer(_))
        && (consumes(limit, finding.impact.resource())
            || finding.costs.iter().any(|c| consumes(limit, c.resource)))
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
    let mut consumers: Vec<(usize, Option<(f64, String)>)> = findings
        .iter()
        .enumerate()
        .filter(|(_, f)| consumes_limit(resource, f))
        .map(|(i, f)| {
            (
                i,
                removed(f, &findings[limit_at]).map(|(ms, how)| (share_of(ms, &findings[limit_at]), how)),
            )
        })
        .collect();
    // The largest share of the limit first; those that cannot be put per request after, in the
    // order of what they give back.
    consumers.sort_by(|(a, x), (b, y)| match (x, y) {
        (Some((x, _)), Some((y, _))) => y.total_cmp(x).then(a.cmp(b)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.cmp(b),
    });
    let mut order: Vec<usize> = Vec::with_capacity(findings.len());
    if let Some(&(top, _)) = consumers.first() {
        order.push(top);
    }
    order.push(limit_at);
    order.extend(consumers.iter().skip(1).map(|(i, _)| *i));
    let rest: Vec<usize> = (0..findings.len()).filter(|i| !order.contains(i)).collect();
    order.extend(rest);
    let mut taken: Vec<Option<Finding>> = std::mem::take(findings).into_iter().map(Some).collect();
    findings.extend(order.iter().filter_map(|&i| taken[i].take()));
    let alone = consumers.is_empty();
    let limit = if alone { 0 } else { 1 };
    let predicted_gain = if alone {
        predict_pool_doubled(&findings[0])
    } else {
        predict(&findings[0], &findings[1])
    };
    if let (Some(gain), Impact::Limit(l)) = (&predicted_gain, &mut findings[limit].impact) {
        l.capacity_after_fix_rps = Some(gain.capacity_after_fix_rps);
    }
    Verdict {
        bottleneck: Some(0),
        limit: Some(limit),
        consumers: consumers
            .into_iter()
            .enumerate()
            .map(|(rank, (_, share))| {
                let (share_of_limit, how) = match share {
                    Some((share, how)) => (Some(crate::impact::round(share)), Some(how)),
                    None => (None, None),
                };
                LimitConsumer {
                    finding: if rank == 0 { 0 } else { rank + 1 },
                    share_of_limit,
                    how,
                }
            })
            .collect(),
        predicted_gain,
    }
}

/// `removed` ms of the limit's demand as a share of it (at most 1).
fn share_of(removed_ms: f64, limit: &Finding) -> f64 {
    match limit
        .impact
        .limit()
        .and_then(|l| l.demand_ms_per_request)
        .filter(|d| *d > 0.0)
    {
        Some(demand) => (removed_ms / demand).min(1.0),
        None => 0.0,
    }
}

/// The most of the demand a prediction lets one fix remove: a fix never removes all of it, and a
/// prediction beyond 10× is not one.
const MAX_REMOVED_SHARE: f64 = 0.9;

/// What fixing `consumer` removes of the limit's demand D per request, in ms, and how that was
/// reached: a profile's share of the busy time (or of the event loop's) times D — or, for a loop
/// whose ramp measured the wait itself, that wait; a cost another kind of evidence joined to the
/// consumer on the limited resource, times D; a trace finding's saving per affected request × the
/// share affected; a lock that serializes requests, all of it. `None` when it cannot be put per
/// request.
fn removed(consumer: &Finding, limit: &Finding) -> Option<(f64, String)> {
    let (Impact::Consumer(c), Impact::Limit(l)) = (&consumer.impact, &limit.impact) else {
        return None;
    };
    let demand = l.demand_ms_per_request.filter(|d| *d > 0.0)?;
    if c.resource == Resource::Locks
        && matches!(
            l.resource,
            Resource::EventLoop | Resource::Workers | Resource::Locks
        )
    {
        return Some((
            demand,
            "requests queue one at a time on the lock: all of D".to_owned(),
        ));
    }
    let sample = consumer.evidence.sample;
    let own = consumes(l.resource, c.resource);
    let joined = consumer
        .costs
        .iter()
        .filter(|cost| consumes(l.resource, cost.resource))
        .max_by(|a, b| a.share.total_cmp(&b.share));
    if own && sample.unit.is_profile() {
        // A ramp that measured the wait itself (blocking-call: latency less CPU, per request) says
        // what removing the located calls removes better than a profile's share of all threads.
        if let Some(&waiting) = limit.evidence.metrics.get("waiting_ms").filter(|w| **w > 0.0) {
            return Some((
                waiting.min(demand),
                format!(
                    "the {waiting:.1} ms each request waits in the calls (the ramp's latency less its CPU)"
                ),
            ));
        }
        return Some((
            demand * c.share_of_scope_time,
            format!(
                "its share of the profile's busy time ({:.0} %) of D",
                c.share_of_scope_time * 100.0
            ),
        ));
    }
    if let Some(cost) = joined.filter(|_| !own || l.resource == Resource::Cpu) {
        return Some((
            demand * cost.share,
            format!(
                "its share of {} as {} measured it, {:.0} % — {} — of D",
                cost.resource.describe(),
                cost.seen_by.noun(),
                cost.share * 100.0,
                cost.how
            ),
        ));
    }
    if own && sample.unit == SampleUnit::Requests {
        let share = if sample.total > 0 {
            sample.affected as f64 / sample.total as f64
        } else {
            1.0
        };
        return Some((
            c.saved_ms_per_request * share,
            format!(
                "{:.1} ms per affected request × {:.0} % of requests affected",
                c.saved_ms_per_request,
                share * 100.0
            ),
        ));
    }
    None
}

/// A pool of workers that caps throughput, with nothing seen holding them longer than they
/// must: the fix is a larger pool (or shorter holds, which the ramp cannot size). Doubling it
/// doubles the W of W / D — until the CPU, which the workers were not using, bounds it.
fn predict_pool_doubled(limit: &Finding) -> Option<PredictedGain> {
    let Impact::Limit(l) = &limit.impact else {
        return None;
    };
    if l.resource != Resource::Workers {
        return None;
    }
    let demand = l.demand_ms_per_request.filter(|d| *d > 0.0)?;
    let workers = limit.evidence.metrics.get("inferred_workers").copied()?;
    let mut assumptions = vec![format!(
        "about {workers:.0} workers each held {demand:.1} ms per request allow {:.0} requests/s (W / D, Little's law); \
         twice as many allow twice that",
        l.capacity_rps
    )];
    let after = cpu_bound(limit, l.capacity_rps * 2.0, &mut assumptions);
    assumptions.push(
        "the workers wait on nothing that is itself saturated (a database, a service): `chokepoint compare` after \
         the change checks it"
            .into(),
    );
    Some(PredictedGain {
        capacity_rps: crate::impact::round(l.capacity_rps),
        capacity_after_fix_rps: crate::impact::round(after),
        assumptions,
    })
}

/// What one request costs the target's CPU once it runs at capacity, in ms, and how it is known:
/// the least CPU per request a step measured or, less when the traces have it, the lower
/// quartile of the endpoint's in-process time — at the few requests/s a limit allows, the CPU
/// per request also carries the idle process's wakeups (twice the cost at 200/s, measured).
fn cpu_per_request(limit: &Finding) -> Option<(f64, String)> {
    let metrics = &limit.evidence.metrics;
    let measured = metrics.get("cpu_ms_per_request").copied().filter(|c| *c > 0.0)?;
    match metrics.get("in_process_ms_p25").copied().filter(|c| *c > 0.0) {
        Some(traced) if traced < measured => Some((
            traced,
            format!(
                "{traced:.1} ms per request (the lower quartile of its requests' in-process time in the traces, \
                 outside their calls; the ramp measured {measured:.1} ms of CPU per request at its load)"
            ),
        )),
        _ => Some((measured, format!("{measured:.1} ms of CPU per request"))),
    }
}

/// The next limit: once the event loop or the workers stop waiting, the target's CPU per request
/// bounds it at its cores ÷ that (the operational law on the CPU). `after` when the CPU was not
/// measured or allows more.
fn cpu_bound(limit: &Finding, after: f64, assumptions: &mut Vec<String>) -> f64 {
    let Some((cpu_ms, how)) = cpu_per_request(limit) else {
        return after;
    };
    let cores = limit.evidence.metrics.get("usable_cores").copied().unwrap_or(1.0);
    let bound = cores * 1e3 / cpu_ms;
    if bound >= after {
        return after;
    }
    assumptions.push(format!(
        "then the CPU bounds it: {how} on {cores:.0} core(s) allows {bound:.0} requests/s"
    ));
    bound
}

/// Requests queued on one lock (the bottleneck) that serializes them (the limit: the lock itself,
/// or the event loop or the workers a ramp alone takes it for, never overlapping): once the lock
/// is not held across slow work nothing serializes them, and the target's CPU bounds throughput
/// next.
fn predict_lock_released(consumer: &Finding, limit: &Finding) -> Option<PredictedGain> {
    let Impact::Limit(l) = &limit.impact else {
        return None;
    };
    let held = match &consumer.subject {
        Subject::Lock { blocker, .. } => format!("a lock held across `{blocker}`"),
        _ => consumer.location.clone(),
    };
    let mut assumptions = vec![format!(
        "{} let one request through at a time: {:.0} requests/s measured, each queued on {held}",
        l.resource.describe(),
        l.capacity_rps,
    )];
    let after = cpu_bound(limit, f64::INFINITY, &mut assumptions);
    if !after.is_finite() || after <= l.capacity_rps {
        return None;
    }
    assumptions.push(
        "the lock is then held only for the update, too briefly to queue on: `chokepoint compare` after the fix \
         checks it"
            .into(),
    );
    Some(PredictedGain {
        capacity_rps: crate::impact::round(l.capacity_rps),
        capacity_after_fix_rps: crate::impact::round(after),
        assumptions,
    })
}

/// The capacity after fixing the bottleneck `consumer`, which consumes `limit`: with the limiting
/// resource's service demand D per request, throughput is at most 1/D per unit of it; removing x
/// of D raises that bound by D / (D − x) ([`removed`] says what x is). `None` when the limit has
/// no demand or the saving cannot be put per request.
fn predict(consumer: &Finding, limit: &Finding) -> Option<PredictedGain> {
    let (Impact::Consumer(c), Impact::Limit(l)) = (&consumer.impact, &limit.impact) else {
        return None;
    };
    if c.resource == Resource::Locks
        && matches!(
            l.resource,
            Resource::EventLoop | Resource::Workers | Resource::Locks
        )
    {
        return predict_lock_released(consumer, limit);
    }
    let demand = l.demand_ms_per_request.filter(|d| *d > 0.0)?;
    let (removed, mut how) = removed(consumer, limit)?;
    if removed <= 0.0 {
        return None;
    }
    // The host's CPU: a database's time under a saturated CPU is mostly waiting for it; what
    // its fix gives back is the CPU used beside the service and the generator — the database's,
    // more than the statement's time when parallel workers scan for it. What remains of D is
    // then measured, so the cap on a removed share (for estimates) does not apply.
    let removed = match limit.evidence.metrics.get("other_cpu_ms_per_request") {
        Some(&other)
            if l.resource == Resource::HostCpu && (removed > other || c.resource == Resource::Database) =>
        {
            how = format!(
                "the {other:.1} ms of host CPU per request used beside the service and the generator"
            );
            other.min(demand)
        }
        _ => removed.min(demand * MAX_REMOVED_SHARE),
    };
    if removed >= demand {
        return None;
    }
    let mut after = l.capacity_rps * demand / (demand - removed);
    let mut assumptions = vec![
        format!(
            "{} bounds throughput at 1/D per unit: D = {demand:.1} ms of it per request, {:.0} requests/s measured",
            l.resource.describe(),
            l.capacity_rps
        ),
        format!(
            "fixing {} removes {removed:.1} ms of D ({how})",
            consumer.location_or_detector()
        ),
    ];
    // Once the event loop, the workers or the host's CPU given back by another process stop
    // waiting, the service keeps its own CPU per request, which bounds it on its own cores.
    if l.resource != Resource::Cpu {
        after = cpu_bound(limit, after, &mut assumptions);
    }
    assumptions
        .push("nothing else becomes the limit first: `chokepoint compare` after the fix checks it".into());
    Some(PredictedGain {
        capacity_rps: crate::impact::round(l.capacity_rps),
        capacity_after_fix_rps: crate::impact::round(after),
        assumptions,
    })
}

impl Finding {
    /// "n-plus-one", or "the code at handler (app.py:12)" for a finding a profile located.
    fn location_or_detector(&self) -> String {
        match self.evidence.items.iter().find_map(|item| match item {
            EvidenceItem::HotFrame {
                function, file, line, ..
            } if self.evidence.sample.unit.is_profile() => Some(format!("{function} ({file}:{line})")),
            _ => None,
        }) {
            Some(place) => format!("{} at {place}", self.detector),
            None => self.detector.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use chokepoint_evidence::{DetectorId, Scope};

    use super::*;
    use crate::finding::{Basis, Confidence, Consumption, FindingEvidence, Limit, Sample};

    fn finding(detector: DetectorId, impact: Impact) -> Finding {
        Finding {
            id: String::new(),
            detector,
            title: String::new(),
            anchors: Vec::new(),
            costs: Vec::new(),
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
            slo_missed: None,
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
    fn removing_half_the_demand_doubles_the_predicted_capacity() {
        let mut pool = finding(DetectorId::WorkerExhaustion, limit(Resource::Workers));
        if let Impact::Limit(l) = &mut pool.impact {
            l.demand_ms_per_request = Some(40.0);
        }
        let mut n_plus_one = finding(DetectorId::NPlusOne, consumer(Resource::Database, 0.5));
        if let Impact::Consumer(c) = &mut n_plus_one.impact {
            c.saved_ms_per_request = 25.0;
        }
        // 25 ms saved in 4 of 5 requests: 20 ms of the 40 ms each request holds a worker.
        n_plus_one.evidence.sample = Sample {
            affected: 4,
            total: 5,
            unit: SampleUnit::Requests,
        };
        let mut findings = vec![pool, n_plus_one];
        let verdict = decide(&mut findings);
        let gain = verdict.predicted_gain.expect("a prediction");
        assert_eq!(gain.capacity_rps, 20.0);
        assert_eq!(gain.capacity_after_fix_rps, 40.0);
        assert_eq!(
            findings[1].impact.limit().and_then(|l| l.capacity_after_fix_rps),
            Some(40.0)
        );
        assert!(
            gain.assumptions.iter().any(|a| a.contains("20.0 ms of D")),
            "{:?}",
            gain.assumptions
        );
        // Without the demand there is nothing to predict from.
        let mut findings = vec![
            finding(DetectorId::WorkerExhaustion, limit(Resource::Workers)),
            finding(DetectorId::NPlusOne, consumer(Resource::Database, 0.5)),
        ];
        assert_eq!(decide(&mut findings).predicted_gain, None);
    }

    #[test]
    fn a_database_taking_the_hosts_cpu_gives_back_at_most_the_cpu_beside_the_service() {
        let mut host = finding(DetectorId::CpuSaturation, limit(Resource::HostCpu));
        if let Impact::Limit(l) = &mut host.impact {
            l.demand_ms_per_request = Some(130.0);
        }
        host.evidence
            .metrics
            .insert("other_cpu_ms_per_request".into(), 120.0);
        // The scan's mean time under the saturated CPU (230 ms) is more than the whole demand:
        // what it gives back is the 120 ms of CPU the database uses, leaving 10 ms: 13×.
        let mut scan = finding(DetectorId::SlowQuery, consumer(Resource::Database, 2.0));
        if let Impact::Consumer(c) = &mut scan.impact {
            c.saved_ms_per_request = 230.0;
        }
        let mut findings = vec![host, scan];
        let verdict = decide(&mut findings);
        assert_eq!(findings[0].detector, DetectorId::SlowQuery);
        assert_eq!(verdict.limit, Some(1));
        let gain = verdict.predicted_gain.expect("a prediction");
        assert_eq!(gain.capacity_after_fix_rps, 260.0);
        assert!(
            gain.assumptions
                .iter()
                .any(|a| a.contains("120.0 ms of host CPU")),
            "{:?}",
            gain.assumptions
        );
    }

    /// A profile's finding: `share` of the busy time of the loop or the CPU, located at a line.
    fn profiled(detector: DetectorId, resource: Resource, share: f64) -> Finding {
        let mut located = finding(detector, consumer(resource, share));
        if let Impact::Consumer(c) = &mut located.impact {
            c.share_of_scope_time = share;
        }
        located.scope = Scope::Process { pid: Some(7) };
        located.evidence.sample.unit = SampleUnit::ProfileSamples;
        located.evidence.items.push(EvidenceItem::HotFrame {
            function: "handler".into(),
            file: "app.py".into(),
            line: 12,
            source: None,
            share_of_busy: share,
            seconds: 3.0,
            inferred_from_source: true,
        });
        located
    }

    #[test]
    fn a_limit_located_by_its_profile_stays_the_limit_and_predicts_from_the_located_share() {
        let mut blocked = finding(DetectorId::BlockingCall, limit(Resource::EventLoop));
        if let Impact::Limit(l) = &mut blocked.impact {
            l.demand_ms_per_request = Some(40.0);
        }
        let located = profiled(DetectorId::BlockingCall, Resource::EventLoop, 0.75);
        let mut findings = vec![blocked.clone(), located.clone()];
        let verdict = decide(&mut findings);
        // The ramp's limit is never merged away: the profile's finding consumes it.
        assert_eq!(verdict.limit, Some(1));
        assert_eq!(verdict.consumer_findings(), [0]);
        assert_eq!(verdict.consumers[0].share_of_limit, Some(0.75));
        assert!(findings[0].evidence.sample.unit.is_profile());
        // 30 of the 40 ms removed: 4× the capacity.
        assert_eq!(
            verdict
                .predicted_gain
                .expect("a prediction")
                .capacity_after_fix_rps,
            80.0
        );
        // A ramp that measured the wait (35 of the 40 ms): removing it leaves 5 ms, 8×.
        let mut waited = blocked.clone();
        waited.evidence.metrics.insert("waiting_ms".into(), 35.0);
        let gain = decide(&mut vec![waited, located.clone()])
            .predicted_gain
            .expect("a prediction");
        assert_eq!(gain.capacity_after_fix_rps, 160.0);
        // With 20 ms of CPU per request, one core stops it at 50 requests/s first.
        blocked.evidence.metrics.insert("cpu_ms_per_request".into(), 20.0);
        let gain = decide(&mut vec![blocked, located])
            .predicted_gain
            .expect("a prediction");
        assert_eq!(gain.capacity_after_fix_rps, 50.0);
        assert!(
            gain.assumptions.iter().any(|a| a.contains("the CPU bounds it")),
            "{:?}",
            gain.assumptions
        );
    }

    #[test]
    fn a_cause_whose_cpu_a_profile_measured_consumes_a_cpu_limit() {
        let mut cpu = finding(DetectorId::CpuSaturation, limit(Resource::Cpu));
        if let Impact::Limit(l) = &mut cpu.impact {
            l.demand_ms_per_request = Some(10.0);
        }
        // Database time from the traces, and 60 % of the profile's busy samples on its lines.
        let mut n_plus_one = finding(DetectorId::NPlusOne, consumer(Resource::Database, 0.2));
        n_plus_one.costs.push(crate::finding::Cost {
            resource: Resource::Cpu,
            share: 0.6,
            s_per_s: 0.5,
            basis: Basis::Measured,
            seen_by: chokepoint_evidence::EvidenceKind::Profile,
            how: "the profiled lines hold its statement".into(),
        });
        let other = profiled(DetectorId::CpuSaturation, Resource::Cpu, 0.2);
        let unrelated = finding(DetectorId::SlowQuery, consumer(Resource::Database, 0.9));
        let mut findings = vec![cpu, other, unrelated, n_plus_one];
        let verdict = decide(&mut findings);
        assert_eq!(findings[0].detector, DetectorId::NPlusOne, "{findings:#?}");
        assert_eq!(
            findings[verdict.limit.expect("a limit")].detector,
            DetectorId::CpuSaturation
        );
        let shares: Vec<_> = verdict.consumers.iter().map(|c| c.share_of_limit).collect();
        assert_eq!(shares, [Some(0.6), Some(0.2)]);
        // The database time alone consumes no CPU limit.
        assert!(
            !verdict
                .consumer_findings()
                .iter()
                .any(|&i| findings[i].detector == DetectorId::SlowQuery)
        );
        // 6 of the 10 ms: 2.5× the capacity.
        assert_eq!(
            verdict
                .predicted_gain
                .expect("a prediction")
                .capacity_after_fix_rps,
            50.0
        );
    }

    #[test]
    fn a_lock_that_serializes_requests_predicts_the_cpu_bound_from_the_quicker_estimate() {
        let mut serial = finding(DetectorId::BlockingCall, limit(Resource::EventLoop));
        serial.evidence.metrics.insert("cpu_ms_per_request".into(), 8.0);
        let mut lock = finding(DetectorId::LockContention, consumer(Resource::Locks, 1.2));
        lock.subject = Subject::Lock {
            relation: "accounts".into(),
            blocker: "SELECT pg_sleep(?)".into(),
        };
        lock.evidence.sample.unit = SampleUnit::Sessions;
        // The ramp's 8 ms of CPU per request at 20 requests/s: one core allows 125 requests/s.
        let mut findings = vec![serial.clone(), lock.clone()];
        let verdict = decide(&mut findings);
        assert_eq!(findings[0].detector, DetectorId::LockContention);
        let gain = verdict.predicted_gain.expect("a prediction");
        assert_eq!(gain.capacity_after_fix_rps, 125.0);
        assert!(
            gain.assumptions[0].contains("queued on a lock held across `SELECT pg_sleep(?)`"),
            "{:?}",
            gain.assumptions
        );
        // A quarter of the traced requests ran 4 ms or less in the process: 250 requests/s, and
        // it says why.
        serial.evidence.metrics.insert("in_process_ms_p25".into(), 4.0);
        let gain = decide(&mut vec![serial.clone(), lock.clone()])
            .predicted_gain
            .expect("a prediction");
        assert_eq!(gain.capacity_after_fix_rps, 250.0);
        assert!(
            gain.assumptions.iter().any(
                |a| a.contains("4.0 ms per request (the lower quartile of its requests' in-process time")
            ),
            "{:?}",
            gain.assumptions
        );
        // A slower in-process time than the CPU measured is not taken: 125 again.
        serial.evidence.metrics.insert("in_process_ms_p25".into(), 30.0);
        let gain = decide(&mut vec![serial.clone(), lock.clone()])
            .predicted_gain
            .expect("a prediction");
        assert_eq!(gain.capacity_after_fix_rps, 125.0);
        // Without the CPU measured there is no next bound to predict.
        serial.evidence.metrics.clear();
        assert_eq!(decide(&mut vec![serial, lock]).predicted_gain, None);
    }

    #[test]
    fn the_hosts_cpu_given_back_leaves_the_service_bound_by_its_own() {
        let mut host = finding(DetectorId::CpuSaturation, limit(Resource::HostCpu));
        if let Impact::Limit(l) = &mut host.impact {
            l.demand_ms_per_request = Some(100.0);
        }
        host.evidence
            .metrics
            .insert("other_cpu_ms_per_request".into(), 95.0);
        let mut scan = finding(DetectorId::SlowQuery, consumer(Resource::Database, 2.0));
        if let Impact::Consumer(c) = &mut scan.impact {
            c.saved_ms_per_request = 80.0;
        }
        // The statement takes 80 ms, its parallel scan 95 ms of the host's CPU: 5 ms of host CPU
        // left per request, 20× on the host, 400 requests/s…
        let gain = decide(&mut vec![host.clone(), scan.clone()])
            .predicted_gain
            .expect("a prediction");
        assert_eq!(gain.capacity_after_fix_rps, 400.0);
        // …but the service's own 4 ms per request on its one core allows 250.
        host.evidence.metrics.insert("cpu_ms_per_request".into(), 4.0);
        let gain = decide(&mut vec![host, scan])
            .predicted_gain
            .expect("a prediction");
        assert_eq!(gain.capacity_after_fix_rps, 250.0);
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
        assert_eq!(verdict.consumer_findings(), [0, 2]);
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
