//! The live OTLP receiver: HTTP (`POST /v1/traces`, protobuf or JSON, optionally gzip) and gRPC
//! (`TraceService/Export`), each on its own loopback port by default.
//!
//! Every accepted request becomes a [`Batch`] of spans on a channel; what to do with them
//! (record, analyse) is the caller's business. A request that cannot be decoded is answered with
//! 400 and the reason, one too large with 413, one too slow with 408, and the receiver goes on
//! serving. Clients are bounded ([`ConnectionLimits`]): connections at once, the time to send
//! headers (and to stay idle between requests), the time to send a body.

use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chokepoint_evidence::{Span, TraceId};
use flate2::read::MultiGzDecoder;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder as ConnectionBuilder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message as _;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;
use tonic::codec::CompressionEncoding;

use crate::{otlp_json, otlp_proto};

/// The spans of one accepted export request.
pub type Batch = Vec<(TraceId, Span)>;

/// The default limit on a request body, compressed or not.
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 << 20;

/// Where to listen and what to accept.
#[derive(Clone, Debug)]
pub struct ReceiverConfig {
    /// OTLP/HTTP address (`None`: no HTTP receiver).
    pub http: Option<SocketAddr>,
    /// OTLP/gRPC address (`None`: no gRPC receiver).
    pub grpc: Option<SocketAddr>,
    /// The largest request body accepted, before and after decompression.
    pub max_body_bytes: usize,
    /// What a client may hold of the receiver.
    pub limits: ConnectionLimits,
    /// Serve TLS with this configuration (both ports).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Accept only requests that carry `Authorization: Bearer <token>` (401 otherwise).
    pub token: Option<Arc<str>>,
}

/// Bounds on clients, so that slow, idle or too many ones cannot hold the receiver from the
/// others.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// Connections open at once, per port; one more is closed as soon as it is accepted.
    pub max_connections: usize,
    /// A request's headers must arrive within this; a kept-alive connection idle this long is
    /// closed.
    pub header_timeout: Duration,
    /// A request's body must arrive within this; 408 after it.
    pub body_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> ConnectionLimits {
        ConnectionLimits {
            max_connections: 512,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
        }
    }
}

/// Why the receiver could not start.
#[derive(Debug, thiserror::Error)]
pub enum ReceiverError {
    /// A listening address could not be bound.
    #[error("cannot listen on {addr} ({protocol}): {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// `OTLP/HTTP` or `OTLP/gRPC`.
        protocol: &'static str,
        /// The operating system's reason.
        source: std::io::Error,
    },
}

/// A running receiver; [`Running::stop`] shuts it down gracefully.
pub struct Running {
    /// The bound HTTP address (useful when port 0 was asked for).
    pub http_addr: Option<SocketAddr>,
    /// The bound gRPC address.
    pub grpc_addr: Option<SocketAddr>,
    /// What the receiver turned away or accepted without spans, so far.
    pub counts: Arc<Counts>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// Requests the receiver answered without passing spans on, by why.
#[derive(Debug, Default)]
pub struct Counts {
    /// Accepted (200) yet holding no span: `{}`, or JSON whose keys OTLP does not know.
    pub empty: AtomicU64,
    /// Refused: not OTLP, undecodable, too large, too slow, without the token.
    pub refused: AtomicU64,
    /// Connections closed at once because the cap was reached.
    pub over_cap: AtomicU64,
    /// The first empty request's hint, for the report.
    pub empty_hint: std::sync::Mutex<Option<String>>,
}

impl Running {
    /// Stops accepting, finishes requests in flight, and waits for both servers to end.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Binds the configured addresses and starts serving; batches go to `batches`.
pub async fn start(config: ReceiverConfig, batches: mpsc::Sender<Batch>) -> Result<Running, ReceiverError> {
    let (shutdown, shutdown_rx) = watch::channel(false);
    let counts = Arc::new(Counts::default());
    let mut running = Running {
        http_addr: None,
        grpc_addr: None,
        counts: Arc::clone(&counts),
        shutdown,
        tasks: Vec::new(),
    };
    if let Some(addr) = config.http {
        let listener = bind(addr, "OTLP/HTTP").await?;
        running.http_addr = listener.local_addr().ok();
        let app = axum::Router::new()
            .route("/v1/traces", post(http_export))
            .layer(DefaultBodyLimit::disable())
            .with_state(Arc::new(HttpState {
                batches: batches.clone(),
                max_body_bytes: config.max_body_bytes,
                body_timeout: config.limits.body_timeout,
                counts: Arc::clone(&counts),
            }));
        running.tasks.push(tokio::spawn(serve(
            listener,
            guarded(app, config.token.clone(), Arc::clone(&counts)),
            config.limits,
            config.tls.clone(),
            Arc::clone(&counts),
            shutdown_rx.clone(),
        )));
    }
    if let Some(addr) = config.grpc {
        let listener = bind(addr, "OTLP/gRPC").await?;
        running.grpc_addr = listener.local_addr().ok();
        let service = TraceServiceServer::new(GrpcReceiver { batches })
            .accept_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(config.max_body_bytes);
        let app = tonic::service::Routes::new(service).prepare().into_axum_router();
        let app = with_deadline(app, config.limits.body_timeout, Arc::clone(&counts));
        running.tasks.push(tokio::spawn(serve(
            listener,
            guarded(app, config.token, Arc::clone(&counts)),
            config.limits,
            config.tls,
            counts,
            shutdown_rx,
        )));
    }
    Ok(running)
}

/// `app` with a deadline on each gRPC call: a client that stalls its message (a slow drip) is
/// answered DEADLINE_EXCEEDED once `limit` has passed, and its stream is freed — the body timeout
/// of OTLP/HTTP, for HTTP/2 streams. Every call answered with an error status (a message that is
/// not an export, a deadline) is counted as refused.
fn with_deadline(app: axum::Router, limit: Duration, counts: Arc<Counts>) -> axum::Router {
    app.layer(axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| {
            let counts = Arc::clone(&counts);
            async move {
                match tokio::time::timeout(limit, next.run(request)).await {
                    Ok(response) => {
                        // An error is answered trailers-only: its status is in the headers.
                        let status = response.headers().get("grpc-status");
                        if status.is_some_and(|s| s.as_bytes() != b"0") {
                            counts.refused.fetch_add(1, Ordering::Relaxed);
                        }
                        response
                    }
                    Err(_) => {
                        counts.refused.fetch_add(1, Ordering::Relaxed);
                        tonic::Status::deadline_exceeded(format!(
                            "the message did not arrive within {} s",
                            limit.as_secs_f64()
                        ))
                        .into_http()
                    }
                }
            }
        },
    ))
}

/// `app`, answering 401 to a request without the bearer token when there is one.
fn guarded(app: axum::Router, token: Option<Arc<str>>, counts: Arc<Counts>) -> axum::Router {
    let Some(token) = token else { return app };
    let expected: Arc<str> = Arc::from(format!("Bearer {token}"));
    app.layer(axum::middleware::from_fn(move |request: axum::extract::Request, next: axum::middleware::Next| {
        let (expected, counts) = (Arc::clone(&expected), Arc::clone(&counts));
        async move {
            let given = request.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes());
            if given == Some(expected.as_bytes()) {
                return next.run(request).await;
            }
            counts.refused.fetch_add(1, Ordering::Relaxed);
            let mut response = reject(
                StatusCode::UNAUTHORIZED,
                "this receiver wants `Authorization: Bearer <token>` (OTEL_EXPORTER_OTLP_HEADERS=Authorization=Bearer%20<token>)"
                    .into(),
            );
            // gRPC clients read the status from the trailers-only answer's headers.
            response
                .headers_mut()
                .insert("grpc-status", axum::http::HeaderValue::from_static("16"));
            response
        }
    }))
}

/// Serves `app` on `listener` (HTTP/1.1 and HTTP/2, h2c for gRPC; TLS with `tls`) within
/// `limits`, until `shutdown`; then lets requests in flight finish, for at most the body
/// timeout.
async fn serve(
    listener: TcpListener,
    app: axum::Router,
    limits: ConnectionLimits,
    tls: Option<Arc<rustls::ServerConfig>>,
    counts: Arc<Counts>,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut builder = ConnectionBuilder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.header_timeout)
        .keep_alive_timeout(limits.header_timeout);
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = async { let _ = shutdown.wait_for(|stop| *stop).await; } => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            // Out of descriptors, say: the connections open now keep being served; try again.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            counts.over_cap.fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            // A client that sends nothing is closed after the header timeout: the HTTP version
            // (or the TLS handshake) is read from the first bytes, before hyper's own header
            // timeout starts.
            let mut first = [0u8; 1];
            if !matches!(
                tokio::time::timeout(limits.header_timeout, stream.peek(&mut first)).await,
                Ok(Ok(1..))
            ) {
                drop(permit);
                return;
            }
            match acceptor {
                None => {
                    let connection = builder.serve_connection(TokioIo::new(stream), service);
                    let _ = watcher.watch(connection).await;
                }
                Some(acceptor) => {
                    if let Ok(Ok(stream)) =
                        tokio::time::timeout(limits.header_timeout, acceptor.accept(stream)).await
                    {
                        let connection = builder.serve_connection(TokioIo::new(stream), service);
                        let _ = watcher.watch(connection).await;
                    }
                }
            }
            drop(permit);
        });
    }
    let _ = tokio::time::timeout(limits.body_timeout, graceful.shutdown()).await;
}

async fn bind(addr: SocketAddr, protocol: &'static str) -> Result<TcpListener, ReceiverError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ReceiverError::Bind {
            addr,
            protocol,
            source,
        })
}

struct HttpState {
    batches: mpsc::Sender<Batch>,
    max_body_bytes: usize,
    body_timeout: Duration,
    counts: Arc<Counts>,
}

async fn http_export(State(state): State<Arc<HttpState>>, headers: HeaderMap, body: Body) -> Response {
    let response = export(&state, &headers, body).await;
    if !response.status().is_success() {
        state.counts.refused.fetch_add(1, Ordering::Relaxed);
    }
    response
}

async fn export(state: &HttpState, headers: &HeaderMap, body: Body) -> Response {
    let header_value = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase()
    };
    let content_type = header_value(header::CONTENT_TYPE);
    let json = content_type.starts_with("application/json");
    if !json
        && !content_type.starts_with("application/x-protobuf")
        && !content_type.starts_with("application/protobuf")
    {
        return reject(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "Content-Type {content_type:?} is not OTLP: send application/x-protobuf or application/json"
            ),
        );
    }
    // A declared length over the limit is refused before a byte of it is read; a body that
    // arrives slower than the timeout (or shorter than it said) is cut.
    let max = state.max_body_bytes;
    let declared = header_value(header::CONTENT_LENGTH).parse::<u64>().ok();
    if declared.is_some_and(|n| n > max as u64) {
        return reject(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the body is larger than {max} bytes (Content-Length {})",
                declared.unwrap_or(0)
            ),
        );
    }
    let body: Bytes = match tokio::time::timeout(state.body_timeout, axum::body::to_bytes(body, max)).await {
        Ok(Ok(body)) => body,
        Ok(Err(error)) if is_length_limit(&error) => {
            return reject(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is larger than {max} bytes"),
            );
        }
        Ok(Err(error)) => {
            return reject(
                StatusCode::BAD_REQUEST,
                format!("the body could not be read: {error}"),
            );
        }
        Err(_) => {
            return reject(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the body did not arrive within {} s (shorter than its Content-Length, or sent too slowly)",
                    state.body_timeout.as_secs()
                ),
            );
        }
    };
    let body = match header_value(header::CONTENT_ENCODING).as_str() {
        "" | "identity" => body.to_vec(),
        "gzip" => match gunzip(&body, max) {
            Ok(body) => body,
            Err(Gunzip::TooLarge) => {
                return reject(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the body is larger than {max} bytes once decompressed"),
                );
            }
            Err(Gunzip::Corrupt(reason)) => return reject(StatusCode::BAD_REQUEST, reason),
        },
        other => {
            return reject(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("Content-Encoding {other:?} is not supported: use gzip or none"),
            );
        }
    };
    let mut batch = Vec::new();
    let decoded = if json {
        serde_json::from_slice::<otlp_json::Request>(&body)
            .map_err(|e| format!("invalid OTLP/JSON: {e}"))
            .and_then(|request| request.emit(&mut |trace_id, span| batch.push((trace_id, span))))
    } else {
        otlp_proto::decode_message(&body, &mut |trace_id, span| batch.push((trace_id, span)))
    };
    if let Err(reason) = decoded {
        return reject(StatusCode::BAD_REQUEST, reason);
    }
    if batch.is_empty() {
        // Valid, and nothing in it: OTLP asks for 200, but the report must say it.
        state.counts.empty.fetch_add(1, Ordering::Relaxed);
        let mut hint = state.counts.empty_hint.lock().unwrap_or_else(|e| e.into_inner());
        if hint.is_none() {
            *hint = Some(match json {
                true => crate::read::empty_json_hint(&body).unwrap_or_else(|| {
                    "an OTLP/JSON body with no span in it (`{}`, or no resourceSpans)".to_owned()
                }),
                false => "an OTLP/protobuf request with no span in it".to_owned(),
            });
        }
    }
    if !batch.is_empty() && state.batches.send(batch).await.is_err() {
        return reject(
            StatusCode::SERVICE_UNAVAILABLE,
            "the receiver is shutting down".into(),
        );
    }
    if json {
        ([(header::CONTENT_TYPE, "application/json")], "{}").into_response()
    } else {
        (
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            ExportTraceServiceResponse::default().encode_to_vec(),
        )
            .into_response()
    }
}

/// Why a gzip body was refused.
enum Gunzip {
    /// Larger than the limit once decompressed (a gzip bomb, or just too much).
    TooLarge,
    /// Not gzip, or cut short.
    Corrupt(String),
}

fn gunzip(body: &[u8], max: usize) -> Result<Vec<u8>, Gunzip> {
    let mut out = Vec::new();
    MultiGzDecoder::new(body)
        .take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| Gunzip::Corrupt(format!("the gzip body is corrupt: {e}")))?;
    if out.len() > max {
        return Err(Gunzip::TooLarge);
    }
    Ok(out)
}

/// Whether reading a body failed on its length limit.
fn is_length_limit(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = e.source();
    }
    false
}

fn reject(status: StatusCode, reason: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        reason,
    )
        .into_response()
}

struct GrpcReceiver {
    batches: mpsc::Sender<Batch>,
}

#[tonic::async_trait]
impl TraceService for GrpcReceiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut batch = Vec::new();
        otlp_proto::emit_request(request.into_inner(), &mut |trace_id, span| {
            batch.push((trace_id, span))
        })
        .map_err(tonic::Status::invalid_argument)?;
        if !batch.is_empty() && self.batches.send(batch).await.is_err() {
            return Err(tonic::Status::unavailable("the receiver is shutting down"));
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}
