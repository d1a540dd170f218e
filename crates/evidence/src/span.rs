//! Spans and traces, reduced to what chokepoint's detectors read, whatever format they came in.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A 128-bit trace id, shown as 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct TraceId(pub u128);

/// A 64-bit span id, shown as 16 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SpanId(pub u64);

macro_rules! hex_id {
    ($ty:ident, $int:ty, $digits:literal) => {
        impl $ty {
            /// Parses the id from hex digits, as OTLP/JSON, Jaeger and Zipkin write it.
            /// Shorter ids (64-bit trace ids from Zipkin) are zero-extended on the left.
            pub fn from_hex(text: &str) -> Option<Self> {
                if text.len() == $digits {
                    // The usual case, read two digits a byte (with SIMD where the CPU has it).
                    let mut bytes = [0u8; $digits / 2];
                    return faster_hex::hex_decode(text.as_bytes(), &mut bytes)
                        .ok()
                        .map(|()| $ty(<$int>::from_be_bytes(bytes)));
                }
                if text.is_empty() || text.len() > $digits {
                    return None;
                }
                <$int>::from_str_radix(text, 16).ok().map($ty)
            }

            /// Reads the id from big-endian bytes, as OTLP/protobuf carries it.
            /// Returns `None` for a length other than the id's own (or zero, for "no id").
            pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
                let array: [u8; $digits / 2] = bytes.try_into().ok()?;
                Some($ty(<$int>::from_be_bytes(array)))
            }

            /// The id as big-endian bytes, as OTLP/protobuf carries it.
            pub fn to_bytes(self) -> [u8; $digits / 2] {
                self.0.to_be_bytes()
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:0width$x}", self.0, width = $digits)
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }

        impl Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl schemars::JsonSchema for $ty {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($ty).into()
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({
                    "type": "string",
                    "pattern": concat!("^[0-9a-f]{", $digits, "}$"),
                })
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                $ty::from_hex(&text).ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "expected up to {} hex digits, found {text:?}",
                        $digits
                    ))
                })
            }
        }
    };
}

hex_id!(TraceId, u128, 32);
hex_id!(SpanId, u64, 16);

/// The role of a span in a call, as OpenTelemetry defines it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SpanKind {
    /// Work inside one process (also used when the producer gave no kind).
    #[default]
    Internal,
    /// The handling of an incoming request: an endpoint.
    Server,
    /// An outgoing call: a database statement, an HTTP request.
    Client,
    /// A message sent to a queue.
    Producer,
    /// A message taken from a queue.
    Consumer,
}

/// An attribute value. Arrays are kept as their JSON text: no detector reads into them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AttrValue {
    /// A string.
    Str(String),
    /// A boolean.
    Bool(bool),
    /// A 64-bit integer.
    Int(i64),
    /// A double.
    Double(f64),
}

impl AttrValue {
    /// The value as a string, if it is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            AttrValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value as a number: integers, doubles, and strings that hold a number (some
    /// producers send sizes as strings).
    pub fn as_f64(&self) -> Option<f64> {
        let value = match self {
            AttrValue::Int(i) => Some(*i as f64),
            AttrValue::Double(d) => Some(*d),
            AttrValue::Str(s) => s.trim().parse().ok(),
            AttrValue::Bool(_) => None,
        };
        // NaN and infinity measure nothing (and have no JSON to be reported in); nor does a
        // number past 2^53, beyond what a float counts exactly — no span measures so much, and
        // sums of such numbers would overflow.
        value.filter(|v: &f64| v.abs() <= MAX_MEASURE)
    }
}

/// The largest number an attribute may hold and still measure something: 2^53.
const MAX_MEASURE: f64 = 9_007_199_254_740_992.0;

impl AttrValue {
    /// An array attribute as one string of its items joined by commas: header attributes
    /// (`http.response.header.content-encoding`) are string arrays, read here as `"gzip"`.
    pub fn joined(items: impl IntoIterator<Item = AttrValue>) -> AttrValue {
        let texts: Vec<String> = items.into_iter().map(|item| item.to_string()).collect();
        AttrValue::Str(texts.join(","))
    }
}

impl fmt::Display for AttrValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttrValue::Str(s) => f.write_str(s),
            AttrValue::Bool(b) => write!(f, "{b}"),
            AttrValue::Int(i) => write!(f, "{i}"),
            AttrValue::Double(d) => write!(f, "{d}"),
        }
    }
}

impl From<&str> for AttrValue {
    fn from(value: &str) -> Self {
        AttrValue::Str(value.to_owned())
    }
}

impl From<String> for AttrValue {
    fn from(value: String) -> Self {
        AttrValue::Str(value)
    }
}

impl From<i64> for AttrValue {
    fn from(value: i64) -> Self {
        AttrValue::Int(value)
    }
}

/// An attribute key. The keys of the semantic conventions (and the other keys instrumentations
/// set on every span) are static strings, so reading a span allocates nothing for them; any
/// other key is owned.
pub type AttrKey = Cow<'static, str>;

macro_rules! known_keys {
    ($($key:literal,)*) => {
        /// Keys kept as static strings, sorted.
        #[cfg(test)]
        const KNOWN_KEYS: &[&str] = &[$($key),*];

        /// The static string equal to `text`, when it is a known key. (A `match` compares
        /// lengths first: cheaper than a binary search of the table.)
        fn known_key(text: &str) -> Option<&'static str> {
            match text {
                $($key => Some($key),)*
                _ => None,
            }
        }
    };
}

known_keys! {
    "client.address",
    "code.file.path",
    "code.filepath",
    "code.function",
    "code.function.name",
    "code.line.number",
    "code.lineno",
    "code.namespace",
    "db.connection_string",
    "db.name",
    "db.namespace",
    "db.operation",
    "db.operation.name",
    "db.query.text",
    "db.response.returned_rows",
    "db.row_count",
    "db.rows_returned",
    "db.sql.rows",
    "db.sql.table",
    "db.statement",
    "db.system",
    "db.system.name",
    "db.user",
    "error.type",
    "http.client_ip",
    "http.flavor",
    "http.host",
    "http.method",
    "http.request.method",
    "http.response.body.size",
    "http.response.header.content-encoding",
    "http.response.header.content-length",
    "http.response.status_code",
    "http.response_content_length",
    "http.route",
    "http.scheme",
    "http.server_name",
    "http.status_code",
    "http.target",
    "http.url",
    "http.user_agent",
    "net.host.name",
    "net.host.port",
    "net.peer.ip",
    "net.peer.name",
    "net.peer.port",
    "net.sock.peer.addr",
    "net.sock.peer.port",
    "net.transport",
    "network.peer.address",
    "network.peer.port",
    "network.protocol.version",
    "otel.library.name",
    "otel.scope.name",
    "otel.status_code",
    "rpc.method",
    "rpc.service",
    "rpc.system",
    "server.address",
    "server.port",
    "service.name",
    "span.kind",
    "thread.id",
    "thread.name",
    "url.full",
    "url.path",
    "url.query",
    "url.scheme",
    "user_agent.original",
}

/// `text` as an attribute key: borrowed from the static table when it is a known key.
pub fn attr_key(text: &str) -> AttrKey {
    match known_key(text) {
        Some(key) => Cow::Borrowed(key),
        None => Cow::Owned(text.to_owned()),
    }
}

/// `text`, owned, as an attribute key: borrowed from the static table when it is a known key.
pub fn attr_key_owned(text: String) -> AttrKey {
    match known_key(&text) {
        Some(key) => Cow::Borrowed(key),
        None => Cow::Owned(text),
    }
}

/// One span: a timed operation within a trace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Span {
    /// This span's id.
    pub span_id: SpanId,
    /// The parent span's id; `None` for a root span.
    pub parent_span_id: Option<SpanId>,
    /// The span name (`GET /orders`, `SELECT shop`, `connect`).
    pub name: String,
    /// The span kind.
    pub kind: SpanKind,
    /// The `service.name` of the process that recorded it.
    pub service: Arc<str>,
    /// Start time, nanoseconds since the Unix epoch.
    pub start_unix_nano: u64,
    /// End time, nanoseconds since the Unix epoch.
    pub end_unix_nano: u64,
    /// Span attributes in the order the producer sent them.
    pub attributes: Vec<(AttrKey, AttrValue)>,
    /// Whether the span's status is an error.
    #[serde(default)]
    pub status_error: bool,
    /// The instrumentation scope that recorded it (`opentelemetry.instrumentation.django`): which
    /// framework, ORM or driver the service speaks. Shared by the spans of one scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Arc<str>>,
}

impl Span {
    /// The instrumentation scope that recorded the span: OTLP's scope, or the tag Jaeger and
    /// Zipkin exports carry it in (`otel.scope.name`, formerly `otel.library.name`).
    pub fn instrumentation(&self) -> Option<&str> {
        self.scope
            .as_deref()
            .or_else(|| self.attr_str_any(&["otel.scope.name", "otel.library.name"]))
    }

    /// The value of the first attribute named `key`.
    pub fn attr(&self, key: &str) -> Option<&AttrValue> {
        self.attributes.iter().find_map(|(k, v)| (k == key).then_some(v))
    }

    /// The first of `keys` that is present as a string. Lets a detector read both the current
    /// and the older semantic conventions: `span.attr_str_any(&["db.query.text", "db.statement"])`.
    pub fn attr_str_any(&self, keys: &[&str]) -> Option<&str> {
        keys.iter().find_map(|key| self.attr_str(key))
    }

    /// The value of `key` if it is a string.
    pub fn attr_str(&self, key: &str) -> Option<&str> {
        self.attr(key).and_then(AttrValue::as_str)
    }

    /// The first of `keys` that is present as a number.
    pub fn attr_f64_any(&self, keys: &[&str]) -> Option<f64> {
        keys.iter()
            .find_map(|key| self.attr(key).and_then(AttrValue::as_f64))
    }

    /// Duration in nanoseconds; zero when the producer wrote an end before the start.
    pub fn duration_nano(&self) -> u64 {
        self.end_unix_nano.saturating_sub(self.start_unix_nano)
    }

    /// Duration in milliseconds.
    pub fn duration_ms(&self) -> f64 {
        self.duration_nano() as f64 / 1e6
    }
}

/// All the spans of one trace that chokepoint received, in arrival order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    /// The trace id shared by all its spans.
    pub trace_id: TraceId,
    /// The spans, in the order they arrived.
    pub spans: Vec<Span>,
    /// A later part of a trace handed on in parts to bound memory (more of its spans arrived
    /// after it was analysed): its spans' parents went with an earlier part.
    #[serde(default)]
    pub continued: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_hex_and_bytes() {
        let id = TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").expect("valid hex");
        assert_eq!(id.to_string(), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(TraceId::from_bytes(&id.to_bytes()), Some(id));
        assert_eq!(
            SpanId::from_hex("b7ad6b7169203331").map(|s| s.0),
            Some(0xb7ad6b7169203331)
        );
    }

    /// Found by the `otlp_tree` fuzz target: body sizes of infinity, then of 1.7e308 (whose sum
    /// overflows), became large-payload findings whose sizes the JSON report wrote as `null`.
    #[test]
    fn a_number_past_any_measure_is_no_number() {
        assert_eq!(AttrValue::Double(f64::INFINITY).as_f64(), None);
        assert_eq!(AttrValue::Double(f64::NAN).as_f64(), None);
        assert_eq!(AttrValue::Double(1.7e308).as_f64(), None);
        assert_eq!(AttrValue::Str("inf".into()).as_f64(), None);
        assert_eq!(AttrValue::Str("1e400".into()).as_f64(), None);
        assert_eq!(AttrValue::Int(i64::MAX).as_f64(), None);
        assert_eq!(AttrValue::Str(" 512000 ".into()).as_f64(), Some(512_000.0));
        assert_eq!(AttrValue::Int(-3).as_f64(), Some(-3.0));
        assert_eq!(AttrValue::Int(1 << 53).as_f64(), Some(MAX_MEASURE));
    }

    #[test]
    fn short_zipkin_trace_ids_are_zero_extended() {
        let id = TraceId::from_hex("463ac35c9f6413ad").expect("valid hex");
        assert_eq!(id.to_string(), "0000000000000000463ac35c9f6413ad");
    }

    #[test]
    fn rejects_ids_that_are_not_hex_or_too_long() {
        assert_eq!(SpanId::from_hex("not-hex"), None);
        assert_eq!(SpanId::from_hex("00112233445566778899"), None);
        assert_eq!(SpanId::from_hex(""), None);
        assert_eq!(SpanId::from_bytes(&[]), None);
    }

    #[test]
    fn known_keys_are_static_and_sorted() {
        assert!(
            KNOWN_KEYS.windows(2).all(|w| w[0] < w[1]),
            "KNOWN_KEYS must stay sorted"
        );
        assert!(matches!(attr_key("db.statement"), Cow::Borrowed("db.statement")));
        assert!(matches!(attr_key("app.tenant"), Cow::Owned(_)));
        assert_eq!(attr_key_owned("http.route".to_owned()), "http.route");
    }

    #[test]
    fn numbers_sent_as_strings_are_read_as_numbers() {
        assert_eq!(AttrValue::from("1234").as_f64(), Some(1234.0));
        assert_eq!(AttrValue::Int(5).as_f64(), Some(5.0));
        assert_eq!(AttrValue::from("big").as_f64(), None);
    }
}
