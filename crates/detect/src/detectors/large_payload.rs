//! `large-payload`: large HTTP bodies sent without compression.

use chokepoint_evidence::{HttpTarget, Resource, Span, SpanKind, Subject};

use crate::detectors::{ns, percent};
use crate::finding::{Basis, Confidence};
use crate::registry::{Conclusion, Detector, Estimate, Reads, detector};
use crate::request::Request;
use crate::trace_analysis::{Observation, Observer};
use crate::traces::GroupView;

detector! {
    /// # What it detects
    ///
    /// HTTP responses larger than 300 kB (Sentry's threshold) sent without a
    /// `Content-Encoding`: the endpoint's own responses, and responses it receives from the
    /// services it calls.
    ///
    /// # Why it limits throughput
    ///
    /// Bytes on the wire take time at every hop and, past a point, the link itself caps
    /// throughput (`bandwidth-limit`). JSON compresses to a fifth or less of its size; sending it
    /// raw wastes most of that time and bandwidth, and a large body usually means an unpaginated
    /// list behind it.
    ///
    /// # Evidence used
    ///
    /// Server and HTTP client spans with `http.response.body.size` (current convention),
    /// `http.response_content_length` (older), or the captured `Content-Length` header, and
    /// `http.response.header.content-encoding` when the instrumentation captures that header
    /// (Python: `OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE=content-length,content-encoding`). Without a body size on any span this detector
    /// is reported as skipped.
    ///
    /// # Known false positives
    ///
    /// Bodies already compressed in their format (images, archives): compression gains nothing.
    /// Instrumentations that record the body size but not response headers make a compressed
    /// response look uncompressed; capture `content-encoding`
    /// (`OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE=content-encoding`) to be sure.
    ///
    /// # Typical fix
    ///
    /// Compress: FastAPI/Starlette `app.add_middleware(GZipMiddleware, minimum_size=1000)`,
    /// Django `GZipMiddleware`, or at the proxy (nginx `gzip on; gzip_types application/json`).
    /// Then send less: paginate lists and select only the fields the client uses.
    pub(crate) struct LargePayload {
        id: LargePayload,
        summary: "large HTTP bodies sent without compression",
        reads: [Reads::Traces("HTTP span carrying a body size (http.response.body.size)")],
        same_cause: [],
    }
}

/// Body size attributes, current convention first.
const BODY_SIZE_KEYS: &[&str] = &[
    "http.response.body.size",
    "http.response_content_length",
    "http.response.header.content-length",
    "http.response.header.content_length",
];
/// Response header attributes that carry the content encoding.
const ENCODING_KEYS: &[&str] = &[
    "http.response.header.content-encoding",
    "http.response.header.content_encoding",
];
/// A body larger than this is large, in bytes (Sentry's default).
const LARGE_BYTES: f64 = 300_000.0;
/// The link assumed for the transfer time: 100 Mbit/s, in bytes per second.
const ASSUMED_LINK_BYTES_PER_S: f64 = 12.5e6;
/// The share of a JSON body that gzip typically removes.
const ASSUMED_COMPRESSION_SAVING: f64 = 0.8;

impl Detector for LargePayload {
    fn observe(&self, request: &Request<'_>, out: &mut Observer<'_>) {
        let root = request.root_span();
        if root.kind == SpanKind::Server {
            observe_body(root, None, || format!("response of {}", request.endpoint), out);
        }
        for &i in &request.local {
            if let Some(call) = request.http_call(i) {
                let target = call.target();
                observe_body(
                    request.span(i),
                    Some(target.clone()),
                    || format!("response of {target}"),
                    out,
                );
            }
        }
    }

    fn conclude(&self, group: &GroupView<'_>) -> Option<Conclusion> {
        let kb = group.mean("body_bytes") / 1e3;
        let title = format!(
            "The {} is {kb:.0} kB on average (max {:.0} kB), sent uncompressed in {} of {} requests",
            group.location,
            group.max("body_bytes") / 1e3,
            group.requests,
            group.endpoint_requests
        );
        let own_response = matches!(group.subject(), Subject::ResponseBody { call: None });
        let fix = if own_response {
            format!(
                "Compress the {}: FastAPI/Starlette `app.add_middleware(GZipMiddleware, minimum_size=1000)`, \
                 Django `django.middleware.gzip.GZipMiddleware`, or nginx `gzip on; gzip_types application/json;`. \
                 Then send less: {kb:.0} kB per response suggests an unpaginated list — page it and return only the fields the client uses.",
                group.location
            )
        } else {
            format!(
                "Ask for a compressed {} (send `Accept-Encoding: gzip`, and enable compression on that service), \
                 and request only the page and fields this endpoint uses.",
                group.location
            )
        };
        Some(
            Conclusion::new(
                Resource::Link,
                Basis::Assumed,
                Estimate::Observed,
                title,
                fix,
                Confidence::from_share(group.affected_share()).min(Confidence::Medium),
            )
            .assume(vec![
                format!(
                    "transfer over a {:.0} Mbit/s link",
                    ASSUMED_LINK_BYTES_PER_S * 8.0 / 1e6
                ),
                format!(
                    "gzip removes {} of a JSON body",
                    percent(ASSUMED_COMPRESSION_SAVING)
                ),
                "no content-encoding attribute means the body was not compressed".into(),
            ]),
        )
    }
}

fn observe_body(
    span: &Span,
    call: Option<HttpTarget>,
    location: impl FnOnce() -> String,
    out: &mut Observer<'_>,
) {
    let Some(bytes) = span.attr_f64_any(BODY_SIZE_KEYS) else {
        return;
    };
    out.evaluated();
    let encoding = span
        .attr_str_any(ENCODING_KEYS)
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let compressed = !encoding.is_empty() && encoding != "identity";
    if compressed || bytes <= LARGE_BYTES {
        return;
    }
    let saved_ns = ns(bytes / ASSUMED_LINK_BYTES_PER_S * ASSUMED_COMPRESSION_SAVING * 1e3);
    out.push(Observation {
        subject: Subject::ResponseBody { call },
        location: Some(location()),
        related: None,
        code: None,
        saved_ns,
        latency_saved_ns: saved_ns,
        occurrences: 1,
        metrics: vec![("body_bytes", bytes)],
    });
}
