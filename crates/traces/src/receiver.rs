//! The live OTLP receiver: HTTP (`POST /v1/traces`, protobuf or JSON, optionally gzip) and gRPC
//! (`TraceService/Export`), each on its own loopback port by default.
//!
//! Every accepted request becomes a [`Batch`] of spans on a channel; what to do with them
//! (record, analyse) is the caller's business. A request that cannot be decoded is answered with
//! 400 and the reason, and the receiver goes on serving.

use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chokepoint_evidence::{Span, TraceId};
use flate2::read::MultiGzDecoder;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message as _;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
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
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
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
    let mut running = Running {
        http_addr: None,
        grpc_addr: None,
        shutdown,
        tasks: Vec::new(),
    };
    if let Some(addr) = config.http {
        let listener = bind(addr, "OTLP/HTTP").await?;
        running.http_addr = listener.local_addr().ok();
        let app = axum::Router::new()
            .route("/v1/traces", post(http_export))
            .layer(DefaultBodyLimit::max(config.max_body_bytes))
            .with_state(Arc::new(HttpState {
                batches: batches.clone(),
                max_body_bytes: config.max_body_bytes,
            }));
        let mut rx = shutdown_rx.clone();
        running.tasks.push(tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.wait_for(|stop| *stop).await;
                })
                .await;
        }));
    }
    if let Some(addr) = config.grpc {
        let listener = bind(addr, "OTLP/gRPC").await?;
        running.grpc_addr = listener.local_addr().ok();
        let service = TraceServiceServer::new(GrpcReceiver { batches })
            .accept_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(config.max_body_bytes);
        let mut rx = shutdown_rx;
        running.tasks.push(tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(listener),
                    async move {
                        let _ = rx.wait_for(|stop| *stop).await;
                    },
                )
                .await;
        }));
    }
    Ok(running)
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
}

async fn http_export(State(state): State<Arc<HttpState>>, headers: HeaderMap, body: Bytes) -> Response {
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
    let body = match header_value(header::CONTENT_ENCODING).as_str() {
        "" | "identity" => body.to_vec(),
        "gzip" => match gunzip(&body, state.max_body_bytes) {
            Ok(body) => body,
            Err(reason) => return reject(StatusCode::BAD_REQUEST, reason),
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

fn gunzip(body: &[u8], max: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    MultiGzDecoder::new(body)
        .take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("the gzip body is corrupt: {e}"))?;
    if out.len() > max {
        return Err(format!("the body is larger than {max} bytes once decompressed"));
    }
    Ok(out)
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
