//! Benchmark helpers for `scripts/bench.sh`:
//!
//! - `chokepoint-bench generate proto|json SPANS FILE` writes SPANS spans of a realistic web
//!   backend (server spans, N+1 bursts, slow and unbounded statements, downstream calls, all
//!   with the attributes real instrumentations set) as OTLP/protobuf records or OTLP/JSON Lines.
//! - `chokepoint-bench decode FILE` is the baseline: chokepoint's own reader with spans dropped
//!   on arrival (no assembly, no detectors).
//! - `chokepoint-bench prost FILE` is a second baseline for protobuf: prost's decode of each
//!   record into the generated OTLP types, nothing else.
//! - `chokepoint-bench send ADDR SPANS` posts SPANS spans of the same generator, batch by batch
//!   as OTLP/protobuf, to a `chokepoint listen` at ADDR (`127.0.0.1:4318`) over one keep-alive
//!   connection, printing a line per million spans sent (`scripts/bench-listen.sh`).
//! - `chokepoint-bench soak HTTP GRPC SPANS_PER_S SECONDS` sends the same spans at a steady
//!   rate alternately over OTLP/HTTP and OTLP/gRPC, with a message that is not protobuf now and
//!   then (`scripts/soak-listen.sh`).
//! - `chokepoint-bench profile collapsed BYTES FILE` and `profile speedscope SAMPLES FILE` write
//!   py-spy-like profiles of a FastAPI-like service; `parse FILE` is their baseline, chokepoint's
//!   profile reader with the profile dropped (`scripts/bench-profile.sh`).
//! - `chokepoint-bench serve` is the load benchmark's target: a minimal HTTP/1.1 server on one
//!   thread answering `ok` (request heads counted in the byte stream, no HTTP library), printing
//!   its port. `serve DELAY_US` answers each request after that delay: with N connections, a
//!   closed-loop generator then runs at about N / delay requests per second, whichever it is.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Read as _, Write as _};
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

mod profile;
mod soak;

use chokepoint_evidence::{AttrKey, AttrValue, Span, SpanId, SpanKind, TraceId, attr_key};
use chokepoint_traces::{ReadOptions, encode_request, read_path, write_length_prefixed};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message as _;

/// The same allocator as the `chokepoint` binary, so the baseline is comparable.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The generator's seed: every run writes the same spans.
const SEED: u64 = 0x9e37_79b9_7f4a_7c15;

/// Spans per exported batch, as a BatchSpanProcessor sends them.
const BATCH_SPANS: usize = 512;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["generate", format, spans, path] => match spans.parse() {
            Ok(spans) => generate(format, spans, Path::new(path)),
            Err(_) => Err(format!("{spans:?} is not a span count")),
        },
        ["decode", path] => decode(Path::new(path)),
        ["profile", "collapsed", bytes, path] => match bytes.parse() {
            Ok(bytes) => profile::generate_collapsed(bytes, Path::new(path)),
            Err(_) => Err(format!("{bytes:?} is not a size in bytes")),
        },
        ["profile", "speedscope", samples, path] => match samples.parse() {
            Ok(samples) => profile::generate_speedscope(samples, Path::new(path)),
            Err(_) => Err(format!("{samples:?} is not a sample count")),
        },
        ["parse", path] => profile::parse(Path::new(path)),
        ["send", addr, spans] => match spans.parse() {
            Ok(spans) => send(addr, spans),
            Err(_) => Err(format!("{spans:?} is not a span count")),
        },
        ["prost", path] => prost_decode(Path::new(path)),
        ["soak", http, grpc, rate, seconds] => match (rate.parse(), seconds.parse()) {
            (Ok(rate), Ok(seconds)) => soak::soak(http, grpc, rate, seconds),
            _ => Err(format!("{rate:?} {seconds:?}: spans per second and seconds")),
        },
        ["serve"] => serve(0),
        ["serve", delay] => match delay.parse() {
            Ok(delay) => serve(delay),
            Err(_) => Err(format!("{delay:?} is not a delay in µs")),
        },
        _ => Err(
            "usage: chokepoint-bench generate proto|json SPANS FILE | decode FILE | prost FILE | send ADDR SPANS | soak HTTP GRPC SPANS_PER_S SECONDS | serve [DELAY_US] \
             | profile collapsed BYTES FILE | profile speedscope SAMPLES FILE | parse FILE"
                .into(),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chokepoint-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A small deterministic generator (xorshift), so every run writes the same file.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const ROUTES: &[&str] = &[
    "/orders",
    "/orders/{order_id}",
    "/users/{user_id}",
    "/search",
    "/cart",
    "/checkout",
    "/report",
];

fn attrs(pairs: &[(&str, AttrValue)]) -> Vec<(AttrKey, AttrValue)> {
    pairs.iter().map(|(k, v)| (attr_key(k), v.clone())).collect()
}

/// One request's spans: a server span and what it did. Returns whether it holds an N+1 (every
/// `GET /orders` does: 5 to 24 lookups of a fraction of a millisecond each, as a database next to
/// the service answers them, most of the request).
fn trace(rng: &mut Rng, number: u64, out: &mut Vec<(TraceId, Span)>) -> bool {
    let trace_id = TraceId(u128::from(rng.next()) << 64 | u128::from(number));
    let start = 1_700_000_000_000_000_000 + number * 2_000_000;
    let route = ROUTES[rng.below(ROUTES.len() as u64) as usize];
    let root_id = SpanId(number << 8 | 1);
    let mut next_id = 2;
    let mut at = start + 100_000;
    let mut children = Vec::new();
    let db = |statement: String, rows: i64| {
        attrs(&[
            ("db.system", "postgresql".into()),
            ("db.name", "shop".into()),
            ("db.statement", statement.into()),
            ("db.user", "app".into()),
            ("net.peer.name", "10.0.3.17".into()),
            ("net.peer.port", 5432.into()),
            ("db.response.returned_rows", rows.into()),
        ])
    };
    let user = rng.below(100_000);
    children.push((
        "SELECT shop".to_owned(),
        SpanKind::Client,
        200_000,
        db(format!("SELECT * FROM users WHERE id = {user}"), 1),
    ));
    match route {
        "/orders" => {
            let n = 5 + rng.below(20);
            children.push((
                "SELECT shop".into(),
                SpanKind::Client,
                400_000,
                db(
                    format!("SELECT * FROM orders WHERE user_id = {user} ORDER BY created_at DESC"),
                    n as i64,
                ),
            ));
            for i in 0..n {
                children.push((
                    "SELECT shop".into(),
                    SpanKind::Client,
                    200_000 + rng.below(300_000),
                    db(
                        format!("SELECT * FROM items WHERE order_id = {}", user * 10 + i),
                        3,
                    ),
                ));
            }
        }
        "/search" => children.push((
            "SELECT shop".into(),
            SpanKind::Client,
            300_000_000 + rng.below(500_000_000),
            db(
                format!(
                    "SELECT * FROM products WHERE lower(name) LIKE '%{}%'",
                    rng.below(1000)
                ),
                40,
            ),
        )),
        "/report" => children.push((
            "SELECT shop".into(),
            SpanKind::Client,
            90_000_000,
            db("SELECT * FROM events".into(), 25_000 + rng.below(5_000) as i64),
        )),
        _ => {
            for service in ["inventory", "pricing", "reviews"] {
                let url = format!(
                    "http://{service}.internal:8080/v1/{service}/{}",
                    rng.below(10_000)
                );
                children.push((
                    "GET".into(),
                    SpanKind::Client,
                    15_000_000 + rng.below(30_000_000),
                    attrs(&[
                        ("http.method", "GET".into()),
                        ("http.url", url.into()),
                        ("net.peer.name", format!("{service}.internal").into()),
                        ("net.peer.port", 8080.into()),
                        ("http.status_code", 200.into()),
                    ]),
                ));
            }
        }
    }
    for (name, kind, duration, attributes) in children {
        out.push((
            trace_id,
            Span {
                span_id: SpanId(number << 8 | next_id),
                parent_span_id: Some(root_id),
                name,
                kind,
                service: "shop".into(),
                start_unix_nano: at,
                end_unix_nano: at + duration,
                attributes,
                status_error: false,
                scope: None,
            },
        ));
        next_id += 1;
        at += duration + 50_000;
    }
    out.push((
        trace_id,
        Span {
            span_id: root_id,
            parent_span_id: None,
            name: format!("GET {route}"),
            kind: SpanKind::Server,
            service: "shop".into(),
            start_unix_nano: start,
            end_unix_nano: at + 150_000,
            attributes: attrs(&[
                ("http.method", "GET".into()),
                ("http.route", (*route).into()),
                (
                    "http.target",
                    route
                        .replace("{order_id}", "1234")
                        .replace("{user_id}", "77")
                        .into(),
                ),
                ("http.scheme", "http".into()),
                ("http.status_code", 200.into()),
                (
                    "http.response_content_length",
                    (2_000 + rng.below(800_000) as i64).into(),
                ),
                ("net.host.name", "shop.internal".into()),
                (
                    "user_agent.original",
                    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36".into(),
                ),
            ]),
            status_error: false,
            scope: None,
        },
    ));
    route == "/orders"
}

fn generate(format: &str, spans: u64, path: &Path) -> Result<(), String> {
    let file = File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut rng = Rng(SEED);
    let mut batch = Vec::with_capacity(BATCH_SPANS * 2);
    let mut written = 0u64;
    let mut number = 0u64;
    let mut record = Vec::new();
    let mut planted = 0u64;
    while written < spans {
        planted += u64::from(trace(&mut rng, number, &mut batch));
        number += 1;
        // Whole traces only: the last batch may pass SPANS by the rest of one trace.
        if batch.len() >= BATCH_SPANS || written + batch.len() as u64 >= spans {
            record.clear();
            match format {
                "proto" => {
                    write_length_prefixed(&encode_request(batch.iter().map(|(id, s)| (*id, s))), &mut record)
                }
                "json" => write_json_line(&batch, &mut record),
                other => return Err(format!("unknown format {other:?}: proto or json")),
            }
            out.write_all(&record).map_err(|e| e.to_string())?;
            written += batch.len() as u64;
            batch.clear();
        }
    }
    out.flush().map_err(|e| e.to_string())?;
    println!("{written} spans, {number} requests, {planted} N+1 bursts planted in GET /orders");
    Ok(())
}

/// Posts `spans` generated spans to an OTLP/HTTP receiver at `addr`, batch by batch, as an SDK's
/// exporter does; prints a line per million spans, with the time since the start.
fn send(addr: &str, spans: u64) -> Result<(), String> {
    use std::io::{BufRead as _, BufReader};
    let stream = std::net::TcpStream::connect(addr).map_err(|e| format!("connect to {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let mut reader = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
    let mut writer = stream;
    let started = Instant::now();
    let mut rng = Rng(SEED);
    let mut batch = Vec::with_capacity(BATCH_SPANS * 2);
    let (mut sent, mut number, mut next_report) = (0u64, 0u64, 1_000_000u64);
    while sent < spans {
        let _ = trace(&mut rng, number, &mut batch);
        number += 1;
        if batch.len() < BATCH_SPANS && sent + (batch.len() as u64) < spans {
            continue;
        }
        let body = encode_request(batch.iter().map(|(id, s)| (*id, s))).encode_to_vec();
        let head = format!(
            "POST /v1/traces HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        writer
            .write_all(head.as_bytes())
            .and_then(|()| writer.write_all(&body))
            .map_err(|e| format!("sending: {e}"))?;
        // The answer: a status line, headers, and a Content-Length body.
        let mut line = String::new();
        reader.read_line(&mut line).map_err(|e| e.to_string())?;
        if !line.starts_with("HTTP/1.1 200") {
            return Err(format!("the receiver answered {line:?}"));
        }
        let mut length = 0usize;
        loop {
            line.clear();
            reader.read_line(&mut line).map_err(|e| e.to_string())?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut answer = vec![0; length];
        reader.read_exact(&mut answer).map_err(|e| e.to_string())?;
        sent += batch.len() as u64;
        batch.clear();
        if sent >= next_report {
            println!("sent {sent} spans in {:.1} s", started.elapsed().as_secs_f64());
            next_report += 1_000_000;
        }
    }
    report_rate("send", sent, started);
    Ok(())
}

/// One OTLP/JSON line as the Collector's file exporter writes it (hex ids, string integers).
fn write_json_line(spans: &[(TraceId, Span)], out: &mut Vec<u8>) {
    let mut line = String::with_capacity(spans.len() * 700);
    line.push_str(r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"shop"}},{"key":"telemetry.sdk.language","value":{"stringValue":"python"}}]},"scopeSpans":[{"scope":{"name":"opentelemetry.instrumentation.fastapi"},"spans":["#);
    for (i, (trace_id, span)) in spans.iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        let _ = write!(line, r#"{{"traceId":"{trace_id}","spanId":"{}","#, span.span_id);
        if let Some(parent) = span.parent_span_id {
            let _ = write!(line, r#""parentSpanId":"{parent}","#);
        }
        let kind = match span.kind {
            SpanKind::Server => 2,
            SpanKind::Client => 3,
            _ => 1,
        };
        let _ = write!(
            line,
            r#""name":"{}","kind":{kind},"startTimeUnixNano":"{}","endTimeUnixNano":"{}","attributes":["#,
            span.name, span.start_unix_nano, span.end_unix_nano
        );
        for (j, (key, value)) in span.attributes.iter().enumerate() {
            if j > 0 {
                line.push(',');
            }
            let value = match value {
                AttrValue::Str(s) => format!(r#"{{"stringValue":{s:?}}}"#),
                AttrValue::Int(n) => format!(r#"{{"intValue":"{n}"}}"#),
                AttrValue::Double(d) => format!(r#"{{"doubleValue":{d}}}"#),
                AttrValue::Bool(b) => format!(r#"{{"boolValue":{b}}}"#),
            };
            let _ = write!(line, r#"{{"key":"{key}","value":{value}}}"#);
        }
        line.push_str(r#"],"status":{}}"#);
    }
    line.push_str("]}]}]}\n");
    out.extend_from_slice(line.as_bytes());
}

fn decode(path: &Path) -> Result<(), String> {
    let started = Instant::now();
    let mut spans = 0u64;
    let report = read_path(path, &ReadOptions::default(), &mut |_, _| spans += 1);
    if let Some(problem) = report.problems.first() {
        return Err(problem.to_string());
    }
    report_rate("decode", spans, started);
    Ok(())
}

fn prost_decode(path: &Path) -> Result<(), String> {
    let started = Instant::now();
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| e.to_string())?;
    let mut spans = 0u64;
    let mut at = 0;
    while at + 4 <= bytes.len() {
        let len = u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize;
        let request =
            ExportTraceServiceRequest::decode(&bytes[at + 4..at + 4 + len]).map_err(|e| e.to_string())?;
        spans += request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len() as u64)
            .sum::<u64>();
        at += 4 + len;
    }
    report_rate("prost", spans, started);
    Ok(())
}

fn report_rate(what: &str, spans: u64, started: Instant) {
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{what}: {spans} spans in {seconds:.3} s = {:.0} spans/s",
        spans as f64 / seconds
    );
}

/// Serves `ok` over HTTP/1.1 keep-alive on a free loopback port, on one thread, until killed.
fn serve(delay_us: u64) -> Result<(), String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        println!("{}", listener.local_addr().map_err(|e| e.to_string())?.port());
        loop {
            let (mut stream, _) = listener.accept().await.map_err(|e| e.to_string())?;
            let _ = stream.set_nodelay(true);
            // Requests without bodies, answered as their heads end ("\r\n\r\n", found across
            // reads): the cheapest server that speaks HTTP/1.1 keep-alive, so the generator, not
            // the target, is what the benchmark measures.
            tokio::spawn(async move {
                let (mut buffer, mut answers) = (vec![0u8; 16 * 1024], Vec::new());
                let mut matched = 0;
                loop {
                    let Ok(read @ 1..) = stream.read(&mut buffer).await else {
                        return;
                    };
                    answers.clear();
                    for &byte in &buffer[..read] {
                        matched = match (matched, byte) {
                            (0 | 2, b'\r') => matched + 1,
                            (1 | 3, b'\n') => matched + 1,
                            (_, b'\r') => 1,
                            _ => 0,
                        };
                        if matched == 4 {
                            answers.extend_from_slice(RESPONSE);
                            matched = 0;
                        }
                    }
                    if answers.is_empty() {
                        continue;
                    }
                    if delay_us > 0 {
                        tokio::time::sleep(std::time::Duration::from_micros(delay_us)).await;
                    }
                    if stream.write_all(&answers).await.is_err() {
                        return;
                    }
                }
            });
        }
    })
}
