//! Aggregation across traces: each trace is looked at once and dropped; what remains are
//! mergeable aggregates per (detector, endpoint, key), turned into findings at the end.

use std::collections::BTreeMap;

use hashbrown::HashMap;
use std::sync::Arc;

use chokepoint_evidence::{Trace, TraceId};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::finding::{Confidence, Evidence, Finding, Impact};
use crate::registry::TRACE_DETECTORS;
use crate::request::TraceIndex;
use crate::sql::{self, Statement};

/// A finding needs this many affected requests: one odd trace does not make a finding.
pub const MIN_AFFECTED_REQUESTS: u64 = 2;
/// …and this share of its endpoint's requests.
pub const MIN_AFFECTED_SHARE: f64 = 0.05;
/// Example trace ids kept per finding.
const EXAMPLES: usize = 3;
/// Normalized statements cached before the cache is reset (bounds memory on unique SQL).
const STATEMENT_CACHE_ENTRIES: usize = 50_000;

/// What one detector saw in one request.
#[derive(Clone, Debug)]
pub(crate) struct Observation {
    /// Groups observations across requests (a fingerprint, a call target, a peer).
    pub key: String,
    /// What the finding names: the normalized statement, the call.
    pub location: String,
    /// Service time the fix would remove from this request, in ns.
    pub saved_ns: u64,
    /// Latency the fix would remove from this request, in ns.
    pub latency_saved_ns: u64,
    /// How often the problem occurred in this request.
    pub occurrences: u64,
    /// Per-request numbers, aggregated into `<name>_mean` and `<name>_max`.
    pub metrics: Vec<(&'static str, f64)>,
}

/// Collects one detector's observations of one request.
pub(crate) struct Observer<'o> {
    observations: &'o mut Vec<Observation>,
    evaluated: &'o mut u64,
}

impl Observer<'_> {
    /// Records an observation.
    pub(crate) fn push(&mut self, observation: Observation) {
        self.observations.push(observation);
    }

    /// Counts a span the detector could judge, so the report can tell "clean" from "no evidence".
    pub(crate) fn evaluated(&mut self) {
        *self.evaluated += 1;
    }
}

/// Sum, count and maximum of a metric.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Stat {
    sum: f64,
    count: u64,
    max: f64,
}

impl Stat {
    fn add(&mut self, value: f64) {
        self.sum += value;
        self.count += 1;
        self.max = if self.count == 1 {
            value
        } else {
            self.max.max(value)
        };
    }

    fn merge(&mut self, other: Stat) {
        if other.count == 0 {
            return;
        }
        self.max = if self.count == 0 {
            other.max
        } else {
            self.max.max(other.max)
        };
        self.sum += other.sum;
        self.count += other.count;
    }

    fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum / self.count as f64
        }
    }
}

/// The aggregate of one detector's observations for one endpoint and key.
#[derive(Clone, Debug)]
struct Group {
    location: String,
    requests: u64,
    occurrences: u64,
    saved_ns: u128,
    latency_saved_ns: u128,
    metrics: BTreeMap<&'static str, Stat>,
    examples: Vec<TraceId>,
}

impl Group {
    fn merge(&mut self, other: Group) {
        self.requests += other.requests;
        self.occurrences += other.occurrences;
        self.saved_ns += other.saved_ns;
        self.latency_saved_ns += other.latency_saved_ns;
        for (name, stat) in other.metrics {
            self.metrics.entry(name).or_default().merge(stat);
        }
        for example in other.examples {
            if self.examples.len() < EXAMPLES && !self.examples.contains(&example) {
                self.examples.push(example);
            }
        }
    }
}

/// Requests and time of one endpoint.
#[derive(Clone, Copy, Debug, Default)]
struct EndpointStats {
    requests: u64,
    time_ns: u128,
}

/// Everything kept about one endpoint: its totals and, per detector, its groups by key.
#[derive(Default)]
struct EndpointEntry {
    stats: EndpointStats,
    groups: Vec<HashMap<String, Group>>,
}

impl EndpointEntry {
    fn merge_group(&mut self, detector: usize, key: &str, group: Group) {
        if self.groups.len() <= detector {
            self.groups.resize_with(TRACE_DETECTORS.len(), HashMap::new);
        }
        match self.groups[detector].get_mut(key) {
            Some(existing) => existing.merge(group),
            None => {
                self.groups[detector].insert(key.to_owned(), group);
            }
        }
    }
}

/// service → endpoint → entry; looked up by borrowed names, so a known endpoint costs no
/// allocation per request.
type Endpoints = HashMap<String, HashMap<String, EndpointEntry>>;

fn endpoint_entry<'e>(endpoints: &'e mut Endpoints, service: &str, endpoint: &str) -> &'e mut EndpointEntry {
    endpoints
        .entry_ref(service)
        .or_default()
        .entry_ref(endpoint)
        .or_default()
}

/// A group as a detector sees it when concluding.
pub(crate) struct GroupView<'a> {
    /// The endpoint.
    pub endpoint: &'a str,
    /// The group key.
    pub key: &'a str,
    /// What the finding names.
    pub location: &'a str,
    /// Requests that showed the problem.
    pub requests: u64,
    /// Requests of the endpoint.
    pub endpoint_requests: u64,
    /// Occurrences over all affected requests.
    pub occurrences: u64,
    /// Service time saved per affected request, in ms.
    pub saved_ms_per_request: f64,
    metrics: &'a BTreeMap<&'static str, Stat>,
}

impl GroupView<'_> {
    /// The mean of a per-request metric.
    pub(crate) fn mean(&self, metric: &str) -> f64 {
        self.metrics.get(metric).map_or(0.0, Stat::mean)
    }

    /// The maximum of a per-request metric.
    pub(crate) fn max(&self, metric: &str) -> f64 {
        self.metrics.get(metric).map_or(0.0, |s| s.max)
    }

    /// Affected requests as a share of the endpoint's.
    pub(crate) fn affected_share(&self) -> f64 {
        self.requests as f64 / self.endpoint_requests.max(1) as f64
    }
}

/// What a detector concluded from a group.
pub(crate) struct Conclusion {
    pub title: String,
    pub fix: String,
    pub confidence: Confidence,
    pub assumptions: Vec<String>,
}

/// A detector that could not run for lack of evidence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Skipped {
    /// The detector id.
    pub detector: String,
    /// Why: "no span carries db.response.returned_rows".
    pub reason: String,
}

/// What the evidence held.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Summary {
    /// Traces analysed.
    pub traces: u64,
    /// Spans analysed.
    pub spans: u64,
    /// Requests (server spans, and roots) analysed.
    pub requests: u64,
    /// Distinct endpoints.
    pub endpoints: u64,
    /// Wall-clock span of the evidence, first span start to last span end, in seconds.
    pub window_s: f64,
    /// Candidate findings dropped by the noise gate (too few affected requests).
    pub below_noise_gate: u64,
    /// Spans whose parent is not in the evidence (not exported, sampled out, or lost); each is
    /// analysed as the root of what lies below it.
    pub orphan_spans: u64,
    /// A trace with such a span, to look at.
    pub example_orphan_trace: Option<String>,
}

/// The result of an analysis: ranked findings, detectors skipped, and a summary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Outcome {
    /// Findings, ranked: the first is the bottleneck.
    pub findings: Vec<Finding>,
    /// Detectors that had no evidence to look at.
    pub skipped: Vec<Skipped>,
    /// What was analysed.
    pub summary: Summary,
    /// A load ramp's Universal Scalability Law fit (closed model, three steps or more).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usl: Option<crate::UslFit>,
}

/// Runs every trace detector over traces one at a time and keeps only aggregates.
///
/// ```
/// use chokepoint_detect::Analysis;
///
/// let mut analysis = Analysis::default();
/// // for trace in traces { analysis.add_trace(&trace); }
/// let outcome = analysis.finish();
/// assert!(outcome.findings.is_empty());
/// ```
#[derive(Default)]
pub struct Analysis {
    endpoints: Endpoints,
    evaluated: Vec<u64>,
    window_ns: Option<(u64, u64)>,
    traces: u64,
    spans: u64,
    requests: u64,
    orphan_spans: u64,
    example_orphan_trace: Option<TraceId>,
    statements: HashMap<u64, Arc<Statement>>,
    unkeyed_statements: HashMap<String, Arc<Statement>>,
}

impl Analysis {
    /// Looks at one whole trace; keeps only what the detectors observed.
    pub fn add_trace(&mut self, trace: &Trace) {
        self.evaluated.resize(TRACE_DETECTORS.len(), 0);
        self.traces += 1;
        self.spans += trace.spans.len() as u64;
        for span in &trace.spans {
            if span.start_unix_nano == 0 {
                continue;
            }
            let (first, last) = self
                .window_ns
                .get_or_insert((span.start_unix_nano, span.end_unix_nano));
            *first = (*first).min(span.start_unix_nano);
            *last = (*last).max(span.end_unix_nano);
        }
        if self.statements.len() > STATEMENT_CACHE_ENTRIES {
            self.statements.clear();
        }
        if self.unkeyed_statements.len() > STATEMENT_CACHE_ENTRIES {
            self.unkeyed_statements.clear();
        }
        let (cache, unkeyed) = (&mut self.statements, &mut self.unkeyed_statements);
        let index = TraceIndex::new(trace, &mut |text| match sql::literal_blind_key(text) {
            Some(key) => Arc::clone(cache.entry(key).or_insert_with(|| Arc::new(sql::normalize(text)))),
            None => match unkeyed.get(text) {
                Some(statement) => Arc::clone(statement),
                None => {
                    let statement = Arc::new(sql::normalize(text));
                    unkeyed.insert(text.to_owned(), Arc::clone(&statement));
                    statement
                }
            },
        });
        if index.orphans > 0 {
            self.orphan_spans += index.orphans;
            self.example_orphan_trace.get_or_insert(trace.trace_id);
        }
        let mut observations = Vec::new();
        for request in index.requests() {
            self.requests += 1;
            let root = request.root_span();
            let entry = endpoint_entry(&mut self.endpoints, &root.service, &request.endpoint);
            entry.stats.requests += 1;
            entry.stats.time_ns += u128::from(root.duration_nano());
            for (d, detector) in TRACE_DETECTORS.iter().enumerate() {
                observations.clear();
                detector.observe(
                    &request,
                    &mut Observer {
                        observations: &mut observations,
                        evaluated: &mut self.evaluated[d],
                    },
                );
                // Several observations with one key in one request count as one affected request.
                let mut per_key: HashMap<&str, Group> = HashMap::new();
                for o in &observations {
                    let group = per_key.entry(&o.key).or_insert_with(|| Group {
                        location: o.location.clone(),
                        requests: 1,
                        occurrences: 0,
                        saved_ns: 0,
                        latency_saved_ns: 0,
                        metrics: BTreeMap::new(),
                        examples: vec![trace.trace_id],
                    });
                    group.occurrences += o.occurrences;
                    group.saved_ns += u128::from(o.saved_ns);
                    group.latency_saved_ns += u128::from(o.latency_saved_ns);
                    for &(name, value) in &o.metrics {
                        group.metrics.entry(name).or_default().add(value);
                    }
                }
                for (key, group) in per_key {
                    entry.merge_group(d, key, group);
                }
            }
        }
    }

    /// Adds another analysis's aggregates to this one (e.g. from another receiver or file).
    pub fn merge(&mut self, other: Analysis) {
        self.evaluated.resize(TRACE_DETECTORS.len(), 0);
        for (d, count) in other.evaluated.into_iter().enumerate() {
            self.evaluated[d] += count;
        }
        for (service, by_name) in other.endpoints {
            for (endpoint, theirs) in by_name {
                let mine = endpoint_entry(&mut self.endpoints, &service, &endpoint);
                mine.stats.requests += theirs.stats.requests;
                mine.stats.time_ns += theirs.stats.time_ns;
                for (d, groups) in theirs.groups.into_iter().enumerate() {
                    for (key, group) in groups {
                        mine.merge_group(d, &key, group);
                    }
                }
            }
        }
        self.window_ns = match (self.window_ns, other.window_ns) {
            (Some(a), Some(b)) => Some((a.0.min(b.0), a.1.max(b.1))),
            (a, b) => a.or(b),
        };
        self.traces += other.traces;
        self.spans += other.spans;
        self.requests += other.requests;
        self.orphan_spans += other.orphan_spans;
        self.example_orphan_trace = self.example_orphan_trace.or(other.example_orphan_trace);
    }

    /// Concludes: findings (noise-gated and ranked), skipped detectors, summary.
    pub fn finish(mut self) -> Outcome {
        self.evaluated.resize(TRACE_DETECTORS.len(), 0);
        let window_s = self
            .window_ns
            .map_or(0.0, |(first, last)| last.saturating_sub(first) as f64 / 1e9);
        let mut findings = Vec::new();
        let mut below_noise_gate = 0;
        let groups = self.endpoints.iter().flat_map(|(service, by_name)| {
            by_name.iter().flat_map(move |(endpoint, entry)| {
                entry.groups.iter().enumerate().flat_map(move |(d, groups)| {
                    groups
                        .iter()
                        .map(move |(key, group)| (d, service, endpoint, key, group, entry.stats))
                })
            })
        });
        for (d, service, endpoint, key, group, stats) in groups {
            let share = group.requests as f64 / stats.requests.max(1) as f64;
            if group.requests < MIN_AFFECTED_REQUESTS || share < MIN_AFFECTED_SHARE {
                below_noise_gate += 1;
                continue;
            }
            let view = GroupView {
                endpoint,
                key,
                location: &group.location,
                requests: group.requests,
                endpoint_requests: stats.requests,
                occurrences: group.occurrences,
                saved_ms_per_request: group.saved_ns as f64 / 1e6 / group.requests as f64,
                metrics: &group.metrics,
            };
            let detector = TRACE_DETECTORS[d];
            let Some(conclusion) = detector.conclude(&view) else {
                below_noise_gate += 1;
                continue;
            };
            findings.push(finding(
                detector.meta().id,
                service,
                endpoint,
                group,
                stats,
                window_s,
                conclusion,
            ));
        }
        crate::rank(&mut findings);
        let skipped = TRACE_DETECTORS
            .iter()
            .zip(&self.evaluated)
            .filter(|(_, count)| **count == 0)
            .map(|(d, _)| Skipped {
                detector: d.meta().id.to_owned(),
                reason: format!("no {}", d.meta().requires),
            })
            .collect();
        Outcome {
            findings,
            skipped,
            usl: None,
            summary: Summary {
                traces: self.traces,
                spans: self.spans,
                requests: self.requests,
                endpoints: self.endpoints.values().map(|by_name| by_name.len() as u64).sum(),
                window_s,
                below_noise_gate,
                orphan_spans: self.orphan_spans,
                example_orphan_trace: self.example_orphan_trace.map(|t| t.to_string()),
            },
        }
    }
}

fn finding(
    detector: &str,
    service: &str,
    endpoint: &str,
    group: &Group,
    stats: EndpointStats,
    window_s: f64,
    conclusion: Conclusion,
) -> Finding {
    let saved_ms_total = group.saved_ns as f64 / 1e6;
    let requests = group.requests as f64;
    let mut metrics = BTreeMap::new();
    for (name, stat) in &group.metrics {
        metrics.insert(format!("{name}_mean"), round(stat.mean()));
        metrics.insert(format!("{name}_max"), round(stat.max));
    }
    Finding {
        detector: detector.to_owned(),
        title: conclusion.title,
        service: service.to_owned(),
        endpoint: endpoint.to_owned(),
        location: group.location.clone(),
        impact: Impact {
            saved_ms_per_request: round(saved_ms_total / requests),
            latency_saved_ms_per_request: round(group.latency_saved_ns as f64 / 1e6 / requests),
            saved_ms_total: round(saved_ms_total),
            share_of_endpoint_time: round((saved_ms_total * 1e6 / (stats.time_ns.max(1) as f64)).min(1.0)),
            recoverable_s_per_s: if window_s > 0.0 {
                round(saved_ms_total / 1e3 / window_s)
            } else {
                0.0
            },
        },
        evidence: Evidence {
            affected_requests: group.requests,
            endpoint_requests: stats.requests,
            occurrences: group.occurrences,
            example_trace_ids: group.examples.iter().map(ToString::to_string).collect(),
            metrics,
        },
        confidence: conclusion.confidence,
        fix: conclusion.fix,
        assumptions: conclusion.assumptions,
    }
}

/// Rounds to 4 significant decimals so JSON output is stable and readable.
fn round(value: f64) -> f64 {
    if value.abs() >= 1.0 {
        (value * 1e3).round() / 1e3
    } else {
        (value * 1e6).round() / 1e6
    }
}
