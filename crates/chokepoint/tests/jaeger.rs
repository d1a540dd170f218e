//! Traces read back from a real Jaeger v2 (built from its Go module by `scripts/build-jaeger.sh`,
//! memory storage): the verdict on what Jaeger returns equals the verdict on the same spans read
//! from a file; the errors a user meets (a refused connection, an unknown service) say what to do.

pub mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{assert_exit, chokepoint, root, stdout_json};

fn jaeger() -> PathBuf {
    let output = Command::new(root().join("scripts/build-jaeger.sh"))
        .stderr(Stdio::inherit())
        .output()
        .expect("scripts/build-jaeger.sh runs");
    assert!(
        output.status.success(),
        "scripts/build-jaeger.sh failed: the test needs Go and the Go module proxy"
    );
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Jaeger v2 with memory storage on free loopback ports: (process, OTLP/HTTP port, query port).
fn start_jaeger(dir: &Path) -> (Child, u16, u16) {
    let (otlp_grpc, otlp_http, query_http, query_grpc) = (free_port(), free_port(), free_port(), free_port());
    let config = format!(
        r#"
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: 127.0.0.1:{query_http}
    grpc:
      endpoint: 127.0.0.1:{query_grpc}
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 100000
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{otlp_grpc}
      http:
        endpoint: 127.0.0.1:{otlp_http}
processors:
  batch:
    timeout: 100ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
"#
    );
    let path = dir.join("jaeger.yaml");
    std::fs::write(&path, config).expect("config");
    let mut child = Command::new(jaeger())
        .arg("--config")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("jaeger starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    for port in [otlp_http, query_http] {
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                let output = child.wait_with_output().expect("output");
                panic!(
                    "jaeger exited ({status}): {}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            assert!(Instant::now() < deadline, "jaeger did not listen on {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    (child, otlp_http, query_http)
}

/// POSTs each line of an OTLP/JSON Lines file to an OTLP/HTTP receiver.
fn post_lines(port: u16, file: &Path) {
    let text = std::fs::read_to_string(file).expect("recording");
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let request = format!(
            "POST /v1/traces HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{line}",
            line.len()
        );
        std::io::Write::write_all(&mut tcp, request.as_bytes()).expect("write");
        let mut response = String::new();
        let _ = std::io::Read::read_to_string(&mut tcp, &mut response);
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    }
}

#[test]
fn the_verdict_read_back_from_jaeger_is_the_verdict_on_the_same_spans_from_a_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let recording = dir.path().join("shop.otlp.jsonl");
    let status = Command::new(root().join(".venv/bin/python"))
        .arg(root().join("scripts/otel_shop.py"))
        .args(["--exporter", "otlp-jsonl", "--endpoint"])
        .arg(&recording)
        .args(["--requests", "4"])
        .status()
        .expect("python runs (scripts/setup-python.sh installs the SDK)");
    assert!(status.success(), "the SDK script failed");
    let (mut jaeger, otlp_http, query) = start_jaeger(dir.path());
    let url = format!("http://127.0.0.1:{query}");

    // Before anything is stored, the service is unknown, and said with what Jaeger knows.
    let output = chokepoint(&["traces", "--jaeger", &url, "--service", "shop"]);
    assert_exit(&output, 2);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("knows no service \"shop\""), "{stderr}");

    post_lines(otlp_http, &recording);
    let from_file = stdout_json(&chokepoint(&[
        "traces",
        recording.to_str().expect("UTF-8"),
        "--format",
        "json",
    ]));
    let expected_traces = from_file["traces"]["summary"]["traces"].as_u64().expect("traces");
    // Jaeger stores what its batch processor hands on: wait until every trace is there.
    let deadline = Instant::now() + Duration::from_secs(30);
    let from_jaeger = loop {
        let output = chokepoint(&[
            "traces",
            "--jaeger",
            &url,
            "--service",
            "shop",
            "--since",
            "1h",
            "--header",
            "X-Scope-OrgID: secret-tenant",
            "--format",
            "json",
        ]);
        if output.status.code() == Some(0) {
            let report = stdout_json(&output);
            if report["traces"]["summary"]["traces"].as_u64() == Some(expected_traces) {
                break report;
            }
        }
        assert!(
            Instant::now() < deadline,
            "Jaeger never held all {expected_traces} traces"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(!from_file["findings"].as_array().expect("findings").is_empty());
    assert_eq!(from_jaeger["findings"], from_file["findings"]);
    assert_eq!(from_jaeger["verdict"], from_file["verdict"]);
    assert!(
        !from_jaeger.to_string().contains("secret-tenant"),
        "a header's value is never in the report"
    );
    let input = &from_jaeger["run"]["inputs"][0];
    assert_eq!(input["format"], "Jaeger api/v3 (OTLP/JSON)");

    // Asked with a search depth of 2, every slice is too deep: the window is cut until each
    // answer holds fewer (or a slice is a millisecond, said); nothing is lost or read twice.
    let sliced = stdout_json(&chokepoint(&[
        "traces",
        "--jaeger",
        &url,
        "--service",
        "shop",
        "--since",
        "1h",
        "--jaeger-search-depth",
        "2",
        "--format",
        "json",
    ]));
    assert_eq!(sliced["traces"]["summary"]["traces"], expected_traces);
    assert_eq!(sliced["findings"], from_file["findings"]);

    // --limit keeps the first N traces, and says so.
    let limited = stdout_json(&chokepoint(&[
        "traces",
        "--jaeger",
        &url,
        "--service",
        "shop",
        "--since",
        "1h",
        "--limit",
        "3",
        "--format",
        "json",
    ]));
    assert_eq!(limited["traces"]["summary"]["traces"], 3);

    // diagnose reads Jaeger the same way, into one verdict kept as a run.
    let run = dir.path().join("diagnose");
    let diagnosed = stdout_json(&chokepoint(&[
        "diagnose",
        "--jaeger",
        &url,
        "--service",
        "shop",
        "--since",
        "1h",
        "--jaeger-header",
        "Authorization: Bearer secret-token",
        "--run-dir",
        run.to_str().expect("UTF-8"),
        "--format",
        "json",
    ]));
    assert_eq!(diagnosed["findings"], from_file["findings"]);
    let saved = std::fs::read_to_string(run.join("run.json")).expect("run.json")
        + &std::fs::read_to_string(run.join("evidence.json")).expect("evidence.json");
    assert!(!saved.contains("secret-token"), "a header's value is never saved");

    common::send_signal("-TERM", jaeger.id());
    let _ = jaeger.wait();
    // A query service that is not there.
    let output = chokepoint(&["traces", "--jaeger", &url, "--service", "shop"]);
    assert_exit(&output, 2);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("connection refused") && stderr.contains("16686"),
        "{stderr}"
    );
}
