//! The load generator: one keep-alive connection per worker — HTTP/1.1 driven by the worker
//! itself (`http1.rs`), HTTP/2 over hyper's connection-level client — `TCP_NODELAY`, latencies
//! recorded into HDR histograms (bounded memory however long the run).
//!
//! Closed model: each worker sends its next request when the last one answered. Open model:
//! requests have intended send times at a fixed rate, and latency is measured from the intended
//! time, so a stalled server is charged for the requests it delayed (coordinated omission
//! corrected, as wrk2 does).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt as _, Full};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::http1::{self, Failure, Http1};

/// Largest latency recorded, in µs; larger values are clamped (an hour).
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// Why the load could not be set up.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SetupError {
    /// The `--cacert` file.
    #[error("the CA file {0}")]
    CaFile(String),
    /// TLS could not be configured.
    #[error("TLS: {0}")]
    Tls(String),
    /// The host is not a name a certificate can carry.
    #[error("{host:?} is not a TLS server name: {reason}")]
    ServerName {
        /// The host.
        host: String,
        /// Why.
        reason: String,
    },
    /// A header, path or Host the request cannot carry.
    #[error("the request cannot be built: {0}")]
    Request(String),
}

/// Why a request failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The TCP connection could not be made.
    #[error("connect to {addr}: {reason}")]
    Connect {
        /// The target.
        addr: SocketAddr,
        /// The system's reason.
        reason: String,
    },
    /// The TLS handshake failed.
    #[error("connect to {addr}: TLS: {reason}")]
    Tls {
        /// The target.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// The HTTP/2 handshake failed.
    #[error("HTTP/2 handshake with {addr}: {reason}")]
    Handshake {
        /// The target.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// The server closed a keep-alive connection without answering the request sent on it.
    #[error(
        "request to {addr}: the server closed the keep-alive connection without answering{}",
        if *.resent { "" } else { " (not sent again: the method is not idempotent)" }
    )]
    Stale {
        /// The target.
        addr: SocketAddr,
        /// Whether the request had been sent again on a new connection first.
        resent: bool,
    },
    /// The response was malformed, cut short, or the connection broke.
    #[error("request to {addr}: {reason}")]
    Broken {
        /// The target.
        addr: SocketAddr,
        /// What was wrong.
        reason: String,
    },
    /// A 5xx answer.
    #[error("HTTP {0}")]
    Status(u16),
    /// No answer within the timeout.
    #[error("timeout")]
    Timeout,
    /// The request could not be built.
    #[error("{0}")]
    Setup(SetupError),
    /// A worker of the generator failed.
    #[error("a load worker failed: {0}")]
    Worker(String),
}

impl RequestError {
    /// The kind, for counting errors by kind: `connect`, `tls`, `http2-handshake`, `stale`,
    /// `broken`, `status`, `timeout`, `setup`, `worker`.
    pub fn kind(&self) -> &'static str {
        match self {
            RequestError::Connect { .. } => "connect",
            RequestError::Tls { .. } => "tls",
            RequestError::Handshake { .. } => "http2-handshake",
            RequestError::Stale { .. } => "stale",
            RequestError::Broken { .. } => "broken",
            RequestError::Status(_) => "status",
            RequestError::Timeout => "timeout",
            RequestError::Setup(_) => "setup",
            RequestError::Worker(_) => "worker",
        }
    }

    /// Whether the target refused or never answered the connection (as opposed to failing a
    /// request on one).
    pub fn is_connect(&self) -> bool {
        matches!(
            self,
            RequestError::Connect { .. } | RequestError::Tls { .. } | RequestError::Handshake { .. }
        )
    }
}

/// What to request.
#[derive(Clone, Debug)]
pub struct Target {
    /// Where to connect.
    pub addr: SocketAddr,
    /// The `Host` header.
    pub host: String,
    /// Paths (with query) and their weights: each request takes the next path of a weighted
    /// round robin.
    pub paths: Vec<(String, u32)>,
    /// The method.
    pub method: Method,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// The request body.
    pub body: Bytes,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Speak HTTP/2 (h2c with prior knowledge in cleartext, ALPN `h2` over TLS) instead of
    /// HTTP/1.1.
    pub http2: bool,
    /// TLS, for `https://` targets.
    pub tls: Option<Tls>,
}

/// What a TLS connection needs.
#[derive(Clone)]
pub struct Tls {
    /// The client configuration (roots, ALPN).
    pub config: Arc<rustls::ClientConfig>,
    /// The name the certificate must carry.
    pub server_name: rustls::pki_types::ServerName<'static>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tls({:?})", self.server_name)
    }
}

impl Tls {
    /// TLS to `host`, trusting the Mozilla roots and any `extra_roots_pem` (a PEM bundle, for
    /// a private CA or a self-signed test certificate).
    pub fn new(host: &str, extra_roots_pem: Option<&[u8]>, http2: bool) -> Result<Tls, SetupError> {
        use rustls::pki_types::pem::PemObject as _;
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(pem) = extra_roots_pem {
            for cert in rustls::pki_types::CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| SetupError::CaFile(format!("is not PEM certificates: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| SetupError::CaFile(format!("holds an unusable certificate: {e}")))?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| SetupError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![if http2 {
            b"h2".to_vec()
        } else {
            b"http/1.1".to_vec()
        }];
        let server_name =
            rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|e| SetupError::ServerName {
                host: host.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(Tls {
            config: Arc::new(config),
            server_name,
        })
    }
}

impl Target {
    /// The requests, built once and cloned per send (parsing the URI and headers per request
    /// costs generator headroom), in weighted round-robin order.
    fn prepare(&self) -> Result<Vec<Prepared>, SetupError> {
        let mut headers = hyper::HeaderMap::new();
        for (name, value) in &self.headers {
            let name = hyper::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| SetupError::Request(format!("invalid header name {name:?}: {e}")))?;
            let value = hyper::header::HeaderValue::from_str(value)
                .map_err(|e| SetupError::Request(format!("invalid header value {value:?}: {e}")))?;
            headers.append(name, value);
        }
        let mut schedule = Vec::new();
        for (path, weight) in &self.paths {
            let prepared = if self.http2 {
                // HTTP/2 carries the authority in the request line (:authority), not in `Host`.
                let text = format!("http://{}{path}", self.host);
                let uri: hyper::Uri = text
                    .parse()
                    .map_err(|e| SetupError::Request(format!("invalid path {path:?}: {e}")))?;
                Prepared::Http2(Box::new(Http2Parts {
                    method: self.method.clone(),
                    uri,
                    headers: headers.clone(),
                    body: self.body.clone(),
                }))
            } else {
                Prepared::Http1 {
                    wire: self.http1_request(path, &headers)?,
                    head: self.method == Method::HEAD,
                    idempotent: self.method.is_idempotent(),
                }
            };
            schedule.extend(std::iter::repeat_n(prepared, *weight as usize));
        }
        if schedule.is_empty() {
            return Err(SetupError::Request("no path to request".into()));
        }
        Ok(schedule)
    }

    /// The whole HTTP/1.1 request for `path`, as written on the wire.
    fn http1_request(&self, path: &str, headers: &hyper::HeaderMap) -> Result<Bytes, SetupError> {
        let uri: hyper::Uri = path
            .parse()
            .map_err(|e| SetupError::Request(format!("invalid path {path:?}: {e}")))?;
        let target = uri.path_and_query().map_or("/", |p| p.as_str());
        let host = hyper::header::HeaderValue::from_str(&self.host)
            .map_err(|e| SetupError::Request(format!("invalid Host {:?}: {e}", self.host)))?;
        let mut wire = Vec::with_capacity(256 + self.body.len());
        wire.extend_from_slice(format!("{} {target} HTTP/1.1\r\n", self.method).as_bytes());
        if !headers.contains_key(hyper::header::HOST) {
            wire.extend_from_slice(b"host: ");
            wire.extend_from_slice(host.as_bytes());
            wire.extend_from_slice(b"\r\n");
        }
        for (name, value) in headers {
            wire.extend_from_slice(name.as_str().as_bytes());
            wire.extend_from_slice(b": ");
            wire.extend_from_slice(value.as_bytes());
            wire.extend_from_slice(b"\r\n");
        }
        let framed = headers.contains_key(hyper::header::CONTENT_LENGTH)
            || headers.contains_key(hyper::header::TRANSFER_ENCODING);
        let carries_body =
            !self.body.is_empty() || [Method::POST, Method::PUT, Method::PATCH].contains(&self.method);
        if carries_body && !framed {
            wire.extend_from_slice(format!("content-length: {}\r\n", self.body.len()).as_bytes());
        }
        wire.extend_from_slice(b"\r\n");
        wire.extend_from_slice(&self.body);
        Ok(wire.into())
    }
}

/// A request ready to send: encoded whole for HTTP/1.1, in parts to clone for hyper's HTTP/2.
#[derive(Clone)]
enum Prepared {
    Http1 {
        wire: Bytes,
        head: bool,
        /// Whether it may be sent again when a stale connection lost it (RFC 9110's idempotent
        /// methods): a POST the server may have acted on is not repeated.
        idempotent: bool,
    },
    Http2(Box<Http2Parts>),
}

/// An HTTP/2 request's parts, cloned into a hyper request per send.
#[derive(Clone)]
struct Http2Parts {
    method: Method,
    uri: hyper::Uri,
    headers: hyper::HeaderMap,
    body: Bytes,
}

impl Http2Parts {
    fn request(&self) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(self.body.clone()));
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        request
    }
}

/// What one step measured.
#[derive(Debug)]
pub struct StepResult {
    /// Latencies of answered requests, in µs.
    pub latency_us: Histogram<u64>,
    /// How late requests were sent after their intended time (open model), in µs.
    pub send_lag_us: Histogram<u64>,
    /// Answered requests (any status).
    pub requests: u64,
    /// Connection errors, timeouts and 5xx answers.
    pub errors: u64,
    /// Of which timeouts.
    pub timeouts: u64,
    /// Response bytes received.
    pub bytes: u64,
    /// Connections opened after the first one of each worker.
    pub new_connections: u64,
    /// Connections opened in all (the first of each worker's included).
    pub opened: u64,
    /// Connection attempts the target refused or never answered.
    pub connect_failures: u64,
    /// The first error, to tell the user.
    pub first_error: Option<RequestError>,
    /// Errors by kind ([`RequestError::kind`]).
    pub errors_by_kind: std::collections::BTreeMap<&'static str, u64>,
    /// One response body of the step (its first megabyte), and whether it came compressed.
    pub sample_body: Option<(Vec<u8>, bool)>,
}

impl StepResult {
    fn new() -> StepResult {
        StepResult {
            latency_us: histogram(3),
            send_lag_us: histogram(2),
            requests: 0,
            errors: 0,
            timeouts: 0,
            bytes: 0,
            new_connections: 0,
            opened: 0,
            connect_failures: 0,
            first_error: None,
            errors_by_kind: std::collections::BTreeMap::new(),
            sample_body: None,
        }
    }

    fn failed(error: RequestError) -> StepResult {
        let mut result = StepResult::new();
        result.record_error(error);
        result
    }

    fn merge(&mut self, other: StepResult) {
        let _ = self.latency_us.add(&other.latency_us);
        let _ = self.send_lag_us.add(&other.send_lag_us);
        self.requests += other.requests;
        self.errors += other.errors;
        self.timeouts += other.timeouts;
        self.bytes += other.bytes;
        self.new_connections += other.new_connections;
        self.opened += other.opened;
        self.connect_failures += other.connect_failures;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        for (kind, count) in other.errors_by_kind {
            *self.errors_by_kind.entry(kind).or_default() += count;
        }
        if self.sample_body.is_none() {
            self.sample_body = other.sample_body;
        }
    }

    fn record_error(&mut self, error: RequestError) {
        self.errors += 1;
        *self.errors_by_kind.entry(error.kind()).or_default() += 1;
        self.first_error.get_or_insert(error);
    }
}

/// A histogram of µs from 1 µs to an hour at `digits` significant digits.
fn histogram(digits: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, digits).expect("the bounds are constants, and valid")
}

/// A connection: HTTP/1.1 driven by its worker (plain or over TLS), or hyper's HTTP/2.
enum Sender {
    Http1(Http1<TcpStream>),
    Http1Tls(Box<Http1<tokio_rustls::client::TlsStream<TcpStream>>>),
    Http2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

impl Sender {
    fn is_closed(&self) -> bool {
        match self {
            Sender::Http1(c) => c.is_closed(),
            Sender::Http1Tls(c) => c.is_closed(),
            Sender::Http2(s) => s.is_closed(),
        }
    }
}

/// One worker's connection, reopened when the server closes it.
struct Connection {
    sender: Option<Sender>,
    opened: u64,
}

impl Connection {
    fn new() -> Connection {
        Connection {
            sender: None,
            opened: 0,
        }
    }

    /// The open connection, connected first when there is none (or the server closed it).
    async fn open(&mut self, target: &Target) -> Result<&mut Sender, RequestError> {
        // The open connection, taken and put back (a closed one stays until it is replaced).
        if let Some(sender) = self.sender.take_if(|sender| !sender.is_closed()) {
            return Ok(self.sender.insert(sender));
        }
        let stream = TcpStream::connect(target.addr)
            .await
            .map_err(|e| RequestError::Connect {
                addr: target.addr,
                reason: e.to_string(),
            })?;
        let _ = stream.set_nodelay(true);
        let sender = match (&target.tls, target.http2) {
            (None, false) => Sender::Http1(Http1::new(stream)),
            (Some(tls), _) => {
                let stream = tokio_rustls::TlsConnector::from(Arc::clone(&tls.config))
                    .connect(tls.server_name.clone(), stream)
                    .await
                    .map_err(|e| RequestError::Tls {
                        addr: target.addr,
                        reason: e.to_string(),
                    })?;
                if target.http2 {
                    http2(TokioIo::new(stream), target).await?
                } else {
                    Sender::Http1Tls(Box::new(Http1::new(stream)))
                }
            }
            (None, true) => http2(TokioIo::new(stream), target).await?,
        };
        self.opened += 1;
        Ok(self.sender.insert(sender))
    }
}

/// hyper's HTTP/2 handshake over a connected stream, plain or TLS; its connection task spawned.
async fn http2<T>(io: TokioIo<T>, target: &Target) -> Result<Sender, RequestError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
            .await
            .map_err(|e| RequestError::Handshake {
                addr: target.addr,
                reason: e.to_string(),
            })?;
    tokio::spawn(connection);
    Ok(Sender::Http2(sender))
}

/// Bytes of a response body kept as the step's sample.
const SAMPLE_BYTES: usize = 1 << 20;

/// Sends one request and reads the whole response; returns (status, bytes). With `sample`, the
/// body's first megabyte is kept there, with whether it was sent compressed. A keep-alive
/// connection the server closed while idle is reopened and an idempotent request sent again,
/// once.
async fn exchange(
    connection: &mut Connection,
    target: &Target,
    prepared: &Prepared,
    sample: Option<&mut Option<(Vec<u8>, bool)>>,
) -> Result<(u16, u64), RequestError> {
    let mut kept = sample.map(|slot| (slot, Vec::new()));
    for retry in [false, true] {
        let sender = connection.open(target).await?;
        let buffer = kept.as_mut().map(|(_, buffer)| buffer);
        let outcome = match (sender, prepared) {
            (Sender::Http1(c), Prepared::Http1 { wire, head, .. }) => {
                c.exchange(wire, *head, buffer, SAMPLE_BYTES).await
            }
            (Sender::Http1Tls(c), Prepared::Http1 { wire, head, .. }) => {
                c.exchange(wire, *head, buffer, SAMPLE_BYTES).await
            }
            (Sender::Http2(s), Prepared::Http2(parts)) => http2_exchange(s, parts.request(), buffer)
                .await
                .map_err(Failure::Broken),
            _ => Err(Failure::Broken(
                "the request does not match the connection's protocol".into(),
            )),
        };
        match outcome {
            Ok(response) => {
                if let Some((slot, buffer)) = kept
                    && !buffer.is_empty()
                {
                    *slot = Some((buffer, response.encoded));
                }
                return Ok((response.status, response.bytes));
            }
            Err(Failure::Stale) if !retry && matches!(prepared, Prepared::Http1 { idempotent: true, .. }) => {
                connection.sender = None;
            }
            Err(Failure::Stale) => {
                connection.sender = None;
                return Err(RequestError::Stale {
                    addr: target.addr,
                    resent: retry,
                });
            }
            Err(Failure::Broken(reason)) => {
                connection.sender = None;
                return Err(RequestError::Broken {
                    addr: target.addr,
                    reason,
                });
            }
        }
    }
    unreachable!("the second attempt returns")
}

/// One request over hyper's HTTP/2, the response read to its end.
async fn http2_exchange(
    sender: &mut hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
    mut sample: Option<&mut Vec<u8>>,
) -> Result<http1::Response, String> {
    sender.ready().await.map_err(|e| e.to_string())?;
    let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let encoded = response.headers().contains_key(hyper::header::CONTENT_ENCODING);
    let mut bytes = 0u64;
    let mut body = response.into_body();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("reading the response: {e}"))?;
        if let Some(data) = frame.data_ref() {
            bytes += data.len() as u64;
            if let Some(buffer) = sample.as_deref_mut() {
                let room = SAMPLE_BYTES.saturating_sub(buffer.len());
                buffer.extend_from_slice(&data[..data.len().min(room)]);
            }
        }
    }
    Ok(http1::Response {
        status,
        bytes,
        encoded,
    })
}

/// A step's tallies, shared by its workers: one shard per core the runtime may run them on (a
/// worker takes shard `worker % shards`). A step then holds a few histograms, not one per
/// connection — the histograms of 128 connections were 24 MB to zero on every step, and cold in
/// the cache at every record — and workers on different threads rarely wait for one another.
struct Shards(Vec<Mutex<StepResult>>);

impl Shards {
    fn new() -> Arc<Shards> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Arc::new(Shards(
            (0..cores).map(|_| Mutex::new(StepResult::new())).collect(),
        ))
    }

    fn lock(&self, worker: usize) -> MutexGuard<'_, StepResult> {
        let shard = &self.0[worker % self.0.len()];
        shard.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One worker of a step: its connection, its shard of the tallies, and whether it still looks
/// for a sample body.
struct Worker {
    index: usize,
    shards: Arc<Shards>,
    connection: Connection,
    wants_sample: bool,
}

impl Worker {
    fn new(index: usize, shards: &Arc<Shards>) -> Worker {
        Worker {
            index,
            shards: Arc::clone(shards),
            connection: Connection::new(),
            wants_sample: true,
        }
    }

    /// Sends `prepared` and reads the answer, within the target's timeout; returns the outcome,
    /// and the sample body when this one was kept.
    async fn send(&mut self, target: &Target, prepared: &Prepared) -> Outcome {
        if self.wants_sample {
            self.wants_sample = self.shards.lock(self.index).sample_body.is_none();
        }
        let mut sample = None;
        let slot = self.wants_sample.then_some(&mut sample);
        let outcome = tokio::time::timeout(
            target.timeout,
            exchange(&mut self.connection, target, prepared, slot),
        )
        .await;
        if sample.is_some() {
            self.wants_sample = false;
            self.shards
                .lock(self.index)
                .sample_body
                .get_or_insert_with(|| sample.unwrap_or_default());
        }
        outcome
    }

    /// Tallies one request's outcome, answered after `latency`, and (open model) how late it was
    /// sent: one lock of the shard per request.
    fn record(&mut self, outcome: Outcome, latency: Duration, send_lag: Option<Duration>) {
        let mut result = self.shards.lock(self.index);
        if let Some(lag) = send_lag {
            let _ = result
                .send_lag_us
                .record((lag.as_micros() as u64).clamp(1, MAX_LATENCY_US));
        }
        match outcome {
            Ok(Ok((status, bytes))) => {
                result.requests += 1;
                result.bytes += bytes;
                let _ = result
                    .latency_us
                    .record((latency.as_micros() as u64).clamp(1, MAX_LATENCY_US));
                if status >= 500 {
                    result.record_error(RequestError::Status(status));
                }
            }
            Ok(Err(error)) => {
                if error.is_connect() {
                    result.connect_failures += 1;
                }
                result.record_error(error);
            }
            Err(_) => {
                result.timeouts += 1;
                result.record_error(RequestError::Timeout);
                self.connection.sender = None;
            }
        }
    }

    /// Adds the connections this worker opened to its shard.
    fn finish(self) {
        let mut result = self.shards.lock(self.index);
        result.new_connections += self.connection.opened.saturating_sub(1);
        result.opened += self.connection.opened;
    }
}

/// A request's outcome: (status, bytes), an error, or the timeout.
type Outcome = Result<Result<(u16, u64), RequestError>, tokio::time::error::Elapsed>;

/// Closed model: `concurrency` workers, each with its own connection, until `duration` passes;
/// a request still in flight at `cutoff` (the bound on the whole ramp) is abandoned, not waited
/// for to its timeout.
pub async fn run_closed(
    target: Arc<Target>,
    concurrency: usize,
    duration: Duration,
    cutoff: Instant,
) -> StepResult {
    let prepared = match target.prepare() {
        Ok(prepared) => Arc::new(prepared),
        Err(error) => return StepResult::failed(RequestError::Setup(error)),
    };
    let deadline = Instant::now() + duration;
    let shards = Shards::new();
    let mut workers = Vec::with_capacity(concurrency);
    for index in 0..concurrency {
        let (target, prepared) = (Arc::clone(&target), Arc::clone(&prepared));
        let mut worker = Worker::new(index, &shards);
        workers.push(tokio::spawn(async move {
            let mut turn = index;
            // One clock read per request: a request's end is the next one's start.
            let mut started = Instant::now();
            while started < deadline {
                let Ok(outcome) =
                    tokio::time::timeout_at(cutoff, worker.send(&target, &prepared[turn % prepared.len()]))
                        .await
                else {
                    break;
                };
                turn += 1;
                let failed_to_connect = matches!(&outcome, Ok(Err(e)) if e.is_connect());
                let ended = Instant::now();
                worker.record(outcome, ended - started, None);
                started = ended;
                if failed_to_connect {
                    // Do not spin on a dead target.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    started = Instant::now();
                }
            }
            worker.finish();
        }));
    }
    collect(workers, shards).await
}

/// Open model: requests at `rate` per second, intended times evenly spaced, spread over at most
/// `connections` connections, until `duration` passes; requests in flight at `cutoff` are
/// abandoned.
pub async fn run_open(
    target: Arc<Target>,
    rate: f64,
    connections: usize,
    duration: Duration,
    cutoff: Instant,
) -> StepResult {
    let prepared = match target.prepare() {
        Ok(prepared) => Arc::new(prepared),
        Err(error) => return StepResult::failed(RequestError::Setup(error)),
    };
    let start = Instant::now();
    let deadline = start + duration;
    let interval_ns = (1e9 / rate.max(0.001)) as u64;
    let next = Arc::new(AtomicU64::new(0));
    let shards = Shards::new();
    let mut workers = Vec::with_capacity(connections);
    for index in 0..connections {
        let (target, next, prepared) = (Arc::clone(&target), Arc::clone(&next), Arc::clone(&prepared));
        let mut worker = Worker::new(index, &shards);
        workers.push(tokio::spawn(async move {
            loop {
                let request = next.fetch_add(1, Ordering::Relaxed);
                let intended = start + Duration::from_nanos(request.saturating_mul(interval_ns));
                if intended >= deadline {
                    break;
                }
                tokio::time::sleep_until(intended).await;
                let lag = Instant::now().saturating_duration_since(intended);
                let send = worker.send(&target, &prepared[request as usize % prepared.len()]);
                let Ok(outcome) = tokio::time::timeout_at(cutoff, send).await else {
                    break;
                };
                worker.record(outcome, intended.elapsed(), Some(lag));
            }
            worker.finish();
        }));
    }
    collect(workers, shards).await
}

async fn collect(workers: Vec<tokio::task::JoinHandle<()>>, shards: Arc<Shards>) -> StepResult {
    let mut total = StepResult::new();
    for worker in workers {
        if let Err(e) = worker.await {
            total.record_error(RequestError::Worker(e.to_string()));
        }
    }
    for shard in &shards.0 {
        let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
        total.merge(std::mem::replace(&mut *shard, StepResult::new()));
    }
    total
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    fn target(addr: SocketAddr, method: Method, headers: &[(&str, &str)], body: &'static [u8]) -> Target {
        Target {
            addr,
            host: "example.test:8080".into(),
            paths: vec![("/a?b=1".into(), 1)],
            method,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: Bytes::from_static(body),
            timeout: Duration::from_secs(5),
            http2: false,
            tls: None,
        }
    }

    fn wire(target: &Target) -> String {
        match &target.prepare().expect("prepared")[0] {
            Prepared::Http1 { wire, .. } => String::from_utf8(wire.to_vec()).expect("text"),
            Prepared::Http2(_) => panic!("HTTP/1.1 was asked for"),
        }
    }

    #[test]
    fn encodes_the_http1_request_once_with_host_headers_and_body_length() {
        let addr = SocketAddr::from(([127, 0, 0, 1], 8080));
        let get = target(addr, Method::GET, &[("accept", "application/json")], b"");
        assert_eq!(
            wire(&get),
            "GET /a?b=1 HTTP/1.1\r\nhost: example.test:8080\r\naccept: application/json\r\n\r\n"
        );
        let post = target(addr, Method::POST, &[("Host", "api.test")], b"{\"q\":1}");
        assert_eq!(
            wire(&post),
            "POST /a?b=1 HTTP/1.1\r\nhost: api.test\r\ncontent-length: 7\r\n\r\n{\"q\":1}"
        );
        let bad = target(addr, Method::GET, &[("bad header", "x")], b"");
        assert!(bad.prepare().is_err());
    }

    /// A server that answers one request per connection and then closes it without saying so
    /// (no `Connection: close`), as a server whose keep-alive timeout is shorter than the pause
    /// between requests does.
    async fn closing_server() -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buffer = [0; 1024];
                    if stream.read(&mut buffer).await.unwrap_or(0) > 0 {
                        let _ = stream
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                            .await;
                        // Idle a moment (the client's next request arrives meanwhile), then close.
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                });
            }
        });
        addr
    }

    /// How a hostile server answers each request it reads.
    #[derive(Clone, Copy, Debug)]
    enum Hostile {
        /// Reads, never answers.
        Silent,
        /// A valid answer, one byte every 200 ms.
        Drip,
        /// A chunked body that never ends.
        EndlessChunks,
        /// Header lines that never end.
        EndlessHeaders,
        /// Says 1000 bytes, sends 10, closes.
        ShortBody,
        /// Starts an answer, then resets the connection.
        Reset,
        /// Not HTTP at all.
        Garbage,
    }

    async fn hostile_server(how: Hostile) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buffer = [0; 1024];
                    if stream.read(&mut buffer).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let _ = match how {
                        Hostile::Silent => {
                            tokio::time::sleep(Duration::from_secs(60)).await;
                            Ok(())
                        }
                        Hostile::Drip => {
                            for byte in b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok" {
                                if stream.write_all(&[*byte]).await.is_err() {
                                    break;
                                }
                                tokio::time::sleep(Duration::from_millis(200)).await;
                            }
                            Ok(())
                        }
                        Hostile::EndlessChunks => {
                            let _ = stream
                                .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                                .await;
                            while stream.write_all(b"400\r\n").await.is_ok()
                                && stream.write_all(&[b'x'; 1024]).await.is_ok()
                                && stream.write_all(b"\r\n").await.is_ok()
                            {}
                            Ok(())
                        }
                        Hostile::EndlessHeaders => {
                            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\n").await;
                            while stream
                                .write_all(b"x-padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n")
                                .await
                                .is_ok()
                            {}
                            Ok(())
                        }
                        Hostile::ShortBody => {
                            stream
                                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n0123456789")
                                .await
                        }
                        Hostile::Reset => {
                            let _ = stream
                                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\nabc")
                                .await;
                            // A zero linger turns the close into a reset.
                            let _ = stream.set_zero_linger();
                            Ok(())
                        }
                        Hostile::Garbage => stream.write_all(b"\x00\xff garbage \x01\x02\r\n\r\n").await,
                    };
                });
            }
        });
        addr
    }

    /// Against each hostile server, a step keeps its bounds — it ends within the request
    /// timeout past its duration, holding no more than a buffer per connection — and counts
    /// every failure as an error of its kind.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hostile_servers_are_errors_of_their_kind_within_the_bounds() {
        let cases = [
            (Hostile::Silent, "timeout"),
            (Hostile::Drip, "timeout"),
            (Hostile::EndlessChunks, "timeout"),
            (Hostile::EndlessHeaders, "broken"),
            (Hostile::ShortBody, "broken"),
            (Hostile::Reset, "broken"),
            (Hostile::Garbage, "broken"),
        ];
        for (how, kind) in cases {
            let addr = hostile_server(how).await;
            let mut hostile = target(addr, Method::GET, &[], b"");
            hostile.timeout = Duration::from_millis(500);
            let started = Instant::now();
            let step = run_closed(
                Arc::new(hostile),
                2,
                Duration::from_millis(300),
                Instant::now() + Duration::from_secs(30),
            )
            .await;
            let took = started.elapsed();
            assert!(took < Duration::from_secs(2), "{how:?}: the step took {took:?}");
            assert_eq!(step.requests, 0, "{how:?}: counted as answered");
            assert!(step.errors >= 2, "{how:?}: {} errors", step.errors);
            assert_eq!(
                step.errors_by_kind
                    .keys()
                    .map(|k| k.to_string())
                    .collect::<Vec<_>>(),
                [kind.to_owned()],
                "{how:?}: {:?} ({:?})",
                step.errors_by_kind,
                step.first_error
            );
        }
    }

    /// The generator reopens the connection and sends a GET again, not counting an error; a
    /// POST, which the server may have acted on, is not repeated: an error that says why.
    #[tokio::test]
    async fn reopens_a_keep_alive_connection_the_server_closed_and_resends_only_idempotent_requests() {
        let addr = closing_server().await;
        let step = |method| {
            run_closed(
                Arc::new(target(addr, method, &[], b"")),
                2,
                Duration::from_millis(300),
                Instant::now() + Duration::from_secs(60),
            )
        };
        let get = step(Method::GET).await;
        assert_eq!(get.errors, 0, "{:?}", get.first_error);
        assert!(get.requests >= 10, "{} requests", get.requests);
        assert!(get.new_connections >= get.requests - 2);
        let post = step(Method::POST).await;
        assert!(post.errors > 0);
        let said = post.first_error.expect("an error");
        assert!(
            matches!(said, RequestError::Stale { resent: false, .. }),
            "{said:?}"
        );
        assert!(
            said.to_string()
                .contains("not sent again: the method is not idempotent"),
            "{said}"
        );
        assert_eq!(post.errors_by_kind.get("stale"), Some(&post.errors));
    }
}
