//! Helpers shared by the binary's integration tests.

use std::path::{Path, PathBuf};

/// Runs the built `chokepoint` from the workspace root.
pub fn chokepoint(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_chokepoint"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("chokepoint runs")
}

/// Asserts the exit code, showing standard error when it is not the one expected.
pub fn assert_exit(output: &std::process::Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Its standard output as JSON, or a panic that shows both outputs.
pub fn stdout_json(output: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// Sends `signal` (`-TERM`, `-INT`) to the process `pid`, as a supervisor or a terminal does.
pub fn send_signal(signal: &str, pid: u32) {
    let sent = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success(), "kill {signal} {pid}");
}

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The report's findings as sorted `"<detector> <endpoint>"` lines.
pub fn findings_by_endpoint(report: &serde_json::Value) -> Vec<String> {
    let mut found: Vec<String> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            format!(
                "{} {}",
                f["detector"].as_str().expect("id"),
                f["scope"]["endpoint"].as_str().expect("an endpoint scope")
            )
        })
        .collect();
    found.sort();
    found
}

/// The bottleneck of a JSON report, or `Null` when there is none.
pub fn bottleneck(report: &serde_json::Value) -> &serde_json::Value {
    let id = &report["verdict"]["bottleneck"];
    report["findings"]
        .as_array()
        .and_then(|findings| findings.iter().find(|f| !id.is_null() && &f["id"] == id))
        .unwrap_or(&serde_json::Value::Null)
}

/// The report's notes of this severity, as their text.
pub fn notes(report: &serde_json::Value, severity: &str) -> Vec<String> {
    report["notes"]
        .as_array()
        .expect("notes")
        .iter()
        .filter(|n| n["severity"] == severity)
        .map(|n| n["message"].as_str().expect("message").to_owned())
        .collect()
}

/// The detectors of a JSON report's findings, in order.
pub fn detectors(report: &serde_json::Value) -> Vec<&str> {
    report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter_map(|f| f["detector"].as_str())
        .collect()
}

/// A loopback port nothing listens on.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Starts `chokepoint listen ARGS…` and waits for its banner (the first line on standard error:
/// it is listening, and where); returns the process, the banner, and the rest of standard error,
/// which must stay open while the receiver runs (it writes there when it stops).
pub fn spawn_listen(
    args: &[&str],
) -> (
    std::process::Child,
    String,
    std::io::BufReader<std::process::ChildStderr>,
) {
    use std::io::BufRead as _;

    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_chokepoint"))
        .arg("listen")
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("chokepoint runs");
    let mut stderr = std::io::BufReader::new(child.stderr.take().expect("stderr"));
    let mut banner = String::new();
    stderr.read_line(&mut banner).expect("banner");
    assert!(banner.contains("listening"), "{banner}");
    (child, banner, stderr)
}
