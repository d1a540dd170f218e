//! Zipkin v2 JSON: an array of spans, as posted to `/api/v2/spans` or returned by
//! `/api/v2/trace/{id}`.

use std::collections::BTreeMap;
use std::sync::Arc;

use chokepoint_evidence::{AttrValue, Span, TraceId, attr_key_owned};
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
        for span in spans {
            let (trace_id, span) = span.into_evidence()?;
            sink(trace_id, span);
        }
        Ok(count)
    }
}

impl ZipkinSpan {
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
        };
        ids::mark(&mut span, &derived);
        Ok((trace_id, span))
    }
}
