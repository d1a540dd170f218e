//! `chokepoint listen` receiving from the official OpenTelemetry Python SDK over OTLP/HTTP and
//! OTLP/gRPC, on loopback; the recording it writes is read back by `chokepoint traces`.
//!
//! Needs the SDK in `.venv` (created by `scripts/setup-python.sh`, which `scripts/test` runs), or
//! a Python with it in `CHOKEPOINT_PYTHON`.

pub mod common;

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{findings_by_endpoint as detectors, root};

fn python() -> PathBuf {
    let python =
        std::env::var_os("CHOKEPOINT_PYTHON").map_or_else(|| root().join(".venv/bin/python"), PathBuf::from);
    assert!(
        python.exists(),
        "{} not found: run scripts/setup-python.sh (scripts/test does) to install the OpenTelemetry SDK",
        python.display()
    );
    python
}

/// Runs `chokepoint listen` on free loopback ports, sends the shop scenario with `exporter`,
/// stops it with SIGINT, and returns its JSON report and the recording's path.
fn listen_and_send(exporter: &str, out: &Path) -> serde_json::Value {
    let mut listen = Command::new(env!("CARGO_BIN_EXE_chokepoint"))
        .args([
            "listen",
            "--http",
            "127.0.0.1:0",
            "--grpc",
            "127.0.0.1:0",
            "--format",
            "json",
            "--out",
        ])
        .arg(out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chokepoint listen starts");
    let (lines_tx, lines) = mpsc::channel();
    let stderr = listen.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let banner = lines
        .recv_timeout(Duration::from_secs(20))
        .expect("listen prints where it listens");
    let http = banner
        .split("http://")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .expect("http address")
        .to_owned();
    let grpc = banner
        .rsplit("OTLP/gRPC ")
        .next()
        .and_then(|s| s.split_whitespace().next())
        .expect("grpc address")
        .to_owned();
    let endpoint = if exporter == "otlp-grpc" {
        format!("http://{grpc}")
    } else {
        format!("http://{http}")
    };
    let status = Command::new(python())
        .arg(root().join("scripts/otel_shop.py"))
        .args(["--exporter", exporter, "--endpoint", &endpoint, "--requests", "3"])
        .status()
        .expect("python runs");
    assert!(status.success(), "the SDK script failed");
    let pid = listen.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let output = listen.wait_with_output().expect("listen ends");
    assert_eq!(
        output.status.code(),
        Some(0),
        "listen exit; stderr: {:?}",
        lines.try_iter().collect::<Vec<_>>()
    );
    serde_json::from_slice(&output.stdout).expect("a JSON report")
}

fn check_shop_findings(exporter: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("run.otlp");
    let live = listen_and_send(exporter, &out);
    assert_eq!(
        live["traces"]["summary"]["spans"], 105,
        "{exporter}: 3 rounds of 35 spans"
    );
    let found = detectors(&live);
    for expected in [
        "n-plus-one GET /orders",
        "sequential-calls GET /dashboard",
        "network-latency GET /dashboard",
        "slow-query GET /users/search",
        "unbounded-result GET /report",
        "large-payload GET /report",
        "connection-churn GET /items/{item_id}",
    ] {
        assert!(
            found.iter().any(|f| f == expected),
            "{exporter}: {expected} not in {found:?}"
        );
    }
    let replay = Command::new(env!("CARGO_BIN_EXE_chokepoint"))
        .args(["traces", "--format", "json"])
        .arg(&out)
        .output()
        .expect("traces runs");
    assert_eq!(replay.status.code(), Some(0));
    let replayed: serde_json::Value = serde_json::from_slice(&replay.stdout).expect("json");
    assert_eq!(replayed["traces"]["summary"]["spans"], 105);
    assert_eq!(
        detectors(&replayed),
        found,
        "{exporter}: the recording gives the same findings"
    );
}

#[test]
fn receives_the_python_sdk_over_http() {
    check_shop_findings("otlp-http");
}

#[test]
fn receives_the_python_sdk_over_grpc() {
    check_shop_findings("otlp-grpc");
}
