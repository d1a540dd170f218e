//! A trace seen as requests: each server span with the work it did locally, plus the semantic
//! conventions detectors use to recognise database statements, HTTP calls and connects.

use hashbrown::HashMap;
use std::sync::Arc;

use chokepoint_evidence::{Anchor, AttrValue, HttpTarget, Span, SpanId, SpanKind, Trace};

use crate::sql::Statement;

/// Statement attributes, current convention first.
const STATEMENT_KEYS: &[&str] = &["db.query.text", "db.statement"];
/// Attributes that mark a database client span.
const DB_SYSTEM_KEYS: &[&str] = &["db.system.name", "db.system"];
/// Outgoing URL attributes, current convention first.
const URL_KEYS: &[&str] = &["url.full", "http.url"];
/// HTTP method attributes, current convention first.
const METHOD_KEYS: &[&str] = &["http.request.method", "http.method"];
/// Peer host attributes, current convention first.
const PEER_HOST_KEYS: &[&str] = &[
    "server.address",
    "net.peer.name",
    "network.peer.address",
    "net.sock.peer.addr",
];
/// Peer port attributes, current convention first.
const PEER_PORT_KEYS: &[&str] = &["server.port", "net.peer.port", "network.peer.port"];

/// A trace with its parent–child links resolved and its statements normalized.
pub(crate) struct TraceIndex<'a> {
    /// The trace.
    pub(crate) trace: &'a Trace,
    /// Every span's children, in start order: those of span `i` are
    /// `children[child_start[i]..child_start[i + 1]]` (one allocation, not one per span).
    children: Vec<usize>,
    child_start: Vec<usize>,
    parent: Vec<Option<usize>>,
    statements: Vec<Option<Arc<Statement>>>,
    http_calls: Vec<Option<HttpCall>>,
    connects: Vec<Option<String>>,
    /// Spans whose parent is not in the trace.
    pub(crate) orphans: u64,
}

impl<'a> TraceIndex<'a> {
    /// Indexes `trace`; `normalize` turns a statement's text into its normalized form (the
    /// caller may cache).
    pub(crate) fn new(trace: &'a Trace, normalize: &mut impl FnMut(&str) -> Arc<Statement>) -> Self {
        let by_id: HashMap<SpanId, usize> = trace
            .spans
            .iter()
            .enumerate()
            .map(|(i, s)| (s.span_id, i))
            .collect();
        let n = trace.spans.len();
        let mut parent = vec![None; n];
        let mut child_start = vec![0; n + 1];
        let mut orphans = 0;
        for (i, span) in trace.spans.iter().enumerate() {
            match span.parent_span_id.map(|id| by_id.get(&id)) {
                Some(Some(&p)) if p != i => {
                    parent[i] = Some(p);
                    child_start[p + 1] += 1;
                }
                Some(None) => orphans += 1,
                _ => {}
            }
        }
        for i in 0..n {
            child_start[i + 1] += child_start[i];
        }
        let mut children = vec![0; child_start[n]];
        let mut filled = child_start.clone();
        for (i, p) in parent.iter().enumerate() {
            if let Some(p) = *p {
                children[filled[p]] = i;
                filled[p] += 1;
            }
        }
        for p in 0..n {
            children[child_start[p]..child_start[p + 1]]
                .sort_by_key(|&c| (trace.spans[c].start_unix_nano, c));
        }
        let connects: Vec<Option<String>> = trace.spans.iter().map(connect_peer).collect();
        // A connect is not a query, whatever text an instrumentation put on it.
        let statements = trace
            .spans
            .iter()
            .zip(&connects)
            .map(|(span, connect)| match connect {
                Some(_) => None,
                None => db_statement_text(span).map(&mut *normalize),
            })
            .collect();
        let http_calls = trace.spans.iter().map(http_call).collect();
        TraceIndex {
            trace,
            children,
            child_start,
            parent,
            statements,
            http_calls,
            connects,
            orphans,
        }
    }

    /// The direct children of span `i`, in start order.
    fn children_of(&self, i: usize) -> &[usize] {
        &self.children[self.child_start[i]..self.child_start[i + 1]]
    }

    /// The requests in this trace: every server or consumer span, and every span whose parent
    /// is missing, each with its local work.
    pub(crate) fn requests(&self) -> Vec<Request<'_>> {
        let spans = &self.trace.spans;
        let mut requests = Vec::new();
        for (root, span) in spans.iter().enumerate() {
            let entry =
                matches!(span.kind, SpanKind::Server | SpanKind::Consumer) || self.parent[root].is_none();
            if !entry {
                continue;
            }
            let mut local = Vec::new();
            let mut stack: Vec<usize> = self.children_of(root).iter().rev().copied().collect();
            while let Some(i) = stack.pop() {
                if matches!(spans[i].kind, SpanKind::Server | SpanKind::Consumer) {
                    continue;
                }
                local.push(i);
                stack.extend(self.children_of(i).iter().rev());
            }
            requests.push(Request {
                index: self,
                root,
                local,
                endpoint: endpoint_name(span, self.parent[root].is_none()),
            });
        }
        requests
    }
}

/// One request: an entry span and the spans below it in the same process.
pub(crate) struct Request<'a> {
    index: &'a TraceIndex<'a>,
    /// The entry span.
    pub(crate) root: usize,
    /// Local spans below the root (not crossing into other services' server spans).
    pub(crate) local: Vec<usize>,
    /// The endpoint name: `GET /orders/{id}`.
    pub(crate) endpoint: String,
}

impl<'a> Request<'a> {
    /// A span of the trace.
    pub(crate) fn span(&self, i: usize) -> &'a Span {
        &self.index.trace.spans[i]
    }

    /// The entry span.
    pub(crate) fn root_span(&self) -> &'a Span {
        self.span(self.root)
    }

    /// How long the request ran in its own process outside the calls it made, in ns: the entry
    /// span less the union of its outgoing calls (database, HTTP, messaging) within it.
    pub(crate) fn in_process_ns(&self) -> u64 {
        let root = self.root_span();
        let (start, end) = (root.start_unix_nano, root.end_unix_nano.max(root.start_unix_nano));
        let mut calls: Vec<(u64, u64)> = self
            .local
            .iter()
            .map(|&i| self.span(i))
            .filter(|s| matches!(s.kind, SpanKind::Client | SpanKind::Producer) || is_db_call(s))
            .map(|s| {
                (
                    s.start_unix_nano.clamp(start, end),
                    s.end_unix_nano.clamp(start, end),
                )
            })
            .filter(|(from, to)| to > from)
            .collect();
        calls.sort_unstable();
        let (mut covered, mut reached) = (0, start);
        for (from, to) in calls {
            let from = from.max(reached);
            if to > from {
                covered += to - from;
                reached = to;
            }
        }
        (end - start).saturating_sub(covered)
    }

    /// The normalized statement of a database span.
    pub(crate) fn statement(&self, i: usize) -> Option<&'a Statement> {
        self.index.statements[i].as_deref()
    }

    /// The outgoing HTTP call a client span made.
    pub(crate) fn http_call(&self, i: usize) -> Option<&'a HttpCall> {
        self.index.http_calls[i].as_ref()
    }

    /// Direct children of a span, in start order (including other services' server spans).
    pub(crate) fn children(&self, i: usize) -> &'a [usize] {
        self.index.children_of(i)
    }

    /// The peer a connect or handshake span connects to.
    pub(crate) fn connect_peer(&self, i: usize) -> Option<&'a str> {
        self.index.connects[i].as_deref()
    }

    /// The parent of a span, when it is in the trace.
    pub(crate) fn parent(&self, i: usize) -> Option<usize> {
        self.index.parent[i]
    }

    /// The code that ran span `i`, from the `code.*` attributes of it or of the nearest span
    /// above it in the request that has them — the current semantic conventions
    /// (`code.file.path`, `code.line.number`, `code.function.name`) or the older ones
    /// (`code.filepath`, `code.lineno`, `code.namespace` + `code.function`).
    pub(crate) fn code_near(&self, i: usize) -> Option<Anchor> {
        let mut at = Some(i);
        while let Some(span) = at {
            if let Some(code) = code_of(self.span(span)) {
                return Some(code);
            }
            at = if span == self.root {
                None
            } else {
                self.parent(span)
            };
        }
        None
    }

    /// The parent that "owns" a call: its parent, skipping connection-pool and connect spans,
    /// so queries interleaved with pool checkouts still group under the handler.
    pub(crate) fn owner(&self, i: usize) -> Option<usize> {
        let mut parent = self.index.parent[i]?;
        while parent != self.root && is_housekeeping(self.span(parent), self.connect_peer(parent).is_some()) {
            parent = self.index.parent[parent]?;
        }
        Some(parent)
    }
}

/// A span's code location, from its `code.*` attributes, current convention first.
fn code_of(span: &Span) -> Option<Anchor> {
    let file = span.attr_str_any(&["code.file.path", "code.filepath"]);
    let line = span
        .attr("code.line.number")
        .or_else(|| span.attr("code.lineno"))
        .and_then(AttrValue::as_f64)
        .filter(|l| *l >= 1.0 && *l <= f64::from(u32::MAX))
        .map(|l| l as u32);
    let function = match (
        span.attr_str("code.function.name"),
        span.attr_str("code.function"),
    ) {
        (Some(qualified), _) => Some(qualified.to_owned()),
        (None, Some(function)) => Some(match span.attr_str("code.namespace") {
            Some(namespace) => format!("{namespace}.{function}"),
            None => function.to_owned(),
        }),
        (None, None) => None,
    };
    if file.is_none() && function.is_none() {
        return None;
    }
    Some(Anchor::Code {
        file: file.unwrap_or_default().to_owned(),
        line,
        function: function.unwrap_or_default(),
    })
}

fn endpoint_name(span: &Span, is_root: bool) -> String {
    let route = span.attr_str("http.route");
    let method = span.attr_str_any(METHOD_KEYS);
    match (method, route) {
        (Some(method), Some(route)) if span.kind == SpanKind::Server => format!("{method} {route}"),
        _ if span.kind == SpanKind::Server || span.kind == SpanKind::Consumer || is_root => span.name.clone(),
        _ => format!("{} (parent span missing)", span.name),
    }
}

/// The statement text of a database span, in either semantic convention.
pub(crate) fn db_statement_text(span: &Span) -> Option<&str> {
    if span.kind != SpanKind::Client && span.kind != SpanKind::Internal {
        return None;
    }
    span.attr_str_any(STATEMENT_KEYS).filter(|s| !s.trim().is_empty())
}

/// Whether a span is a database call (with or without its statement recorded).
pub(crate) fn is_db_call(span: &Span) -> bool {
    db_statement_text(span).is_some() || span.attr_str_any(DB_SYSTEM_KEYS).is_some()
}

/// An outgoing HTTP call, reduced to what groups calls of the same kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HttpCall {
    /// The method, upper-case.
    pub(crate) method: String,
    /// `host:port/path` with ids replaced by `{id}`: the same endpoint of the same service.
    pub(crate) target: String,
    /// Whether the query string carries an opaque page cursor (`cursor=`, `page_token=`,
    /// `after=`, …): each call then needs the previous one's answer. Numbered pages (`page=2`,
    /// `offset=40`) are known in advance and do not count.
    pub(crate) paginated: bool,
}

impl HttpCall {
    /// The call as what a finding is about.
    pub(crate) fn target(&self) -> HttpTarget {
        HttpTarget {
            method: self.method.clone(),
            target: self.target.clone(),
        }
    }
}

/// Query parameters that carry an opaque page cursor, handed back by the previous response:
/// the next call cannot be made before it. (`page=` and `offset=` are numbers the caller knows in
/// advance: pages 1…N can be fetched together.)
const PAGINATION_PARAMS: &[&str] = &[
    "cursor",
    "page_token",
    "pagetoken",
    "next_page_token",
    "nextpagetoken",
    "next_token",
    "continuation",
    "continuation_token",
    "after",
    "starting_after",
    "start_cursor",
    "marker",
];

/// The outgoing HTTP call a client span made, if it is one.
pub(crate) fn http_call(span: &Span) -> Option<HttpCall> {
    if span.kind != SpanKind::Client {
        return None;
    }
    let method = span.attr_str_any(METHOD_KEYS)?;
    if is_db_call(span) {
        return None;
    }
    let method = method.to_ascii_uppercase();
    let url = span.attr_str_any(URL_KEYS).unwrap_or("");
    let without_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let (host_path, query) = without_scheme.split_once('?').unwrap_or((without_scheme, ""));
    let (host, path) = host_path.split_once('/').unwrap_or((host_path, ""));
    let peer_host;
    let host = if host.is_empty() {
        peer_host = peer(span).unwrap_or_default();
        peer_host.as_str()
    } else {
        host
    };
    let path = if path.is_empty() {
        span.attr_str_any(&["url.path", "http.target"]).unwrap_or("")
    } else {
        path
    };
    let mut target = String::with_capacity(host.len() + path.len() + 1);
    target.push_str(host);
    for segment in path.trim_start_matches('/').split('/') {
        target.push('/');
        target.push_str(if looks_like_id(segment) { "{id}" } else { segment });
    }
    let paginated = query.split('&').any(|pair| {
        let name = pair.split('=').next().unwrap_or("");
        PAGINATION_PARAMS.iter().any(|p| p.eq_ignore_ascii_case(name))
    });
    Some(HttpCall {
        method,
        target,
        paginated,
    })
}

/// Whether a path segment is an identifier rather than a resource name: a number, a UUID, a
/// long hex string, or anything with digits and no vowels-only word shape.
fn looks_like_id(segment: &str) -> bool {
    let digits = segment.bytes().filter(u8::is_ascii_digit).count();
    !segment.is_empty()
        && (digits == segment.len()
            || (segment.len() >= 16 && segment.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'))
            || (digits * 2 >= segment.len() && segment.len() >= 4))
}

/// `host:port` of the peer a client span talks to.
pub(crate) fn peer(span: &Span) -> Option<String> {
    let host = span.attr_str_any(PEER_HOST_KEYS)?;
    Some(
        match span
            .attr(PEER_PORT_KEYS[0])
            .or_else(|| span.attr(PEER_PORT_KEYS[1]))
            .or_else(|| span.attr(PEER_PORT_KEYS[2]))
        {
            Some(port) => match port.as_f64() {
                Some(p) => format!("{host}:{p}"),
                None => host.to_owned(),
            },
            None => host.to_owned(),
        },
    )
}

/// If a span opens a connection (TCP connect, TLS handshake, database login), the peer it
/// connects to. A name is not enough: the span must say it is a database client's
/// (`db.system`) or name the peer it connects to — a browser's page-load trace has
/// navigation-timing spans named `connect`, `DNS` and `request` for the page's own connection,
/// which are no backend's connection churn.
fn connect_peer(span: &Span) -> Option<String> {
    if !looks_like_connect(&span.name)
        && !span
            .attr_str_any(&["db.operation.name", "db.operation"])
            .is_some_and(|operation| operation.eq_ignore_ascii_case("connect"))
    {
        return None;
    }
    let database = span.attr_str_any(&["db.namespace", "db.name"]);
    let is_db_client = span.attr_str_any(DB_SYSTEM_KEYS).is_some();
    match (peer(span), database) {
        (Some(peer), Some(db)) => Some(format!("{peer}/{db}")),
        (Some(peer), None) => Some(peer),
        (None, Some(db)) if is_db_client => Some(db.to_owned()),
        (None, None) if is_db_client => Some(span.name.clone()),
        (None, _) => None,
    }
}

/// Span names of connects and handshakes: `connect`, `psycopg.connect`, `connect db`,
/// `TLS handshake`.
fn looks_like_connect(name: &str) -> bool {
    let bytes = name.as_bytes();
    bytes.eq_ignore_ascii_case(b"connect")
        || (bytes.len() > 8 && bytes[bytes.len() - 8..].eq_ignore_ascii_case(b".connect"))
        || (bytes.len() > 8 && bytes[..8].eq_ignore_ascii_case(b"connect "))
        || bytes.windows(9).any(|w| w.eq_ignore_ascii_case(b"handshake"))
}

/// Connection-pool bookkeeping spans (checkout, acquire, connect) that sit between a handler and
/// its queries in some instrumentations.
fn is_housekeeping(span: &Span, is_connect: bool) -> bool {
    if span.kind != SpanKind::Internal && !is_connect {
        return false;
    }
    let name = span.name.to_ascii_lowercase();
    ["pool", "checkout", "acquire", "connect", "session"]
        .iter()
        .any(|w| name.contains(w))
}

#[cfg(test)]
mod tests {
    use chokepoint_evidence::AttrValue;

    use super::*;

    fn client(attrs: &[(&str, &str)]) -> Span {
        Span {
            span_id: SpanId(1),
            parent_span_id: None,
            name: "GET".into(),
            kind: SpanKind::Client,
            service: "svc".into(),
            start_unix_nano: 0,
            end_unix_nano: 1,
            attributes: attrs
                .iter()
                .map(|(k, v)| (chokepoint_evidence::attr_key(k), AttrValue::from(*v)))
                .collect(),
            status_error: false,
            scope: None,
        }
    }

    #[test]
    fn http_targets_group_by_path_template() {
        let a = http_call(&client(&[
            ("http.method", "GET"),
            ("http.url", "http://inventory:8000/items/17"),
        ]))
        .expect("call");
        let b = http_call(&client(&[
            ("http.request.method", "GET"),
            ("url.full", "http://inventory:8000/items/2041?x=1"),
        ]))
        .expect("call");
        assert_eq!(a.target, "inventory:8000/items/{id}");
        assert_eq!(a, b);
        let uuid = http_call(&client(&[
            ("http.method", "GET"),
            ("http.url", "http://h/u/3f2b8c1e-9d4a-4f6b-8c2d-1a2b3c4d5e6f/x"),
        ]))
        .expect("call");
        assert_eq!(uuid.target, "h/u/{id}/x");
    }

    #[test]
    fn cursor_parameters_mark_pagination() {
        let page = http_call(&client(&[
            ("http.method", "GET"),
            ("http.url", "http://api/events?cursor=abc&limit=100"),
        ]))
        .expect("call");
        assert!(page.paginated);
        let plain = http_call(&client(&[
            ("http.method", "GET"),
            ("http.url", "http://api/events?limit=100"),
        ]))
        .expect("call");
        assert!(!plain.paginated);
        for numbered in ["http://api/events?page=2", "http://api/events?offset=40&limit=20"] {
            let call = http_call(&client(&[("http.method", "GET"), ("http.url", numbered)])).expect("call");
            assert!(!call.paginated, "{numbered}: numbered pages are known in advance");
        }
    }
}
