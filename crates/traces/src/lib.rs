//! Trace collectors for chokepoint: files in the formats people have, and a live receiver.
//!
//! Readers turn OTLP/JSON (documents or JSON Lines), OTLP/protobuf (bare or length-prefixed, as
//! the OpenTelemetry Collector's file exporter writes), Jaeger JSON and Zipkin v2 JSON — any of
//! them gzip-compressed — into evidence spans. The [`Assembler`] groups spans into whole traces
//! with bounded memory. The [`receiver`] takes OTLP over HTTP and gRPC.
//!
//! ```
//! use chokepoint_traces::{read_source, Assembler, Limits, ReadOptions};
//!
//! let json = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c",
//!   "spanId":"eee19b7ec3c1b174","name":"GET /","kind":2,"startTimeUnixNano":"1","endTimeUnixNano":"9"}]}]}]}"#;
//! let mut assembler = Assembler::new(Limits::default());
//! let mut traces = Vec::new();
//! let report = read_source("example.json", json.as_bytes(), &ReadOptions::default(), &mut |id, span| {
//!     assembler.push(id, span, &mut |trace| traces.push(trace))
//! });
//! assembler.finish(&mut |trace| traces.push(trace));
//! assert_eq!((report.spans, traces.len()), (1, 1));
//! ```

mod assemble;
mod ids;
mod jaeger;
pub mod jaeger_query;
mod otlp_json;
mod otlp_proto;
mod read;
pub mod receiver;
mod zipkin;

pub use assemble::{Assembler, AssemblyStats, Limits, SETTLE_SPANS, SETTLE_TICKS};
pub use otlp_proto::{encode_request, write_length_prefixed};
pub use read::{
    DEFAULT_MAX_RECORD_BYTES, Format, Problem, ReadOptions, ReadReport, expand_paths, read_path, read_source,
};

/// Where readers hand each span, with its trace id.
pub type SpanSink<'a> = dyn FnMut(chokepoint_evidence::TraceId, chokepoint_evidence::Span) + 'a;
