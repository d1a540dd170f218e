//! OTLP/JSON (`ExportTraceServiceRequest`) as real producers write it.
//!
//! The OTLP spec fixes lowerCamelCase keys, hex ids, enum numbers and 64-bit integers as
//! strings; producers also emit enum names (`"SPAN_KIND_SERVER"`), integers as numbers and,
//! from generic protobuf-to-JSON converters, base64 ids. All of those are accepted here.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use chokepoint_evidence::{AttrValue, Span, SpanId, SpanKind, TraceId};
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, Visitor};

use crate::SpanSink;

/// One `ExportTraceServiceRequest` document.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Request {
    #[serde(default)]
    resource_spans: Vec<ResourceSpans>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResourceSpans {
    #[serde(default)]
    resource: Option<Resource>,
    #[serde(default)]
    scope_spans: Vec<ScopeSpans>,
    /// The name `scopeSpans` had before OTLP 0.19; old SDKs and exports still use it.
    #[serde(default)]
    instrumentation_library_spans: Vec<ScopeSpans>,
}

#[derive(Deserialize)]
struct Resource {
    #[serde(default)]
    attributes: Vec<KeyValue>,
}

#[derive(Deserialize)]
struct ScopeSpans {
    #[serde(default)]
    spans: Vec<JsonSpan>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonSpan {
    trace_id: String,
    span_id: String,
    #[serde(default)]
    parent_span_id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    kind: Kind,
    #[serde(default, deserialize_with = "lenient_u64")]
    start_time_unix_nano: u64,
    #[serde(default, deserialize_with = "lenient_u64")]
    end_time_unix_nano: u64,
    #[serde(default)]
    attributes: Vec<KeyValue>,
    #[serde(default)]
    status: Option<Status>,
}

#[derive(Deserialize)]
struct KeyValue {
    key: String,
    #[serde(default)]
    value: Option<AnyValue>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct AnyValue {
    string_value: Option<String>,
    bool_value: Option<bool>,
    #[serde(default, deserialize_with = "lenient_opt_i64")]
    int_value: Option<i64>,
    #[serde(default, deserialize_with = "lenient_opt_f64")]
    double_value: Option<f64>,
    array_value: Option<ArrayValue>,
    kvlist_value: Option<IgnoredAny>,
    bytes_value: Option<String>,
}

#[derive(Deserialize, Default)]
struct ArrayValue {
    #[serde(default)]
    values: Vec<AnyValue>,
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

impl Request {
    /// Hands every span to `sink`; returns how many spans the document held.
    pub(crate) fn emit(self, sink: &mut SpanSink<'_>) -> Result<usize, String> {
        let mut count = 0;
        for resource_spans in self.resource_spans {
            let service = service_name(resource_spans.resource.as_ref());
            let scopes = resource_spans
                .scope_spans
                .into_iter()
                .chain(resource_spans.instrumentation_library_spans);
            for span in scopes.flat_map(|scope| scope.spans) {
                let (trace_id, span) = span.into_evidence(&service)?;
                sink(trace_id, span);
                count += 1;
            }
        }
        Ok(count)
    }
}

fn service_name(resource: Option<&Resource>) -> Arc<str> {
    resource
        .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
        .and_then(|kv| kv.value.as_ref()?.string_value.as_deref())
        .unwrap_or("unknown_service")
        .into()
}

impl JsonSpan {
    fn into_evidence(self, service: &Arc<str>) -> Result<(TraceId, Span), String> {
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
        let attributes = self
            .attributes
            .into_iter()
            .filter_map(|kv| Some((kv.key, kv.value?.into_evidence()?)))
            .collect();
        Ok((
            trace_id,
            Span {
                span_id,
                parent_span_id,
                name: self.name,
                kind: self.kind.0,
                service: Arc::clone(service),
                start_unix_nano: self.start_time_unix_nano,
                end_unix_nano: self.end_time_unix_nano,
                attributes,
                status_error: self.status.is_some_and(|s| s.code.0),
            },
        ))
    }
}

/// Hex as the OTLP spec says, or base64 as generic protobuf-to-JSON converters write.
fn parse_id<T>(text: &str, from_hex: fn(&str) -> Option<T>, from_bytes: fn(&[u8]) -> Option<T>) -> Option<T> {
    from_hex(text).or_else(|| {
        let bytes = base64::engine::general_purpose::STANDARD.decode(text).ok()?;
        from_bytes(&bytes)
    })
}

impl AnyValue {
    fn into_evidence(self) -> Option<AttrValue> {
        if let Some(s) = self.string_value {
            Some(AttrValue::Str(s))
        } else if let Some(i) = self.int_value {
            Some(AttrValue::Int(i))
        } else if let Some(d) = self.double_value {
            Some(AttrValue::Double(d))
        } else if let Some(b) = self.bool_value {
            Some(AttrValue::Bool(b))
        } else if let Some(array) = self.array_value {
            Some(AttrValue::joined(
                array.values.into_iter().filter_map(AnyValue::into_evidence),
            ))
        } else if self.kvlist_value.is_some() {
            None
        } else {
            self.bytes_value.map(AttrValue::Str)
        }
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
struct LenientInt(i128);

impl<'de> Deserialize<'de> for LenientInt {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IntVisitor;
        impl Visitor<'_> for IntVisitor {
            type Value = LenientInt;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer, as a number or a string")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<LenientInt, E> {
                Ok(LenientInt(n.into()))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<LenientInt, E> {
                Ok(LenientInt(n.into()))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<LenientInt, E> {
                Ok(LenientInt(n as i128))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<LenientInt, E> {
                s.trim()
                    .parse()
                    .map(LenientInt)
                    .map_err(|_| E::custom(format!("expected an integer, found {s:?}")))
            }
        }
        deserializer.deserialize_any(IntVisitor)
    }
}

fn lenient_u64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    let LenientInt(n) = LenientInt::deserialize(deserializer)?;
    u64::try_from(n).map_err(|_| de::Error::custom(format!("{n} is not a valid timestamp")))
}

fn lenient_opt_i64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    let LenientInt(n) = LenientInt::deserialize(deserializer)?;
    i64::try_from(n)
        .map(Some)
        .map_err(|_| de::Error::custom(format!("{n} does not fit a 64-bit integer")))
}

fn lenient_opt_f64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<f64>, D::Error> {
    struct FloatVisitor;
    impl Visitor<'_> for FloatVisitor {
        type Value = Option<f64>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a number, or a string holding one (\"NaN\", \"Infinity\")")
        }
        fn visit_f64<E: de::Error>(self, n: f64) -> Result<Option<f64>, E> {
            Ok(Some(n))
        }
        fn visit_u64<E: de::Error>(self, n: u64) -> Result<Option<f64>, E> {
            Ok(Some(n as f64))
        }
        fn visit_i64<E: de::Error>(self, n: i64) -> Result<Option<f64>, E> {
            Ok(Some(n as f64))
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<Option<f64>, E> {
            s.parse()
                .map(Some)
                .map_err(|_| E::custom(format!("expected a number, found {s:?}")))
        }
    }
    deserializer.deserialize_any(FloatVisitor)
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
