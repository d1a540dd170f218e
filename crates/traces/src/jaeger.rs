//! Jaeger JSON, as the Jaeger query API returns it and the Jaeger UI exports it:
//! `{"data": [trace, …]}`, or a bare array of traces.

use std::collections::HashMap;
use std::sync::Arc;

use chokepoint_evidence::{AttrValue, Span, SpanKind, TraceId, attr_key_owned};

use crate::ids;
use serde::Deserialize;

use crate::SpanSink;

/// A Jaeger document: the query API's envelope or a bare list of traces.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum Document {
    /// `{"data": [...]}` from `/api/traces` or the UI's "Download JSON".
    Envelope {
        /// The traces.
        data: Vec<JaegerTrace>,
    },
    /// A bare array of traces.
    Traces(Vec<JaegerTrace>),
    /// One trace object.
    Trace(JaegerTrace),
}

#[derive(Deserialize)]
pub(crate) struct JaegerTrace {
    #[serde(default)]
    spans: Vec<JaegerSpan>,
    #[serde(default)]
    processes: HashMap<String, Process>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Process {
    service_name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JaegerSpan {
    #[serde(rename = "traceID")]
    trace_id: String,
    #[serde(rename = "spanID")]
    span_id: String,
    #[serde(default)]
    operation_name: String,
    #[serde(default)]
    references: Vec<Reference>,
    /// Microseconds since the epoch.
    start_time: u64,
    /// Microseconds.
    duration: u64,
    #[serde(default)]
    tags: Vec<Tag>,
    #[serde(default, rename = "processID")]
    process_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Reference {
    ref_type: String,
    #[serde(rename = "spanID")]
    span_id: String,
}

#[derive(Deserialize)]
struct Tag {
    key: String,
    value: serde_json::Value,
}

impl Document {
    /// Hands every span to `sink`; returns how many there were.
    pub(crate) fn emit(self, sink: &mut SpanSink<'_>) -> Result<usize, String> {
        let traces = match self {
            Document::Envelope { data } | Document::Traces(data) => data,
            Document::Trace(trace) => vec![trace],
        };
        let mut count = 0;
        for trace in traces {
            let services: HashMap<String, Arc<str>> = trace
                .processes
                .into_iter()
                .map(|(id, process)| (id, Arc::from(process.service_name)))
                .collect();
            for span in trace.spans {
                let service = services
                    .get(&span.process_id)
                    .cloned()
                    .unwrap_or_else(|| Arc::from("unknown_service"));
                let (trace_id, span) = span.into_evidence(service)?;
                sink(trace_id, span);
                count += 1;
            }
        }
        Ok(count)
    }
}

impl JaegerSpan {
    fn into_evidence(self, service: Arc<str>) -> Result<(TraceId, Span), String> {
        let (trace_id, derived_trace) = ids::trace_id(&self.trace_id);
        let (span_id, derived_span) = ids::span_id(&self.span_id);
        let parent = self
            .references
            .iter()
            .find(|r| r.ref_type == "CHILD_OF")
            .or_else(|| self.references.first())
            .map(|r| ids::span_id(&r.span_id));
        let derived = [derived_trace, derived_span, parent.and_then(|(_, d)| d)];
        let parent_span_id = parent.map(|(id, _)| id);
        let mut kind = SpanKind::Internal;
        let mut status_error = false;
        let mut attributes = Vec::with_capacity(self.tags.len());
        for tag in self.tags {
            let value = match tag.value {
                serde_json::Value::String(s) => AttrValue::Str(s),
                serde_json::Value::Bool(b) => AttrValue::Bool(b),
                serde_json::Value::Number(n) => match n.as_i64() {
                    Some(i) => AttrValue::Int(i),
                    None => AttrValue::Double(n.as_f64().unwrap_or(f64::NAN)),
                },
                other => AttrValue::Str(other.to_string()),
            };
            match (tag.key.as_str(), &value) {
                ("span.kind", AttrValue::Str(s)) => kind = kind_from_name(s),
                ("error", AttrValue::Bool(true)) => status_error = true,
                ("otel.status_code", AttrValue::Str(s)) if s == "ERROR" => status_error = true,
                _ => attributes.push((attr_key_owned(tag.key), value)),
            }
        }
        let start_unix_nano = self.start_time.saturating_mul(1000);
        let mut span = Span {
            span_id,
            parent_span_id,
            name: self.operation_name,
            kind,
            service,
            start_unix_nano,
            end_unix_nano: start_unix_nano.saturating_add(self.duration.saturating_mul(1000)),
            attributes,
            status_error,
            scope: None,
        };
        ids::mark(&mut span, &derived);
        Ok((trace_id, span))
    }
}

/// Maps the kind names Jaeger and Zipkin use (`server`, `CLIENT`) to a span kind.
pub(crate) fn kind_from_name(name: &str) -> SpanKind {
    match name.to_ascii_lowercase().as_str() {
        "server" => SpanKind::Server,
        "client" => SpanKind::Client,
        "producer" => SpanKind::Producer,
        "consumer" => SpanKind::Consumer,
        _ => SpanKind::Internal,
    }
}
