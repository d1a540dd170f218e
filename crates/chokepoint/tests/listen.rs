//! `chokepoint listen` beyond loopback: TLS and a bearer token, or an explicit --insecure.

pub mod common;

use std::sync::Arc;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const JSON: &str = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"api"}}]},"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"GET /","kind":2,"startTimeUnixNano":"1","endTimeUnixNano":"9"}]}]}]}"#;

/// POSTs `JSON` over TLS, trusting `ca`, with `authorization` if any; the status code.
async fn post(port: u16, ca: &rcgen::CertifiedKey<rcgen::KeyPair>, authorization: Option<&str>) -> u16 {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert.der().clone()).expect("root");
    let config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("protocols")
            .with_root_certificates(roots)
            .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut tls = connector.connect(name, tcp).await.expect("TLS handshake");
    let auth = authorization.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    let request = format!(
        "POST /v1/traces HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{JSON}",
        JSON.len()
    );
    tls.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response).await;
    String::from_utf8_lossy(&response)
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status")
}

#[test]
fn beyond_loopback_it_wants_tls_and_a_token_or_says_insecure() {
    let refused = common::chokepoint(&[
        "listen",
        "--http",
        "0.0.0.0:0",
        "--grpc",
        "off",
        "--duration",
        "1s",
    ]);
    common::assert_exit(&refused, 2);
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("--tls-cert") && said.contains("--insecure"),
        "{said}"
    );
    let insecure = common::chokepoint(&[
        "listen",
        "--http",
        "0.0.0.0:0",
        "--grpc",
        "off",
        "--duration",
        "1s",
        "--insecure",
    ]);
    // Listened (and received nothing: exit 2 for that, with its own message).
    assert!(
        String::from_utf8_lossy(&insecure.stdout).contains("no spans were received"),
        "{}",
        String::from_utf8_lossy(&insecure.stderr)
    );
}

#[test]
fn with_tls_and_a_token_only_the_token_holder_is_heard() {
    let dir = tempfile::tempdir().expect("temp dir");
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("a certificate");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).expect("write");
    std::fs::write(&key, certified.signing_key.serialize_pem()).expect("write");
    let port = common::free_port();
    let http = format!("127.0.0.1:{port}");
    let (child, line, _stderr) = common::spawn_listen(&[
        "--http",
        &http,
        "--grpc",
        "off",
        "--duration",
        "4s",
        "--tls-cert",
        cert.to_str().expect("path"),
        "--tls-key",
        key.to_str().expect("path"),
        "--token",
        "s3cret",
        "--format",
        "json",
    ]);
    assert!(line.contains("https://"), "{line}");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    assert_eq!(runtime.block_on(post(port, &certified, None)), 401);
    assert_eq!(
        runtime.block_on(post(port, &certified, Some("Bearer wrong"))),
        401
    );
    assert_eq!(
        runtime.block_on(post(port, &certified, Some("Bearer s3cret"))),
        200
    );
    let output = child.wait_with_output().expect("chokepoint ends");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(report["run"]["inputs"][0]["spans"], 1, "{report:#}");
    let notes = report["notes"].to_string();
    assert!(notes.contains("2 export request(s) were refused"), "{notes}");
}

#[test]
fn sigterm_stops_the_receiver_and_reports() {
    let (child, _, _stderr) =
        common::spawn_listen(&["--http", "127.0.0.1:0", "--grpc", "off", "--format", "json"]);
    common::send_signal("-TERM", child.id());
    let output = child.wait_with_output().expect("chokepoint ends");
    // Stopped as by Ctrl-C: a report (of nothing received, which is exit 2), not a kill.
    assert_eq!(output.status.code(), Some(2));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("a JSON report");
    assert!(report["notes"].to_string().contains("no spans were received"));
}

#[test]
fn a_full_disk_under_the_recording_loses_the_file_not_the_spans() {
    let port = common::free_port();
    // /dev/full answers every write with ENOSPC, as a full disk does.
    let http = format!("127.0.0.1:{port}");
    let (child, _, _stderr) = common::spawn_listen(&[
        "--http",
        &http,
        "--grpc",
        "off",
        "--out",
        "/dev/full",
        "--duration",
        "3s",
        "--format",
        "json",
    ]);
    post_trace(port, 'c');
    let output = child.wait_with_output().expect("chokepoint ends");
    // The span is analysed; the recording's failure is an error (exit 2) that says what to do.
    assert_eq!(output.status.code(), Some(2));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("a JSON report");
    assert_eq!(report["run"]["inputs"][0]["spans"], 1, "{report:#}");
    let errors = common::notes(&report, "error");
    assert!(
        errors
            .iter()
            .any(|n| n.contains("cannot write the recording") && n.contains("No space left")),
        "{errors:?}"
    );
}

/// POSTs one trace of one span, `trace` its id's last hex digit, over plain HTTP.
fn post_trace(port: u16, trace: char) {
    let body = JSON.replace(
        "5b8efff798038103d269b633813fc60c",
        &format!("5b8efff798038103d269b633813fc60{trace}"),
    );
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let request = format!(
        "POST /v1/traces HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    std::io::Write::write_all(&mut tcp, request.as_bytes()).expect("write");
    let mut response = String::new();
    let _ = std::io::Read::read_to_string(&mut tcp, &mut response);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}

/// The traces a saved run holds, when it can be read.
fn traces_saved(run: &std::path::Path) -> Option<u64> {
    let evidence: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("evidence.json")).ok()?).ok()?;
    evidence["traces"]["summary"]["traces"].as_u64()
}

#[test]
fn a_shard_killed_after_a_checkpoint_keeps_what_it_had_checkpointed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = dir.path().join("shard-a");
    let port = common::free_port();
    let http = format!("127.0.0.1:{port}");
    let (mut child, _, _stderr) = common::spawn_listen(&[
        "--http",
        &http,
        "--grpc",
        "off",
        "--run-dir",
        run.to_str().expect("UTF-8"),
        "--shard",
        "a",
        "--checkpoint",
        "1s",
    ]);
    post_trace(port, 'a');
    // The trace completes (three ticks after its root) and the next checkpoint holds it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while traces_saved(&run) != Some(1) {
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint held the trace"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    post_trace(port, 'b');
    common::send_signal("-KILL", child.id());
    let _ = child.wait();
    // The run loads and has the checkpointed trace; the one after it is the interval lost.
    let output = common::chokepoint(&["report", run.to_str().expect("UTF-8"), "--format", "json"]);
    common::assert_exit(&output, 0);
    let report = common::stdout_json(&output);
    assert_eq!(report["traces"]["summary"]["traces"], 1, "{report:#}");
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("run.json")).expect("run.json")).expect("json");
    assert_eq!(meta["shard"]["id"], "a");
    assert_eq!(meta["shard"]["routing_key"], "traceID");
    assert!(
        !run.join("evidence.json.partial").exists(),
        "no half-written file left"
    );
}

#[test]
fn sigterm_writes_the_last_checkpoint_with_every_trace_received() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = dir.path().join("shard-b");
    let port = common::free_port();
    let http = format!("127.0.0.1:{port}");
    let (child, _, _stderr) = common::spawn_listen(&[
        "--http",
        &http,
        "--grpc",
        "off",
        "--run-dir",
        run.to_str().expect("UTF-8"),
        "--shard",
        "b",
        "--format",
        "json",
    ]);
    post_trace(port, 'c');
    post_trace(port, 'd');
    common::send_signal("-TERM", child.id());
    let output = child.wait_with_output().expect("chokepoint ends");
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(traces_saved(&run), Some(2), "the traces still open are kept too");
}
