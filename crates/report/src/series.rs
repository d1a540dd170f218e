//! What the pictures draw, as typed series in the report: every renderer that draws (the HTML
//! page, `--chart`, `--flamegraph`) reads these and nothing else, so a page drawn from a saved
//! `report.json` is the page drawn at the run.

use std::collections::BTreeMap;

use chokepoint_detect::{EvidenceItem, Finding, Impact, UslFit, round};
use chokepoint_evidence::{Evidence, ExampleTrace, LoadModel, StopReason};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Endpoints drawn, the heaviest by time.
const ENDPOINTS_DRAWN: usize = 12;
/// Stacks below this share of the profile's samples are pruned from the flame graph.
const FLAME_PRUNE_SHARE: f64 = 0.001;
/// Stacks kept at most, the heaviest.
const FLAME_STACKS: usize = 4_000;

/// The series a report draws.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Series {
    /// The load ramp's curve.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ramp: Option<RampSeries>,
    /// Each endpoint's mean time per request by cause, the heaviest endpoints by time first (at
    /// most 12).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<EndpointTime>,
    /// The profile's stacks, for the flame graph.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flame: Option<FlameSeries>,
    /// Each index proposed, the plan's cost before and after it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub plans: Vec<PlanPair>,
    /// One example trace per finding the traces showed, its spans marked, for a waterfall.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<FindingExample>,
}

/// A finding's example trace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FindingExample {
    /// The finding's id.
    pub finding: String,
    /// The request, span by span (at most 40 spans, the rest counted).
    pub trace: ExampleTrace,
}

/// A load ramp, step by step, with its knee, objective and Universal Scalability Law fit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RampSeries {
    /// The URL loaded.
    pub url: String,
    /// What `offered` counts: `connections` (closed model) or `requests/s` (open model).
    pub offered_unit: String,
    /// The steps with answers, in order.
    pub points: Vec<RampPoint>,
    /// The index in `points` of the last step before the ramp broke (its capacity), when it broke.
    pub knee: Option<usize>,
    /// The latency objective, `(percentile, ms)`, when one was set and missed.
    pub slo: Option<(f64, f64)>,
    /// The Universal Scalability Law fitted to a closed-model ramp.
    pub usl: Option<UslFit>,
}

/// One step of a ramp.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RampPoint {
    /// Concurrency or intended requests per second.
    pub offered: f64,
    /// Answers per second.
    pub throughput_rps: f64,
    /// Latency percentiles, in ms.
    pub p50_ms: f64,
    /// 90th percentile, in ms.
    pub p90_ms: f64,
    /// 99th percentile, in ms.
    pub p99_ms: f64,
    /// The target's CPU, in cores, when it was sampled.
    pub cpu_cores: Option<f64>,
    /// Failed requests.
    pub errors: u64,
    /// Answers.
    pub requests: u64,
}

/// An endpoint's mean time per request, by cause.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EndpointTime {
    /// The service.
    pub service: String,
    /// The endpoint.
    pub endpoint: String,
    /// Requests seen.
    pub requests: u64,
    /// Mean time per request, in ms.
    pub mean_ms: f64,
    /// Of it, in database statements.
    pub database_ms: f64,
    /// Of it, in its own process outside any call.
    pub in_process_ms: f64,
    /// The rest: calls to other services, connection setup, waits nothing recorded apart.
    pub other_ms: f64,
}

/// A profile's stacks as folded lines (`thread;outer;inner count`), pruned below a share.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FlameSeries {
    /// The folded stacks kept, the heaviest first.
    pub stacks: Vec<String>,
    /// Frame → category (`serialization`, `logging`, …), for the frames that have one.
    pub categories: BTreeMap<String, String>,
    /// The findings' own frames (`function (file:line)`), drawn in red.
    pub highlighted: Vec<String>,
    /// Samples in the profile.
    pub samples: u64,
    /// Samples in stacks pruned (each under 0.1 % of the samples, or past the 4,000 heaviest).
    pub pruned_samples: u64,
}

/// The plan's cost before and after an index.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PlanPair {
    /// The finding proposing it.
    pub finding: String,
    /// The statement, as the finding names it.
    pub statement: String,
    /// The statement that creates the index.
    pub create: String,
    /// The plan's cost without it.
    pub cost_before: f64,
    /// With it (HypoPG), when it could be costed.
    pub cost_after: Option<f64>,
    /// Relations the plan scans sequentially.
    pub seq_scans: Vec<String>,
}

impl Series {
    /// The series of `evidence` and the findings made of it.
    pub fn new(evidence: &Evidence, findings: &[Finding]) -> Series {
        Series {
            ramp: evidence.load.as_ref().map(|run| ramp(run, findings)),
            endpoints: evidence.traces.as_ref().map(endpoints).unwrap_or_default(),
            flame: evidence.profile.as_ref().map(|profile| flame(profile, findings)),
            plans: findings.iter().flat_map(plans).collect(),
            examples: evidence
                .traces
                .as_ref()
                .map(|traces| examples(traces, findings))
                .unwrap_or_default(),
        }
    }
}

/// Each finding's example: the trace its detector kept for its subject at its endpoint.
fn examples(traces: &chokepoint_evidence::TraceAggregates, findings: &[Finding]) -> Vec<FindingExample> {
    findings
        .iter()
        .filter_map(|f| {
            let chokepoint_evidence::Scope::Endpoint { service, endpoint } = &f.scope else {
                return None;
            };
            let at = traces
                .endpoints
                .iter()
                .find(|e| &e.service == service && &e.endpoint == endpoint)?;
            let group = at
                .groups
                .iter()
                .find(|g| g.detector == f.detector && g.subject == f.subject)?;
            Some(FindingExample {
                finding: f.id.clone(),
                trace: group.example.clone()?,
            })
        })
        .collect()
}

fn ramp(run: &chokepoint_evidence::LoadRun, findings: &[Finding]) -> RampSeries {
    let answered: Vec<usize> = (0..run.steps.len())
        .filter(|&i| run.steps[i].requests > 0)
        .collect();
    let points = answered
        .iter()
        .map(|&i| {
            let s = &run.steps[i];
            RampPoint {
                offered: round(s.offered),
                throughput_rps: round(s.throughput_rps),
                p50_ms: round(s.latency.p50_ms),
                p90_ms: round(s.latency.p90_ms),
                p99_ms: round(s.latency.p99_ms),
                cpu_cores: s.target.as_ref().map(|t| round(t.cpu_cores)),
                errors: s.errors,
                requests: s.requests,
            }
        })
        .collect();
    let knee = run
        .breaking_step
        .and_then(|broke| answered.iter().rposition(|&i| i < broke));
    let slo = findings
        .iter()
        .find_map(|f| match &f.impact {
            Impact::Limit(l) => l.slo_missed.as_ref().map(|m| (m.percentile, m.limit_ms)),
            _ => None,
        })
        .or(match &run.stopped_because {
            StopReason::Slo {
                percentile, limit_ms, ..
            } => Some((*percentile, *limit_ms)),
            _ => None,
        });
    let usl = (run.model == LoadModel::Closed)
        .then(|| {
            let points: Vec<(f64, f64)> = run
                .steps
                .iter()
                .filter(|s| s.requests > 0)
                .map(|s| (s.offered, s.throughput_rps))
                .collect();
            UslFit::fit(&points)
        })
        .flatten();
    RampSeries {
        url: run.url.clone(),
        offered_unit: match run.model {
            LoadModel::Closed => "connections",
            LoadModel::Open => "requests/s",
        }
        .to_owned(),
        points,
        knee,
        slo,
        usl,
    }
}

fn endpoints(traces: &chokepoint_evidence::TraceAggregates) -> Vec<EndpointTime> {
    let mut endpoints: Vec<&chokepoint_evidence::EndpointAggregate> =
        traces.endpoints.iter().filter(|e| e.requests > 0).collect();
    endpoints.sort_by(|a, b| b.time_ms.total_cmp(&a.time_ms));
    endpoints
        .into_iter()
        .take(ENDPOINTS_DRAWN)
        .map(|e| {
            let requests = e.requests as f64;
            let mean_ms = e.time_ms / requests;
            let database_ms = (e.statements.iter().map(|s| s.time_ms).sum::<f64>() / requests).min(mean_ms);
            let in_process_ms = e
                .in_process
                .decode()
                .filter(|h| !h.is_empty())
                .map_or(0.0, |h| h.mean() / 1e3)
                .min(mean_ms - database_ms);
            EndpointTime {
                service: e.service.clone(),
                endpoint: e.endpoint.clone(),
                requests: e.requests,
                mean_ms: round(mean_ms),
                database_ms: round(database_ms),
                in_process_ms: round(in_process_ms),
                other_ms: round((mean_ms - database_ms - in_process_ms).max(0.0)),
            }
        })
        .collect()
}

fn flame(profile: &chokepoint_evidence::Profile, findings: &[Finding]) -> FlameSeries {
    let input = chokepoint_detect::flame_input(profile);
    let mut stacks: Vec<(String, u64)> = input
        .lines
        .into_iter()
        .filter_map(|line| {
            let (stack, count) = line.rsplit_once(' ')?;
            Some((stack.to_owned(), count.parse().ok()?))
        })
        .collect();
    stacks.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let samples: u64 = stacks.iter().map(|s| s.1).sum();
    let floor = (samples as f64 * FLAME_PRUNE_SHARE).ceil() as u64;
    let kept: Vec<String> = stacks
        .iter()
        .take(FLAME_STACKS)
        .filter(|s| s.1 >= floor)
        .map(|(stack, count)| format!("{stack} {count}"))
        .collect();
    let kept_samples: u64 = stacks
        .iter()
        .take(FLAME_STACKS)
        .filter(|s| s.1 >= floor)
        .map(|s| s.1)
        .sum();
    let in_kept = |frame: &String| kept.iter().any(|line| line.contains(frame.as_str()));
    FlameSeries {
        categories: input
            .categories
            .into_iter()
            .filter(|(frame, _)| in_kept(frame))
            .map(|(frame, category)| (frame, category.to_owned()))
            .collect(),
        highlighted: highlighted(findings),
        stacks: kept,
        samples,
        pruned_samples: samples - kept_samples,
    }
}

/// The findings' frames: hot frames and code subjects, written `function (file:line)`.
fn highlighted(findings: &[Finding]) -> Vec<String> {
    let mut frames = Vec::new();
    for finding in findings {
        if let chokepoint_evidence::Subject::Code { file, line, function } = &finding.subject {
            frames.push(match line {
                Some(line) => format!("{function} ({file}:{line})"),
                None => format!("{function} ({file})"),
            });
        }
        for item in &finding.evidence.items {
            if let EvidenceItem::HotFrame {
                function, file, line, ..
            } = item
            {
                frames.push(format!("{function} ({file}:{line})"));
            }
        }
    }
    frames.sort();
    frames.dedup();
    frames
}

fn plans(finding: &Finding) -> Vec<PlanPair> {
    let seq_scans: Vec<String> = finding
        .evidence
        .items
        .iter()
        .find_map(|item| match item {
            EvidenceItem::Plan { seq_scans, .. } => Some(seq_scans.clone()),
            _ => None,
        })
        .unwrap_or_default();
    finding
        .evidence
        .items
        .iter()
        .filter_map(|item| match item {
            EvidenceItem::Index {
                create,
                cost_before,
                cost_after,
                ..
            } => Some(PlanPair {
                finding: finding.id.clone(),
                statement: finding.location.clone(),
                create: create.clone(),
                cost_before: round(*cost_before),
                cost_after: cost_after.map(round),
                seq_scans: seq_scans.clone(),
            }),
            _ => None,
        })
        .collect()
}
