//! The live receiver over real loopback sockets: OTLP/HTTP (protobuf, JSON, gzip) and
//! OTLP/gRPC; malformed requests get a 4xx with the reason and the receiver keeps serving;
//! hostile clients (a gzip bomb, a body shorter than it says, headers a byte at a time, idle
//! connections, too many connections) are cut within the limits, the others served.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chokepoint_traces::receiver::{self, Batch, ConnectionLimits, ReceiverConfig, Running};
use chokepoint_traces::{ReadOptions, encode_request, read_path};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::mpsc;

/// One OTLP/gRPC export of `sample_request()` with the official generated client.
async fn export_over_grpc(addr: SocketAddr) {
    let mut client = TraceServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    client.export(sample_request()).await.expect("export");
}

async fn start(max_body_bytes: usize) -> (Running, mpsc::Receiver<Batch>) {
    start_with(max_body_bytes, ConnectionLimits::default()).await
}

async fn start_with(max_body_bytes: usize, limits: ConnectionLimits) -> (Running, mpsc::Receiver<Batch>) {
    let (tx, rx) = mpsc::channel(64);
    let config = ReceiverConfig {
        http: Some("127.0.0.1:0".parse().expect("addr")),
        grpc: Some("127.0.0.1:0".parse().expect("addr")),
        max_body_bytes,
        limits,
        tls: None,
        token: None,
    };
    (receiver::start(config, tx).await.expect("receiver starts"), rx)
}

/// Tight limits, so that a test waits a second, not a minute.
fn tight(max_connections: usize) -> ConnectionLimits {
    ConnectionLimits {
        max_connections,
        header_timeout: Duration::from_millis(500),
        body_timeout: Duration::from_millis(500),
    }
}

/// Reads until the peer closes (or 5 s pass): the bytes, and whether it closed.
async fn read_until_closed(stream: &mut tokio::net::TcpStream) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out))
        .await
        .is_ok();
    (out, closed)
}

/// Sends one HTTP/1.1 POST over a plain socket; returns the status code and the body.
async fn post(addr: SocketAddr, content_type: &str, encoding: Option<&str>, body: &[u8]) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut head = format!(
        "POST /v1/traces HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if let Some(encoding) = encoding {
        head.push_str(&format!("Content-Encoding: {encoding}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.expect("write head");
    stream.write_all(body).await.expect("write body");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("read response");
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn sample_request() -> opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/shop.otlp.pb");
    let mut spans = Vec::new();
    read_path(&path, &ReadOptions::default(), &mut |id, span| {
        spans.push((id, span))
    });
    encode_request(spans.iter().take(30).map(|(id, s)| (*id, s)))
}

const JSON: &str = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"api"}}]},"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"GET /","kind":2,"startTimeUnixNano":"1","endTimeUnixNano":"9"}]}]}]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_accepts_protobuf_json_and_gzip() {
    let (running, mut batches) = start(1 << 20).await;
    let addr = running.http_addr.expect("http");

    let (status, _) = post(
        addr,
        "application/x-protobuf",
        None,
        &sample_request().encode_to_vec(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(batches.recv().await.expect("batch").len(), 30);

    let (status, body) = post(addr, "application/json", None, JSON.as_bytes()).await;
    assert_eq!((status, body.as_str()), (200, "{}"));
    let batch = batches.recv().await.expect("batch");
    assert_eq!(&*batch[0].1.service, "api");

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(JSON.as_bytes()).expect("gzip");
    let (status, _) = post(
        addr,
        "application/json",
        Some("gzip"),
        &gz.finish().expect("gzip"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(batches.recv().await.expect("batch").len(), 1);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_the_reason_and_the_receiver_keeps_serving() {
    let (running, mut batches) = start(4096).await;
    let addr = running.http_addr.expect("http");

    let (status, body) = post(addr, "application/json", None, b"{\"resourceSpans\": [").await;
    assert_eq!(status, 400);
    assert!(body.contains("invalid OTLP/JSON"), "{body}");

    let (status, body) = post(
        addr,
        "application/x-protobuf",
        None,
        &[0x0a, 0xff, 0xff, 0xff, 0x0f],
    )
    .await;
    assert_eq!(status, 400);
    assert!(body.contains("not an OTLP ExportTraceServiceRequest"), "{body}");

    let (status, body) = post(addr, "application/json", Some("gzip"), b"not gzip at all").await;
    assert_eq!(status, 400);
    assert!(body.contains("gzip"), "{body}");

    let (status, body) = post(addr, "text/plain", None, b"hello").await;
    assert_eq!(status, 415);
    assert!(body.contains("application/x-protobuf"), "{body}");

    let (status, _) = post(addr, "application/json", None, &vec![b' '; 8192]).await;
    assert_eq!(status, 413, "larger than the body limit");

    let (status, _) = post(addr, "application/json", None, JSON.as_bytes()).await;
    assert_eq!(status, 200, "still serving");
    assert_eq!(batches.recv().await.expect("batch").len(), 1);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_export_delivers_the_spans() {
    let (running, mut batches) = start(1 << 20).await;
    let addr = running.grpc_addr.expect("grpc");
    export_over_grpc(addr).await;
    assert_eq!(batches.recv().await.expect("batch").len(), 30);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_in_use_is_a_clear_error() {
    let (running, _batches) = start(1024).await;
    let (tx, _rx) = mpsc::channel(1);
    let config = ReceiverConfig {
        http: running.http_addr,
        grpc: None,
        max_body_bytes: 1024,
        limits: ConnectionLimits::default(),
        tls: None,
        token: None,
    };
    let Err(error) = receiver::start(config, tx).await else {
        panic!("bound twice")
    };
    assert!(error.to_string().starts_with(&format!(
        "cannot listen on {} (OTLP/HTTP)",
        running.http_addr.expect("addr")
    )));
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_bomb_is_413_and_an_empty_export_is_counted() {
    let (running, _batches) = start(1 << 20).await;
    let addr = running.http_addr.expect("http");
    // 64 MiB of zeros in about 64 kB: over the 1 MiB limit once decompressed.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&vec![0u8; 64 << 20]).expect("gzip");
    let bomb = gz.finish().expect("gzip");
    assert!(bomb.len() < 1 << 20);
    let (status, body) = post(addr, "application/x-protobuf", Some("gzip"), &bomb).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("once decompressed"), "{body}");
    // `{}` and snake_case keys are valid OTLP/JSON holding nothing: 200, and counted with why.
    let (status, _) = post(addr, "application/json", None, b"{}").await;
    assert_eq!(status, 200);
    let (status, _) = post(addr, "application/json", None, br#"{"resource_spans": []}"#).await;
    assert_eq!(status, 200);
    assert_eq!(running.counts.empty.load(Ordering::Relaxed), 2);
    assert_eq!(running.counts.refused.load(Ordering::Relaxed), 1);
    let hint = running
        .counts
        .empty_hint
        .lock()
        .expect("hint")
        .clone()
        .expect("a hint");
    assert!(hint.contains("resourceSpans"), "{hint}");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_shorter_than_its_length_is_cut_with_408_and_a_huge_declared_length_is_413() {
    let (running, _batches) = start_with(1 << 20, tight(64)).await;
    let addr = running.http_addr.expect("http");
    let started = Instant::now();
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"resourceSpans\"")
        .await
        .expect("write");
    let (response, closed) = read_until_closed(&mut stream).await;
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(closed && started.elapsed() < Duration::from_secs(3));
    // 10 GiB declared, 100 bytes sent: refused at once, before reading.
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10737418240\r\n\r\n")
        .await
        .expect("write");
    stream.write_all(&[b' '; 100]).await.expect("write");
    let mut head = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut head))
        .await
        .expect("answered at once")
        .expect("read");
    assert_eq!(&head, b"HTTP/1.1 413");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_idle_and_surplus_connections_are_closed_and_the_others_served() {
    let (running, mut batches) = start_with(1 << 20, tight(4)).await;
    let addr = running.http_addr.expect("http");
    // Headers a byte at a time, slower than the header timeout allows in all: closed.
    let mut drip = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let started = Instant::now();
    let cut = async {
        for byte in b"POST /v1/traces HTTP/1.1\r\nHost: x\r\n".iter().cycle() {
            if drip.write_all(&[*byte]).await.is_err() {
                return started.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        unreachable!()
    };
    let elapsed = tokio::time::timeout(Duration::from_secs(5), cut)
        .await
        .expect("the drip was cut");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    // An idle connection (no request at all) is closed after the header timeout.
    let mut idle = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (_, closed) = read_until_closed(&mut idle).await;
    assert!(closed, "an idle connection stays open");
    // A kept-alive connection is closed once it idles past the header timeout.
    let mut kept = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{JSON}",
        JSON.len()
    );
    kept.write_all(request.as_bytes()).await.expect("write");
    let (answer, closed) = read_until_closed(&mut kept).await;
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    assert!(closed, "an idle kept-alive connection stays open");
    assert_eq!(batches.recv().await.expect("batch").len(), 1);
    // Four held connections fill the cap: a fifth is closed on arrival, without an answer.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(tokio::net::TcpStream::connect(addr).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut surplus = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (answer, closed) = read_until_closed(&mut surplus).await;
    assert!(closed && answer.is_empty());
    assert!(running.counts.over_cap.load(Ordering::Relaxed) >= 1);
    // Once they are gone (closed by the header timeout), others are served again.
    drop(held);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, _) = post(addr, "application/json", None, JSON.as_bytes()).await;
    assert_eq!(status, 200);
    assert_eq!(batches.recv().await.expect("batch").len(), 1);
    running.stop().await;
}

/// A gRPC request body: its first bytes, then either its end or nothing ever again (a slow drip).
struct Message {
    bytes: Option<bytes::Bytes>,
    stalls: bool,
}

impl hyper::body::Body for Message {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, Self::Error>>> {
        match self.bytes.take() {
            Some(bytes) => std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(bytes)))),
            None if self.stalls => std::task::Poll::Pending,
            None => std::task::Poll::Ready(None),
        }
    }
}

/// One gRPC export call by hand over HTTP/2 — a length-prefixed frame announcing `announced`
/// bytes, then `bytes` — and the `grpc-status` it was answered with (from the headers of a
/// trailers-only answer, or the trailers), within 5 s.
async fn grpc_call(addr: SocketAddr, announced: u32, bytes: &[u8], stalls: bool) -> Option<String> {
    use http_body_util::BodyExt as _;

    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .expect("HTTP/2");
    tokio::spawn(connection);
    let mut frame = vec![0u8];
    frame.extend(announced.to_be_bytes());
    frame.extend(bytes);
    let request = hyper::Request::post(format!(
        "http://{addr}/opentelemetry.proto.collector.trace.v1.TraceService/Export"
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .body(Message {
        bytes: Some(bytes::Bytes::from(frame)),
        stalls,
    })
    .expect("request");
    let response = tokio::time::timeout(Duration::from_secs(5), sender.send_request(request))
        .await
        .expect("answered within 5 s")
        .expect("a response");
    let in_headers = response.headers().get("grpc-status").cloned();
    let trailers = response
        .into_body()
        .collect()
        .await
        .ok()
        .and_then(|c| c.trailers().cloned());
    let status = in_headers.or_else(|| trailers.and_then(|t| t.get("grpc-status").cloned()));
    status.map(|s| String::from_utf8_lossy(s.as_bytes()).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_export_that_stalls_is_cut_with_deadline_exceeded_and_the_others_served() {
    let (running, mut batches) = start_with(1 << 20, tight(64)).await;
    let addr = running.grpc_addr.expect("grpc");
    let started = Instant::now();
    // The gRPC frame announces 1,000 bytes; 10 come, then nothing.
    let status = grpc_call(addr, 1000, &[0; 10], true).await;
    assert_eq!(status.as_deref(), Some("4"), "DEADLINE_EXCEEDED");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(running.counts.refused.load(Ordering::Relaxed), 1);
    // Another client is served as before.
    export_over_grpc(addr).await;
    assert_eq!(batches.recv().await.expect("batch").len(), 30);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_message_that_is_no_export_is_refused_counted_and_the_others_served() {
    let (running, mut batches) = start(1 << 20).await;
    let addr = running.grpc_addr.expect("grpc");
    let garbage = b"\xff\xff\xff\xff not protobuf at all";
    let status = grpc_call(addr, garbage.len() as u32, garbage, false).await;
    assert!(
        status.as_deref().is_some_and(|s| s != "0"),
        "an error status, got {status:?}"
    );
    assert_eq!(running.counts.refused.load(Ordering::Relaxed), 1);
    export_over_grpc(addr).await;
    assert_eq!(batches.recv().await.expect("batch").len(), 30);
    assert_eq!(
        running.counts.refused.load(Ordering::Relaxed),
        1,
        "a good export is not refused"
    );
    running.stop().await;
}
