//! `chokepoint load` against loopback servers with one known limit each
//! (`tests/servers/load_target.py`): the ramp runs over real sockets, samples the server's
//! process, and names the limit. Scenarios run one at a time: they measure CPU.

pub mod common;
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

/// Load tests measure the machine's CPU; one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(mode: &str) -> Server {
        let mut child = Command::new("python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/servers/load_target.py"))
            .args(["--mode", mode])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the port");
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("a port, got {line:?}"));
        Server { child, port }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ramp(server: &Server, extra: &[&str]) -> (Option<i32>, serde_json::Value) {
    let url = format!("http://127.0.0.1:{}/", server.port);
    let output = Command::new(env!("CARGO_BIN_EXE_chokepoint"))
        .args([
            "load",
            &url,
            "--concurrency",
            "1,2,4,8,16",
            "--step-duration",
            "1s",
            "--format",
            "json",
        ])
        .args(extra)
        .output()
        .expect("chokepoint runs");
    let report = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code(), report)
}

/// Starts a five-step ramp in the background, for tests that interrupt it.
fn spawn_ramp(url: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_chokepoint"))
        .args([
            "load",
            url,
            "--concurrency",
            "1,2,4,8,16",
            "--step-duration",
            "1s",
            "--format",
            "json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chokepoint runs")
}

/// A one-worker runtime and a listener on a free loopback port, for servers the test runs itself.
fn loopback_listener() -> (tokio::runtime::Runtime, tokio::net::TcpListener, u16) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    (runtime, listener, port)
}

/// A metric of the report's connection-churn finding; the test fails without one.
fn churn_metric(report: &serde_json::Value, metric: &str) -> f64 {
    let churn = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["detector"] == "connection-churn")
        .unwrap_or_else(|| panic!("no connection-churn in {report:#}"));
    churn["evidence"]["metrics"][metric].as_f64().expect("metric")
}

fn bottleneck(report: &serde_json::Value) -> String {
    let id = &report["verdict"]["bottleneck"];
    report["findings"]
        .as_array()
        .and_then(|findings| findings.iter().find(|f| &f["id"] == id))
        .and_then(|f| f["detector"].as_str())
        .unwrap_or("none")
        .to_owned()
}

#[test]
fn a_cpu_bound_handler_is_cpu_saturation() {
    let _serial = SERIAL.lock();
    let server = Server::start("cpu");
    let (code, report) = ramp(&server, &[]);
    assert_eq!(code, Some(0));
    assert_eq!(bottleneck(&report), "cpu-saturation", "{report:#}");
    let steps = report["load"]["steps"].as_array().expect("steps");
    assert!(
        steps[0]["target"]["cpu_cores"].as_f64().expect("sampled") > 0.5,
        "{steps:#?}"
    );
}

#[test]
fn a_small_pool_is_worker_exhaustion_with_its_size() {
    let _serial = SERIAL.lock();
    let server = Server::start("pool");
    let dir = std::env::temp_dir().join(format!("chokepoint-chart-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let chart = dir.join("curve.svg");
    let (code, report) = ramp(&server, &["--chart", chart.to_str().expect("path")]);
    let svg = std::fs::read_to_string(&chart).expect("the chart was written");
    // The three percentiles' curves (drawn 2 wide, as is each one's mark in the legend), each
    // named in the legend.
    assert!(
        svg.starts_with("<svg") && svg.matches("stroke-width=\"2\"").count() >= 6,
        "{svg}"
    );
    assert!(["p50", "p90", "p99"].iter().all(|p| svg.contains(p)), "{svg}");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(code, Some(0));
    assert_eq!(bottleneck(&report), "worker-exhaustion", "{report:#}");
    // 4 slots of 50 ms: about 80 requests/s, 4 workers by Little's law.
    let workers = report["findings"][0]["evidence"]["metrics"]["inferred_workers"]
        .as_f64()
        .expect("workers");
    assert!((3.0..=5.0).contains(&workers), "inferred {workers} workers");
    // The USL fit predicts the plateau the pool sets: 4 / 50 ms = 80 requests/s.
    let peak = report["load"]["usl"]["peak_throughput_rps"]
        .as_f64()
        .expect("a USL fit");
    assert!((60.0..=100.0).contains(&peak), "USL peak {peak}");
    // A capacity finding speaks in capacity: now, after the fix (twice the pool), and what the
    // limit cost at the objective the ramp broke.
    let limit = &report["findings"][0]["impact"];
    let (now, after) = (
        limit["capacity_rps"].as_f64().expect("capacity"),
        limit["capacity_after_fix_rps"].as_f64().expect("a prediction"),
    );
    assert!((1.8..=2.2).contains(&(after / now)), "{now} → {after}");
    let (_, strict) = ramp(&server, &["--slo", "p99<120ms"]);
    let missed = &strict["findings"][0]["impact"]["slo_missed"];
    assert_eq!(missed["limit_ms"], 120.0, "{strict:#}");
    assert!(
        missed["queueing_ms"].as_f64().expect("queueing") > 50.0,
        "{missed}"
    );
}

#[test]
fn a_sleep_in_the_event_loop_is_a_blocking_call() {
    let _serial = SERIAL.lock();
    let server = Server::start("blocking");
    let (code, report) = ramp(&server, &[]);
    assert_eq!(code, Some(0));
    assert_eq!(bottleneck(&report), "blocking-call", "{report:#}");
}

#[test]
fn a_service_that_scales_has_no_capacity_finding() {
    let _serial = SERIAL.lock();
    let server = Server::start("fine");
    let (code, report) = ramp(&server, &["--concurrency", "1,2,4,8"]);
    assert_eq!(code, Some(0));
    assert_eq!(report["findings"].as_array().map(Vec::len), Some(0), "{report:#}");
    assert_eq!(report["notes"].as_array().map(Vec::len), Some(0), "{report:#}");
    let steps = report["load"]["steps"].as_array().expect("steps");
    // Closed model: Little's law, X · R = N, holds within 15 % at every step.
    for step in steps {
        let n = step["offered"].as_f64().expect("n");
        let x = step["throughput_rps"].as_f64().expect("x");
        let r = step["latency"]["mean_ms"].as_f64().expect("r") / 1e3;
        assert!((x * r - n).abs() / n < 0.15, "X·R = {} for N = {n}", x * r);
    }
}

#[test]
fn a_target_that_dies_mid_ramp_keeps_the_steps_measured() {
    let _serial = SERIAL.lock();
    let mut server = Server::start("fine");
    let url = format!("http://127.0.0.1:{}/", server.port);
    let child = spawn_ramp(&url);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let _ = server.child.kill();
    let output = child.wait_with_output().expect("chokepoint ends");
    assert_eq!(output.status.code(), Some(2));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    let steps = report["load"]["steps"].as_array().expect("steps");
    assert!(
        steps.len() >= 2,
        "the steps before the failure are kept: {steps:#?}"
    );
    let problem = &report["notes"][0];
    assert_eq!(problem["severity"], "error");
    assert!(
        problem["message"]
            .as_str()
            .expect("a message")
            .contains("stopped accepting connections during step"),
        "{problem}"
    );
}

#[test]
fn a_weighted_mix_sends_each_url_its_share() {
    use std::io::{Read as _, Write as _};
    let _serial = SERIAL.lock();
    let server = Server::start("fine");
    let base = format!("http://127.0.0.1:{}", server.port);
    let output = Command::new(env!("CARGO_BIN_EXE_chokepoint"))
        .args([
            "load",
            &format!("{base}/orders"),
            &format!("{base}/users?page=2"),
            "--weights",
            "3,1",
        ])
        .args(["--concurrency", "4", "--step-duration", "1s", "--format", "json"])
        .output()
        .expect("chokepoint runs");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    stream
        .write_all(b"GET /__counts HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("ask");
    let mut answer = vec![0u8; 4096];
    let n = stream.read(&mut answer).expect("counts");
    let text = String::from_utf8_lossy(&answer[..n]);
    let counts: serde_json::Value =
        serde_json::from_str(text.split("\r\n\r\n").nth(1).expect("a body")).expect("json");
    let (orders, users) = (
        counts["/orders"].as_f64().expect("orders"),
        counts["/users?page=2"].as_f64().expect("users"),
    );
    assert!((orders / users - 3.0).abs() < 0.2, "{orders} to {users}");
}

#[test]
fn speaks_http2_cleartext() {
    let _serial = SERIAL.lock();
    let (runtime, listener, port) = loopback_listener();
    let versions = std::sync::Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
    let seen = std::sync::Arc::clone(&versions);
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move |request: axum::extract::Request| {
            let seen = std::sync::Arc::clone(&seen);
            async move {
                if let Ok(mut seen) = seen.lock() {
                    seen.insert(format!("{:?}", request.version()));
                }
                "ok"
            }
        }),
    );
    runtime.spawn(async move { axum::serve(listener, app).await });
    let output = Command::new(env!("CARGO_BIN_EXE_chokepoint"))
        .args([
            "load",
            &format!("http://127.0.0.1:{port}/"),
            "--http2",
            "--concurrency",
            "1,2",
        ])
        .args(["--step-duration", "1s", "--format", "json"])
        .output()
        .expect("chokepoint runs");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    let first = &report["load"]["steps"][0];
    assert!(first["requests"].as_u64().expect("requests") > 100, "{first}");
    assert_eq!(first["errors"], 0);
    assert_eq!(
        versions
            .lock()
            .expect("versions")
            .iter()
            .cloned()
            .collect::<Vec<_>>(),
        ["HTTP/2.0"]
    );
}

#[test]
fn a_target_closing_every_connection_is_connection_churn() {
    let _serial = SERIAL.lock();
    let server = Server::start("close");
    let (code, report) = ramp(&server, &["--concurrency", "1,2"]);
    assert_eq!(code, Some(0), "{report:#}");
    let per_request = churn_metric(&report, "new_connections_per_request");
    assert!(per_request > 0.9, "{per_request} new connections per request");
}

#[test]
fn a_target_opening_a_connection_per_request_is_outbound_connection_churn() {
    let _serial = SERIAL.lock();
    let server = Server::start("dial");
    let (code, report) = ramp(&server, &["--concurrency", "1,2,4"]);
    assert_eq!(code, Some(0), "{report:#}");
    let per_request = churn_metric(&report, "outbound_connections_per_request");
    assert!(
        (0.8..1.5).contains(&per_request),
        "{per_request} outbound connections per request"
    );
    // The same ramp on a service that keeps its connections: no churn.
    let fine = Server::start("fine");
    let (_, report) = ramp(&fine, &["--concurrency", "1,2,4"]);
    assert!(
        !report["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .any(|f| f["detector"] == "connection-churn"),
        "{report:#}"
    );
}

#[test]
fn a_prometheus_endpoint_stands_in_for_proc_when_the_target_is_elsewhere() {
    let _serial = SERIAL.lock();
    let server = Server::start("pool");
    let metrics = format!("http://127.0.0.1:{}/metrics", server.port);
    let (code, report) = ramp(&server, &["--no-pid", "--metrics", &metrics]);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(bottleneck(&report), "worker-exhaustion", "{report:#}");
    let steps = report["load"]["steps"].as_array().expect("steps");
    let last = steps.last().expect("a step");
    assert!(
        last["target"]["cpu_cores"].as_f64().is_some(),
        "CPU from process_cpu_seconds_total: {last}"
    );
    let in_use = last["metrics"]["app_pool_in_use"]
        .as_f64()
        .expect("the pool gauge");
    assert!(in_use > 2.0, "the pool is nearly full at the last step: {in_use}");
}

#[test]
fn speaks_https_and_http2_over_tls_to_a_server_it_is_told_to_trust() {
    let _serial = SERIAL.lock();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("a certificate");
    let dir = std::env::temp_dir().join(format!("chokepoint-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, certified.cert.pem()).expect("write the certificate");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocols")
    .with_no_client_auth()
    .with_single_cert(vec![certified.cert.der().clone()], key)
    .expect("server config");
    let mut config = config;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // Connections served over HTTP/2, as ALPN agreed, and over HTTP/1.1.
    let protocols = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = std::sync::Arc::clone(&protocols);
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let (runtime, listener, port) = loopback_listener();
    runtime.spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (acceptor, seen) = (acceptor.clone(), std::sync::Arc::clone(&seen));
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                seen.lock()
                    .expect("protocols")
                    .push(if h2 { "h2" } else { "http/1.1" });
                let service = hyper::service::service_fn(|_| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Full::new(
                        bytes::Bytes::from_static(b"ok"),
                    )))
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                if h2 {
                    let _ = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(io, service)
                        .await;
                } else {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                }
            });
        }
    });
    let url = format!("https://localhost:{port}/");
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_chokepoint"))
            .args([
                "load",
                &url,
                "--concurrency",
                "1,2",
                "--step-duration",
                "1s",
                "--format",
                "json",
            ])
            .args(extra)
            .output()
            .expect("chokepoint runs")
    };
    // Served without an error, over the protocols the server saw.
    let served = |extra: &[&str]| {
        let output = run(&[&["--cacert", ca.to_str().expect("path")], extra].concat());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{stderr}");
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
        let first = &report["load"]["steps"][0];
        assert!(first["requests"].as_u64().expect("requests") > 100, "{report:#}");
        assert_eq!(first["errors"], 0);
        std::mem::take(&mut *protocols.lock().expect("protocols"))
    };
    let used = served(&[]);
    assert!(
        !used.is_empty() && used.iter().all(|p| *p == "http/1.1"),
        "{used:?}"
    );
    // `--http2` over TLS asks for h2 by ALPN, and speaks it.
    let used = served(&["--http2"]);
    assert!(!used.is_empty() && used.iter().all(|p| *p == "h2"), "{used:?}");
    // Without the CA the certificate is not trusted: a clear error, exit 2.
    let untrusted = run(&[]);
    assert_eq!(untrusted.status.code(), Some(2));
    let report: serde_json::Value = serde_json::from_slice(&untrusted.stdout).expect("json");
    assert!(
        report["notes"][0]["message"]
            .as_str()
            .expect("a note")
            .contains("TLS"),
        "{report:#}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ctrl_c_or_sigterm_stops_the_ramp_and_reports_what_was_measured() {
    let _serial = SERIAL.lock();
    let server = Server::start("fine");
    let url = format!("http://127.0.0.1:{}/", server.port);
    // Ctrl-C from a terminal, SIGTERM from a supervisor: the same stop.
    for signal in ["-INT", "-TERM"] {
        let child = spawn_ramp(&url);
        std::thread::sleep(std::time::Duration::from_millis(2500));
        let pid = child.id().to_string();
        assert!(
            Command::new("kill")
                .args([signal, &pid])
                .status()
                .expect("kill")
                .success()
        );
        let output = child.wait_with_output().expect("chokepoint ends");
        assert_eq!(output.status.code(), Some(0), "{signal}");
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
        let steps = report["load"]["steps"].as_array().expect("steps");
        assert!(
            (2..5).contains(&steps.len()),
            "{signal}: the steps done before the signal: {}",
            steps.len()
        );
        assert_eq!(report["load"]["stopped_because"]["kind"], "interrupted");
    }
}

#[test]
fn diagnose_joins_a_ramp_with_traces_and_a_profile_recorded_before() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = Server::start("blocking");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let run_dir = tempfile::tempdir().expect("temp dir");
    let url = format!("http://127.0.0.1:{}/", server.port);
    let output = Command::new(env!("CARGO_BIN_EXE_chokepoint"))
        .current_dir(&root)
        .args([
            "diagnose",
            &url,
            "--concurrency",
            "1,2,4",
            "--step-duration",
            "1s",
        ])
        .args(["--trace-file", "examples/testbed.otlp"])
        .args(["--profile-file", "crates/profile/tests/data/workload.raw"])
        .args([
            "--run-dir",
            run_dir.path().to_str().expect("UTF-8"),
            "--format",
            "json",
        ])
        .output()
        .expect("chokepoint runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    // The ramp measured, the recorded traces and profile read in its place of a receiver and
    // of py-spy: one report over the three.
    let formats: Vec<&str> = report["run"]["inputs"]
        .as_array()
        .expect("inputs")
        .iter()
        .filter_map(|i| i["format"].as_str())
        .collect();
    assert!(formats.contains(&"load ramp"), "{formats:?}");
    assert!(formats.iter().any(|f| f.contains("OTLP")), "{formats:?}");
    assert!(formats.contains(&"collapsed stacks"), "{formats:?}");
    assert!(!stderr.contains("waiting"), "no receiver was started: {stderr}");
    let detectors: Vec<&str> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter_map(|f| f["detector"].as_str())
        .collect();
    assert!(detectors.contains(&"blocking-call"), "{detectors:?}");
    assert!(
        detectors.contains(&"unbounded-result"),
        "the recorded traces' finding: {detectors:?}"
    );
    assert!(report["profile"].is_object(), "the recorded profile's summary");
    for kept in ["testbed.otlp", "workload.raw", "evidence.json"] {
        assert!(run_dir.path().join(kept).is_file(), "{kept} is not in the run");
    }
}

#[test]
fn a_server_that_never_answers_cannot_stretch_the_ramp_past_its_bound() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Accepts, reads, never answers: every request would wait out its 60 s timeout.
    let (runtime, listener, port) = loopback_listener();
    runtime.spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                use tokio::io::AsyncReadExt as _;
                let mut sink = vec![0u8; 4096];
                while matches!(socket.read(&mut sink).await, Ok(1..)) {}
            });
        }
    });
    let url = format!("http://127.0.0.1:{port}/");
    let started = std::time::Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_chokepoint"))
        .args(["load", &url, "--concurrency", "1,2", "--step-duration", "1s"])
        .args(["--max-duration", "3s", "--timeout", "60s", "--format", "json"])
        .output()
        .expect("chokepoint runs");
    let elapsed = started.elapsed();
    assert!(
        elapsed < std::time::Duration::from_secs(10),
        "the ramp ran {elapsed:?}"
    );
    // No request succeeded: said, and exit 2.
    assert_eq!(output.status.code(), Some(2));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    let notes = report["notes"].to_string();
    assert!(notes.contains("no request succeeded"), "{notes}");
    assert_eq!(
        report["load"]["stopped_because"]["kind"], "max_duration",
        "{report:#}"
    );
    // A bound shorter than one step would run nothing: refused up front.
    let short = Command::new(env!("CARGO_BIN_EXE_chokepoint"))
        .args(["load", &url, "--step-duration", "5s", "--max-duration", "2s"])
        .output()
        .expect("chokepoint runs");
    assert_eq!(short.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&short.stderr).contains("shorter than one step"));
}

#[test]
fn sigterm_stops_diagnose_mid_ramp_and_the_run_is_kept() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = Server::start("fine");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let run_dir = tempfile::tempdir().expect("temp dir");
    let url = format!("http://127.0.0.1:{}/", server.port);
    // The ramp and the OTLP receiver running when the signal comes (py-spy, on the target found
    // by its port, waits for the top steps).
    let child = Command::new(env!("CARGO_BIN_EXE_chokepoint"))
        .current_dir(&root)
        .args([
            "diagnose",
            &url,
            "--concurrency",
            "1,2,4,8,16",
            "--step-duration",
            "2s",
        ])
        .args(["--py-spy", ".venv/bin/py-spy", "--otlp", "127.0.0.1:0"])
        .args([
            "--run-dir",
            run_dir.path().to_str().expect("UTF-8"),
            "--format",
            "json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chokepoint runs");
    std::thread::sleep(std::time::Duration::from_millis(5000));
    let pid = child.id();
    common::send_signal("-TERM", pid);
    let output = child.wait_with_output().expect("chokepoint ends");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    assert!(matches!(output.status.code(), Some(0 | 1)), "{stderr}");
    assert_eq!(
        report["load"]["stopped_because"]["kind"], "interrupted",
        "{report:#}"
    );
    let steps = report["load"]["steps"].as_array().expect("steps").len();
    assert!((2..5).contains(&steps), "the steps before the signal: {steps}");
    assert!(run_dir.path().join("evidence.json").is_file(), "the run is kept");
    assert!(run_dir.path().join("report.json").is_file(), "the run is kept");
    // No service sent spans: the recording, opened in the temporary folder, is not left there.
    // (Spans that came are kept in the run and only there: the testbed's e2e checks that.)
    let spans = format!("chokepoint-diagnose-{pid}.otlp");
    assert!(
        !std::env::temp_dir().join(&spans).exists(),
        "the temporary recording is removed"
    );
}

#[test]
fn a_ramp_that_stops_before_its_profiled_steps_says_nothing_was_profiled() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = Server::start("blocking");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let run_dir = tempfile::tempdir().expect("temp dir");
    let url = format!("http://127.0.0.1:{}/", server.port);
    // Two steps: py-spy starts after the first, which breaks an objective no server meets, so
    // the ramp ends there — the recording would hold only the idle tail.
    let child = Command::new(env!("CARGO_BIN_EXE_chokepoint"))
        .current_dir(&root)
        .args(["diagnose", &url, "--concurrency", "1,2", "--step-duration", "1s"])
        .args([
            "--slo",
            "p99<0.001ms",
            "--py-spy",
            ".venv/bin/py-spy",
            "--no-traces",
        ])
        .args([
            "--run-dir",
            run_dir.path().to_str().expect("UTF-8"),
            "--format",
            "json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chokepoint runs");
    let pid = child.id();
    let output = child.wait_with_output().expect("chokepoint ends");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    assert_eq!(
        report["load"]["steps"].as_array().map(Vec::len),
        Some(1),
        "{report:#}"
    );
    assert!(
        report["profile"].is_null(),
        "no profile of the idle tail: {report:#}"
    );
    let notes = report["notes"].to_string();
    assert!(notes.contains("nothing was profiled"), "{notes}");
    assert!(!notes.contains("py-spy sampled the target"), "{notes}");
    let recording = format!("chokepoint-load-profile-{}-{pid}.raw", server.child.id());
    assert!(
        !std::env::temp_dir().join(&recording).exists(),
        "{recording} is removed"
    );
}

#[test]
fn diagnose_without_py_spy_says_what_the_verdict_lacks_and_how_to_install_it() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = Server::start("cpu");
    // A machine without py-spy: not on PATH (only the system's own programs), no ./.venv here.
    let elsewhere = tempfile::tempdir().expect("temp dir");
    let url = format!("http://127.0.0.1:{}/", server.port);
    let output = Command::new(env!("CARGO_BIN_EXE_chokepoint"))
        .current_dir(elsewhere.path())
        .env("PATH", "/usr/bin:/bin")
        .args([
            "diagnose",
            &url,
            "--concurrency",
            "1,2",
            "--step-duration",
            "1s",
            "--no-traces",
        ])
        .args(["--run-dir", elsewhere.path().join("run").to_str().expect("UTF-8")])
        .args(["--format", "json"])
        .output()
        .expect("chokepoint runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("warning: --profile: py-spy is not installed")
            && stderr.contains("pip install py-spy"),
        "said before the ramp, with the install command: {stderr}"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    let warning = report["notes"]
        .as_array()
        .expect("notes")
        .iter()
        .find(|n| n["source"] == "--profile")
        .unwrap_or_else(|| panic!("no note on the profile: {report:#}"));
    assert_eq!(warning["severity"], "warning", "{warning:#}");
    let message = warning["message"].as_str().expect("message");
    assert!(message.contains("pip install py-spy"), "{message}");
    assert!(message.contains("the verdict lacks the profile"), "{message}");
    // Profiling was not run, and its detectors say why they did not judge.
    assert!(report.get("profile").is_none_or(|p| p.is_null()), "{report:#}");
    // The ramp's verdict stands without it: a warning, not an error.
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(bottleneck(&report), "cpu-saturation", "{report:#}");
}
