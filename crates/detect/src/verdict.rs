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

use crate::finding::{EvidenceItem, Finding, Impact, Limit, SampleUnit};
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
    /// When no gain was predicted, what a prediction needs that the evidence lacks, and how to
    /// gather it: "No gain predicted: it needs …".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_predicted: Option<String>,
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
    #[serde(serialize_with = "crate::finding::rounded_opt")]
    pub share_of_limit: Option<f64>,
    /// What fixing it removes of D, in ms per request.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::finding::rounded_opt"
    )]
    pub removed_ms_per_request: Option<f64>,
    /// How the share was reached.
    pub how: Option<String>,
}

/// A capacity predicted after a fix, its range, what bounds it then, and how.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PredictedGain {
    /// Capacity measured now, in requests per second.
    #[serde(serialize_with = "crate::finding::rounded")]
    pub capacity_rps: f64,
    /// Capacity predicted after the fix, in requests per second.
    #[serde(serialize_with = "crate::finding::rounded")]
    pub capacity_after_fix_rps: f64,
    /// The prediction's range over the spread of what it was read from (low, high), in
    /// requests per second.
    #[serde(serialize_with = "crate::finding::rounded_pair")]
    pub range_rps: [f64; 2],
    /// The resource predicted to bound throughput after the fix.
    pub bound_by: Resource,
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
        // A shape read in the source is no bottleneck: nothing measured it.
        let measured = findings
            .first()
            .is_some_and(|f| !matches!(f.impact, Impact::Potential(_)));
        return Verdict {
            bottleneck: measured.then_some(0),
            not_predicted: measured.then(|| {
                "a capacity to raise, which no load ramp measured: `chokepoint diagnose URL` ramps the load beside the \
                 other evidence"
                    .to_owned()
            }),
            ..Verdict::default()
        };
    };
    let resource = findings[limit_at].impact.resource();
    let mut consumers: Vec<(usize, Option<Removed>)> = findings
        .iter()
        .enumerate()
        .filter(|(_, f)| consumes_limit(resource, f))
        .map(|(i, f)| (i, removed(f, &findings[limit_at])))
        .collect();
    // The largest share of the limit first; those that cannot be put per request after, in the
    // order of what they give back.
    consumers.sort_by(|(a, x), (b, y)| match (x, y) {
        (Some(x), Some(y)) => y.share.total_cmp(&x.share).then(a.cmp(b)),
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
    let prediction = match (&findings[limit].impact, consumers.first()) {
        (Impact::Limit(l), None) => predict_alone(&findings[limit], l),
        (Impact::Limit(l), Some((_, removed))) => predict(&findings[0], removed.as_ref(), l),
        _ => Err(String::new()),
    };
    let (predicted_gain, not_predicted) = match prediction {
        Ok(gain) => (Some(gain), None),
        Err(why) => (None, Some(why)),
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
            .map(|(rank, (_, removed))| LimitConsumer {
                finding: if rank == 0 { 0 } else { rank + 1 },
                share_of_limit: removed.as_ref().map(|r| r.share),
                removed_ms_per_request: removed.as_ref().map(|r| r.ms),
                how: removed.map(|r| r.how),
            })
            .collect(),
        predicted_gain,
        not_predicted,
    }
}

/// What fixing a consumer removes of the limit's demand D per request.
#[derive(Clone, Debug)]
struct Removed {
    /// In ms per request.
    ms: f64,
    /// Its range, when the evidence bounds it rather than measures it (low, high), in ms.
    range_ms: Option<[f64; 2]>,
    /// As a share of D (at most 1).
    share: f64,
    /// How it was reached.
    how: String,
}

/// The most of the demand a prediction lets one fix remove: a fix never removes all of it, and a
/// prediction beyond 10× is not one.
const MAX_REMOVED_SHARE: f64 = 0.9;

/// The part of a limit's demand D per request that scales with the rate, in ms: all of it, but
/// for the CPU, whose fixed cost (cores used whatever the rate) a fix of the requests leaves.
fn marginal_demand(limit: &Limit) -> Option<f64> {
    let demand = limit.demand_ms_per_request.filter(|d| *d > 0.0)?;
    if limit.resource != Resource::Cpu || limit.capacity_rps <= 0.0 {
        return Some(demand);
    }
    let fixed_ms = limit
        .inputs
        .cpu
        .as_ref()
        .map_or(0.0, |c| c.fixed_cores * 1e3 / limit.capacity_rps);
    Some((demand - fixed_ms).max(demand * (1.0 - MAX_REMOVED_SHARE)))
}

/// How many statements an N+1 runs per affected request, when it is one: all but one of them go
/// (the batched one stays).
fn calls_per_request(consumer: &Finding) -> Option<f64> {
    let sample = consumer.evidence.sample;
    (consumer.detector == chokepoint_evidence::DetectorId::NPlusOne
        && sample.unit == SampleUnit::Requests
        && sample.affected > 0)
        .then(|| consumer.evidence.occurrences as f64 / sample.affected as f64)
        .filter(|n| *n >= 2.0)
}

/// What fixing `consumer` removes of the limit's demand D per request, and how that was
/// reached: a profile's share of the busy time (or of the event loop's) times D — or, for a loop
/// whose ramp measured the wait itself, that wait; a cost another kind of evidence joined to the
/// consumer on the limited resource, times D (for an N+1, less the one batched statement that
/// stays); a trace finding's saving per affected request × the share affected; a lock that
/// serializes requests, all of it. `None` when it cannot be put per request.
fn removed(consumer: &Finding, limit: &Finding) -> Option<Removed> {
    let (Impact::Consumer(c), Impact::Limit(l)) = (&consumer.impact, &limit.impact) else {
        return None;
    };
    let demand = l.demand_ms_per_request.filter(|d| *d > 0.0)?;
    let of = |ms: f64, how: String| {
        Some(Removed {
            ms,
            range_ms: None,
            share: (ms / demand).min(1.0),
            how,
        })
    };
    if c.resource == Resource::Locks
        && matches!(
            l.resource,
            Resource::EventLoop | Resource::Workers | Resource::Locks
        )
    {
        return of(
            demand,
            "requests queue one at a time on the lock: all of D".to_owned(),
        );
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
        if let Some(waiting) = l.inputs.waiting_ms_per_request.filter(|w| *w > 0.0) {
            return of(
                waiting.min(demand),
                format!(
                    "the {waiting:.1} ms each request waits in the calls (the ramp's latency less its CPU)"
                ),
            );
        }
        return of(
            demand * c.share_of_scope_time,
            format!(
                "its share of the profile's busy time ({:.0} %) of D",
                c.share_of_scope_time * 100.0
            ),
        );
    }
    if let Some(cost) = joined.filter(|_| !own || l.resource == Resource::Cpu) {
        let (batched, stays) = match calls_per_request(consumer) {
            Some(n) => (
                (n - 1.0) / n,
                format!(", less the one statement of {n:.0} per request that stays, batched"),
            ),
            None => (1.0, String::new()),
        };
        return of(
            demand * cost.share * batched,
            format!(
                "its share of {} as {} measured it, {:.0} % — {} — of D{stays}",
                cost.resource.describe(),
                cost.seen_by.noun(),
                cost.share * 100.0,
                cost.how
            ),
        )
        .map(|removed| Removed {
            range_ms: cost
                .share_range
                .map(|[low, high]| [demand * low * batched, demand * high * batched]),
            ..removed
        });
    }
    if own && sample.unit == SampleUnit::Requests {
        let share = if sample.total > 0 {
            sample.affected as f64 / sample.total as f64
        } else {
            1.0
        };
        return of(
            c.saved_ms_per_request * share,
            format!(
                "{:.1} ms per affected request × {:.0} % of requests affected",
                c.saved_ms_per_request,
                share * 100.0
            ),
        );
    }
    None
}

/// A capacity, its range and what bounds it, in requests per second.
#[derive(Clone, Copy, Debug)]
struct Bound {
    rps: f64,
    range: [f64; 2],
    by: Resource,
}

impl Bound {
    /// Whichever of two bounds binds first.
    fn min(self, other: Bound) -> Bound {
        if other.rps < self.rps { other } else { self }
    }
}

/// The next bound once what waits stops waiting: the target's own CPU — the cores it can use,
/// less what it uses whatever the rate, over its marginal CPU per request (the operational law
/// on the CPU) — its range from that cost's. `None` when the CPU was not measured.
fn cpu_bound(limit: &Limit, assumptions: &mut Vec<String>) -> Option<Bound> {
    let cpu = limit.inputs.cpu.as_ref()?;
    let cores = limit.inputs.usable_cores.unwrap_or(1.0);
    let usable = (cores - cpu.fixed_cores).max(cores * 0.1);
    let at = |ms: f64| usable * 1e3 / ms.max(1e-9);
    let bound = Bound {
        rps: at(cpu.marginal_ms_per_request),
        range: [at(cpu.marginal_range_ms[1]), at(cpu.marginal_range_ms[0])],
        by: Resource::Cpu,
    };
    assumptions.push(format!(
        "the CPU bounds it next at {:.0} requests/s ({:.0} to {:.0}): {:.2} ms of CPU per request ({:.2} to {:.2}, from {}) on \
         {cores:.0} core(s){}",
        bound.rps,
        bound.range[0],
        bound.range[1],
        cpu.marginal_ms_per_request,
        cpu.marginal_range_ms[0],
        cpu.marginal_range_ms[1],
        cpu.basis.describe(),
        if cpu.fixed_cores > 0.005 {
            format!(" less the {:.2} cores it uses whatever the rate", cpu.fixed_cores)
        } else {
            String::new()
        }
    ));
    Some(bound)
}

/// What the CPU bound needs when it is missing.
const CPU_UNMEASURED: &str = "the target's CPU per request, which bounds it once the limit is lifted: run the ramp on \
                              the target's host, or pass `--pid`";

/// A prediction from the capacity now, the bound after the fix and the assumptions reached.
fn gain(limit: &Limit, after: Bound, mut assumptions: Vec<String>) -> Result<PredictedGain, String> {
    if after.rps <= limit.capacity_rps {
        return Err(format!(
            "a bound above today's capacity: {} bounds it at {:.0} requests/s after the fix, no more than the {:.0} \
             measured now",
            after.by.describe(),
            after.rps,
            limit.capacity_rps
        ));
    }
    assumptions
        .push("nothing else becomes the limit first: `chokepoint compare` after the fix checks it".into());
    Ok(PredictedGain {
        capacity_rps: limit.capacity_rps,
        capacity_after_fix_rps: after.rps,
        range_rps: [after.range[0].min(after.rps), after.range[1].max(after.rps)],
        bound_by: after.by,
        assumptions,
    })
}

/// A limit nothing seen consumes: a pool of workers is doubled; a full link carries compressed
/// responses; a lock is released; for any other the fix is not known well enough to size.
fn predict_alone(finding: &Finding, limit: &Limit) -> Result<PredictedGain, String> {
    match limit.resource {
        Resource::Workers => predict_pool_doubled(limit),
        Resource::Link => predict_link(limit),
        Resource::Locks => predict_lock_released(finding, limit),
        Resource::EventLoop if limit.inputs.waiting_ms_per_request.is_some() => predict_wait_removed(limit),
        _ => Err(format!(
            "what consumes {}: the traces (`--otlp`), a profile (`--py-spy`) or the database (`--pg`) beside the ramp \
             would name it, and how much of it a fix removes",
            limit.resource.describe()
        )),
    }
}

/// Requests that never overlap, each waiting in a call the ramp measured (its latency less its
/// CPU): once the call yields, the wait no longer holds the loop, and the CPU bounds it next.
fn predict_wait_removed(limit: &Limit) -> Result<PredictedGain, String> {
    let demand = limit.demand_ms_per_request.filter(|d| *d > 0.0).ok_or_else(|| {
        "the time each request holds the event loop: a ramp whose first step is below the knee measures it".to_owned()
    })?;
    let waiting = limit
        .inputs
        .waiting_ms_per_request
        .unwrap_or(0.0)
        .min(demand * MAX_REMOVED_SHARE);
    let rps = limit.capacity_rps * demand / (demand - waiting);
    let mut assumptions = vec![format!(
        "{} lets one request through at a time: {demand:.1} ms each, {waiting:.1} of them waiting in a call (the \
         ramp's latency less its CPU); once the call yields, {rps:.0} requests/s",
        limit.resource.describe()
    )];
    let mut after = Bound {
        rps,
        range: [rps, rps],
        by: limit.resource,
    };
    if let Some(cpu) = cpu_bound(limit, &mut assumptions) {
        after = after.min(cpu);
    }
    gain(limit, after, assumptions)
}

/// A pool of workers that caps throughput, with nothing seen holding them longer than they
/// must: the fix is a larger pool (or shorter holds, which the ramp cannot size). Doubling it
/// doubles the W of W / D — until the CPU, which the workers were not using, bounds it.
fn predict_pool_doubled(limit: &Limit) -> Result<PredictedGain, String> {
    let demand = limit.demand_ms_per_request.filter(|d| *d > 0.0).ok_or_else(|| {
        "the time a worker is held per request: a ramp whose first step is below the knee measures it"
            .to_owned()
    })?;
    let workers = limit
        .inputs
        .workers
        .ok_or_else(|| "the workers in service at the plateau (Little's law on the ramp)".to_owned())?;
    let mut assumptions = vec![format!(
        "about {workers:.0} workers each held {demand:.1} ms per request allow {:.0} requests/s (W / D, Little's law); \
         twice as many allow twice that",
        limit.capacity_rps
    )];
    let doubled = limit.capacity_rps * 2.0;
    let mut after = Bound {
        rps: doubled,
        range: [doubled, doubled],
        by: Resource::Workers,
    };
    if let Some(cpu) = cpu_bound(limit, &mut assumptions) {
        after = after.min(cpu);
    }
    assumptions.push(
        "the workers wait on nothing that is itself saturated (a database, a service): `chokepoint compare` after the \
         change checks it"
            .into(),
    );
    gain(limit, after, assumptions)
}

/// A full link: compressed, each response puts fewer bytes on it, by the share the generator
/// measured gzip cutting; the CPU bounds it next.
fn predict_link(limit: &Limit) -> Result<PredictedGain, String> {
    let link = limit
        .inputs
        .link
        .as_ref()
        .ok_or_else(|| "the bytes each response puts on the link".to_owned())?;
    let cut = link.compressible_share.filter(|s| *s > 0.0).ok_or_else(|| {
        "how much smaller the responses get: the generator measures gzip's saving when the target sends uncompressed, \
         compressible responses"
            .to_owned()
    })?;
    let bytes_after = link.bytes_per_response * (1.0 - cut);
    let rps = link.bytes_per_s / bytes_after.max(1.0);
    let mut assumptions = vec![format!(
        "the link carries {:.1} Mbit/s; compressed, each response puts {:.0} kB on it instead of {:.0} kB (gzip's \
         saving, measured on a sampled response), which allows {rps:.0} requests/s",
        link.bytes_per_s * 8.0 / 1e6,
        bytes_after / 1e3,
        link.bytes_per_response / 1e3
    )];
    let mut after = Bound {
        rps,
        range: [rps, rps],
        by: Resource::Link,
    };
    if let Some(cpu) = cpu_bound(limit, &mut assumptions) {
        after = after.min(cpu);
    }
    gain(limit, after, assumptions)
}

/// Requests queued on one lock (the bottleneck) that serializes them (the limit: the lock itself,
/// or the event loop or the workers a ramp alone takes it for, never overlapping): once the lock
/// is held only for the statements (the holding transaction's time outside them removed, when
/// the traces showed it), it allows 1 ÷ that hold, and the target's CPU bounds throughput next.
fn predict_lock_released(consumer: &Finding, limit: &Limit) -> Result<PredictedGain, String> {
    let held = match &consumer.subject {
        Subject::Lock { blocker, .. } => format!("a lock held across `{blocker}`"),
        _ => consumer.location.clone(),
    };
    let mut assumptions = vec![format!(
        "{} let one request through at a time: {:.0} requests/s measured, each queued on {held}",
        limit.resource.describe(),
        limit.capacity_rps,
    )];
    let transaction = consumer.evidence.items.iter().find_map(|item| match item {
        EvidenceItem::Transaction {
            held_ms,
            outside_statements_ms,
            ..
        } => Some((*held_ms, *outside_statements_ms)),
        _ => None,
    });
    let cpu = cpu_bound(limit, &mut assumptions).ok_or_else(|| CPU_UNMEASURED.to_owned())?;
    let after = match transaction {
        // Held mostly outside its statements (work or a call inside the transaction), the fix
        // keeps the statements' hold; held mostly in a statement, that statement leaves the
        // transaction, and what stays is not measured.
        Some((held_ms, outside_ms)) if held_ms > outside_ms && outside_ms >= held_ms / 2.0 => {
            let hold = held_ms - outside_ms;
            let rps = 1e3 / hold;
            assumptions.push(format!(
                "the holding transaction keeps the lock {held_ms:.1} ms, {outside_ms:.1} of them outside its statements \
                 (the traces); held {hold:.2} ms, it allows {rps:.0} requests/s"
            ));
            Bound {
                rps,
                range: [rps, rps],
                by: Resource::Locks,
            }
            .min(cpu)
        }
        _ => {
            assumptions.push(
                "the lock is then held only for the update, too briefly to queue on (the traces would show how long the \
                 holding transaction keeps it)"
                    .into(),
            );
            cpu
        }
    };
    gain(limit, after, assumptions)
}

/// The capacity after fixing the bottleneck `consumer`, which consumes `limit`: with the limiting
/// resource's service demand D per request, throughput is at most 1/D per unit of it; removing x
/// of D raises that bound by D / (D − x) ([`removed`] says what x is) — of the CPU, only its
/// marginal part scales — and what waited on it is bounded next by the target's CPU. `Err` says
/// what evidence would support a prediction.
fn predict(consumer: &Finding, removed: Option<&Removed>, limit: &Limit) -> Result<PredictedGain, String> {
    let Impact::Consumer(c) = &consumer.impact else {
        return Err(String::new());
    };
    if c.resource == Resource::Locks
        && matches!(
            limit.resource,
            Resource::EventLoop | Resource::Workers | Resource::Locks
        )
    {
        return predict_lock_released(consumer, limit);
    }
    let demand = marginal_demand(limit).ok_or_else(|| {
        format!(
            "the time each request takes of {}: a ramp with a step below the knee measures it",
            limit.resource.describe()
        )
    })?;
    let removed = removed.filter(|r| r.ms > 0.0).ok_or_else(|| {
        format!(
            "what fixing {} removes per request: its traces (`--otlp`) or a profile of the ramp (`--py-spy`) would put it \
             per request",
            consumer.location_or_detector()
        )
    })?;
    let mut how = removed.how.clone();
    // The host's CPU: a database's time under a saturated CPU is mostly waiting for it; what
    // its fix gives back is the CPU used beside the service and the generator — the database's,
    // more than the statement's time when parallel workers scan for it. What remains of D is
    // then measured, so the cap on a removed share (for estimates) does not apply.
    let x = match limit.inputs.other_cpu_ms_per_request {
        Some(other)
            if limit.resource == Resource::HostCpu
                && (removed.ms > other || c.resource == Resource::Database) =>
        {
            how = format!(
                "the {other:.1} ms of host CPU per request used beside the service and the generator"
            );
            other.min(demand)
        }
        _ => removed.ms.min(demand * MAX_REMOVED_SHARE),
    };
    if x >= demand {
        return Err(
            "a bound after the fix, which would remove all of the limit's demand: the target's CPU, measured beside the \
             ramp (on its host, or `--pid`), would be one"
                .into(),
        );
    }
    let at_removing = |d: f64, x: f64| limit.capacity_rps * d / (d - x).max(1e-9);
    let at = |d: f64| at_removing(d, x);
    let mut assumptions = vec![
        format!(
            "{} bounds throughput at 1/D per unit: D = {demand:.2} ms of it per request{}, {:.0} requests/s measured",
            limit.resource.describe(),
            if limit.resource == Resource::Cpu {
                " (the part that scales with the rate)"
            } else {
                ""
            },
            limit.capacity_rps
        ),
        format!(
            "fixing {} removes {x:.2} ms of D ({how})",
            consumer.location_or_detector()
        ),
    ];
    // The range: D read at the ends of the CPU's marginal cost's range, and x at the ends of
    // its own, when the evidence bounds it.
    let demands = match (&limit.inputs.cpu, limit.resource) {
        (Some(cpu), Resource::Cpu) if cpu.marginal_ms_per_request > 0.0 => {
            let scale = |ms: f64| (demand * ms / cpu.marginal_ms_per_request).max(x * 1.05);
            [scale(cpu.marginal_range_ms[0]), scale(cpu.marginal_range_ms[1])]
        }
        _ => [demand, demand],
    };
    let removals = removed.range_ms.unwrap_or([x, x]);
    let ends: Vec<f64> = demands
        .iter()
        .flat_map(|&d| {
            removals
                .iter()
                .map(move |&r| at_removing(d, r.min(d * MAX_REMOVED_SHARE)))
        })
        .collect();
    let range = [
        ends.iter().copied().fold(f64::INFINITY, f64::min),
        ends.iter().copied().fold(0.0, f64::max),
    ];
    let mut after = Bound {
        rps: at(demand),
        range,
        by: limit.resource,
    };
    // Once the event loop, the workers or the host's CPU given back by another process stop
    // waiting, the service keeps its own CPU per request, which bounds it on its own cores.
    if limit.resource != Resource::Cpu
        && let Some(cpu) = cpu_bound(limit, &mut assumptions)
    {
        after = after.min(cpu);
    }
    gain(limit, after, assumptions)
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
    use crate::finding::{
        Basis, Confidence, Consumption, CpuCost, CpuCostBasis, FindingEvidence, Limit, LimitInputs, Sample,
    };

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
            inputs: Default::default(),
        })
    }

    /// What the predictors read of a limit finding.
    fn inputs(limit: &mut Finding) -> &mut LimitInputs {
        match &mut limit.impact {
            Impact::Limit(l) => &mut l.inputs,
            Impact::Consumer(_) | Impact::Potential(_) => panic!("not a limit"),
        }
    }

    /// `ms` of CPU per request, all of it marginal, read from the ramp's steps.
    fn cpu(ms: f64) -> Option<CpuCost> {
        Some(CpuCost {
            fixed_cores: 0.0,
            marginal_ms_per_request: ms,
            marginal_range_ms: [ms, ms],
            basis: CpuCostBasis::LeastStep { steps: 3 },
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
            gain.assumptions.iter().any(|a| a.contains("20.00 ms of D")),
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
        inputs(&mut host).other_cpu_ms_per_request = Some(120.0);
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
        inputs(&mut waited).waiting_ms_per_request = Some(35.0);
        let gain = decide(&mut vec![waited, located.clone()])
            .predicted_gain
            .expect("a prediction");
        assert_eq!(gain.capacity_after_fix_rps, 160.0);
        // With 20 ms of CPU per request, one core stops it at 50 requests/s first.
        inputs(&mut blocked).cpu = cpu(20.0);
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
            share_range: None,
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
        inputs(&mut serial).cpu = cpu(8.0);
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
        // A quarter of the traced requests ran 4 ms or less in the process: 250 requests/s, its
        // range up to the 8 ms the steps measured, and it says why.
        inputs(&mut serial).cpu = Some(CpuCost {
            fixed_cores: 0.0,
            marginal_ms_per_request: 4.0,
            marginal_range_ms: [4.0, 8.0],
            basis: CpuCostBasis::Traced { requests: 400 },
        });
        let gain = decide(&mut vec![serial.clone(), lock.clone()])
            .predicted_gain
            .expect("a prediction");
        assert_eq!(gain.capacity_after_fix_rps, 250.0);
        assert_eq!(gain.range_rps, [125.0, 250.0]);
        assert_eq!(gain.bound_by, Resource::Cpu);
        assert!(
            gain.assumptions
                .iter()
                .any(|a| a.contains("the lower quartile of 400 traced requests' in-process time")),
            "{:?}",
            gain.assumptions
        );
        // The holding transaction kept the row 10 ms, 9.5 of them outside its statements: held
        // only for them, the lock allows 2,000 requests/s, and the CPU binds first.
        lock.evidence.items.push(EvidenceItem::Transaction {
            service: "shop".into(),
            endpoint: "POST /transfer".into(),
            statements: vec!["SELECT balance FROM accounts WHERE id = ? FOR UPDATE".into()],
            held_ms: 10.0,
            outside_statements_ms: 9.5,
        });
        let gain = decide(&mut vec![serial.clone(), lock.clone()])
            .predicted_gain
            .expect("a prediction");
        assert_eq!(gain.capacity_after_fix_rps, 250.0);
        assert!(
            gain.assumptions
                .iter()
                .any(|a| a.contains("it allows 2000 requests/s")),
            "{:?}",
            gain.assumptions
        );
        // Held 6 of its 10 ms outside them, the 4 ms that stay allow 250 requests/s; 8 of 13 ms
        // outside, the 5 ms that stay bind first at 200.
        let mut outside = |held: f64, outside: f64| {
            if let Some(EvidenceItem::Transaction {
                held_ms,
                outside_statements_ms,
                ..
            }) = lock.evidence.items.last_mut()
            {
                (*held_ms, *outside_statements_ms) = (held, outside);
            }
            decide(&mut vec![serial.clone(), lock.clone()])
                .predicted_gain
                .expect("a prediction")
        };
        let gain = outside(13.0, 8.0);
        assert_eq!(gain.capacity_after_fix_rps, 200.0);
        assert_eq!(gain.bound_by, Resource::Locks);
        // Held mostly inside a statement (2 of its 10 ms outside), that statement leaves the
        // transaction and what stays is not measured: the CPU bound.
        let gain = outside(10.0, 2.0);
        assert_eq!(gain.capacity_after_fix_rps, 250.0);
        assert_eq!(gain.bound_by, Resource::Cpu);
        // Without the CPU measured there is no next bound to predict, and the verdict says what
        // would give one.
        inputs(&mut serial).cpu = None;
        let verdict = decide(&mut vec![serial, lock]);
        assert_eq!(verdict.predicted_gain, None);
        assert!(verdict.not_predicted.is_some_and(|why| why.contains("--pid")));
    }

    #[test]
    fn the_hosts_cpu_given_back_leaves_the_service_bound_by_its_own() {
        let mut host = finding(DetectorId::CpuSaturation, limit(Resource::HostCpu));
        if let Impact::Limit(l) = &mut host.impact {
            l.demand_ms_per_request = Some(100.0);
        }
        inputs(&mut host).other_cpu_ms_per_request = Some(95.0);
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
        inputs(&mut host).cpu = cpu(4.0);
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
    /// Bad routes' evidence the testbed recorded (`testbed/e2e.py`, `diagnose` with every source),
    /// each with the capacity its fixed twin measured in the same session, and the error the
    /// prediction is held to: within ±30 %, or — for the two kinds whose profiles cannot say how
    /// much CPU the fix takes (docs/detectors.md, "Predictions") — the band measured.
    const RECORDED: [(&str, &str, f64, [f64; 2]); 7] = [
        (
            "n-plus-one-pool",
            include_str!("../tests/data/predictions/n-plus-one-pool.json"),
            69.49,
            [-0.3, 0.3],
        ),
        (
            "blocking-call",
            include_str!("../tests/data/predictions/blocking-call.json"),
            278.549,
            [-0.3, 0.3],
        ),
        (
            "lock-contention",
            include_str!("../tests/data/predictions/lock-contention.json"),
            532.811,
            [-0.3, 0.3],
        ),
        (
            "flask-transfer",
            include_str!("../tests/data/predictions/flask-transfer.json"),
            837.419,
            [-0.3, 0.3],
        ),
        (
            "index",
            include_str!("../tests/data/predictions/index.json"),
            563.234,
            [-0.3, 0.3],
        ),
        (
            "flask-orders",
            include_str!("../tests/data/predictions/flask-orders.json"),
            546.165,
            [-0.5, 0.0],
        ),
        (
            "cpu-saturation",
            include_str!("../tests/data/predictions/cpu-saturation.json"),
            622.578,
            [-0.7, -0.2],
        ),
    ];

    fn recorded(json: &str) -> crate::Outcome {
        let evidence: chokepoint_evidence::Evidence = serde_json::from_str(json).expect("a recorded run");
        crate::analyse(&evidence)
    }

    #[test]
    fn recorded_runs_predict_their_fixed_twins_capacity() {
        for (name, json, measured, [low, high]) in RECORDED {
            let outcome = recorded(json);
            let gain = outcome
                .verdict
                .predicted_gain
                .unwrap_or_else(|| panic!("{name}: no prediction: {:?}", outcome.verdict.not_predicted));
            let error = gain.capacity_after_fix_rps / measured - 1.0;
            assert!(
                (low..=high).contains(&error),
                "{name}: predicted {:.0}, measured {measured:.0} ({:+.0} %): {:#?}",
                gain.capacity_after_fix_rps,
                error * 100.0,
                gain.assumptions
            );
            assert!(
                gain.range_rps[0] <= gain.capacity_after_fix_rps
                    && gain.capacity_after_fix_rps <= gain.range_rps[1],
                "{name}: {gain:?}"
            );
        }
    }

    #[test]
    fn no_predictor_reads_the_metrics_map() {
        for (name, json, ..) in RECORDED {
            let outcome = recorded(json);
            let mut findings = outcome.findings.clone();
            let again = decide(&mut findings).predicted_gain;
            assert_eq!(again, outcome.verdict.predicted_gain, "{name}: deciding twice");
            let mut findings = outcome.findings.clone();
            for finding in &mut findings {
                finding.evidence.metrics.clear();
            }
            assert_eq!(decide(&mut findings).predicted_gain, again, "{name}");
        }
    }
}
