//! The evidence model of chokepoint: what collectors gather and detectors read.
//!
//! Everything here is plain data with serde — no I/O, no async, no clock — so a detector can
//! be fed from a fixture file and a collector can be swapped without touching a detector.
//!
//! ```
//! use chokepoint_evidence::{AttrValue, Span, SpanKind, SpanId, Trace, TraceId};
//!
//! let root = Span {
//!     span_id: SpanId(1),
//!     parent_span_id: None,
//!     name: "GET /orders".into(),
//!     kind: SpanKind::Server,
//!     service: "shop".into(),
//!     start_unix_nano: 0,
//!     end_unix_nano: 20_000_000,
//!     attributes: vec![("http.route".into(), AttrValue::from("/orders"))],
//!     status_error: false,
//! };
//! let trace = Trace { trace_id: TraceId(7), spans: vec![root] };
//! assert_eq!(trace.spans[0].attr_str("http.route"), Some("/orders"));
//! ```

pub mod fixture;
mod load;
mod pg;
mod span;

pub use load::{Latency, LoadModel, LoadRun, LoadStep, TargetSample};
pub use pg::{
    Activity, DatabaseStats, IndexCheck, LockWait, OpenTransaction, PgSnapshot, StatementPlan, StatementStat,
    TableStat,
};
pub use span::{AttrValue, Span, SpanId, SpanKind, Trace, TraceId};
