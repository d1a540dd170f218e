//! OTLP/JSON (`ExportTraceServiceRequest`) as real producers write it.
//!
//! The OTLP spec fixes lowerCamelCase keys, hex ids, enum numbers and 64-bit integers as
//! strings; producers also emit enum names (`"SPAN_KIND_SERVER"`), integers as numbers and,
//! from generic protobuf-to-JSON converters, base64 ids. All of those are accepted here.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use chokepoint_evidence::{AttrKey, AttrValue, Span, SpanId, SpanKind, TraceId, attr_key, attr_key_owned};
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, Visitor};

use crate::SpanSink;

/// One `ExportTraceServiceRequest` document. Ids are borrowed from the record (they are parsed
/// at once, never kept as text).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Request<'a> {
    #[serde(default, borrow)]
    resource_spans: Vec<ResourceSpans<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResourceSpans<'a> {
    #[serde(default, borrow)]
    resource: Option<Resource<'a>>,
    #[serde(default)]
    scope_spans: Vec<ScopeSpans>,
    /// The name `scopeSpans` had before OTLP 0.19; old SDKs and exports still use it.
    #[serde(default)]
    instrumentation_library_spans: Vec<ScopeSpans>,
}

#[derive(Deserialize)]
struct Resource<'a> {
    #[serde(default, borrow)]
    attributes: Vec<Attribute<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ScopeSpans {
    /// The instrumentation that recorded the spans (`instrumentationLibrary` before OTLP 0.19).
    #[serde(default, alias = "instrumentation_library", alias = "instrumentationLibrary")]
    scope: Option<ScopeName>,
    /// Each span is made into chokepoint's span as it is read (its service is set once the
    /// resource is known); a bad one keeps its reason, to be said if the document is emitted.
    #[serde(default)]
    spans: Vec<ReadSpan>,
}

/// An instrumentation scope's name.
#[derive(Deserialize)]
struct ScopeName {
    #[serde(default)]
    name: String,
}

/// A span as read: ready, or what was wrong with it.
struct ReadSpan(Result<(TraceId, Span), String>);

impl<'de> Deserialize<'de> for ReadSpan {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        JsonSpan::deserialize(deserializer).map(|span| ReadSpan(span.into_evidence()))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonSpan<'a> {
    #[serde(borrow)]
    trace_id: Cow<'a, str>,
    #[serde(borrow)]
    span_id: Cow<'a, str>,
    #[serde(default, borrow)]
    parent_span_id: Cow<'a, str>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    kind: Kind,
    #[serde(default, deserialize_with = "lenient_u64")]
    start_time_unix_nano: u64,
    #[serde(default, deserialize_with = "lenient_u64")]
    end_time_unix_nano: u64,
    /// Read straight into chokepoint's attributes: known keys become static strings.
    #[serde(default, deserialize_with = "attributes")]
    attributes: Vec<(AttrKey, AttrValue)>,
    #[serde(default)]
    status: Option<Status>,
}

/// One `{"key": …, "value": {…}}`, read straight into chokepoint's form: the key borrowed from
/// the record (a known key becomes a static string, no allocation), the value made an
/// [`AttrValue`] as it is read. Values that are key-value lists, which no detector reads, are
/// `None`.
struct Attribute<'a> {
    key: Cow<'a, str>,
    value: Option<AttrValue>,
}

/// An `AnyValue`: `{"stringValue": "…"}`, `{"intValue": "42"}` and the rest.
struct Value(Option<AttrValue>);

/// A string borrowed from the record when it has no escapes, copied when it has.
struct Text<'a>(Cow<'a, str>);

#[derive(Deserialize)]
struct ArrayValue {
    #[serde(default)]
    values: Vec<Value>,
}

#[derive(Deserialize)]
struct Status {
    #[serde(default)]
    code: StatusCode,
}

/// A span kind given as its number (`2`) or its enum name (`"SPAN_KIND_SERVER"`, `"SERVER"`).
#[derive(Default)]
struct Kind(SpanKind);

/// A status code given as its number or its enum name; only "error" matters here.
#[derive(Default)]
struct StatusCode(bool);

impl Request<'_> {
    /// Hands every span to `sink`; returns how many spans the document held.
    pub(crate) fn emit(self, sink: &mut SpanSink<'_>) -> Result<usize, String> {
        let mut count = 0;
        for resource_spans in self.resource_spans {
            let service = service_name(resource_spans.resource.as_ref());
            let scopes = resource_spans
                .scope_spans
                .into_iter()
                .chain(resource_spans.instrumentation_library_spans);
            for scope in scopes {
                let name: Option<Arc<str>> = scope
                    .scope
                    .filter(|scope| !scope.name.is_empty())
                    .map(|scope| scope.name.into());
                for ReadSpan(span) in scope.spans {
                    let (trace_id, mut span) = span?;
                    span.service = Arc::clone(&service);
                    span.scope = name.clone();
                    sink(trace_id, span);
                    count += 1;
                }
            }
        }
        Ok(count)
    }
}

fn service_name(resource: Option<&Resource<'_>>) -> Arc<str> {
    resource
        .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
        .and_then(|kv| kv.value.as_ref()?.as_str())
        .unwrap_or("unknown_service")
        .into()
}

impl JsonSpan<'_> {
    fn into_evidence(self) -> Result<(TraceId, Span), String> {
        let trace_id = parse_id(&self.trace_id, TraceId::from_hex, TraceId::from_bytes)
            .ok_or_else(|| format!("span {:?} has an invalid traceId {:?}", self.name, self.trace_id))?;
        let span_id = parse_id(&self.span_id, SpanId::from_hex, SpanId::from_bytes)
            .ok_or_else(|| format!("span {:?} has an invalid spanId {:?}", self.name, self.span_id))?;
        let parent_span_id = if self.parent_span_id.is_empty() {
            None
        } else {
            Some(
                parse_id(&self.parent_span_id, SpanId::from_hex, SpanId::from_bytes).ok_or_else(|| {
                    format!(
                        "span {:?} has an invalid parentSpanId {:?}",
                        self.name, self.parent_span_id
                    )
                })?,
            )
        };
        Ok((
            trace_id,
            Span {
                span_id,
                parent_span_id,
                name: self.name,
                kind: self.kind.0,
                service: unknown_service(),
                start_unix_nano: self.start_time_unix_nano,
                end_unix_nano: self.end_time_unix_nano,
                attributes: self.attributes,
                status_error: self.status.is_some_and(|s| s.code.0),
                scope: None,
            },
        ))
    }
}

/// The service of a span read before its resource; one shared allocation.
fn unknown_service() -> Arc<str> {
    static UNKNOWN: std::sync::LazyLock<Arc<str>> = std::sync::LazyLock::new(|| Arc::from(""));
    Arc::clone(&UNKNOWN)
}

/// A span's attributes, each made into chokepoint's form as it is read; values that are
/// key-value lists (which no detector reads) are dropped.
fn attributes<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<(AttrKey, AttrValue)>, D::Error> {
    struct AttributesVisitor;
    impl<'de> Visitor<'de> for AttributesVisitor {
        type Value = Vec<(AttrKey, AttrValue)>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of attributes")
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut attributes = Vec::with_capacity(seq.size_hint().unwrap_or(8));
            while let Some(kv) = seq.next_element::<Attribute<'de>>()? {
                let Some(value) = kv.value else {
                    continue;
                };
                let key = match kv.key {
                    Cow::Borrowed(key) => attr_key(key),
                    Cow::Owned(key) => attr_key_owned(key),
                };
                attributes.push((key, value));
            }
            Ok(attributes)
        }
    }
    deserializer.deserialize_seq(AttributesVisitor)
}

/// Hex as the OTLP spec says, or base64 as generic protobuf-to-JSON converters write.
fn parse_id<T>(text: &str, from_hex: fn(&str) -> Option<T>, from_bytes: fn(&[u8]) -> Option<T>) -> Option<T> {
    from_hex(text).or_else(|| {
        let bytes = base64::engine::general_purpose::STANDARD.decode(text).ok()?;
        from_bytes(&bytes)
    })
}

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s)))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Attribute<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AttributeVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for AttributeVisitor<'a> {
            type Value = Attribute<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an attribute, {\"key\": …, \"value\": …}")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Attribute<'a>, A::Error> {
                let mut key = None;
                let mut value = None;
                while let Some(Text(field)) = map.next_key()? {
                    match &*field {
                        "key" => key = Some(map.next_value::<Text<'de>>()?.0),
                        "value" => value = map.next_value::<Option<Value>>()?.and_then(|v| v.0),
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                let key = key.ok_or_else(|| de::Error::missing_field("key"))?;
                Ok(Attribute { key, value })
            }
        }
        deserializer.deserialize_map(AttributeVisitor(std::marker::PhantomData))
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ValueVisitor;
        impl<'de> Visitor<'de> for ValueVisitor {
            type Value = Value;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an attribute value, {\"stringValue\": …} or another")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
                let mut value = None;
                while let Some(Text(field)) = map.next_key()? {
                    let read = match &*field {
                        "stringValue" | "bytesValue" => {
                            map.next_value::<Option<String>>()?.map(AttrValue::Str)
                        }
                        "intValue" => map
                            .next_value::<Option<LenientI64>>()?
                            .map(|n| AttrValue::Int(n.0)),
                        "doubleValue" => map
                            .next_value::<Option<LenientF64>>()?
                            .map(|n| AttrValue::Double(n.0)),
                        "boolValue" => map.next_value::<Option<bool>>()?.map(AttrValue::Bool),
                        "arrayValue" => map
                            .next_value::<Option<ArrayValue>>()?
                            .map(|array| AttrValue::joined(array.values.into_iter().filter_map(|v| v.0))),
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                            None
                        }
                    };
                    value = value.or(read);
                }
                Ok(Value(value))
            }
        }
        deserializer.deserialize_map(ValueVisitor)
    }
}

fn kind_from_number(n: u64) -> SpanKind {
    match n {
        2 => SpanKind::Server,
        3 => SpanKind::Client,
        4 => SpanKind::Producer,
        5 => SpanKind::Consumer,
        _ => SpanKind::Internal,
    }
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KindVisitor;
        impl Visitor<'_> for KindVisitor {
            type Value = Kind;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a span kind number or name")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Kind, E> {
                Ok(Kind(kind_from_number(n)))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Kind, E> {
                Ok(Kind(kind_from_number(n.max(0) as u64)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Kind, E> {
                let name = s.strip_prefix("SPAN_KIND_").unwrap_or(s);
                Ok(Kind(match name.to_ascii_uppercase().as_str() {
                    "SERVER" => SpanKind::Server,
                    "CLIENT" => SpanKind::Client,
                    "PRODUCER" => SpanKind::Producer,
                    "CONSUMER" => SpanKind::Consumer,
                    _ => match s.parse::<u64>() {
                        Ok(n) => kind_from_number(n),
                        Err(_) => SpanKind::Internal,
                    },
                }))
            }
        }
        deserializer.deserialize_any(KindVisitor)
    }
}

impl<'de> Deserialize<'de> for StatusCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CodeVisitor;
        impl Visitor<'_> for CodeVisitor {
            type Value = StatusCode;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a status code number or name")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<StatusCode, E> {
                Ok(StatusCode(n == 2))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<StatusCode, E> {
                Ok(StatusCode(n == 2))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<StatusCode, E> {
                Ok(StatusCode(matches!(s, "STATUS_CODE_ERROR" | "ERROR" | "2")))
            }
        }
        deserializer.deserialize_any(CodeVisitor)
    }
}

/// A 64-bit integer written as a JSON number or a JSON string (the spec says string).
struct LenientI64(i64);

impl<'de> Deserialize<'de> for LenientI64 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IntVisitor;
        impl Visitor<'_> for IntVisitor {
            type Value = LenientI64;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer, as a number or a string")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<LenientI64, E> {
                i64::try_from(n)
                    .map(LenientI64)
                    .map_err(|_| E::custom(format!("{n} does not fit a 64-bit integer")))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<LenientI64, E> {
                Ok(LenientI64(n))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<LenientI64, E> {
                Ok(LenientI64(n as i64))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<LenientI64, E> {
                // The spec's form — digits in a string — first; spaces after.
                if let Ok(n) = s.parse().or_else(|_| s.trim().parse()) {
                    return Ok(LenientI64(n));
                }
                Err(match s.trim().parse::<i128>() {
                    Ok(n) => E::custom(format!("{n} does not fit a 64-bit integer")),
                    Err(_) => E::custom(format!("expected an integer, found {s:?}")),
                })
            }
        }
        deserializer.deserialize_any(IntVisitor)
    }
}

/// A double written as a JSON number or a JSON string (`"NaN"`, `"Infinity"`).
struct LenientF64(f64);

impl<'de> Deserialize<'de> for LenientF64 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FloatVisitor;
        impl Visitor<'_> for FloatVisitor {
            type Value = LenientF64;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number, or a string holding one (\"NaN\", \"Infinity\")")
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<LenientF64, E> {
                Ok(LenientF64(n))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<LenientF64, E> {
                Ok(LenientF64(n as f64))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<LenientF64, E> {
                Ok(LenientF64(n as f64))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<LenientF64, E> {
                s.parse()
                    .map(LenientF64)
                    .map_err(|_| E::custom(format!("expected a number, found {s:?}")))
            }
        }
        deserializer.deserialize_any(FloatVisitor)
    }
}

fn lenient_u64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    struct TimestampVisitor;
    impl Visitor<'_> for TimestampVisitor {
        type Value = u64;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a timestamp, as a number or a string")
        }
        fn visit_u64<E: de::Error>(self, n: u64) -> Result<u64, E> {
            Ok(n)
        }
        fn visit_i64<E: de::Error>(self, n: i64) -> Result<u64, E> {
            u64::try_from(n).map_err(|_| E::custom(format!("{n} is not a valid timestamp")))
        }
        fn visit_f64<E: de::Error>(self, n: f64) -> Result<u64, E> {
            Ok(n as u64)
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<u64, E> {
            // The spec's form — digits in a string — first; spaces and signs after.
            s.parse()
                .or_else(|_| s.trim().parse())
                .map_err(|_| E::custom(format!("{s:?} is not a valid timestamp")))
        }
    }
    deserializer.deserialize_any(TimestampVisitor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(json: &str) -> Vec<(TraceId, Span)> {
        let request: Request = serde_json::from_str(json).expect("valid OTLP/JSON");
        let mut spans = Vec::new();
        request
            .emit(&mut |trace_id, span| spans.push((trace_id, span)))
            .expect("valid spans");
        spans
    }

    #[test]
    fn accepts_enum_names_string_integers_and_base64_ids() {
        let spans = decode(
            r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"shop"}}]},
            "scopeSpans":[{"spans":[
              {"traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B174","name":"GET /a",
               "kind":"SPAN_KIND_SERVER","startTimeUnixNano":"1000","endTimeUnixNano":3000,
               "attributes":[{"key":"n","value":{"intValue":"42"}},{"key":"h","value":{"arrayValue":{"values":[{"stringValue":"gzip"}]}}}],
               "status":{"code":"STATUS_CODE_ERROR"}},
              {"traceId":"W47/95gDgQPSabYzgT/GDA==","spanId":"7uGbfsPBsXQ=","parentSpanId":"7uGbfsPBsXQ=","name":"q","kind":3}
            ]}]}]}"#,
        );
        assert_eq!(spans.len(), 2);
        let (trace_id, server) = &spans[0];
        assert_eq!(trace_id.to_string(), "5b8efff798038103d269b633813fc60c");
        assert_eq!(server.kind, SpanKind::Server);
        assert_eq!(server.duration_nano(), 2000);
        assert_eq!(&*server.service, "shop");
        assert_eq!(server.attr("n"), Some(&AttrValue::Int(42)));
        assert_eq!(server.attr_str("h"), Some("gzip"));
        assert!(server.status_error);
        let (base64_trace, client) = &spans[1];
        assert_eq!(base64_trace, trace_id);
        assert_eq!(client.kind, SpanKind::Client);
        assert_eq!(client.parent_span_id, Some(server.span_id));
    }

    #[test]
    fn snake_case_keys_decode_to_no_spans() {
        assert!(decode(r#"{"resource_spans":[{"scope_spans":[{"spans":[]}]}]}"#).is_empty());
    }
}
