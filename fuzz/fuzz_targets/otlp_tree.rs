//! Structure-aware: span trees built by `arbitrary` — services, parents (missing, self, cycles),
//! kinds, clocks that run backwards, the attributes the readers and detectors look for with
//! values of every type — encoded as an OTLP/protobuf export and taken the whole way: read,
//! assembled, analysed by every trace detector, rendered as text, Markdown and JSON. Never a
//! panic; every span read is analysed; the JSON reads back as the same report.
#![no_main]

#[path = "report.rs"]
mod report;

use arbitrary::Arbitrary;
use chokepoint_detect::TraceAnalysis;
use chokepoint_evidence::Evidence;
use chokepoint_traces::{Assembler, Limits, ReadOptions, read_source};
use libfuzzer_sys::fuzz_target;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;

/// Attribute keys the readers and detectors give a meaning to.
const KEYS: &[&str] = &[
    "db.statement",
    "db.query.text",
    "db.system",
    "db.system.name",
    "db.operation.name",
    "db.namespace",
    "db.response.returned_rows",
    "http.route",
    "http.method",
    "http.request.method",
    "http.url",
    "url.full",
    "url.path",
    "http.target",
    "http.status_code",
    "http.response.status_code",
    "http.response.body.size",
    "http.response_content_length",
    "server.address",
    "server.port",
    "net.peer.name",
    "net.peer.port",
    "network.peer.address",
    "rpc.system",
    "rpc.service",
    "rpc.method",
    "messaging.system",
    "code.function",
    "thread.id",
];

/// Values that make the detectors work: statements that repeat, routes, hosts.
const WORDS: &[&str] = &[
    "SELECT * FROM items WHERE order_id = 42",
    "SELECT * FROM items WHERE order_id = 43",
    "SELECT id, total FROM orders WHERE customer_id = $1 ORDER BY created_at DESC LIMIT 20",
    "UPDATE stock SET qty = qty - 1 WHERE sku = 'A-1'",
    "INSERT INTO audit (at, what) VALUES (now(), 'x')",
    "BEGIN",
    "COMMIT",
    "postgresql",
    "redis",
    "/orders/{id}",
    "/orders",
    "GET",
    "POST",
    "http://inventory:8080/stock/1",
    "inventory",
    "10.0.0.7",
    "",
    "é∂\u{0}\u{202e}",
];

#[derive(Arbitrary, Debug)]
struct Export {
    services: Vec<Service>,
}

#[derive(Arbitrary, Debug)]
struct Service {
    name: Text,
    spans: Vec<SpanIn>,
}

#[derive(Arbitrary, Debug)]
struct SpanIn {
    /// Which trace: a few, so spans share traces; 0 is the invalid all-zero id.
    trace: u8,
    id: u8,
    parent: Option<u8>,
    kind: i32,
    name: Text,
    /// Start and length in microseconds from a fixed epoch; the end may precede the start.
    start_us: u32,
    duration_us: i32,
    status: Option<i32>,
    attributes: Vec<Attribute>,
}

#[derive(Arbitrary, Debug)]
struct Attribute {
    key: Key,
    value: Value,
}

#[derive(Arbitrary, Debug)]
enum Key {
    Known(u8),
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum Text {
    Known(u8),
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum Value {
    Text(Text),
    Int(i64),
    Double(f64),
    Bool(bool),
    Bytes(Vec<u8>),
    Array(Vec<Text>),
    Empty,
}

impl Text {
    fn value(&self) -> String {
        match self {
            Text::Known(i) => WORDS[*i as usize % WORDS.len()].to_owned(),
            Text::Other(s) => s.clone(),
        }
    }
}

impl Value {
    fn proto(&self) -> Option<AnyValue> {
        let value = match self {
            Value::Text(t) => any_value::Value::StringValue(t.value()),
            Value::Int(i) => any_value::Value::IntValue(*i),
            Value::Double(d) => any_value::Value::DoubleValue(*d),
            Value::Bool(b) => any_value::Value::BoolValue(*b),
            Value::Bytes(b) => any_value::Value::BytesValue(b.clone()),
            Value::Array(items) => any_value::Value::ArrayValue(ArrayValue {
                values: items
                    .iter()
                    .map(|t| AnyValue {
                        value: Some(any_value::Value::StringValue(t.value())),
                    })
                    .collect(),
            }),
            Value::Empty => return None,
        };
        Some(AnyValue { value: Some(value) })
    }
}

fn trace_id(trace: u8) -> Vec<u8> {
    if trace == 0 {
        vec![0; 16]
    } else {
        vec![trace % 8 + 1; 16]
    }
}

fn span(input: &SpanIn) -> Span {
    const EPOCH_NS: u64 = 1_700_000_000_000_000_000;
    let start = EPOCH_NS + u64::from(input.start_us) * 1_000;
    let end = start.saturating_add_signed(i64::from(input.duration_us) * 1_000);
    Span {
        trace_id: trace_id(input.trace),
        span_id: vec![input.id; 8],
        parent_span_id: input.parent.map_or_else(Vec::new, |p| vec![p; 8]),
        name: input.name.value(),
        kind: input.kind,
        start_time_unix_nano: start,
        end_time_unix_nano: end,
        attributes: input
            .attributes
            .iter()
            .map(|a| KeyValue {
                key: match &a.key {
                    Key::Known(i) => KEYS[*i as usize % KEYS.len()].to_owned(),
                    Key::Other(s) => s.clone(),
                },
                value: a.value.proto(),
                ..Default::default()
            })
            .collect(),
        status: input.status.map(|code| Status {
            code,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn request(export: &Export) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: export
            .services
            .iter()
            .map(|service| ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![KeyValue {
                        key: "service.name".into(),
                        value: Some(AnyValue {
                            value: Some(any_value::Value::StringValue(service.name.value())),
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: service.spans.iter().map(span).collect(),
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    }
}

fuzz_target!(|export: Export| {
    let bytes = request(&export).encode_to_vec();
    let options = ReadOptions {
        max_record_bytes: 1 << 20,
    };
    let mut assembler = Assembler::new(Limits {
        max_pending_spans: 64,
    });
    let mut analysis = TraceAnalysis::default();
    let (mut read, mut analysed) = (0u64, 0u64);
    let report = read_source("fuzz.otlp", bytes.as_slice(), &options, &mut |id, span| {
        read += 1;
        assembler.push(id, span, &mut |trace| {
            analysed += trace.spans.len() as u64;
            analysis.add_trace(&trace);
        });
    });
    assembler.finish(&mut |trace| {
        analysed += trace.spans.len() as u64;
        analysis.add_trace(&trace);
    });
    assert_eq!(report.spans, read);
    assert_eq!(read, analysed, "every span read is analysed");
    let evidence = Evidence {
        traces: Some(analysis.finish()),
        ..Evidence::default()
    };
    report::analyse_and_render("traces", evidence);
});
