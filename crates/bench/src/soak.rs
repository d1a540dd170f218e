//! `chokepoint-bench soak HTTP GRPC SPANS_PER_S SECONDS`: the receiver's soak. Spans of the
//! benchmark's generator at a steady rate, batch by batch, alternately over OTLP/HTTP (protobuf,
//! one keep-alive HTTP/1.1 connection) and OTLP/gRPC (one HTTP/2 connection), as two SDK
//! exporters would send them; every 20th gRPC call also carries a message that is not protobuf,
//! which must be refused without harm. Prints a line every 10 s and the totals: the spans taken
//! are the generator's first N, so `generate proto N FILE` writes the same spans to a file.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message as _;

use crate::{BATCH_SPANS, Rng, SEED, trace};

const EXPORT: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// Counts of what was sent and how it was answered.
#[derive(Default)]
struct Tally {
    spans: u64,
    over_http: u64,
    over_grpc: u64,
    refused: u64,
    garbage_sent: u64,
    garbage_refused: u64,
}

pub(crate) fn soak(http: &str, grpc: &str, rate: f64, seconds: f64) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(run(http, grpc, rate, seconds))
}

async fn tcp(addr: &str) -> Result<TokioIo<tokio::net::TcpStream>, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    Ok(TokioIo::new(stream))
}

async fn run(http_addr: &str, grpc_addr: &str, rate: f64, seconds: f64) -> Result<(), String> {
    let (mut http, connection) = http1::handshake(tcp(http_addr).await?)
        .await
        .map_err(|e| format!("HTTP/1.1 to {http_addr}: {e}"))?;
    tokio::spawn(connection);
    let (mut grpc, connection) = http2::handshake(TokioExecutor::new(), tcp(grpc_addr).await?)
        .await
        .map_err(|e| format!("HTTP/2 to {grpc_addr}: {e}"))?;
    tokio::spawn(connection);

    let mut rng = Rng(SEED);
    let mut batch = Vec::with_capacity(BATCH_SPANS * 2);
    let mut number = 0u64;
    let mut tally = Tally::default();
    let started = Instant::now();
    let mut next_line = 10.0;
    let mut over_grpc = false;
    let mut grpc_calls = 0u64;
    while started.elapsed().as_secs_f64() < seconds {
        // The pace: the spans sent so far were due at spans ÷ rate seconds.
        let due = Duration::from_secs_f64(tally.spans as f64 / rate);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        while batch.len() < BATCH_SPANS {
            trace(&mut rng, number, &mut batch);
            number += 1;
        }
        let message = chokepoint_traces::encode_request(batch.iter().map(|(id, s)| (*id, s))).encode_to_vec();
        let spans = batch.len() as u64;
        batch.clear();
        let taken = if over_grpc {
            grpc_calls += 1;
            if grpc_calls % 20 == 1 {
                tally.garbage_sent += 1;
                let status = export_grpc(
                    &mut grpc,
                    grpc_addr,
                    b"\x0a\xff\xff\xff\xff\x0fnot protobuf".to_vec(),
                )
                .await?;
                tally.garbage_refused += u64::from(status != "0");
            }
            let status = export_grpc(&mut grpc, grpc_addr, message).await?;
            tally.over_grpc += if status == "0" { spans } else { 0 };
            status == "0"
        } else {
            let status = export_http(&mut http, http_addr, message).await?;
            tally.over_http += if status == 200 { spans } else { 0 };
            status == 200
        };
        if taken {
            tally.spans += spans;
        } else {
            tally.refused += spans;
        }
        over_grpc = !over_grpc;
        let elapsed = started.elapsed().as_secs_f64();
        if elapsed >= next_line {
            println!(
                "soak {elapsed:.0} s: {} spans taken ({:.0}/s), {} refused",
                tally.spans,
                tally.spans as f64 / elapsed,
                tally.refused
            );
            next_line += 10.0;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "soak done: {} spans taken in {elapsed:.1} s = {:.0} spans/s ({} over HTTP, {} over gRPC); {} refused; \
         {} messages that are not protobuf sent over gRPC, {} refused",
        tally.spans,
        tally.spans as f64 / elapsed,
        tally.over_http,
        tally.over_grpc,
        tally.refused,
        tally.garbage_sent,
        tally.garbage_refused
    );
    Ok(())
}

/// One OTLP/HTTP export; the status code.
async fn export_http(
    sender: &mut http1::SendRequest<Full<Bytes>>,
    addr: &str,
    message: Vec<u8>,
) -> Result<u16, String> {
    let request = hyper::Request::post("/v1/traces")
        .header("host", addr)
        .header("content-type", "application/x-protobuf")
        .body(Full::new(Bytes::from(message)))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("OTLP/HTTP: {e}"))?;
    let status = response.status().as_u16();
    response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("OTLP/HTTP: {e}"))?;
    Ok(status)
}

/// One OTLP/gRPC export of `message` (a length-prefixed gRPC frame is built around it); the
/// `grpc-status`, from the headers or the trailers.
async fn export_grpc(
    sender: &mut http2::SendRequest<Full<Bytes>>,
    addr: &str,
    message: Vec<u8>,
) -> Result<String, String> {
    let mut frame = Vec::with_capacity(message.len() + 5);
    frame.push(0);
    frame.extend_from_slice(
        &u32::try_from(message.len())
            .map_err(|e| e.to_string())?
            .to_be_bytes(),
    );
    frame.extend_from_slice(&message);
    let request = hyper::Request::post(format!("http://{addr}{EXPORT}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from(frame)))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("OTLP/gRPC: {e}"))?;
    let in_headers = response.headers().get("grpc-status").cloned();
    let collected = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("OTLP/gRPC: {e}"))?;
    let status = in_headers
        .or_else(|| collected.trailers().and_then(|t| t.get("grpc-status").cloned()))
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_else(|| "none".into());
    Ok(status)
}
