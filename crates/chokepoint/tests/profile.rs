//! `chokepoint profile` as a user runs it: on profiles recorded with the real tools, on a live
//! Python process recorded with the real py-spy (from .venv, installed by
//! scripts/setup-python.sh), with a flame graph, and on bad input.

pub mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{assert_exit, bottleneck, chokepoint, detectors, notes, root, stdout_json as json};

fn data(name: &str) -> String {
    format!("crates/profile/tests/data/{name}")
}

fn venv(tool: &str) -> PathBuf {
    let path = root().join(".venv/bin").join(tool);
    assert!(
        path.is_file(),
        "{} is missing: run scripts/setup-python.sh",
        path.display()
    );
    path
}

#[test]
fn a_py_spy_recording_names_the_code_and_its_line() {
    let output = chokepoint(&[
        "profile",
        &data("workload.raw"),
        "--source",
        "crates/profile/tests/data",
        "--format",
        "json",
    ]);
    assert_exit(&output, 0);
    let report = json(&output);
    assert_eq!(report["run"]["command"], "profile");
    assert_eq!(report["run"]["inputs"][0]["format"], "collapsed stacks");
    // The workload fsyncs every log record: the most expensive thing it does.
    let first = bottleneck(&report);
    assert_eq!(first["detector"], "sync-logging", "{first:#}");
    assert_eq!(first["subject"]["file"], "workload.py");
    assert_eq!(first["subject"]["line"], 25);
    let fsync = first["evidence"]["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["kind"] == "hot_frame" && i["line"] == 25)
        .expect("the fsync line as a hot frame");
    assert!(
        fsync["source"].as_str().is_some_and(|s| s.contains("os.fsync")),
        "{fsync:#}"
    );
    assert_eq!(fsync["inferred_from_source"], true);
    let detectors = detectors(&report);
    assert!(detectors.contains(&"regex-per-request"), "{detectors:?}");
    let categories: Vec<&str> = report["profile"]["categories"]
        .as_array()
        .expect("categories")
        .iter()
        .filter_map(|c| c["category"].as_str())
        .collect();
    for category in ["logging", "regex compilation", "serialization", "sorting"] {
        assert!(categories.contains(&category), "{category} in {categories:?}");
    }
}

#[test]
fn every_format_of_the_same_workload_is_read() {
    for (file, format) in [
        ("workload.raw.gz", "collapsed stacks"),
        ("workload.speedscope.json", "speedscope"),
        ("workload.pyinstrument.json", "speedscope"),
        ("workload.prof", "cProfile"),
    ] {
        let output = chokepoint(&["profile", &data(file), "--format", "json"]);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{file}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let report = json(&output);
        assert_eq!(report["run"]["inputs"][0]["format"], format, "{file}");
        assert!(
            !report["findings"].as_array().expect("findings").is_empty(),
            "{file}: no finding"
        );
    }
}

#[test]
fn a_flame_graph_colours_by_category_and_marks_the_findings() {
    let dir = tempfile::tempdir().expect("temp dir");
    let svg = dir.path().join("flame.svg");
    let output = chokepoint(&[
        "profile",
        &data("workload.raw"),
        "--flamegraph",
        svg.to_str().expect("path"),
        "--quiet",
    ]);
    assert_exit(&output, 0);
    let svg = std::fs::read_to_string(&svg).expect("the SVG is written");
    assert!(
        svg.starts_with("<?xml") && svg.contains("<svg"),
        "{}",
        &svg[..200.min(svg.len())]
    );
    assert!(svg.contains("log_lines (workload.py:25)"));
    // The finding's frame in red, serialization in orange.
    assert!(svg.contains("rgb(230,50,40)"), "no highlighted frame");
    assert!(svg.contains("rgb(255,160,60)"), "no serialization frame");
}

#[test]
fn bad_input_says_where_and_exits_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = std::fs::read(root().join(data("workload.speedscope.json"))).expect("fixture");
    let half = dir.path().join("half.json");
    std::fs::write(&half, &text[..text.len() / 2]).expect("write");
    let output = chokepoint(&["profile", half.to_str().expect("path"), "--format", "json"]);
    assert_eq!(output.status.code(), Some(2));
    let report = json(&output);
    assert!(notes(&report, "error").iter().any(|n| n.contains("speedscope")));
    let position = &report["notes"][0]["position"];
    assert_eq!(
        (position["kind"].as_str(), position["line"].as_u64()),
        (Some("line"), Some(1)),
        "{position}"
    );
    assert!(position["column"].as_u64().is_some_and(|c| c > 1000));
    // A good file beside a bad one: the good one is analysed, the exit code still says what was lost.
    let output = chokepoint(&[
        "profile",
        half.to_str().expect("path"),
        &data("workload.raw"),
        "--source",
        "crates/profile/tests/data",
        "--format",
        "json",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(bottleneck(&json(&output))["detector"], "sync-logging");
    let garbage = dir.path().join("garbage.raw");
    std::fs::write(&garbage, "main (a.py:1) many\nnot a stack at all\n").expect("write");
    let output = chokepoint(&["profile", garbage.to_str().expect("path")]);
    assert_eq!(output.status.code(), Some(2));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("line 1") && stdout.contains("sample count"),
        "{stdout}"
    );
}

#[test]
fn without_py_spy_it_says_how_to_install_it() {
    let output = chokepoint(&[
        "profile",
        "--pid",
        "1",
        "--py-spy",
        "/nonexistent/py-spy",
        "--duration",
        "1s",
    ]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("pip install py-spy"), "{stderr}");
}

/// A Python process of the workload, killed when dropped.
struct Workload(std::process::Child);

impl Workload {
    /// The workload script, running for `seconds`.
    fn start(seconds: u32) -> Workload {
        Workload(
            Command::new(venv("python"))
                .arg(root().join(data("workload.py")))
                .env("WORKLOAD_SECONDS", seconds.to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("python runs"),
        )
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_live_process_is_recorded_with_py_spy_and_kept() {
    let workload = Workload::start(60);
    let pid = workload.0.id().to_string();
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("live.raw");
    let py_spy = venv("py-spy");
    let output = chokepoint(&[
        "profile",
        "--pid",
        &pid,
        "--duration",
        "3s",
        "--py-spy",
        py_spy.to_str().expect("path"),
        "--out",
        out.to_str().expect("path"),
        "--format",
        "json",
    ]);
    assert_exit(&output, 0);
    let report = json(&output);
    assert_eq!(
        report["findings"][0]["scope"]["pid"]
            .as_u64()
            .map(|p| p.to_string()),
        Some(pid)
    );
    // The workload's hot spots, read from its own file (py-spy records full paths).
    let first = bottleneck(&report);
    assert!(
        [
            "sync-logging",
            "regex-per-request",
            "slow-serialization",
            "in-memory-sort"
        ]
        .contains(&first["detector"].as_str().unwrap_or("")),
        "{first:#}"
    );
    assert!(
        first["subject"]["file"]
            .as_str()
            .is_some_and(|f| f.ends_with("workload.py"))
    );
    // The recording is kept and reads the same again.
    assert!(Path::new(&out).is_file());
    let again = json(&chokepoint(&[
        "profile",
        out.to_str().expect("path"),
        "--format",
        "json",
    ]));
    assert_eq!(bottleneck(&again)["detector"], first["detector"]);
    drop(workload);
}

#[test]
fn sigterm_stops_a_recording_and_reports_what_was_recorded() {
    let workload = Workload::start(120);
    let pid = workload.0.id().to_string();
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("stopped.raw");
    let py_spy = venv("py-spy");
    let child = Command::new(env!("CARGO_BIN_EXE_chokepoint"))
        .current_dir(root())
        .args(["profile", "--pid", &pid, "--duration", "90s"])
        .args(["--py-spy", py_spy.to_str().expect("path")])
        .args(["--out", out.to_str().expect("path"), "--format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chokepoint runs");
    std::thread::sleep(std::time::Duration::from_secs(4));
    common::send_signal("-TERM", child.id());
    let output = child.wait_with_output().expect("chokepoint ends");
    assert_exit(&output, 0);
    let report = json(&output);
    // The seconds recorded before the signal are analysed, and the report says it was cut short.
    let warnings = notes(&report, "warning");
    assert!(
        warnings.iter().any(|n| n.contains("stopped by a signal after")),
        "{warnings:?}"
    );
    assert!(
        bottleneck(&report)["subject"]["file"]
            .as_str()
            .is_some_and(|f| f.ends_with("workload.py")),
        "{report:#}"
    );
    assert!(out.is_file(), "the partial recording is kept");
    drop(workload);
}

#[test]
fn a_profile_of_five_samples_is_skipped_with_its_count_not_judged_clean() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("tiny.raw");
    // Five busy samples of a sort, far too few to judge anything by.
    std::fs::write(
        &path,
        "MainThread;run (app.py:3);handler (app.py:12);<lambda> (app.py:12) 5\n",
    )
    .expect("write");
    let output = chokepoint(&["profile", path.to_str().expect("UTF-8"), "--format", "json"]);
    assert_exit(&output, 0);
    let report = json(&output);
    assert!(
        report["findings"].as_array().expect("findings").is_empty(),
        "{report:#}"
    );
    let skipped: Vec<(&str, &str)> = report["skipped"]
        .as_array()
        .expect("skipped")
        .iter()
        .map(|s| {
            (
                s["detector"].as_str().unwrap_or(""),
                s["reason"].as_str().unwrap_or(""),
            )
        })
        .collect();
    for id in [
        "in-memory-sort",
        "cpu-saturation",
        "slow-serialization",
        "blocking-call",
    ] {
        let reason = skipped
            .iter()
            .find(|(d, _)| *d == id)
            .map(|(_, r)| *r)
            .unwrap_or_else(|| panic!("{id} is not skipped: {skipped:?}"));
        assert!(
            reason.contains("a profile of 5 busy sample(s)") && reason.contains("at least 50"),
            "{id}: {reason}"
        );
    }
    let said = notes(&report, "warning");
    assert!(
        said.iter()
            .any(|n| n.contains("5 busy sample") && n.contains("profile longer")),
        "{said:?}"
    );
}
