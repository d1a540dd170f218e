//! Zipkin v2 JSON: an array of spans, as posted to `/api/v2/spans` or returned by
//! `/api/v2/trace/{id}`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use chokepoint_evidence::{AttrValue, Span, SpanId, TraceId, attr_key_owned};
use serde::Deserialize;

use crate::SpanSink;
use crate::ids;
use crate::jaeger::kind_from_name;

/// A Zipkin v2 document: a list of spans, or a list of traces (lists of spans).
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum Document {
    /// `[span, …]`.
    Spans(Vec<ZipkinSpan>),
    /// `[[span, …], …]`, as `/api/v2/traces` returns.
    Traces(Vec<Vec<ZipkinSpan>>),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ZipkinSpan {
    trace_id: String,
    id: String,
    #[serde(default)]
    parent_id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    /// Microseconds since the epoch.
    #[serde(default)]
    timestamp: u64,
    /// Microseconds.
    #[serde(default)]
    duration: u64,
    #[serde(default)]
    local_endpoint: Option<Endpoint>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    /// The server half of a span the client started: both halves carry one id.
    #[serde(default)]
    shared: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Endpoint {
    #[serde(default)]
    service_name: Option<String>,
}

impl Document {
    /// Hands every span to `sink`; returns how many there were.
    pub(crate) fn emit(self, sink: &mut SpanSink<'_>) -> Result<usize, String> {
        let spans: Vec<ZipkinSpan> = match self {
            Document::Spans(spans) => spans,
            Document::Traces(traces) => traces.into_iter().flatten().collect(),
        };
        let count = spans.len();
        let spans = merge_fragments(spans);
        // Shared spans (Zipkin's B3 default: the client and the server of a call report one span
        // id, the server's half marked `shared`) would be one id for two spans. The client half
        // gets an id of its own and the server half becomes its child, so the callee's spans
        // (whose parent is the shared id) stay under the server, and the client under its caller.
        let key = |s: &ZipkinSpan| (s.trace_id.clone(), s.id.clone());
        let shared: HashSet<(String, String)> = spans.iter().filter(|s| s.shared).map(key).collect();
        let split: HashSet<(String, String)> = spans
            .iter()
            .filter(|s| !s.shared && shared.contains(&key(s)))
            .map(key)
            .collect();
        for span in spans {
            let is_split = split.contains(&key(&span));
            let server_half = span.shared;
            let (trace_id, mut span) = span.into_evidence()?;
            if is_split && server_half {
                span.parent_span_id = Some(client_half(span.span_id));
            } else if is_split {
                span.span_id = client_half(span.span_id);
            }
            sink(trace_id, span);
        }
        Ok(count)
    }
}

/// Zipkin takes one span in fragments at times — a tracer that reports its timing and, later, a
/// piece without kind or timing (the same trace, id and service). They are one span, as Zipkin
/// merges them: the first fragment of a kind takes in the others that have no other kind.
fn merge_fragments(spans: Vec<ZipkinSpan>) -> Vec<ZipkinSpan> {
    let mut merged: Vec<ZipkinSpan> = Vec::with_capacity(spans.len());
    let mut by_key: HashMap<(String, String, Option<String>), Vec<usize>> = HashMap::new();
    for span in spans {
        let key = (
            span.trace_id.clone(),
            span.id.clone(),
            span.service().map(str::to_owned),
        );
        let same = by_key.entry(key).or_default();
        let fits =
            |other: &ZipkinSpan| span.kind.is_none() || other.kind.is_none() || span.kind == other.kind;
        match same.iter().copied().find(|&i| fits(&merged[i])) {
            Some(i) => merged[i].absorb(span),
            None => {
                same.push(merged.len());
                merged.push(span);
            }
        }
    }
    merged
}

/// The id the client half of a shared span is read with: derived from the shared one, stable.
fn client_half(shared: SpanId) -> SpanId {
    SpanId((shared.0.rotate_left(32) ^ 0x9e37_79b9_7f4a_7c15).max(1))
}

impl ZipkinSpan {
    fn service(&self) -> Option<&str> {
        self.local_endpoint.as_ref()?.service_name.as_deref()
    }

    /// Takes in another fragment of the same span: what this one lacks, the union of the times.
    fn absorb(&mut self, other: ZipkinSpan) {
        self.parent_id = self.parent_id.take().or(other.parent_id);
        if self.name.as_deref().is_none_or(str::is_empty) {
            self.name = other.name;
        }
        self.kind = self.kind.take().or(other.kind);
        if other.timestamp != 0 {
            let end = self
                .timestamp
                .saturating_add(self.duration)
                .max(other.timestamp.saturating_add(other.duration));
            let start = match self.timestamp {
                0 => other.timestamp,
                mine => mine.min(other.timestamp),
            };
            self.timestamp = start;
            self.duration = end.saturating_sub(start);
        }
        for (key, value) in other.tags {
            self.tags.entry(key).or_insert(value);
        }
        self.shared |= other.shared;
    }

    fn into_evidence(self) -> Result<(TraceId, Span), String> {
        let name = self.name.unwrap_or_default();
        let (trace_id, derived_trace) = ids::trace_id(&self.trace_id);
        let (span_id, derived_span) = ids::span_id(&self.id);
        let parent = match self.parent_id.as_deref() {
            None | Some("") => None,
            Some(p) => Some(ids::span_id(p)),
        };
        let derived = [derived_trace, derived_span, parent.and_then(|(_, d)| d)];
        let parent_span_id = parent.map(|(id, _)| id);
        let status_error = self.tags.contains_key("error");
        let service: Arc<str> = self
            .local_endpoint
            .and_then(|e| e.service_name)
            .unwrap_or_else(|| "unknown_service".into())
            .into();
        let start_unix_nano = self.timestamp.saturating_mul(1000);
        let mut span = Span {
            span_id,
            parent_span_id,
            name,
            kind: self.kind.as_deref().map(kind_from_name).unwrap_or_default(),
            service,
            start_unix_nano,
            end_unix_nano: start_unix_nano.saturating_add(self.duration.saturating_mul(1000)),
            attributes: self
                .tags
                .into_iter()
                .map(|(k, v)| (attr_key_owned(k), AttrValue::Str(v)))
                .collect(),
            status_error,
            scope: None,
        };
        ids::mark(&mut span, &derived);
        Ok((trace_id, span))
    }
}
