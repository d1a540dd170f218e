//! OTLP/protobuf: converting `ExportTraceServiceRequest` messages to evidence and back.
//!
//! Files hold either one bare message or a sequence of messages each prefixed with its length
//! as a 4-byte big-endian integer, as the OpenTelemetry Collector's file exporter writes them
//! (`format: proto`). `chokepoint listen --out` writes the latter.

use std::sync::Arc;

use chokepoint_evidence::{AttrValue, Span, SpanId, SpanKind, TraceId, attr_key_owned};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Status, span, status};
use prost::Message as _;

use crate::SpanSink;

/// Decodes one message and hands its spans to `sink`; returns the span count.
pub(crate) fn decode_message(bytes: &[u8], sink: &mut SpanSink<'_>) -> Result<usize, String> {
    let request = ExportTraceServiceRequest::decode(bytes)
        .map_err(|e| format!("not an OTLP ExportTraceServiceRequest: {e}"))?;
    emit_request(request, sink)
}

/// Hands the spans of a decoded request to `sink`; returns the span count.
pub(crate) fn emit_request(
    request: ExportTraceServiceRequest,
    sink: &mut SpanSink<'_>,
) -> Result<usize, String> {
    let mut count = 0;
    for resource_spans in request.resource_spans {
        let service = service_name(resource_spans.resource.as_ref());
        for scope_spans in resource_spans.scope_spans {
            let scope: Option<Arc<str>> = scope_spans
                .scope
                .as_ref()
                .filter(|scope| !scope.name.is_empty())
                .map(|scope| scope.name.as_str().into());
            for span in scope_spans.spans {
                let trace_id = TraceId::from_bytes(&span.trace_id).ok_or_else(|| {
                    format!(
                        "span {:?} has a trace id of {} bytes, not 16",
                        span.name,
                        span.trace_id.len()
                    )
                })?;
                let span_id = SpanId::from_bytes(&span.span_id).ok_or_else(|| {
                    format!(
                        "span {:?} has a span id of {} bytes, not 8",
                        span.name,
                        span.span_id.len()
                    )
                })?;
                let parent_span_id = if span.parent_span_id.is_empty() {
                    None
                } else {
                    Some(SpanId::from_bytes(&span.parent_span_id).ok_or_else(|| {
                        format!(
                            "span {:?} has a parent span id of {} bytes, not 8",
                            span.name,
                            span.parent_span_id.len()
                        )
                    })?)
                };
                let kind = match span::SpanKind::try_from(span.kind) {
                    Ok(span::SpanKind::Server) => SpanKind::Server,
                    Ok(span::SpanKind::Client) => SpanKind::Client,
                    Ok(span::SpanKind::Producer) => SpanKind::Producer,
                    Ok(span::SpanKind::Consumer) => SpanKind::Consumer,
                    _ => SpanKind::Internal,
                };
                let status_error = span
                    .status
                    .as_ref()
                    .is_some_and(|s| s.code == status::StatusCode::Error as i32);
                let attributes = span
                    .attributes
                    .into_iter()
                    .filter_map(|kv| Some((attr_key_owned(kv.key), attr_from_proto(kv.value?)?)))
                    .collect();
                sink(
                    trace_id,
                    Span {
                        span_id,
                        parent_span_id,
                        name: span.name,
                        kind,
                        service: Arc::clone(&service),
                        start_unix_nano: span.start_time_unix_nano,
                        end_unix_nano: span.end_time_unix_nano,
                        attributes,
                        status_error,
                        scope: scope.clone(),
                    },
                );
                count += 1;
            }
        }
    }
    Ok(count)
}

fn service_name(resource: Option<&Resource>) -> Arc<str> {
    resource
        .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.as_str()),
            _ => None,
        })
        .unwrap_or("unknown_service")
        .into()
}

fn attr_from_proto(value: AnyValue) -> Option<AttrValue> {
    Some(match value.value? {
        any_value::Value::StringValue(s) => AttrValue::Str(s),
        any_value::Value::BoolValue(b) => AttrValue::Bool(b),
        any_value::Value::IntValue(i) => AttrValue::Int(i),
        any_value::Value::DoubleValue(d) => AttrValue::Double(d),
        any_value::Value::ArrayValue(array) => {
            AttrValue::joined(array.values.into_iter().filter_map(attr_from_proto))
        }
        _ => return None,
    })
}

fn attr_to_proto(value: &AttrValue) -> AnyValue {
    let value = match value {
        AttrValue::Str(s) => any_value::Value::StringValue(s.clone()),
        AttrValue::Bool(b) => any_value::Value::BoolValue(*b),
        AttrValue::Int(i) => any_value::Value::IntValue(*i),
        AttrValue::Double(d) => any_value::Value::DoubleValue(*d),
    };
    AnyValue { value: Some(value) }
}

/// Encodes spans as one `ExportTraceServiceRequest`, one resource per service: what
/// `chokepoint listen --out` records, and what the benchmark generator writes.
pub fn encode_request<'a>(spans: impl IntoIterator<Item = (TraceId, &'a Span)>) -> ExportTraceServiceRequest {
    let mut resource_spans: Vec<ResourceSpans> = Vec::new();
    for (trace_id, span) in spans {
        let index = match resource_spans
            .iter()
            .position(|r| service_name(r.resource.as_ref()) == span.service)
        {
            Some(index) => index,
            None => {
                resource_spans.push(ResourceSpans {
                    resource: Some(Resource {
                        attributes: vec![KeyValue {
                            key: "service.name".into(),
                            value: Some(attr_to_proto(&AttrValue::Str(span.service.to_string()))),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                    scope_spans: Vec::new(),
                    schema_url: String::new(),
                });
                resource_spans.len() - 1
            }
        };
        let kind = match span.kind {
            SpanKind::Internal => span::SpanKind::Internal,
            SpanKind::Server => span::SpanKind::Server,
            SpanKind::Client => span::SpanKind::Client,
            SpanKind::Producer => span::SpanKind::Producer,
            SpanKind::Consumer => span::SpanKind::Consumer,
        };
        // One scope per instrumentation, so the scope a span was recorded by reads back.
        let scopes = &mut resource_spans[index].scope_spans;
        let name = span.scope.as_deref().unwrap_or("");
        let at = match scopes
            .iter()
            .position(|s| s.scope.as_ref().map_or("", |scope| scope.name.as_str()) == name)
        {
            Some(at) => at,
            None => {
                scopes.push(ScopeSpans {
                    scope: (!name.is_empty()).then(|| InstrumentationScope {
                        name: name.to_owned(),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
                scopes.len() - 1
            }
        };
        scopes[at]
            .spans
            .push(opentelemetry_proto::tonic::trace::v1::Span {
                trace_id: trace_id.to_bytes().to_vec(),
                span_id: span.span_id.to_bytes().to_vec(),
                parent_span_id: span
                    .parent_span_id
                    .map(|p| p.to_bytes().to_vec())
                    .unwrap_or_default(),
                name: span.name.clone(),
                kind: kind as i32,
                start_time_unix_nano: span.start_unix_nano,
                end_time_unix_nano: span.end_unix_nano,
                attributes: span
                    .attributes
                    .iter()
                    .map(|(key, value)| KeyValue {
                        key: key.to_string(),
                        value: Some(attr_to_proto(value)),
                        ..Default::default()
                    })
                    .collect(),
                status: span.status_error.then(|| Status {
                    code: status::StatusCode::Error as i32,
                    ..Default::default()
                }),
                ..Default::default()
            });
    }
    ExportTraceServiceRequest { resource_spans }
}

/// Appends `request` to `out` as one length-prefixed record of the collector's proto file format.
pub fn write_length_prefixed(request: &ExportTraceServiceRequest, out: &mut Vec<u8>) {
    let len = request.encoded_len();
    out.reserve(4 + len);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    request.encode_raw(out);
}
