//! `connection-churn`: a new connection (or TLS handshake) per request to the same peer.

use chokepoint_evidence::{Resource, Subject};
use hashbrown::HashMap;

use crate::db::{DbView, WATCH};
use crate::detectors::{ms, percent};
use crate::finding::{Basis, Confidence, Sample, SampleUnit};
use crate::load::{Curve, RAMP};
use crate::registry::{Conclusion, Detector, Estimate, Reads, detector};
use crate::request::{Request, is_db_call};
use crate::trace_analysis::{Observation, Observer};
use crate::traces::GroupView;

detector! {
    /// # What it detects
    ///
    /// Requests that open a new connection — a TCP connect, a TLS handshake, a database login —
    /// to the same peer, in most of the endpoint's requests: no pool, or a pool that does not
    /// keep its connections.
    ///
    /// # Why it limits throughput
    ///
    /// A PostgreSQL connection costs a process fork and authentication (several ms, more with
    /// TLS); an HTTPS connection costs extra round trips. Paid per request, that is pure waste,
    /// and under load the database spends its CPU on backends starting and stopping.
    ///
    /// # Evidence used
    ///
    /// In traces: spans named `connect` (or `*.connect`, `connect …`), handshake spans, and spans with
    /// `db.operation.name = connect`, that say whose connection it is — a database client's
    /// (`db.system`) or one to a named peer (`server.address`, `net.peer.name`,
    /// `network.peer.address`); a name alone is not evidence: a browser's page-load trace has
    /// navigation-timing spans named `connect` for the page's own connection. Grouped by peer
    /// (`server.address:server.port/database`).
    /// Flagged when they appear in at least half the endpoint's requests; a pool that grows now
    /// and then stays under that. Connect spans under 1 ms are pool checkouts, not connections:
    /// SQLAlchemy's instrumentation names its span around `Engine.connect` `connect`, and with a
    /// pool that is a checkout of an open connection; where the same peer's connect spans also
    /// show such checkouts, the longer ones are the pool's too — waits for a free connection
    /// when it is exhausted — and not churn. In a load ramp: the connections the
    /// generator had to reopen because the target closed them, flagged at half a new
    /// connection per request or more; or, for a target on this host, the connections the
    /// target opened itself (the host's `ActiveOpens` less the generator's and the scraper's),
    /// half or more per request over all the sampled steps (10 requests or more; churn does not
    /// depend on the load, and a slow target may answer few requests per step), with the peer its
    /// outbound sockets were seen connected to. With `chokepoint db --watch`: five or more new
    /// sessions per second living under a second each.
    ///
    /// In the source (`chokepoint scan`, `--source DIR`): an HTTP client, an engine, a driver's
    /// `connect` made in a request's code, or a session on an engine with `poolclass=NullPool`.
    /// A shape read there is potential — not measured — until a runtime finding meets it on its
    /// line, statement or route.
    ///
    /// # Known false positives
    ///
    /// Endpoints that legitimately connect somewhere new each time (webhooks to user-given
    /// URLs). The outbound count is host-wide: other programs connecting during the ramp add to
    /// it. Instrumentations that do not record connects cannot show churn at all: the
    /// detector is then reported as skipped, not clean.
    ///
    /// # Typical fix
    ///
    /// Keep connections: SQLAlchemy's default `QueuePool` instead of `NullPool` (with
    /// `pool_pre_ping=True`), PgBouncer in transaction mode in front of PostgreSQL, one shared
    /// `httpx.Client` / `requests.Session` instead of a client per call.
    pub(crate) struct ConnectionChurn {
        id: ConnectionChurn,
        summary: "a new connection or TLS handshake per request to the same peer",
        reads: [
            Reads::Traces("connect or handshake spans"),
            Reads::Load(RAMP),
            Reads::Database(WATCH),
            Reads::Source("a client, engine or connection made per request"),
        ],
        same_cause: [],
    }
}

/// Connects must appear in at least this share of an endpoint's requests to be churn.
const MIN_REQUEST_SHARE: f64 = 0.5;
/// A connect span shorter than this is a pool checkout, not a new connection, in ms: a new
/// PostgreSQL connection costs a TCP handshake, authentication and a backend fork (3 ms and up
/// even on loopback), a checkout from a pool tens of microseconds.
const MIN_CONNECT_MS: f64 = 1.0;

impl Detector for ConnectionChurn {
    fn observe(&self, request: &Request<'_>, out: &mut Observer<'_>) {
        // Per peer: connects, their time, and pool checkouts (connect spans under 1 ms).
        let mut by_peer: HashMap<(bool, &str), (u64, u64, u64)> = HashMap::new();
        for &i in &request.local {
            let span = request.span(i);
            let Some(peer) = request.connect_peer(i) else {
                continue;
            };
            out.evaluated();
            let entry = by_peer.entry((is_db_call(span), peer)).or_default();
            if span.duration_ms() < MIN_CONNECT_MS {
                entry.2 += 1;
            } else {
                entry.0 += 1;
                entry.1 += span.duration_nano();
            }
        }
        for ((database, peer), (connects, total_ns, checkouts)) in by_peer {
            // A request with checkouts only is pushed too, with nothing to save: the group must
            // know the peer's connect spans are a pool's (see `conclude`).
            let mut metrics = vec![("pool_checkouts", checkouts as f64)];
            if connects > 0 {
                metrics.push(("connects_per_request", connects as f64));
                metrics.push(("connect_ms", ms(total_ns) / connects as f64));
            }
            out.push(Observation {
                subject: Subject::Peer {
                    address: peer.to_owned(),
                    database,
                },
                location: None,
                related: None,
                code: None,
                saved_ns: total_ns,
                latency_saved_ns: total_ns,
                occurrences: connects.max(checkouts.min(1)),
                metrics,
            });
        }
    }

    fn conclude(&self, group: &GroupView<'_>) -> Option<Conclusion> {
        // Instant checkouts mean these spans are a pool's `Engine.connect`: the long ones are
        // waits for a free connection (the pool exhausted, a ramp's worker-exhaustion) or the
        // pool opening one, not a connection per request.
        if group.max("pool_checkouts") > 0.0 || group.affected_share() < MIN_REQUEST_SHARE {
            return None;
        }
        let database = matches!(group.subject(), Subject::Peer { database: true, .. });
        let title = format!(
            "{} opens a new connection to {} in {} of its requests ({:.1} ms each, {:.1} per request)",
            group.endpoint,
            group.location,
            percent(group.affected_share()),
            group.mean("connect_ms"),
            group.mean("connects_per_request"),
        );
        let fix = if database {
            format!(
                "Pool the connections to {}: create one engine per process with SQLAlchemy's default `QueuePool` \
                 (`create_engine(url, pool_size=10, max_overflow=5, pool_pre_ping=True)`) instead of `NullPool` or a \
                 `connect()` per request; Django: `CONN_MAX_AGE = 60`; or put PgBouncer (transaction mode) in front.",
                group.location
            )
        } else {
            format!(
                "Reuse connections to {}: create one `httpx.AsyncClient` / `requests.Session` at startup and share it, \
                 so keep-alive skips the TCP and TLS handshakes.",
                group.location
            )
        };
        Some(
            Conclusion::new(
                Resource::Connections,
                Basis::Measured,
                Estimate::Observed,
                title,
                fix,
                Confidence::from_share(group.affected_share()),
            )
            .assume(vec![
                "a pool removes nearly every connect: the saving is all the connect time".into(),
            ]),
        )
    }

    fn check_load(&self, curve: &Curve<'_>) -> Option<Conclusion> {
        let step = curve.knee;
        let per_request = step.new_connections as f64 / step.requests.max(1) as f64;
        if per_request < MIN_NEW_CONNECTIONS_PER_REQUEST {
            return outbound(curve);
        }
        let title = format!(
            "The target closes its connections: {:.2} new connections per request at {:.0} requests/s, each paying a TCP handshake (and TLS, if any)",
            per_request, step.throughput_rps
        );
        let fix = "Keep connections alive: drop `Connection: close`, raise the server's keep-alive timeout (uvicorn \
                   `--timeout-keep-alive`, gunicorn `--keep-alive`, nginx `keepalive_timeout` and `keepalive_requests`), \
                   and keep the proxy's upstream connections alive (nginx `keepalive` in the upstream block)."
            .to_owned();
        Some(
            Conclusion::new(
                Resource::Connections,
                Basis::Assumed,
                Estimate::PerRequest {
                    saved_ms: per_request * CONNECT_MS,
                },
                title,
                fix,
                if per_request > 0.9 {
                    Confidence::High
                } else {
                    Confidence::Medium
                },
            )
            .assume(vec![
                "the generator keeps every connection open; each new one was closed by the target".into(),
                format!("a new connection costs about {CONNECT_MS:.1} ms (a round trip and its setup)"),
            ])
            .metrics(vec![("new_connections_per_request", per_request)])
            .about(
                Subject::Resource {
                    resource: Resource::Connections,
                },
                format!(
                    "connections from clients, at {}",
                    crate::load::offered(curve.run, curve.knee.offered)
                ),
            ),
        )
    }

    fn check_database(&self, database: &DbView<'_>) -> Option<Conclusion> {
        let activity = database.snapshot.activity.as_ref()?;
        let (per_s, lifetime) = (activity.sessions_per_s?, activity.session_ms_mean?);
        if per_s < DB_MIN_SESSIONS_PER_S || lifetime > DB_MAX_SESSION_MS {
            return None;
        }
        let sessions = per_s * activity.duration_s;
        Some(
            Conclusion::new(
                Resource::Connections,
                Basis::Assumed,
                Estimate::Recovered {
                    saved_ms_total: sessions * DB_CONNECT_MS,
                    share: DB_CONNECT_MS / lifetime.max(DB_CONNECT_MS),
                    sample: Sample {
                        affected: sessions as u64,
                        total: sessions as u64,
                        unit: SampleUnit::Sessions,
                    },
                    occurrences: sessions as u64,
                },
                format!(
                    "{per_s:.0} new sessions per second, each living {lifetime:.0} ms: the application connects per request"
                ),
                "Pool the connections: one engine per process with SQLAlchemy's default `QueuePool` instead of `NullPool` \
                 (`pool_pre_ping=True`), Django `CONN_MAX_AGE`, or PgBouncer in transaction mode in front of PostgreSQL."
                    .to_owned(),
                Confidence::High,
            )
            .assume(vec![format!(
                "each new session costs the server about {DB_CONNECT_MS:.0} ms (fork and authentication)"
            )])
            .metrics(vec![("sessions_per_s", per_s), ("session_ms_mean", lifetime)])
            .about(
                Subject::Sessions {
                    database: database.snapshot.database.clone(),
                },
                format!("{sessions:.0} sessions in {:.0} s", activity.duration_s),
            ),
        )
    }
}

/// New connections per request, in a load ramp, that make the target a connection churner.
const MIN_NEW_CONNECTIONS_PER_REQUEST: f64 = 0.5;

/// Requests over the ramp's sampled steps below which the outbound count is too small to divide.
const MIN_OUTBOUND_REQUESTS: u64 = 10;
/// What a new connection costs, in ms: a round trip within a zone and the setup on both ends
/// (accept, socket and buffer allocation); a TLS handshake adds one or two round trips more.
const CONNECT_MS: f64 = 1.0;

/// The target opening new connections of its own — to its database or its downstreams — for
/// every request: counted from the host's `ActiveOpens` less the generator's and the scraper's
/// connections, over every sampled step (churn is per request, whatever the load), with the peer
/// its established outbound sockets went to most.
fn outbound(curve: &Curve<'_>) -> Option<Conclusion> {
    let step = curve.knee;
    let sampled: Vec<_> = curve
        .run
        .steps
        .iter()
        .filter_map(|s| Some((s, s.target.as_ref()?)))
        .filter(|(s, _)| s.requests > 0)
        .collect();
    let requests: u64 = sampled.iter().map(|(s, _)| s.requests).sum();
    let opened: f64 = sampled.iter().map(|(_, t)| t.outbound_connections).sum();
    let per_request = opened / requests.max(1) as f64;
    if requests < MIN_OUTBOUND_REQUESTS || per_request < MIN_NEW_CONNECTIONS_PER_REQUEST {
        return None;
    }
    // The peer new connections were seen going to most, over the ramp.
    let mut peers: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
    for (_, target) in &sampled {
        for (peer, seen) in &target.outbound_peers {
            *peers.entry(peer.as_str()).or_default() += seen;
        }
    }
    let peer = peers
        .iter()
        .max_by_key(|(peer, seen)| (**seen, std::cmp::Reverse(**peer)))
        .map(|(peer, _)| *peer);
    let (to, check) = match peer {
        Some(peer) => (
            format!(" (most to {peer})"),
            format!(" Check what listens on {peer}."),
        ),
        None => (String::new(), String::new()),
    };
    Some(
        Conclusion::new(
            Resource::Connections,
            Basis::Assumed,
            Estimate::PerRequest {
                saved_ms: per_request * CONNECT_MS,
            },
            format!(
                "The service opens {per_request:.1} new outbound connections per request{to} at {:.0} requests/s: \
                 a client or a connection per call instead of a pool",
                step.throughput_rps
            ),
            format!(
                "Create the client once per process and reuse it: one `httpx.AsyncClient` opened in the app's lifespan \
                 (or a `requests.Session`, an `aiohttp.ClientSession`) instead of `async with httpx.AsyncClient()` or \
                 `requests.get` per call; for a database, a pool (SQLAlchemy `QueuePool`, PgBouncer).{check}"
            ),
            // Without a socket of the target's seen connected, the count is the host's alone.
            if peer.is_some() && per_request > 0.9 {
                Confidence::High
            } else {
                Confidence::Medium
            },
        )
        .assume(vec![
            "the connections opened from this host during the ramp, less the generator's and the scraper's, are the target's"
                .into(),
            format!("a new connection costs about {CONNECT_MS:.1} ms (a round trip and its setup)"),
        ])
        .metrics(vec![("outbound_connections_per_request", per_request)])
        .about(
            Subject::Peer {
                address: peer.unwrap_or("unknown peer").to_owned(),
                database: false,
            },
            peer.map_or("outbound connections".to_owned(), |p| format!("outbound connections to {p}")),
        ),
    )
}

/// New database sessions per second that make churn.
const DB_MIN_SESSIONS_PER_S: f64 = 5.0;
/// Sessions shorter than this, in ms, are a connection per request.
const DB_MAX_SESSION_MS: f64 = 1_000.0;
/// What opening a PostgreSQL session costs the server, in ms (fork and authentication; 3 ms
/// measured on loopback in the testbed).
const DB_CONNECT_MS: f64 = 3.0;
