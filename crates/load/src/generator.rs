//! The load generator: one HTTP/1.1 keep-alive connection per worker over hyper's
//! connection-level client, `TCP_NODELAY`, latencies recorded into HDR histograms (bounded
//! memory however long the run).
//!
//! Closed model: each worker sends its next request when the last one answered. Open model:
//! requests have intended send times at a fixed rate, and latency is measured from the intended
//! time, so a stalled server is charged for the requests it delayed (coordinated omission
//! corrected, as wrk2 does).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Largest latency recorded, in µs; larger values are clamped (an hour).
const MAX_LATENCY_US: u64 = 3_600_000_000;

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
    pub fn new(host: &str, extra_roots_pem: Option<&[u8]>, http2: bool) -> Result<Tls, String> {
        use rustls::pki_types::pem::PemObject as _;
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(pem) = extra_roots_pem {
            for cert in rustls::pki_types::CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| format!("the CA file is not PEM certificates: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("the CA file holds an unusable certificate: {e}"))?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![if http2 {
            b"h2".to_vec()
        } else {
            b"http/1.1".to_vec()
        }];
        let server_name = rustls::pki_types::ServerName::try_from(host.to_owned())
            .map_err(|e| format!("{host:?} is not a TLS server name: {e}"))?;
        Ok(Tls {
            config: Arc::new(config),
            server_name,
        })
    }
}

impl Target {
    /// The requests, built once and cloned per send (parsing the URI and headers per request
    /// costs generator headroom), in weighted round-robin order.
    fn prepare(&self) -> Result<Vec<Prepared>, String> {
        let mut headers = hyper::HeaderMap::new();
        if !self.http2 {
            let host = hyper::header::HeaderValue::from_str(&self.host)
                .map_err(|e| format!("invalid Host {:?}: {e}", self.host))?;
            headers.insert(hyper::header::HOST, host);
        }
        for (name, value) in &self.headers {
            let name = hyper::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| format!("invalid header name {name:?}: {e}"))?;
            let value = hyper::header::HeaderValue::from_str(value)
                .map_err(|e| format!("invalid header value {value:?}: {e}"))?;
            headers.append(name, value);
        }
        let mut schedule = Vec::new();
        for (path, weight) in &self.paths {
            // HTTP/2 carries the authority in the request line (:authority), not in `Host`.
            let text = if self.http2 {
                format!("http://{}{path}", self.host)
            } else {
                path.clone()
            };
            let uri: hyper::Uri = text.parse().map_err(|e| format!("invalid path {path:?}: {e}"))?;
            for _ in 0..*weight {
                schedule.push(Prepared {
                    method: self.method.clone(),
                    uri: uri.clone(),
                    headers: headers.clone(),
                    body: self.body.clone(),
                });
            }
        }
        if schedule.is_empty() {
            return Err("no path to request".into());
        }
        Ok(schedule)
    }
}

/// A request's parts, ready to clone.
struct Prepared {
    method: Method,
    uri: hyper::Uri,
    headers: hyper::HeaderMap,
    body: Bytes,
}

impl Prepared {
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
    /// The first connection error, to tell the user.
    pub first_error: Option<String>,
    /// One response body of the step (its first megabyte), and whether it came compressed.
    pub sample_body: Option<(Vec<u8>, bool)>,
}

impl StepResult {
    fn new() -> StepResult {
        StepResult {
            latency_us: histogram(),
            send_lag_us: histogram(),
            requests: 0,
            errors: 0,
            timeouts: 0,
            bytes: 0,
            new_connections: 0,
            opened: 0,
            connect_failures: 0,
            first_error: None,
            sample_body: None,
        }
    }

    fn failed(error: String) -> StepResult {
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
        if self.sample_body.is_none() {
            self.sample_body = other.sample_body;
        }
    }

    fn record_error(&mut self, error: String) {
        self.errors += 1;
        self.first_error.get_or_insert(error);
    }
}

/// A latency histogram from 1 µs to an hour at 3 significant digits.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("the bounds are constants, and valid")
}

/// A connection's request side, HTTP/1.1 or HTTP/2.
enum Sender {
    Http1(SendRequest<Full<Bytes>>),
    Http2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

impl Sender {
    fn is_closed(&self) -> bool {
        match self {
            Sender::Http1(s) => s.is_closed(),
            Sender::Http2(s) => s.is_closed(),
        }
    }

    async fn ready(&mut self) -> hyper::Result<()> {
        match self {
            Sender::Http1(s) => s.ready().await,
            Sender::Http2(s) => s.ready().await,
        }
    }

    async fn send(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> hyper::Result<hyper::Response<hyper::body::Incoming>> {
        match self {
            Sender::Http1(s) => s.send_request(request).await,
            Sender::Http2(s) => s.send_request(request).await,
        }
    }
}

/// The HTTP handshake over a connected stream, plain or TLS.
async fn handshake<T>(io: TokioIo<T>, target: &Target) -> Result<Sender, String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    if target.http2 {
        let (sender, connection) =
            hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                .await
                .map_err(|e| format!("HTTP/2 handshake with {}: {e}", target.addr))?;
        tokio::spawn(connection);
        Ok(Sender::Http2(sender))
    } else {
        // One `write` of the whole request: the requests are small, and a copy is cheaper than
        // the kernel's walk of an iovec.
        let (sender, connection) = hyper::client::conn::http1::Builder::new()
            .writev(false)
            .handshake(io)
            .await
            .map_err(|e| format!("HTTP handshake with {}: {e}", target.addr))?;
        tokio::spawn(connection);
        Ok(Sender::Http1(sender))
    }
}

/// One worker's connection, reopened when the server closes it.
struct Connection {
    sender: Option<Sender>,
    opened: u64,
}

impl Connection {
    async fn ready(&mut self, target: &Target) -> Result<&mut Sender, String> {
        if self.sender.as_ref().is_none_or(Sender::is_closed) {
            let stream = TcpStream::connect(target.addr)
                .await
                .map_err(|e| format!("connect to {}: {e}", target.addr))?;
            let _ = stream.set_nodelay(true);
            let sender = match &target.tls {
                Some(tls) => {
                    let stream = tokio_rustls::TlsConnector::from(Arc::clone(&tls.config))
                        .connect(tls.server_name.clone(), stream)
                        .await
                        .map_err(|e| format!("connect to {}: TLS: {e}", target.addr))?;
                    handshake(TokioIo::new(stream), target).await?
                }
                None => handshake(TokioIo::new(stream), target).await?,
            };
            self.sender = Some(sender);
            self.opened += 1;
        }
        let sender = self.sender.as_mut().ok_or_else(|| "no connection".to_owned())?;
        sender
            .ready()
            .await
            .map_err(|e| format!("connection to {}: {e}", target.addr))?;
        Ok(sender)
    }
}

/// Bytes of a response body kept as the step's sample.
const SAMPLE_BYTES: usize = 1 << 20;

/// Sends one request and reads the whole response; returns (status, bytes). With `sample`, the
/// body's first megabyte is kept there, with whether it was sent compressed.
async fn exchange(
    connection: &mut Connection,
    target: &Target,
    prepared: &Prepared,
    sample: Option<&mut Option<(Vec<u8>, bool)>>,
) -> Result<(u16, u64), String> {
    let sender = connection.ready(target).await?;
    let request = prepared.request();
    let response = sender.send(request).await.map_err(|e| {
        connection.sender = None;
        format!("request to {}: {e}", target.addr)
    })?;
    let status = response.status().as_u16();
    let encoded = response.headers().contains_key(hyper::header::CONTENT_ENCODING);
    let mut kept = sample.map(|slot| (slot, Vec::new()));
    let mut bytes = 0u64;
    let mut body = response.into_body();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("reading the response: {e}"))?;
        if let Some(data) = frame.data_ref() {
            bytes += data.len() as u64;
            if let Some((_, buffer)) = kept.as_mut() {
                let room = SAMPLE_BYTES.saturating_sub(buffer.len());
                buffer.extend_from_slice(&data[..data.len().min(room)]);
            }
        }
    }
    if let Some((slot, buffer)) = kept {
        if !buffer.is_empty() {
            *slot = Some((buffer, encoded));
        }
    }
    Ok((status, bytes))
}

fn record(
    result: &mut StepResult,
    outcome: Result<Result<(u16, u64), String>, tokio::time::error::Elapsed>,
    latency: Duration,
    connection: &mut Connection,
) {
    match outcome {
        Ok(Ok((status, bytes))) => {
            result.requests += 1;
            result.bytes += bytes;
            let _ = result
                .latency_us
                .record((latency.as_micros() as u64).clamp(1, MAX_LATENCY_US));
            if status >= 500 {
                result.record_error(format!("HTTP {status}"));
            }
        }
        Ok(Err(error)) => {
            if error.starts_with("connect to") {
                result.connect_failures += 1;
            }
            result.record_error(error);
        }
        Err(_) => {
            result.timeouts += 1;
            result.record_error("timeout".into());
            connection.sender = None;
        }
    }
}

/// Closed model: `concurrency` workers, each with its own connection, until `duration` passes.
pub async fn run_closed(target: Arc<Target>, concurrency: usize, duration: Duration) -> StepResult {
    let prepared = match target.prepare() {
        Ok(prepared) => Arc::new(prepared),
        Err(error) => return StepResult::failed(error),
    };
    let deadline = Instant::now() + duration;
    let mut workers = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let (target, prepared) = (Arc::clone(&target), Arc::clone(&prepared));
        let mut turn = workers.len();
        workers.push(tokio::spawn(async move {
            let mut result = StepResult::new();
            let mut connection = Connection {
                sender: None,
                opened: 0,
            };
            // One clock read per request: a request's end is the next one's start.
            let mut started = Instant::now();
            while started < deadline {
                let sample = result.sample_body.is_none().then_some(&mut result.sample_body);
                let outcome = tokio::time::timeout(
                    target.timeout,
                    exchange(&mut connection, &target, &prepared[turn % prepared.len()], sample),
                )
                .await;
                turn += 1;
                let failed_to_connect = matches!(&outcome, Ok(Err(e)) if e.starts_with("connect"));
                let ended = Instant::now();
                record(&mut result, outcome, ended - started, &mut connection);
                started = ended;
                if failed_to_connect {
                    // Do not spin on a dead target.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    started = Instant::now();
                }
            }
            result.new_connections = connection.opened.saturating_sub(1);
            result.opened = connection.opened;
            result
        }));
    }
    collect(workers).await
}

/// Open model: requests at `rate` per second, intended times evenly spaced, spread over at most
/// `connections` connections, until `duration` passes.
pub async fn run_open(target: Arc<Target>, rate: f64, connections: usize, duration: Duration) -> StepResult {
    let prepared = match target.prepare() {
        Ok(prepared) => Arc::new(prepared),
        Err(error) => return StepResult::failed(error),
    };
    let start = Instant::now();
    let deadline = start + duration;
    let interval_ns = (1e9 / rate.max(0.001)) as u64;
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::with_capacity(connections);
    for _ in 0..connections {
        let (target, next, prepared) = (Arc::clone(&target), Arc::clone(&next), Arc::clone(&prepared));
        workers.push(tokio::spawn(async move {
            let mut result = StepResult::new();
            let mut connection = Connection {
                sender: None,
                opened: 0,
            };
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let intended = start + Duration::from_nanos(index.saturating_mul(interval_ns));
                if intended >= deadline {
                    break;
                }
                tokio::time::sleep_until(intended).await;
                let lag = Instant::now().saturating_duration_since(intended);
                let _ = result
                    .send_lag_us
                    .record((lag.as_micros() as u64).clamp(1, MAX_LATENCY_US));
                let sample = result.sample_body.is_none().then_some(&mut result.sample_body);
                let outcome = tokio::time::timeout(
                    target.timeout,
                    exchange(
                        &mut connection,
                        &target,
                        &prepared[index as usize % prepared.len()],
                        sample,
                    ),
                )
                .await;
                record(&mut result, outcome, intended.elapsed(), &mut connection);
            }
            result.new_connections = connection.opened.saturating_sub(1);
            result.opened = connection.opened;
            result
        }));
    }
    collect(workers).await
}

async fn collect(workers: Vec<tokio::task::JoinHandle<StepResult>>) -> StepResult {
    let mut total = StepResult::new();
    for worker in workers {
        match worker.await {
            Ok(result) => total.merge(result),
            Err(e) => total.record_error(format!("a load worker failed: {e}")),
        }
    }
    total
}
