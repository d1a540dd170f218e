//! The public vocabulary of findings: the detector ids of DESIGN.md's taxonomy, what a finding is
//! about ([`Subject`]), where it was seen ([`Scope`]), and the resource it limits or consumes
//! ([`Resource`]). Typed, so that the ranker merges and the joins match on values, never on text.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

macro_rules! detector_ids {
    ($($(#[doc = $doc:literal])* $variant:ident = $text:literal,)*) => {
        /// A detector id: one row of DESIGN.md's taxonomy, named after the problem. Stable, like a
        /// lint code; written kebab-case (`n-plus-one`).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
        pub enum DetectorId {
            $($(#[doc = $doc])* #[serde(rename = $text)] $variant,)*
        }

        impl DetectorId {
            /// Every id, in the taxonomy's order.
            pub const ALL: &'static [DetectorId] = &[$(DetectorId::$variant),*];

            /// The id as written: `n-plus-one`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(DetectorId::$variant => $text,)*
                }
            }
        }
    };
}

detector_ids! {
    /// Throughput capped by the CPU.
    CpuSaturation = "cpu-saturation",
    /// Throughput capped by a pool of busy, mostly waiting workers.
    WorkerExhaustion = "worker-exhaustion",
    /// A blocking call stalls an event loop.
    BlockingCall = "blocking-call",
    /// Serialization burns the time.
    SlowSerialization = "slow-serialization",
    /// Logging writes synchronously on the request path.
    SyncLogging = "sync-logging",
    /// Statements that take long.
    SlowQuery = "slow-query",
    /// A scan an index would avoid.
    MissingIndex = "missing-index",
    /// Sessions wait on locks.
    LockContention = "lock-contention",
    /// The same statement or call once per item.
    NPlusOne = "n-plus-one",
    /// A new connection per request.
    ConnectionChurn = "connection-churn",
    /// Throughput capped by the link.
    BandwidthLimit = "bandwidth-limit",
    /// Large uncompressed bodies.
    LargePayload = "large-payload",
    /// Time spent on the wire.
    NetworkLatency = "network-latency",
    /// Independent calls awaited one after another.
    SequentialCalls = "sequential-calls",
    /// Very many rows per call without a LIMIT.
    UnboundedResult = "unbounded-result",
    /// Large sets sorted in memory.
    InMemorySort = "in-memory-sort",
    /// Patterns compiled on every request.
    RegexPerRequest = "regex-per-request",
}

impl DetectorId {
    /// The id written as `text`, if it is one.
    pub fn parse(text: &str) -> Option<DetectorId> {
        DetectorId::ALL.iter().copied().find(|id| id.as_str() == text)
    }
}

impl fmt::Display for DetectorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A resource of the service that requests use, and that can cap its throughput.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Resource {
    /// The service's CPU.
    Cpu,
    /// The host's CPU, which the service shares with other processes (a database on the same
    /// host, say).
    HostCpu,
    /// Workers that each hold a request for its whole duration: threads, processes, pool slots.
    Workers,
    /// An event loop's one thread.
    EventLoop,
    /// The database's execution time.
    Database,
    /// Database locks: time sessions wait for each other.
    Locks,
    /// Opening connections: TCP and TLS handshakes, database logins.
    Connections,
    /// Time on the wire between the service and what it calls.
    Network,
    /// The bytes per second the link carries.
    Link,
    /// Time spent in the services it calls.
    Downstream,
}

impl Resource {
    /// The resource in words: "the CPU", "the database".
    pub fn describe(self) -> &'static str {
        match self {
            Resource::Cpu => "the CPU",
            Resource::HostCpu => "the host's CPU",
            Resource::Workers => "the workers",
            Resource::EventLoop => "the event loop",
            Resource::Database => "the database",
            Resource::Locks => "database locks",
            Resource::Connections => "connection setup",
            Resource::Network => "the network",
            Resource::Link => "the link",
            Resource::Downstream => "the services it calls",
        }
    }
}

/// A statement fingerprint: 64 bits of a hash of its normalized text, written as 16 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Fingerprint(pub u64);

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Fingerprint {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Fingerprint {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        u64::from_str_radix(&text, 16)
            .map(Fingerprint)
            .map_err(|_| serde::de::Error::custom(format!("expected 16 hex digits, found {text:?}")))
    }
}

impl JsonSchema for Fingerprint {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Fingerprint".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^[0-9a-f]{16}$",
            "description": "A statement fingerprint: 16 hex digits of a hash of its normalized text."
        })
    }
}

/// An outgoing HTTP call, reduced to what makes calls the same.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
pub struct HttpTarget {
    /// The method, upper-case.
    pub method: String,
    /// `host:port/path` with ids in the path folded to `{id}`.
    pub target: String,
}

impl fmt::Display for HttpTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.target)
    }
}

/// What a finding is about. Findings about the same subject from different angles (a statement
/// slow in traces, and the index that would fix it) are one cause: the ranker merges them.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Subject {
    /// A database statement, normalized.
    Statement {
        /// Its fingerprint.
        fingerprint: Fingerprint,
        /// Its normalized text (literals as `?`).
        text: String,
    },
    /// An outgoing HTTP call.
    HttpCall(HttpTarget),
    /// Calls awaited one after another under one parent (statements and HTTP calls), sorted.
    CallSequence {
        /// The calls.
        calls: Vec<Subject>,
    },
    /// A peer the service connects to.
    Peer {
        /// `host:port`, with `/database` for a database.
        address: String,
        /// Whether it is a database.
        database: bool,
    },
    /// A downstream service reached over the network, by its `service.name`.
    Downstream {
        /// The downstream's `service.name`.
        service: String,
    },
    /// An HTTP response body: the endpoint's own (`call` absent), or one a call received.
    ResponseBody {
        /// The call whose response it is.
        call: Option<HttpTarget>,
    },
    /// A table.
    Relation {
        /// `schema.table`.
        name: String,
    },
    /// A lock, and the statement of the session holding it.
    Lock {
        /// The locked relation (`schema.table`, `… (rows)`), when known.
        relation: String,
        /// The blocking session's statement, normalized.
        blocker: String,
    },
    /// A database's sessions: connections opened and closed.
    Sessions {
        /// The database.
        database: String,
    },
    /// A resource of the service as a whole (a capacity limit from a load ramp).
    Resource {
        /// The resource.
        resource: Resource,
    },
    /// A place in the code.
    Code {
        /// The file.
        file: String,
        /// The line, when known.
        line: Option<u32>,
        /// The function.
        function: String,
    },
    /// A process.
    Process {
        /// Its id.
        pid: u32,
    },
}

/// An identity by which one kind of evidence sees the same cause as another: the line a profile's
/// frame runs, a span's `code.*` attributes point at and a source scan reads; the statement a
/// span executes, `pg_stat_statements` counts and a SQL literal on a profiled line holds; the
/// endpoint a trace serves and a load ramp requests. Findings carry them, and findings that
/// share one — and whose detectors name the same problem — are one cause.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Anchor {
    /// A place in the code.
    Code {
        /// The file, as the evidence names it (absolute, or relative to a package or a root).
        file: String,
        /// The line, when known.
        line: Option<u32>,
        /// The function.
        function: String,
    },
    /// A statement, by the fingerprint of its normalized text.
    Statement {
        /// The fingerprint.
        fingerprint: Fingerprint,
    },
    /// An endpoint of a service.
    Endpoint {
        /// The `service.name`.
        service: String,
        /// The HTTP method, when the endpoint has one.
        method: Option<String>,
        /// The route (`/orders/{id}`), or the entry span's name.
        route: String,
    },
    /// An outgoing HTTP call.
    HttpCall(HttpTarget),
    /// A lock on a relation (or its rows).
    Lock {
        /// The relation, `schema.table` or `table`.
        relation: String,
    },
    /// A table.
    Relation {
        /// `schema.table` or `table`.
        name: String,
    },
}

impl Anchor {
    /// The endpoint anchor of an endpoint scope (`GET /orders/{id}` split into method and route).
    pub fn endpoint(service: &str, endpoint: &str) -> Anchor {
        let (method, route) = match endpoint.split_once(' ') {
            Some((method, route)) if !method.is_empty() && method.chars().all(|c| c.is_ascii_uppercase()) => {
                (Some(method.to_owned()), route.trim().to_owned())
            }
            _ => (None, endpoint.to_owned()),
        };
        Anchor::Endpoint {
            service: service.to_owned(),
            method,
            route,
        }
    }

    /// Whether the anchor names one thing a cause can be about, rather than a place where many
    /// causes live (an endpoint runs many statements; two findings there are not one cause for
    /// it).
    pub fn is_specific(&self) -> bool {
        !matches!(self, Anchor::Endpoint { .. })
    }

    /// Whether two anchors name the same thing, each evidence kind written its own way: a file
    /// path absolute in one and relative in the other, a relation with and without its schema.
    pub fn meets(&self, other: &Anchor) -> bool {
        match (self, other) {
            (
                Anchor::Code {
                    file: a,
                    line: la,
                    function: fa,
                },
                Anchor::Code {
                    file: b,
                    line: lb,
                    function: fb,
                },
            ) => {
                same_file(a, b)
                    && match (la, lb) {
                        (Some(la), Some(lb)) => la == lb,
                        _ => bare_function(fa) == bare_function(fb),
                    }
            }
            (Anchor::Statement { fingerprint: a }, Anchor::Statement { fingerprint: b }) => a == b,
            (
                Anchor::Endpoint {
                    service: sa,
                    method: ma,
                    route: ra,
                },
                Anchor::Endpoint {
                    service: sb,
                    method: mb,
                    route: rb,
                },
            ) => {
                (sa == sb || sa.is_empty() || sb.is_empty())
                    && ra.trim_matches('/') == rb.trim_matches('/')
                    && (ma.is_none() || mb.is_none() || ma == mb)
            }
            (Anchor::HttpCall(a), Anchor::HttpCall(b)) => a == b,
            (Anchor::Lock { relation: a }, Anchor::Lock { relation: b })
            | (Anchor::Relation { name: a }, Anchor::Relation { name: b })
            | (Anchor::Lock { relation: a }, Anchor::Relation { name: b })
            | (Anchor::Relation { name: a }, Anchor::Lock { relation: b }) => same_relation(a, b),
            _ => false,
        }
    }
}

/// Whether two paths name one file: equal, one ending with the other at a `/` (py-spy writes
/// `/srv/app/views.py`, a span `app/views.py`, a scan `views.py` from its root), or two absolute
/// paths that end alike in their last two components (`/app/shop/views.py` in the container that
/// exported the span, `/srv/shop/views.py` on the host py-spy ran on).
fn same_file(a: &str, b: &str) -> bool {
    let (long, short) = if a.len() >= b.len() { (a, b) } else { (b, a) };
    if short.is_empty() {
        return false;
    }
    let suffix = long.ends_with(short)
        && (long.len() == short.len()
            || short.starts_with('/')
            || long.as_bytes()[long.len() - short.len() - 1] == b'/');
    fn tail(path: &str) -> Vec<&str> {
        path.rsplit('/').take(2).collect()
    }
    suffix || (a.starts_with('/') && b.starts_with('/') && tail(a).len() == 2 && tail(a) == tail(b))
}

/// A function's name without its class or enclosing function (`Orders.get` → `get`).
fn bare_function(name: &str) -> &str {
    name.rsplit(['.', ':']).next().unwrap_or(name)
}

/// Whether two relation names are one table: `public.users`, `users`, `users (rows)`, quoted.
fn same_relation(a: &str, b: &str) -> bool {
    let bare = |name: &str| {
        let name = name.split(" (").next().unwrap_or(name).trim().replace('"', "");
        name.rsplit('.').next().unwrap_or(&name).to_owned()
    };
    let (a, b) = (bare(a), bare(b));
    !a.is_empty() && a == b
}

impl fmt::Display for Anchor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Anchor::Code {
                file,
                line: Some(line),
                function,
            } => write!(f, "{function} ({file}:{line})"),
            Anchor::Code { file, function, .. } => write!(f, "{function} ({file})"),
            Anchor::Statement { fingerprint } => write!(f, "statement {fingerprint}"),
            Anchor::Endpoint {
                service,
                method,
                route,
            } => match method {
                Some(method) => write!(f, "{service}: {method} {route}"),
                None => write!(f, "{service}: {route}"),
            },
            Anchor::HttpCall(call) => write!(f, "{call}"),
            Anchor::Lock { relation } => write!(f, "lock on {relation}"),
            Anchor::Relation { name } => f.write_str(name),
        }
    }
}

/// Where a finding was seen: an endpoint of a service, a database, a load target.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Scope {
    /// An endpoint of a service, from its traces.
    Endpoint {
        /// The `service.name`.
        service: String,
        /// `GET /orders/{id}`, or the root span's name.
        endpoint: String,
    },
    /// A PostgreSQL database.
    Database {
        /// The database's name.
        database: String,
    },
    /// A profiled process (a profile sees code, not requests).
    Process {
        /// Its id, when known.
        pid: Option<u32>,
    },
    /// A file of the service's source.
    Source {
        /// The file.
        file: String,
    },
    /// A service under a load ramp.
    Target {
        /// The URL loaded.
        url: String,
        /// The process sampled, when one was.
        pid: Option<u32>,
    },
}

impl Scope {
    /// The scope in a few words: `GET /orders`, `database shop`, the URL.
    pub fn label(&self) -> String {
        match self {
            Scope::Endpoint { endpoint, .. } => endpoint.clone(),
            Scope::Database { database } => format!("database {database}"),
            Scope::Target { url, .. } => url.clone(),
            Scope::Process { pid: Some(pid) } => format!("process {pid}"),
            Scope::Process { pid: None } => "the profiled process".to_owned(),
            Scope::Source { file } => file.clone(),
        }
    }

    /// The scope with its service, for an endpoint: `GET /orders (shop)`; else its label. Two
    /// services with the same route stay two endpoints.
    pub fn qualified(&self) -> String {
        match self {
            Scope::Endpoint { service, endpoint } => format!("{endpoint} ({service})"),
            other => other.label(),
        }
    }

    /// Who: the service, `postgresql shop`, `pid 4242`.
    pub fn owner(&self) -> String {
        match self {
            Scope::Endpoint { service, .. } => service.clone(),
            Scope::Database { database } => format!("postgresql {database}"),
            Scope::Target { pid: Some(pid), .. } => format!("pid {pid}"),
            Scope::Target { pid: None, .. } => "target".to_owned(),
            Scope::Process { pid: Some(pid) } => format!("pid {pid}"),
            Scope::Process { pid: None } => "profile".to_owned(),
            Scope::Source { .. } => "source".to_owned(),
        }
    }

    /// The endpoint's name, for an endpoint scope.
    pub fn endpoint(&self) -> Option<&str> {
        match self {
            Scope::Endpoint { endpoint, .. } => Some(endpoint),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_written_kebab_case_and_read_back() {
        for &id in DetectorId::ALL {
            let json = serde_json::to_string(&id).expect("serializes");
            assert_eq!(json, format!("\"{id}\""));
            assert_eq!(serde_json::from_str::<DetectorId>(&json).ok(), Some(id));
            assert_eq!(DetectorId::parse(id.as_str()), Some(id));
        }
        assert_eq!(DetectorId::NPlusOne.as_str(), "n-plus-one");
        assert_eq!(DetectorId::parse("n-plus-two"), None);
    }

    #[test]
    fn anchors_meet_across_the_ways_each_evidence_writes_them() {
        let code = |file: &str, line: Option<u32>, function: &str| Anchor::Code {
            file: file.into(),
            line,
            function: function.into(),
        };
        let frame = code("/srv/shop/app/views.py", Some(84), "orders_bad");
        assert!(frame.meets(&code("app/views.py", Some(84), "orders_bad")));
        assert!(frame.meets(&code("views.py", Some(84), "x")), "the line decides");
        assert!(!frame.meets(&code("views.py", Some(85), "orders_bad")));
        assert!(
            !frame.meets(&code("myviews.py", Some(84), "orders_bad")),
            "not at a /"
        );
        assert!(frame.meets(&code("app/views.py", None, "Orders.orders_bad")));
        let endpoint = Anchor::endpoint("shop", "GET /orders/{id}");
        assert_eq!(
            endpoint,
            Anchor::Endpoint {
                service: "shop".into(),
                method: Some("GET".into()),
                route: "/orders/{id}".into()
            }
        );
        assert!(endpoint.meets(&Anchor::endpoint("shop", "/orders/{id}/")));
        assert!(!endpoint.meets(&Anchor::endpoint("billing", "GET /orders/{id}")));
        assert!(!endpoint.meets(&Anchor::endpoint("shop", "POST /orders/{id}")));
        assert!(!endpoint.is_specific() && frame.is_specific());
        let lock = Anchor::Lock {
            relation: "accounts (rows)".into(),
        };
        assert!(lock.meets(&Anchor::Relation {
            name: "public.accounts".into()
        }));
        let json = serde_json::to_value(&endpoint).expect("serializes");
        assert_eq!(json["kind"], "endpoint");
        let back: Anchor = serde_json::from_value(json).expect("reads back");
        assert_eq!(back, endpoint);
    }

    #[test]
    fn subjects_say_their_kind() {
        let subject = Subject::Statement {
            fingerprint: Fingerprint(0xab),
            text: "SELECT ?".into(),
        };
        let json = serde_json::to_value(&subject).expect("serializes");
        assert_eq!(json["kind"], "statement");
        assert_eq!(json["fingerprint"], "00000000000000ab");
        let back: Subject = serde_json::from_value(json).expect("reads back");
        assert_eq!(back, subject);
        let call = Subject::HttpCall(HttpTarget {
            method: "GET".into(),
            target: "inventory:8001/stock/{id}".into(),
        });
        let json = serde_json::to_value(&call).expect("serializes");
        assert_eq!(json["kind"], "http_call");
        assert_eq!(json["method"], "GET");
    }
}
