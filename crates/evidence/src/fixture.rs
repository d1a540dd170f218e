//! A compact, hand-writable form of evidence for detector fixtures and tests: traces as span
//! templates, and a load ramp and a PostgreSQL snapshot as they are serialized.
//!
//! ```json
//! {"traces": [{"repeat": 3, "spans": [
//!   {"id": "root", "kind": "server", "name": "GET /orders", "end_ms": 120,
//!    "attrs": {"http.route": "/orders", "http.request.method": "GET"}},
//!   {"id": "q", "parent": "root", "kind": "client", "start_ms": 5, "end_ms": 15,
//!    "times": 8, "every_ms": 12, "attrs": {"db.system": "postgresql",
//!    "db.statement": "SELECT * FROM items WHERE order_id = ?"}}
//! ]}]}
//! ```
//!
//! `times` clones a span, each clone `every_ms` later (0 for concurrent clones); `repeat`
//! clones a whole trace with new ids, one second apart. Beside `traces`, a fixture may hold a
//! `load` ramp ([`LoadRun`]), a `database` snapshot ([`PgSnapshot`]) and a `profile` written as
//! collapsed stacks:
//!
//! ```json
//! {"profile": {"rate_hz": 100, "duration_s": 10, "stacks": [
//!   {"thread": "MainThread", "stack": "run (app.py:3);handler (app.py:12)", "count": 400}],
//!  "sources": {"app.py:12": "return sorted(rows, key=lambda r: r.score)"}}}
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::{
    AttrValue, Frame, LoadRun, PgSnapshot, Profile, ProfileBuilder, Span, SpanId, SpanKind, Trace, TraceId,
};

/// A fixture file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    /// What the fixture shows, for the reader.
    #[serde(default)]
    pub description: String,
    /// Trace templates, when the fixture holds traces.
    #[serde(default)]
    pub traces: Option<Vec<FixtureTrace>>,
    /// A load ramp.
    #[serde(default)]
    pub load: Option<LoadRun>,
    /// A PostgreSQL snapshot.
    #[serde(default)]
    pub database: Option<PgSnapshot>,
    /// A profile, as collapsed stacks.
    #[serde(default)]
    pub profile: Option<FixtureProfile>,
    /// A scan of the source.
    #[serde(default)]
    pub source: Option<crate::SourceScan>,
}

/// A profile as collapsed stacks.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixtureProfile {
    /// Samples per second (default 100).
    #[serde(default = "hundred")]
    pub rate_hz: f64,
    /// Seconds it covers (default: the busiest thread's samples ÷ the rate).
    #[serde(default)]
    pub duration_s: f64,
    /// When it began, in seconds since the Unix epoch (default 0: unknown), to line it up with
    /// a load ramp's steps.
    #[serde(default)]
    pub started_unix_s: f64,
    /// The stacks.
    pub stacks: Vec<FixtureStack>,
    /// Source lines by `file:line`.
    #[serde(default)]
    pub sources: BTreeMap<String, String>,
}

/// A stack: `frame;frame;…`, root first, each `function (file:line)`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixtureStack {
    /// The thread's name (default `MainThread`).
    #[serde(default)]
    pub thread: Option<String>,
    /// The frames, root first, separated by `;`.
    pub stack: String,
    /// Its samples.
    pub count: u64,
}

fn hundred() -> f64 {
    100.0
}

impl FixtureProfile {
    /// The profile these stacks describe.
    pub fn profile(&self) -> Profile {
        let mut builder = ProfileBuilder::new("fixture", true, self.rate_hz);
        for stack in &self.stacks {
            let thread = builder.thread(stack.thread.as_deref().unwrap_or("MainThread"));
            let frames = stack
                .stack
                .split(';')
                .filter(|f| !f.trim().is_empty())
                .map(|text| {
                    let mut frame = Frame::parse(text);
                    frame.source = self
                        .sources
                        .get(&format!("{}:{}", frame.file, frame.line))
                        .cloned();
                    builder.frame(frame)
                })
                .collect();
            builder.add(thread, frames, stack.count);
        }
        builder.finish(self.duration_s, self.started_unix_s)
    }
}

/// A trace template.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixtureTrace {
    /// How many copies of this trace to make.
    #[serde(default = "one")]
    pub repeat: u32,
    /// The spans.
    pub spans: Vec<FixtureSpan>,
}

/// A span template.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixtureSpan {
    /// A name for this span, unique in its trace; children name it as `parent`.
    pub id: String,
    /// The parent's `id`.
    #[serde(default)]
    pub parent: Option<String>,
    /// `server`, `client`, `internal`, `producer` or `consumer`.
    #[serde(default)]
    pub kind: SpanKind,
    /// The span name; defaults to `id`.
    #[serde(default)]
    pub name: Option<String>,
    /// `service.name`; defaults to `shop`.
    #[serde(default)]
    pub service: Option<String>,
    /// Start, ms after the trace's start.
    #[serde(default)]
    pub start_ms: f64,
    /// End, ms after the trace's start.
    pub end_ms: f64,
    /// Copies of this span.
    #[serde(default = "one")]
    pub times: u32,
    /// Offset between copies, in ms.
    #[serde(default)]
    pub every_ms: f64,
    /// Attributes.
    #[serde(default)]
    pub attrs: BTreeMap<String, AttrValue>,
    /// The instrumentation scope (`opentelemetry.instrumentation.django`).
    #[serde(default)]
    pub scope: Option<String>,
}

fn one() -> u32 {
    1
}

/// Why a fixture could not be expanded.
#[derive(Debug)]
pub struct FixtureError(pub String);

impl std::fmt::Display for FixtureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Epoch of fixture traces: 2024-01-01T00:00:00Z in ns.
const BASE_NS: u64 = 1_704_067_200_000_000_000;

impl Fixture {
    /// Expands the templates into traces with deterministic ids (none without templates).
    pub fn traces(&self) -> Result<Vec<Trace>, FixtureError> {
        let mut traces = Vec::new();
        for template in self.traces.iter().flatten() {
            for _ in 0..template.repeat {
                let n = traces.len() as u64;
                traces.push(template.expand(n + 1, BASE_NS + n * 1_000_000_000)?);
            }
        }
        Ok(traces)
    }
}

impl FixtureTrace {
    fn expand(&self, number: u64, base_ns: u64) -> Result<Trace, FixtureError> {
        let ids: BTreeMap<&str, u64> = self
            .spans
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.as_str(), (i as u64 + 1) << 16))
            .collect();
        let mut spans = Vec::new();
        for template in &self.spans {
            let parent = match &template.parent {
                Some(p) => Some(SpanId(*ids.get(p.as_str()).ok_or_else(|| {
                    FixtureError(format!("span {:?} names an unknown parent {p:?}", template.id))
                })?)),
                None => None,
            };
            for copy in 0..template.times {
                let offset_ms = template.every_ms * f64::from(copy);
                let to_ns = |ms: f64| base_ns + ((ms + offset_ms) * 1e6) as u64;
                spans.push(Span {
                    span_id: SpanId(ids[template.id.as_str()] + u64::from(copy)),
                    parent_span_id: parent,
                    name: template.name.clone().unwrap_or_else(|| template.id.clone()),
                    kind: template.kind,
                    service: template.service.as_deref().unwrap_or("shop").into(),
                    start_unix_nano: to_ns(template.start_ms),
                    end_unix_nano: to_ns(template.end_ms),
                    attributes: template
                        .attrs
                        .iter()
                        .map(|(k, v)| (crate::attr_key(k), v.clone()))
                        .collect(),
                    status_error: false,
                    scope: template.scope.as_deref().map(Into::into),
                });
            }
        }
        Ok(Trace {
            trace_id: TraceId(u128::from(number)),
            spans,
            continued: false,
        })
    }
}
