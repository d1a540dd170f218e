//! Traces read from where production keeps them: Jaeger's query service, api/v3.
//!
//! `GET /api/v3/services` first (an unknown service and an empty search both answer 404 "No
//! traces found", so the services that exist are listed to tell them apart), then
//! `GET /api/v3/traces` over the window in slices: every matching trace of a slice comes in one
//! document (OTLP/JSON under `result`), read by the same reader as a file. A slice whose answer
//! is as deep as the store searches (`query.num_traces`) or larger than [`MAX_ANSWER_BYTES`] is
//! cut in two and asked again, so neither the store's search depth nor one answer silently cuts
//! the window; slices are asked [`CONCURRENCY`] at a time; a trace that two slices return is
//! read once. Header values (`Authorization`) are sent, never printed or saved.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use chokepoint_evidence::{Span, TraceId};

use crate::read::{ReadOptions, ReadReport, read_source};

/// Traces one answer may hold before its slice is cut in two (`query.num_traces`).
pub const SEARCH_DEPTH: usize = 1_000;
/// The largest answer read; a larger one cuts its slice in two.
pub const MAX_ANSWER_BYTES: u64 = 128 << 20;
/// Slices asked at once.
pub const CONCURRENCY: usize = 4;
/// The first slices' length.
const FIRST_SLICE: Duration = Duration::from_secs(60);
/// Slices are not cut shorter than this; an answer still as deep is kept and said.
const SHORTEST_SLICE: Duration = Duration::from_millis(1);

/// What to ask Jaeger for.
#[derive(Clone, Debug)]
pub struct JaegerQuery {
    /// The query service's base URL (`http://jaeger:16686`).
    pub url: String,
    /// The service whose traces to read.
    pub service: String,
    /// Only traces with a span of this operation.
    pub operation: Option<String>,
    /// The window's start.
    pub since: SystemTime,
    /// The window's end.
    pub until: SystemTime,
    /// At most this many traces.
    pub limit: Option<usize>,
    /// Headers sent with every request (`Authorization: Bearer …`); never shown.
    pub headers: Vec<(String, String)>,
    /// How long one request may take.
    pub timeout: Duration,
    /// Traces one answer may hold before its slice is cut ([`SEARCH_DEPTH`]; as deep as the
    /// store is set to search, when it searches less).
    pub search_depth: usize,
}

/// Why Jaeger could not be read.
#[derive(Debug, thiserror::Error)]
pub enum JaegerError {
    /// The URL is not an http(s) URL.
    #[error("--jaeger {0:?} is not a URL like http://jaeger:16686")]
    BadUrl(String),
    /// Nothing answered, or not in time.
    #[error("cannot reach Jaeger's query service at {url}: {reason}")]
    Unreachable {
        /// The URL.
        url: String,
        /// What happened, and what to check.
        reason: String,
    },
    /// It answered, but not as Jaeger's api/v3 does.
    #[error("{url} answered HTTP {status}: {hint}")]
    Status {
        /// The URL asked.
        url: String,
        /// The status.
        status: u16,
        /// What to do.
        hint: String,
    },
    /// The answer was not what api/v3 sends.
    #[error("{url}: not an api/v3 answer ({reason})")]
    Answer {
        /// The URL asked.
        url: String,
        /// What was wrong.
        reason: String,
    },
    /// The service is not one Jaeger knows.
    #[error("Jaeger at {url} knows no service {service:?}; it knows: {known}")]
    UnknownService {
        /// The URL.
        url: String,
        /// The service asked for.
        service: String,
        /// The services it knows.
        known: String,
    },
}

/// What was read.
#[derive(Debug, Default)]
pub struct JaegerReport {
    /// Distinct traces read.
    pub traces: usize,
    /// Spans read.
    pub spans: u64,
    /// Slices asked (after cuts).
    pub slices: usize,
    /// Traces that more than one slice returned, read once.
    pub duplicates: usize,
    /// Slices still as deep as the store searches at the shortest length: traces may be missing
    /// there (their start times).
    pub cut: Vec<SystemTime>,
    /// Whether `--limit` ended the reading.
    pub limited: bool,
    /// What the reader said of the answers.
    pub reads: Vec<ReadReport>,
}

#[derive(serde::Deserialize)]
struct Services {
    #[serde(default)]
    services: Vec<String>,
}

#[derive(serde::Deserialize)]
struct Answer<'a> {
    #[serde(borrow)]
    result: &'a serde_json::value::RawValue,
}

/// One slice's answer: its bytes, or that it must be cut.
enum Slice {
    Answer(Vec<u8>),
    Empty,
    TooLarge,
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into()
}

fn get(
    agent: &ureq::Agent,
    query: &JaegerQuery,
    url: &str,
    limit: u64,
) -> Result<(u16, Vec<u8>), JaegerError> {
    let mut request = agent.get(url);
    for (name, value) in &query.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let unreachable = |reason: String| JaegerError::Unreachable {
        url: query.url.clone(),
        reason,
    };
    let mut response = request.call().map_err(|e| match e {
        ureq::Error::Timeout(_) => unreachable(format!(
            "no answer within {} — a slow store, or the wrong host? (--jaeger-timeout)",
            humantime_secs(query.timeout)
        )),
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => unreachable(
            "connection refused — is the query service running, and is this its HTTP port (16686)?".into(),
        ),
        ureq::Error::HostNotFound => unreachable("no such host".into()),
        other => unreachable(other.to_string()),
    })?;
    let status = response.status().as_u16();
    let body = response.body_mut().with_config().limit(limit).read_to_vec();
    match body {
        Ok(body) => Ok((status, body)),
        Err(ureq::Error::BodyExceedsLimit(_)) => Err(JaegerError::Answer {
            url: url.to_owned(),
            reason: "larger than the answer bound".into(),
        }),
        Err(e) => Err(unreachable(format!("the answer broke off: {e}"))),
    }
}

fn humantime_secs(d: Duration) -> String {
    format!("{} s", d.as_secs())
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_nanos(t).to_string()
}

/// Percent-encodes a query value.
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The services Jaeger knows.
pub fn services(query: &JaegerQuery) -> Result<Vec<String>, JaegerError> {
    let base = base_url(&query.url)?;
    let url = format!("{base}/api/v3/services");
    let (status, body) = get(&agent(query.timeout), query, &url, 16 << 20)?;
    if status != 200 {
        return Err(JaegerError::Status {
            url,
            status,
            hint: match status {
                401 | 403 => "the query service is protected: pass --header 'Authorization: Bearer …'".into(),
                404 => "is this Jaeger's query service (its HTTP port, 16686; api/v3 came with Jaeger 1.35)?"
                    .into(),
                _ => "Jaeger's query service could not answer".into(),
            },
        });
    }
    let services: Services = serde_json::from_slice(&body).map_err(|e| JaegerError::Answer {
        url,
        reason: e.to_string(),
    })?;
    Ok(services.services)
}

fn base_url(url: &str) -> Result<&str, JaegerError> {
    let trimmed = url.trim_end_matches('/');
    let rest = trimmed
        .strip_prefix("http://")
        .or_else(|| trimmed.strip_prefix("https://"))
        .ok_or_else(|| JaegerError::BadUrl(url.to_owned()))?;
    if rest.is_empty() || rest.contains(char::is_whitespace) {
        return Err(JaegerError::BadUrl(url.to_owned()));
    }
    Ok(trimmed)
}

fn ask(
    agent: &ureq::Agent,
    query: &JaegerQuery,
    start: SystemTime,
    end: SystemTime,
) -> Result<Slice, JaegerError> {
    let base = base_url(&query.url)?;
    let mut url = format!(
        "{base}/api/v3/traces?query.service_name={}&query.start_time_min={}&query.start_time_max={}&query.num_traces={}",
        encode(&query.service),
        encode(&rfc3339(start)),
        encode(&rfc3339(end)),
        query.search_depth,
    );
    if let Some(operation) = &query.operation {
        url.push_str(&format!("&query.operation_name={}", encode(operation)));
    }
    let (status, body) = match get(agent, query, &url, MAX_ANSWER_BYTES) {
        Ok(answer) => answer,
        Err(JaegerError::Answer { .. }) => return Ok(Slice::TooLarge),
        Err(e) => return Err(e),
    };
    match status {
        200 => Ok(Slice::Answer(body)),
        // An empty search (the service was checked to exist).
        404 => Ok(Slice::Empty),
        _ => Err(JaegerError::Status {
            url: query.url.clone(),
            status,
            hint: String::from_utf8_lossy(&body[..body.len().min(300)])
                .trim()
                .to_owned(),
        }),
    }
}

/// Reads every trace of `query`'s window, handing each span to `sink` once; `progress` hears
/// (slices done, slices known, traces) after each round.
pub fn read(
    query: &JaegerQuery,
    options: &ReadOptions,
    sink: &mut dyn FnMut(TraceId, Span),
    progress: &mut dyn FnMut(usize, usize, usize),
) -> Result<JaegerReport, JaegerError> {
    let known = services(query)?;
    if !known.iter().any(|s| s == &query.service) {
        let mut known = known;
        known.sort();
        return Err(JaegerError::UnknownService {
            url: query.url.clone(),
            service: query.service.clone(),
            known: if known.is_empty() {
                "none yet (has anything been sent to it?)".into()
            } else {
                known.join(", ")
            },
        });
    }
    let agent = agent(query.timeout);
    let mut report = JaegerReport::default();
    let mut pending: Vec<(SystemTime, SystemTime)> = Vec::new();
    let mut start = query.since;
    while start < query.until {
        let end = (start + FIRST_SLICE).min(query.until);
        pending.push((start, end));
        start = end;
    }
    let total = pending.len();
    let mut done = 0;
    let mut seen: HashSet<TraceId> = HashSet::new();
    'rounds: while !pending.is_empty() {
        let round: Vec<(SystemTime, SystemTime)> = pending.drain(..pending.len().min(CONCURRENCY)).collect();
        let answers: Vec<Result<Slice, JaegerError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = round
                .iter()
                .map(|&(start, end)| {
                    let agent = &agent;
                    scope.spawn(move || ask(agent, query, start, end))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(JaegerError::Answer {
                            url: query.url.clone(),
                            reason: "a request thread failed".into(),
                        })
                    })
                })
                .collect()
        });
        for (&(start, end), answer) in round.iter().zip(answers) {
            let bytes = match answer? {
                Slice::Empty => {
                    done += 1;
                    report.slices += 1;
                    continue;
                }
                Slice::TooLarge => {
                    if let Some(halves) = halve(start, end) {
                        pending.extend(halves);
                        continue;
                    }
                    report.cut.push(start);
                    done += 1;
                    continue;
                }
                Slice::Answer(bytes) => bytes,
            };
            let parsed: Answer<'_> = serde_json::from_slice(&bytes).map_err(|e| JaegerError::Answer {
                url: query.url.clone(),
                reason: e.to_string(),
            })?;
            let result = parsed.result.get().as_bytes();
            // As deep as the store searches: traces may be missing; ask the halves instead.
            let mut in_answer: HashSet<TraceId> = HashSet::new();
            let _ = read_source("", result, options, &mut |trace_id, _| {
                in_answer.insert(trace_id);
            });
            if in_answer.len() >= query.search_depth
                && let Some(halves) = halve(start, end)
            {
                pending.extend(halves);
                continue;
            }
            let mut fresh: HashSet<TraceId> = HashSet::new();
            let mut spans = 0u64;
            let mut limited = false;
            let name = format!("{} {}", query.url, rfc3339(start));
            let read = read_source(&name, result, options, &mut |trace_id, span| {
                if seen.contains(&trace_id) {
                    return;
                }
                if !fresh.contains(&trace_id) {
                    if query.limit.is_some_and(|limit| seen.len() + fresh.len() >= limit) {
                        limited = true;
                        return;
                    }
                    fresh.insert(trace_id);
                }
                spans += 1;
                sink(trace_id, span);
            });
            if in_answer.len() >= query.search_depth {
                report.cut.push(start);
            }
            report.duplicates += in_answer.len() - fresh.len();
            report.spans += spans;
            report.slices += 1;
            seen.extend(fresh);
            report.reads.push(read);
            done += 1;
            if limited {
                report.limited = true;
                break 'rounds;
            }
        }
        progress(done, total.max(done + pending.len()), seen.len());
    }
    report.traces = seen.len();
    Ok(report)
}

/// The two halves of a slice, when it is long enough to cut.
fn halve(start: SystemTime, end: SystemTime) -> Option<[(SystemTime, SystemTime); 2]> {
    let length = end.duration_since(start).ok()?;
    (length > SHORTEST_SLICE).then(|| {
        let middle = start + length / 2;
        [(start, middle), (middle, end)]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_as_jaeger_parses_them() {
        let t = SystemTime::UNIX_EPOCH + Duration::new(1_764_979_200, 5);
        assert_eq!(rfc3339(t), "2025-12-06T00:00:00.000000005Z");
        assert_eq!(humantime_secs(Duration::from_secs(30)), "30 s");
        assert_eq!(encode("GET /orders/{id}"), "GET%20%2Forders%2F%7Bid%7D");
    }

    #[test]
    fn a_url_that_is_not_http_is_refused() {
        assert!(base_url("jaeger:16686").is_err());
        assert_eq!(base_url("http://jaeger:16686/").ok(), Some("http://jaeger:16686"));
    }
}
