//! The live receiver over real loopback sockets: OTLP/HTTP (protobuf, JSON, gzip) and
//! OTLP/gRPC; malformed requests get a 4xx with the reason and the receiver keeps serving.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;

use chokepoint_traces::receiver::{self, Batch, ReceiverConfig, Running};
use chokepoint_traces::{ReadOptions, encode_request, read_path};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::mpsc;

async fn start(max_body_bytes: usize) -> (Running, mpsc::Receiver<Batch>) {
    let (tx, rx) = mpsc::channel(64);
    let config = ReceiverConfig {
        http: Some("127.0.0.1:0".parse().expect("addr")),
        grpc: Some("127.0.0.1:0".parse().expect("addr")),
        max_body_bytes,
    };
    (receiver::start(config, tx).await.expect("receiver starts"), rx)
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
    let mut client = TraceServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    client.export(sample_request()).await.expect("export");
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
