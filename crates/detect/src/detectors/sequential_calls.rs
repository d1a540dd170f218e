//! `sequential-calls`: independent calls awaited one after another.

use chokepoint_evidence::{Resource, Subject};
use hashbrown::HashMap;

use crate::detectors::n_plus_one::{MIN_REPEATS, is_housekeeping_statement, repeated_calls};
use crate::detectors::{clip, ms, percent};
use crate::finding::{Basis, Confidence};
use crate::registry::{Conclusion, Detector, Estimate, Reads, detector};
use crate::request::Request;
use crate::trace_analysis::{Observation, Observer};
use crate::traces::GroupView;

detector! {
    /// # What it detects
    ///
    /// Independent outgoing calls — HTTP `GET`s to other services, read-only `SELECT`s — made
    /// one after another under one parent, none overlapping another, when nothing in the trace
    /// says one needs the previous one's answer.
    ///
    /// # Why it limits throughput
    ///
    /// The request waits for the sum of the calls instead of the longest one. Each request holds
    /// its worker (or its event-loop task and connection) for that whole sum, so latency and the
    /// concurrency needed for a given throughput grow with every call added.
    ///
    /// # Evidence used
    ///
    /// HTTP client spans with a `GET` or `HEAD` method and database spans whose statement is a
    /// `SELECT`, grouped by owning span. Flagged when two or more never overlap and running them
    /// together would save at least 20 ms and 10 % of the request (saving = sum − longest).
    /// Calls that repeat 5 or more times belong to `n-plus-one` and are left out here.
    ///
    /// In the source (`chokepoint scan`, `--source DIR`): two or more awaited HTTP calls (or calls of
    /// the module's `async def`s) one statement after another, none using what an earlier one bound.
    /// A shape read there is potential — not measured — until a runtime finding meets it on its
    /// line, statement or route.
    ///
    /// # Known false positives
    ///
    /// Calls that do depend on each other in ways the trace cannot show (an id read from the
    /// first response and passed in a body). Dependence the trace does show is respected: opaque
    /// page cursors in the URL (`?cursor=`, `page_token=`, `after=`), handed back by the previous
    /// page, and keyset pagination in SQL (`WHERE id > ? … LIMIT`) are never flagged, and neither
    /// are writes, whose order matters. Numbered pages (`?page=2`, `?offset=40`) are known in
    /// advance: pages 1…N can be fetched together, and are flagged.
    /// Two `SELECT`s on one transaction's connection cannot overlap without a second connection.
    ///
    /// # Typical fix
    ///
    /// Start the calls together and await them once: `await asyncio.gather(a(), b(), c())` in
    /// async Python, a `ThreadPoolExecutor` in sync code, `Promise.all` in JavaScript.
    pub(crate) struct SequentialCalls {
        id: SequentialCalls,
        summary: "independent calls awaited one after another instead of concurrently",
        reads: [Reads::Traces("HTTP GET or SQL SELECT client spans"), Reads::Source("independent awaited calls one after another")],
        same_cause: [],
    }
}

/// Calls in a sequence worth reporting.
const MIN_CALLS: usize = 2;
/// Saving below which a sequence is not worth the change, in ms.
const MIN_SAVED_MS: f64 = 20.0;
/// …and as a share of the request's duration.
const MIN_SAVED_SHARE: f64 = 0.1;
/// Calls listed in a finding's location.
const LISTED_CALLS: usize = 5;

impl Detector for SequentialCalls {
    fn observe(&self, request: &Request<'_>, out: &mut Observer<'_>) {
        let request_ms = request.root_span().duration_ms();
        let mut by_owner: HashMap<usize, Vec<usize>> = HashMap::new();
        let mut seen = 0;
        for ((owner, _), calls) in repeated_calls(request, &mut seen) {
            if calls.len() >= MIN_REPEATS {
                continue; // an N+1, reported by `n-plus-one`
            }
            for i in calls {
                if is_independent(request, i) {
                    by_owner.entry(owner).or_default().push(i);
                }
            }
        }
        // Every call looked at counts, those that depend on another or write included.
        out.evaluated_many(seen);
        for calls in by_owner.into_values() {
            let sequential: Vec<usize> = calls
                .iter()
                .copied()
                .filter(|&i| {
                    let a = request.span(i);
                    calls.iter().all(|&j| {
                        let b = request.span(j);
                        i == j || a.end_unix_nano <= b.start_unix_nano || b.end_unix_nano <= a.start_unix_nano
                    })
                })
                .collect();
            if sequential.len() < MIN_CALLS {
                continue;
            }
            let mut ordered = sequential;
            ordered.sort_by_key(|&i| request.span(i).start_unix_nano);
            let durations: Vec<u64> = ordered.iter().map(|&i| request.span(i).duration_nano()).collect();
            let sum_ns: u64 = durations.iter().sum();
            let longest_ns = durations.iter().copied().max().unwrap_or(0);
            let saved_ns = sum_ns - longest_ns;
            if ms(saved_ns) < MIN_SAVED_MS || ms(saved_ns) < MIN_SAVED_SHARE * request_ms {
                continue;
            }
            let labels: Vec<String> = ordered.iter().map(|&i| call_label(request, i)).collect();
            let mut location = labels[..labels.len().min(LISTED_CALLS)].join(" → ");
            if labels.len() > LISTED_CALLS {
                location.push_str(&format!(" → … ({} calls)", labels.len()));
            }
            let mut calls: Vec<Subject> = ordered.iter().filter_map(|&i| call_subject(request, i)).collect();
            calls.sort_unstable();
            out.push(Observation {
                subject: Subject::CallSequence { calls },
                location: Some(location),
                related: None,
                code: None,
                saved_ns,
                latency_saved_ns: saved_ns,
                occurrences: ordered.len() as u64,
                metrics: vec![
                    ("calls_per_request", ordered.len() as f64),
                    ("sequential_ms", ms(sum_ns)),
                    ("longest_call_ms", ms(longest_ns)),
                ],
            });
        }
    }

    fn conclude(&self, group: &GroupView<'_>) -> Option<Conclusion> {
        let calls = group.mean("calls_per_request");
        let sum_ms = group.mean("sequential_ms");
        let longest_ms = group.mean("longest_call_ms");
        let title = format!(
            "{} waits for {calls:.0} independent calls one after another ({sum_ms:.0} ms); run together they would take {longest_ms:.0} ms",
            group.endpoint
        );
        let all_sql = match group.subject() {
            Subject::CallSequence { calls } => calls.iter().all(|c| matches!(c, Subject::Statement { .. })),
            _ => false,
        };
        let how = if all_sql {
            "each on its own connection — e.g. `asyncio.gather` over separate `AsyncSession`s, or one query that reads all of them"
        } else {
            "`await asyncio.gather(…)` over one shared `httpx.AsyncClient` (a `ThreadPoolExecutor` in sync code)"
        };
        let fix = format!(
            "Start these calls together and await them once, {how}: {}.",
            clip(group.location, 240)
        );
        Some(
            Conclusion::new(
                Resource::Workers,
                Basis::Measured,
                Estimate::Observed,
                title,
                fix,
                Confidence::from_share(group.affected_share()).min(Confidence::Medium),
            )
            .assume(vec![
                "the calls are independent: no page cursor, keyset pagination or write links them".into(),
                "run concurrently, the request waits for the longest call (saving = sum − longest)".into(),
                format!(
                    "seen in {} of the endpoint's requests",
                    percent(group.affected_share())
                ),
            ]),
        )
    }
}

/// Whether a call can run concurrently with its siblings: a read, not paginated, not locking.
fn is_independent(request: &Request<'_>, i: usize) -> bool {
    if let Some(statement) = request.statement(i) {
        let read = statement.verb == "SELECT" || statement.verb == "WITH";
        let locks =
            statement.normalized.contains(" FOR UPDATE") || statement.normalized.contains(" FOR SHARE");
        return read
            && !locks
            && !statement.keyset_pagination
            && !is_housekeeping_statement(&statement.normalized);
    }
    request
        .http_call(i)
        .is_some_and(|call| matches!(call.method.as_str(), "GET" | "HEAD") && !call.paginated)
}

/// A call as a subject: its statement, or its HTTP target.
fn call_subject(request: &Request<'_>, i: usize) -> Option<Subject> {
    match (request.statement(i), request.http_call(i)) {
        (Some(statement), _) => Some(statement.subject()),
        (None, Some(call)) => Some(Subject::HttpCall(call.target())),
        (None, None) => None,
    }
}

/// How a call is named in a finding: its statement, or its method and target.
fn call_label(request: &Request<'_>, i: usize) -> String {
    match (request.statement(i), request.http_call(i)) {
        (Some(statement), _) => clip(&statement.normalized, 120),
        (None, Some(call)) => format!("{} {}", call.method, call.target),
        (None, None) => request.span(i).name.clone(),
    }
}
