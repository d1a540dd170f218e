//! Sharded receivers behind the real OpenTelemetry Collector: its load-balancing exporter routes
//! each trace, by trace id, to one of three `chokepoint listen` shards, while an OTLP exporter
//! sends the same stream whole to a fourth. The shards' runs, merged, give the fourth's findings.
//!
//! The Collector is built from its Go modules by `scripts/build-collector.sh` (cached in
//! ~/.cache/chokepoint/bin; minutes when cold).

pub mod common;

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{assert_exit, chokepoint, root, stdout_json};

fn collector() -> PathBuf {
    let output = Command::new(root().join("scripts/build-collector.sh"))
        .stderr(Stdio::inherit())
        .output()
        .expect("scripts/build-collector.sh runs");
    assert!(
        output.status.success(),
        "scripts/build-collector.sh failed: the test needs Go and the Go module proxy"
    );
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

fn python() -> PathBuf {
    let python = root().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} not found: run scripts/setup-python.sh to install the OpenTelemetry SDK",
        python.display()
    );
    python
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A `chokepoint listen` on a free gRPC port saving into `run`; its process and gRPC address.
fn shard(run: &Path, id: &str) -> (Child, String, mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_chokepoint"))
        .args([
            "listen",
            "--http",
            "off",
            "--grpc",
            "127.0.0.1:0",
            "--format",
            "json",
        ])
        .args(["--shard", id, "--run-dir"])
        .arg(run)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chokepoint listen starts");
    let (lines_tx, lines) = mpsc::channel();
    let stderr = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let banner = lines
        .recv_timeout(Duration::from_secs(20))
        .expect("listen prints where it listens");
    let grpc = banner
        .rsplit("OTLP/gRPC ")
        .next()
        .and_then(|s| s.split_whitespace().next())
        .expect("a gRPC address")
        .to_owned();
    (child, grpc, lines)
}

fn wait_for_port(port: u16, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the Collector exited before listening: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "the Collector did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn stop(child: Child) -> std::process::Output {
    common::send_signal("-TERM", child.id());
    child.wait_with_output().expect("it ends")
}

#[test]
fn three_shards_behind_the_collector_merge_into_the_whole_stream() {
    let collector = collector();
    let dir = tempfile::tempdir().expect("temp dir");
    let runs: Vec<PathBuf> = ["shard-1", "shard-2", "shard-3", "whole"]
        .iter()
        .map(|name| dir.path().join(name))
        .collect();
    let mut receivers: Vec<(Child, String, mpsc::Receiver<String>)> = runs
        .iter()
        .zip(["1", "2", "3", "whole"])
        .map(|(run, id)| shard(run, id))
        .collect();
    let port = free_port();
    let hostnames: Vec<String> = receivers[..3]
        .iter()
        .map(|(_, grpc, _)| format!("\"{grpc}\""))
        .collect();
    let config = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{port}
processors:
  batch:
    timeout: 200ms
exporters:
  loadbalancing:
    routing_key: traceID
    protocol:
      otlp:
        tls:
          insecure: true
    resolver:
      static:
        hostnames: [{hostnames}]
  otlp/whole:
    endpoint: {whole}
    tls:
      insecure: true
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [loadbalancing, otlp/whole]
"#,
        hostnames = hostnames.join(", "),
        whole = receivers[3].1,
    );
    let config_path = dir.path().join("collector.yaml");
    std::fs::write(&config_path, config).expect("config");
    let mut otelcol = Command::new(&collector)
        .arg("--config")
        .arg(&config_path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the Collector starts");
    wait_for_port(port, &mut otelcol);

    // The shop's traffic, through the Collector, from the OpenTelemetry Python SDK.
    let status = Command::new(python())
        .arg(root().join("scripts/otel_shop.py"))
        .args([
            "--exporter",
            "otlp-grpc",
            "--endpoint",
            &format!("http://127.0.0.1:{port}"),
        ])
        .args(["--requests", "8"])
        .status()
        .expect("python runs");
    assert!(status.success(), "the SDK script failed");
    // The Collector flushes its batches and exporters when it stops; then the receivers stop.
    let output = stop(otelcol);
    assert!(
        output.status.success(),
        "the Collector: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut spans = Vec::new();
    for (child, _, lines) in receivers.drain(..) {
        let output = stop(child);
        assert_eq!(
            output.status.code(),
            Some(0),
            "a receiver: {:?}",
            lines.try_iter().collect::<Vec<_>>()
        );
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("a JSON report");
        spans.push(report["traces"]["summary"]["spans"].as_u64().expect("spans"));
    }
    // Every span reached the whole stream's receiver and exactly one shard, and every shard got
    // some.
    assert!(spans[3] > 0);
    assert_eq!(spans[..3].iter().sum::<u64>(), spans[3], "{spans:?}");
    assert!(spans[..3].iter().all(|&s| s > 0), "{spans:?}");

    let merged = dir.path().join("merged");
    let path = |p: &Path| p.to_str().expect("UTF-8").to_owned();
    let output = chokepoint(&[
        "merge",
        &path(&runs[0]),
        &path(&runs[1]),
        &path(&runs[2]),
        "--run-dir",
        &path(&merged),
        "--format",
        "json",
    ]);
    let merged = stdout_json(&output);
    let output = chokepoint(&["report", &path(&runs[3]), "--format", "json"]);
    assert_exit(&output, 0);
    let whole = stdout_json(&output);
    assert!(
        !whole["findings"].as_array().expect("findings").is_empty(),
        "the shop's problems are found"
    );
    assert_eq!(merged["findings"], whole["findings"]);
    assert_eq!(merged["verdict"], whole["verdict"]);
    assert_eq!(merged["traces"]["summary"], whole["traces"]["summary"]);
}
