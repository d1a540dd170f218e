//! The trace detectors' streaming stage: each trace is looked at once, request by request, and
//! dropped; what remains are mergeable aggregates per (endpoint, detector, subject) — the
//! traces' part of the [`Evidence`](chokepoint_evidence::Evidence).

use std::collections::BTreeMap;
use std::sync::Arc;

use chokepoint_evidence::{
    Anchor, EndpointAggregate, Fingerprint, LatencyHistogram, MAX_ENDPOINTS, MAX_INSTRUMENTATION_SCOPES,
    MAX_STATEMENTS_PER_ENDPOINT, MAX_SUBJECTS, OTHER_ENDPOINTS, ObservedGroup, Stat, StatementUse, Subject,
    Trace, TraceAggregates, TraceId, TracesSummary, Window, merge_examples,
};
use chokepoint_evidence::{EXAMPLE_NAME_CHARS, ExampleSpan, ExampleTrace, MAX_EXAMPLE_SPANS, MAX_EXAMPLES};
use hashbrown::HashMap;
use hdrhistogram::Histogram;

use crate::registry::{DETECTORS, trace_detectors};
use crate::request::{Request, TraceIndex};
use crate::sql::{self, Statement};

/// Normalized statements cached before the cache is reset (bounds memory on unique SQL).
const STATEMENT_CACHE_ENTRIES: usize = 50_000;

/// What one detector saw in one request.
#[derive(Clone, Debug)]
pub(crate) struct Observation {
    /// What it is about; observations of one subject are aggregated together.
    pub(crate) subject: Subject,
    /// The subject in words when it should not be derived from the subject (calls in the order
    /// they ran, a response named by its endpoint).
    pub(crate) location: Option<String>,
    /// Service time the fix would remove from this request, in ns.
    pub(crate) saved_ns: u64,
    /// Latency the fix would remove from this request, in ns.
    pub(crate) latency_saved_ns: u64,
    /// How often the problem occurred in this request.
    pub(crate) occurrences: u64,
    /// Per-request numbers, aggregated into `<name>_mean` and `<name>_max`.
    pub(crate) metrics: Vec<(&'static str, f64)>,
    /// The call that led to it (the statement that loaded an N+1's parent rows), when known.
    pub(crate) related: Option<Subject>,
    /// The code that ran it, when a span says (`code.*` attributes).
    pub(crate) code: Option<Anchor>,
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

    /// Counts `spans` spans the detector could judge.
    pub(crate) fn evaluated_many(&mut self, spans: u64) {
        *self.evaluated += spans;
    }
}

/// The aggregate of one detector's observations of one subject at one endpoint.
#[derive(Clone, Debug)]
struct Group {
    location: Option<String>,
    requests: u64,
    occurrences: u64,
    saved_ns: u128,
    latency_saved_ns: u128,
    metrics: BTreeMap<&'static str, Stat>,
    examples: Vec<TraceId>,
    related: Option<Subject>,
    code: Option<Anchor>,
    example: Option<ExampleTrace>,
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
        // What was first observed comes from the smallest trace id, as when shards merge.
        if merge_examples(&mut self.examples, &other.examples) {
            self.location = other.location;
            self.related = other.related;
            self.code = other.code;
        }
        self.example = chokepoint_evidence::first_example(self.example.take(), other.example);
    }
}

// Past MAX_ENDPOINTS, the lightest quarter of the endpoints (by time spent) is folded into
// OTHER_ENDPOINTS; past MAX_SUBJECTS, the lightest quarter of an endpoint's subjects is dropped.

/// Everything kept about one endpoint: its totals and, per detector, its groups by subject.
#[derive(Clone, Default)]
struct EndpointEntry {
    requests: u64,
    time_ns: u128,
    /// Each request's time outside its calls, in µs.
    in_process: Option<Histogram<u64>>,
    /// The instrumentation scopes its requests' spans were recorded by.
    scopes: Vec<Arc<str>>,
    /// The statements its requests run, by fingerprint.
    statements: HashMap<Fingerprint, StatementUse>,
    /// Statements dropped to keep [`MAX_STATEMENTS_PER_ENDPOINT`].
    dropped_statements: u64,
    groups: Vec<HashMap<Subject, Group>>,
    /// Groups dropped to keep [`MAX_SUBJECTS`].
    dropped: u64,
}

impl EndpointEntry {
    /// The group of `subject` for detector `detector`, when there is one.
    fn group(&self, detector: usize, subject: &Subject) -> Option<&Group> {
        self.groups.get(detector)?.get(subject)
    }

    fn merge_group(&mut self, detector: usize, subject: Subject, group: Group) {
        if self.groups.len() <= detector {
            self.groups.resize_with(DETECTORS.len(), HashMap::new);
        }
        let groups = &mut self.groups[detector];
        match groups.get_mut(&subject) {
            Some(existing) => existing.merge(group),
            None => {
                if groups.len() >= MAX_SUBJECTS {
                    let mut light: Vec<(u128, Subject)> =
                        groups.iter().map(|(s, g)| (g.saved_ns, s.clone())).collect();
                    let quarter = light.len() / 4;
                    light.select_nth_unstable_by_key(quarter, |(weight, _)| *weight);
                    for (_, subject) in &light[..=quarter] {
                        groups.remove(subject);
                    }
                    self.dropped += quarter as u64 + 1;
                }
                groups.insert(subject, group);
            }
        }
    }

    /// Counts one request of `time_ns` in all, `in_process_ns` of it outside its calls.
    fn add_request(&mut self, time_ns: u64, in_process_ns: u64) {
        self.requests += 1;
        self.time_ns += u128::from(time_ns);
        self.in_process
            .get_or_insert_with(in_process_histogram)
            .saturating_record(in_process_ns / 1_000);
    }

    /// Keeps an instrumentation scope, up to [`MAX_INSTRUMENTATION_SCOPES`].
    fn add_scope(&mut self, scope: &Arc<str>) {
        if self.scopes.len() < MAX_INSTRUMENTATION_SCOPES
            && !self.scopes.iter().any(|s| Arc::ptr_eq(s, scope) || s == scope)
        {
            self.scopes.push(Arc::clone(scope));
        }
    }

    /// Counts a statement's use by one request; past [`MAX_STATEMENTS_PER_ENDPOINT`], the
    /// lightest quarter is dropped.
    fn add_statement(&mut self, used: StatementUse) {
        if let Some(existing) = self.statements.get_mut(&used.fingerprint) {
            existing.merge(&used);
            return;
        }
        if self.statements.len() >= MAX_STATEMENTS_PER_ENDPOINT {
            let mut light: Vec<(u64, Fingerprint)> = self
                .statements
                .values()
                .map(|s| (s.time_ms.to_bits(), s.fingerprint))
                .collect();
            let quarter = light.len() / 4;
            light.select_nth_unstable_by_key(quarter, |(weight, _)| *weight);
            for (_, fingerprint) in &light[..=quarter] {
                self.statements.remove(fingerprint);
            }
            self.dropped_statements += quarter as u64 + 1;
        }
        self.statements.insert(used.fingerprint, used);
    }

    fn merge(&mut self, other: EndpointEntry) {
        self.requests += other.requests;
        self.time_ns += other.time_ns;
        for scope in &other.scopes {
            self.add_scope(scope);
        }
        self.dropped_statements += other.dropped_statements;
        for (_, used) in other.statements {
            self.add_statement(used);
        }
        match (&mut self.in_process, other.in_process) {
            (Some(ours), Some(theirs)) => {
                // Same bounds on both sides: adding cannot fail.
                let _ = ours.add(&theirs);
            }
            (ours, theirs) => *ours = ours.take().or(theirs),
        }
        self.dropped += other.dropped;
        for (d, groups) in other.groups.into_iter().enumerate() {
            for (subject, group) in groups {
                self.merge_group(d, subject, group);
            }
        }
    }
}

/// A statement as one request runs it: its calls, time and first start.
struct RequestStatement<'a> {
    statement: &'a Statement,
    calls: u64,
    time_ms: f64,
    offset_ms: f64,
}

impl RequestStatement<'_> {
    /// The use it counts, its text written out (only when its endpoint first sees it).
    fn into_use(self) -> StatementUse {
        let mut offset_ms = Stat::default();
        offset_ms.add(self.offset_ms);
        StatementUse {
            fingerprint: self.statement.fingerprint,
            text: self.statement.normalized.chars().take(300).collect(),
            requests: 1,
            calls: self.calls,
            time_ms: self.time_ms,
            offset_ms,
        }
    }
}

/// The statements one request runs, each once with its calls, time and first start.
fn statement_uses<'a>(request: &crate::request::Request<'a>) -> Vec<RequestStatement<'a>> {
    let start = request.root_span().start_unix_nano;
    let mut uses: Vec<RequestStatement<'a>> = Vec::new();
    for &i in &request.local {
        let Some(statement) = request.statement(i) else {
            continue;
        };
        let span = request.span(i);
        let took_ms = span.duration_nano() as f64 / 1e6;
        let offset_ms = span.start_unix_nano.saturating_sub(start) as f64 / 1e6;
        match uses
            .iter_mut()
            .find(|u| u.statement.fingerprint == statement.fingerprint)
        {
            Some(used) => {
                used.calls += 1;
                used.time_ms += took_ms;
                used.offset_ms = used.offset_ms.min(offset_ms);
            }
            None => uses.push(RequestStatement {
                statement,
                calls: 1,
                time_ms: took_ms,
                offset_ms,
            }),
        }
    }
    uses
}

/// Two significant digits up to an hour: about 25 kB per endpoint.
fn in_process_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("the bounds are constants, and valid")
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

/// Folds the lightest quarter of the endpoints (by time spent) into their service's
/// [`OTHER_ENDPOINTS`] entry; returns how many were folded.
fn fold_lightest(endpoints: &mut Endpoints) -> u64 {
    let mut light: Vec<(u128, String, String)> = endpoints
        .iter()
        .flat_map(|(service, by_name)| {
            by_name
                .iter()
                .map(move |(name, entry)| (entry.time_ns, service, name))
        })
        .filter(|(_, _, name)| name.as_str() != OTHER_ENDPOINTS)
        .map(|(weight, service, name)| (weight, service.clone(), name.clone()))
        .collect();
    if light.is_empty() {
        return 0;
    }
    let quarter = light.len() / 4;
    light.select_nth_unstable_by_key(quarter, |(weight, _, _)| *weight);
    let mut folded = 0;
    for (_, service, name) in &light[..=quarter] {
        if let Some(by_name) = endpoints.get_mut(service)
            && let Some(entry) = by_name.remove(name)
        {
            by_name
                .entry(OTHER_ENDPOINTS.to_owned())
                .or_default()
                .merge(entry);
            folded += 1;
        }
    }
    folded
}

/// Runs every trace detector's `observe` over traces one at a time and keeps only aggregates.
///
/// ```
/// use chokepoint_detect::TraceAnalysis;
///
/// let mut analysis = TraceAnalysis::default();
/// // for trace in traces { analysis.add_trace(&trace); }
/// let aggregates = analysis.finish();
/// assert_eq!(aggregates.summary.traces, 0);
/// ```
#[derive(Default)]
pub struct TraceAnalysis {
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
    /// Endpoint entries held, and how many were folded into "(other endpoints)".
    endpoint_count: usize,
    folded_endpoints: u64,
    /// Groups holding an example trace ([`MAX_EXAMPLES`] at most).
    examples_kept: usize,
}

impl TraceAnalysis {
    /// Looks at one whole trace; keeps only what the detectors observed.
    pub fn add_trace(&mut self, trace: &Trace) {
        self.evaluated.resize(DETECTORS.len(), 0);
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
        // A later part of a split trace lacks its parents by construction: the assembler says
        // so; they are not missing from the input.
        if index.orphans > 0 && !trace.continued {
            self.orphan_spans += index.orphans;
            self.example_orphan_trace = Some(
                self.example_orphan_trace
                    .map_or(trace.trace_id, |t| t.min(trace.trace_id)),
            );
        }
        let mut observations = Vec::new();
        for request in index.requests() {
            self.requests += 1;
            let root = request.root_span();
            let known = self
                .endpoints
                .get(&*root.service)
                .is_some_and(|by_name| by_name.contains_key(request.endpoint.as_str()));
            if !known {
                if self.endpoint_count >= MAX_ENDPOINTS {
                    self.folded_endpoints += fold_lightest(&mut self.endpoints);
                    self.endpoint_count = self.endpoints.values().map(|by_name| by_name.len()).sum();
                }
                self.endpoint_count += 1;
            }
            let entry = endpoint_entry(&mut self.endpoints, &root.service, &request.endpoint);
            entry.add_request(root.duration_nano(), request.in_process_ns());
            for scope in std::iter::once(request.root)
                .chain(request.local.iter().copied())
                .filter_map(|i| request.span(i).scope.as_ref())
            {
                entry.add_scope(scope);
            }
            for used in statement_uses(&request) {
                match entry.statements.get_mut(&used.statement.fingerprint) {
                    Some(known) => {
                        known.requests += 1;
                        known.calls += used.calls;
                        known.time_ms += used.time_ms;
                        known.offset_ms.add(used.offset_ms);
                    }
                    None => entry.add_statement(used.into_use()),
                }
            }
            for (d, detector) in trace_detectors() {
                observations.clear();
                detector.observe(
                    &request,
                    &mut Observer {
                        observations: &mut observations,
                        evaluated: &mut self.evaluated[d],
                    },
                );
                // Several observations of one subject in one request count as one affected request.
                let mut per_subject: HashMap<&Subject, Group> = HashMap::new();
                for o in &observations {
                    let group = per_subject.entry(&o.subject).or_insert_with(|| Group {
                        location: o.location.clone(),
                        requests: 1,
                        occurrences: 0,
                        saved_ns: 0,
                        latency_saved_ns: 0,
                        metrics: BTreeMap::new(),
                        examples: vec![trace.trace_id],
                        related: o.related.clone(),
                        code: o.code.clone(),
                        example: None,
                    });
                    group.occurrences += o.occurrences;
                    group.saved_ns += u128::from(o.saved_ns);
                    group.latency_saved_ns += u128::from(o.latency_saved_ns);
                    for &(name, value) in &o.metrics {
                        group.metrics.entry(name).or_default().add(value);
                    }
                }
                for (subject, mut group) in per_subject {
                    // An example is drawn only when this trace would be the group's first: the
                    // smallest id, as merging keeps.
                    let (first, kept) = entry.group(d, subject).map_or((true, false), |g| {
                        (
                            g.examples.first().is_none_or(|&f| trace.trace_id < f),
                            g.example.is_some(),
                        )
                    });
                    if first && (kept || self.examples_kept < MAX_EXAMPLES) {
                        self.examples_kept += usize::from(!kept);
                        group.example = Some(example_of(&request, subject, trace.trace_id));
                    }
                    entry.merge_group(d, subject.clone(), group);
                }
            }
        }
    }

    /// Adds another analysis's aggregates to this one (e.g. from another receiver or file).
    pub fn merge(&mut self, other: TraceAnalysis) {
        self.evaluated.resize(DETECTORS.len(), 0);
        for (d, count) in other.evaluated.into_iter().enumerate() {
            self.evaluated[d] += count;
        }
        for (service, by_name) in other.endpoints {
            for (endpoint, theirs) in by_name {
                endpoint_entry(&mut self.endpoints, &service, &endpoint).merge(theirs);
            }
        }
        self.endpoint_count = self.endpoints.values().map(|by_name| by_name.len()).sum();
        if self.endpoint_count > MAX_ENDPOINTS {
            self.folded_endpoints += fold_lightest(&mut self.endpoints);
            self.endpoint_count = self.endpoints.values().map(|by_name| by_name.len()).sum();
        }
        self.folded_endpoints += other.folded_endpoints;
        self.examples_kept += other.examples_kept;
        self.window_ns = match (self.window_ns, other.window_ns) {
            (Some(a), Some(b)) => Some((a.0.min(b.0), a.1.max(b.1))),
            (a, b) => a.or(b),
        };
        self.traces += other.traces;
        self.spans += other.spans;
        self.requests += other.requests;
        self.orphan_spans += other.orphan_spans;
        self.example_orphan_trace = match (self.example_orphan_trace, other.example_orphan_trace) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }

    /// The aggregates so far, the analysis going on: a receiver's checkpoint.
    pub fn aggregates(&self) -> TraceAggregates {
        TraceAnalysis {
            endpoints: self.endpoints.clone(),
            evaluated: self.evaluated.clone(),
            window_ns: self.window_ns,
            traces: self.traces,
            spans: self.spans,
            requests: self.requests,
            orphan_spans: self.orphan_spans,
            example_orphan_trace: self.example_orphan_trace,
            statements: HashMap::new(),
            unkeyed_statements: HashMap::new(),
            endpoint_count: self.endpoint_count,
            folded_endpoints: self.folded_endpoints,
            examples_kept: self.examples_kept,
        }
        .finish()
    }

    /// The aggregates: the traces' part of the evidence.
    pub fn finish(self) -> TraceAggregates {
        let mut evaluated = BTreeMap::new();
        for (d, detector) in trace_detectors() {
            evaluated.insert(detector.meta().id, self.evaluated.get(d).copied().unwrap_or(0));
        }
        let mut endpoints: Vec<EndpointAggregate> = Vec::new();
        let mut dropped_subjects = 0;
        for (service, by_name) in self.endpoints {
            for (endpoint, entry) in by_name {
                dropped_subjects += entry.dropped + entry.dropped_statements;
                let mut groups = Vec::new();
                for (d, by_subject) in entry.groups.into_iter().enumerate() {
                    let id = DETECTORS[d].meta().id;
                    for (subject, group) in by_subject {
                        groups.push(ObservedGroup {
                            detector: id,
                            location: group
                                .location
                                .unwrap_or_else(|| crate::finding::subject_text(&subject)),
                            subject,
                            requests: group.requests,
                            occurrences: group.occurrences,
                            saved_ms: group.saved_ns as f64 / 1e6,
                            latency_saved_ms: group.latency_saved_ns as f64 / 1e6,
                            metrics: group
                                .metrics
                                .into_iter()
                                .map(|(name, stat)| (name.to_owned(), stat))
                                .collect(),
                            examples: group.examples,
                            related: group.related,
                            code: group.code,
                            example: group.example,
                        });
                    }
                }
                groups.sort_by(|a, b| (a.detector, &a.subject).cmp(&(b.detector, &b.subject)));
                endpoints.push(EndpointAggregate {
                    service: service.clone(),
                    endpoint,
                    requests: entry.requests,
                    time_ms: entry.time_ns as f64 / 1e6,
                    in_process: entry
                        .in_process
                        .as_ref()
                        .map(LatencyHistogram::from_hdr)
                        .unwrap_or_default(),
                    instrumentation: {
                        let mut scopes: Vec<String> = entry.scopes.iter().map(|s| s.to_string()).collect();
                        scopes.sort();
                        scopes
                    },
                    statements: {
                        let mut statements: Vec<StatementUse> = entry.statements.into_values().collect();
                        statements.sort_by(|a, b| {
                            a.offset_ms
                                .mean()
                                .total_cmp(&b.offset_ms.mean())
                                .then(a.fingerprint.cmp(&b.fingerprint))
                        });
                        statements
                    },
                    groups,
                });
            }
        }
        endpoints.sort_by(|a, b| (&a.service, &a.endpoint).cmp(&(&b.service, &b.endpoint)));
        TraceAggregates {
            summary: TracesSummary {
                traces: self.traces,
                spans: self.spans,
                requests: self.requests,
                endpoints: endpoints.len() as u64,
                window: self
                    .window_ns
                    .map(|(first, last)| Window::from_unix_nanos(first, last)),
                orphan_spans: self.orphan_spans,
                example_orphan_trace: self.example_orphan_trace,
                folded_endpoints: self.folded_endpoints,
                dropped_subjects,
            },
            endpoints,
            evaluated,
        }
    }
}

/// The request as an example trace: its spans in the order they started (the request's own
/// first), at most [`MAX_EXAMPLE_SPANS`], those the finding is about marked.
fn example_of(request: &Request<'_>, subject: &Subject, trace_id: TraceId) -> ExampleTrace {
    let start = request.root_span().start_unix_nano;
    let mut local = request.local.clone();
    local.sort_by_key(|&i| (request.span(i).start_unix_nano, i));
    let spans: Vec<ExampleSpan> = std::iter::once(request.root)
        .chain(local)
        .take(MAX_EXAMPLE_SPANS)
        .map(|i| {
            let span = request.span(i);
            let name = match (request.statement(i), request.http_call(i)) {
                (Some(statement), _) => statement.normalized.clone(),
                (None, Some(call)) => format!("{} {}", call.method, call.target),
                (None, None) => span.name.clone(),
            };
            ExampleSpan {
                start_ms: span.start_unix_nano.saturating_sub(start) as f64 / 1e6,
                duration_ms: span.duration_nano() as f64 / 1e6,
                name: match name.char_indices().nth(EXAMPLE_NAME_CHARS) {
                    Some((at, _)) => format!("{}…", &name[..at]),
                    None => name,
                },
                kind: span.kind,
                depth: depth(request, i),
                marked: marks(request, i, subject),
            }
        })
        .collect();
    ExampleTrace {
        trace_id,
        folded_spans: (1 + request.local.len() as u64).saturating_sub(spans.len() as u64),
        spans,
    }
}

/// How deep a span lies below the request's span.
fn depth(request: &Request<'_>, mut i: usize) -> u32 {
    let mut depth = 0;
    while i != request.root && depth < 64 {
        match request.parent(i) {
            Some(parent) => i = parent,
            None => break,
        }
        depth += 1;
    }
    depth
}

/// Whether span `i` is one the finding about `subject` is about: its statement, its call, its
/// peer; the request itself for what is about the whole request.
fn marks(request: &Request<'_>, i: usize, subject: &Subject) -> bool {
    match subject {
        Subject::Statement { fingerprint, .. } => request
            .statement(i)
            .is_some_and(|s| s.fingerprint == *fingerprint),
        Subject::HttpCall(target) | Subject::ResponseBody { call: Some(target) } => {
            request.http_call(i).is_some_and(|c| c.target() == *target)
        }
        Subject::CallSequence { calls } => calls.iter().any(|call| marks(request, i, call)),
        Subject::Peer { address, .. } => {
            request.connect_peer(i) == Some(address.as_str())
                || crate::request::peer(request.span(i)).as_deref() == Some(address.as_str())
        }
        _ => i == request.root,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixture of `n` requests, each to its own route with a statement of its own repeated
    /// (an N+1 per endpoint), and one route far heavier than the rest.
    fn distinct_routes(n: usize) -> String {
        let mut traces = Vec::new();
        for i in 0..n {
            let end = if i == 7 { 5000 } else { 50 };
            traces.push(format!(
                r#"{{"spans": [
                  {{"id": "root", "kind": "server", "name": "GET", "end_ms": {end}, "attrs": {{"http.route": "/r{i}", "http.request.method": "GET"}}}},
                  {{"id": "a", "parent": "root", "kind": "client", "start_ms": 1, "end_ms": 16, "attrs": {{"db.system": "postgresql", "db.statement": "SELECT * FROM t{i} WHERE id = 1"}}}},
                  {{"id": "b", "parent": "root", "kind": "client", "start_ms": 17, "end_ms": 32, "attrs": {{"db.system": "postgresql", "db.statement": "SELECT * FROM t{i} WHERE id = 2"}}}},
                  {{"id": "c", "parent": "root", "kind": "client", "start_ms": 33, "end_ms": 48, "attrs": {{"db.system": "postgresql", "db.statement": "SELECT * FROM t{i} WHERE id = 3"}}}}
                ]}}"#
            ));
        }
        format!(r#"{{"traces": [{}]}}"#, traces.join(","))
    }

    #[test]
    fn endpoints_past_the_bound_are_folded_and_the_heaviest_kept() {
        let evidence = crate::evidence_from_fixture(&distinct_routes(MAX_ENDPOINTS * 3)).expect("fixture");
        let traces = evidence.traces.expect("traces");
        let summary = &traces.summary;
        assert_eq!(
            summary.requests,
            (MAX_ENDPOINTS * 3) as u64,
            "every request counted"
        );
        assert!(
            summary.endpoints as usize <= MAX_ENDPOINTS + 1,
            "{} endpoints kept",
            summary.endpoints
        );
        assert_eq!(
            summary.folded_endpoints + summary.endpoints - 1,
            (MAX_ENDPOINTS * 3) as u64,
            "each endpoint kept or folded"
        );
        assert!(
            traces.endpoints.iter().any(|e| e.endpoint.ends_with("/r7")),
            "the heaviest is kept"
        );
        let other = traces
            .endpoints
            .iter()
            .find(|e| e.endpoint == OTHER_ENDPOINTS)
            .expect("the folded ones, together");
        assert_eq!(
            other.requests
                + traces
                    .endpoints
                    .iter()
                    .filter(|e| e.endpoint != OTHER_ENDPOINTS)
                    .map(|e| e.requests)
                    .sum::<u64>(),
            summary.requests
        );
        // Their subjects are bounded too: the lightest dropped, and counted.
        let kept = other
            .groups
            .iter()
            .filter(|g| g.detector == chokepoint_evidence::DetectorId::NPlusOne)
            .count();
        assert!(kept <= MAX_SUBJECTS, "{kept} subjects kept");
        assert!(summary.dropped_subjects > 0);
    }

    #[test]
    fn a_request_runs_in_its_process_what_its_calls_do_not_cover() {
        // 50 ms in all; statements over 1–16 and 17–32 ms, an HTTP call over 10–40 ms (whose
        // server, in another service, is no time of this one): 39 ms covered once, 11 ms its own.
        let trace = |id: u32| {
            format!(
                r#"{{"spans": [
                  {{"id": "root{id}", "kind": "server", "name": "GET", "end_ms": 50, "attrs": {{"http.route": "/orders/{{id}}", "http.request.method": "GET"}}}},
                  {{"id": "a{id}", "parent": "root{id}", "kind": "client", "start_ms": 1, "end_ms": 16, "attrs": {{"db.system": "postgresql", "db.statement": "SELECT 1"}}}},
                  {{"id": "b{id}", "parent": "root{id}", "kind": "internal", "start_ms": 17, "end_ms": 32, "attrs": {{"db.system": "postgresql", "db.statement": "SELECT 2"}}}},
                  {{"id": "c{id}", "parent": "root{id}", "kind": "client", "start_ms": 10, "end_ms": 40, "attrs": {{"http.request.method": "GET", "url.full": "http://stock/items"}}}},
                  {{"id": "d{id}", "parent": "c{id}", "kind": "server", "service": "stock", "start_ms": 12, "end_ms": 38}}
                ]}}"#
            )
        };
        let fixture = format!(
            r#"{{"traces": [{}]}}"#,
            (0..30).map(trace).collect::<Vec<_>>().join(",")
        );
        let traces = crate::evidence_from_fixture(&fixture)
            .expect("fixture")
            .traces
            .expect("traces");
        let orders = crate::traces::endpoint_of_url(&traces, "http://127.0.0.1:8000/orders/42?full=1")
            .expect("the route of /orders/42");
        assert_eq!(orders.endpoint, "GET /orders/{id}");
        let p10 = orders.in_process.quantile_ms(0.1).expect("kept");
        assert!((p10 - 11.0).abs() < 0.1, "{p10}");
        assert!(crate::traces::endpoint_of_url(&traces, "http://127.0.0.1:8000/orders").is_none());
        assert!(
            crate::traces::route_matches("orders/<int:id>/", "/orders/42/"),
            "Django's"
        );
        assert!(
            crate::traces::route_matches("/orders/:id", "/orders/42"),
            "Express's"
        );
        assert!(crate::traces::route_matches("/", "/"));
        assert!(crate::traces::endpoint_of_url(&traces, "http://127.0.0.1:8000/orders/42/items").is_none());
    }
}
