//! Saved runs as a user keeps and reads them: `--save`/`--run-dir`, `chokepoint report RUN`
//! with today's detectors, `chokepoint compare A B` (different endpoints, a missing evidence
//! source, a capacity regression for CI), and damaged run folders.

pub mod common;

use std::path::Path;

use common::{assert_exit, bottleneck, chokepoint, detectors, root, stdout_json as json};

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// A run folder holding `evidence`, as `--save` writes one for `command`, by chokepoint `version`
/// in `layout`.
fn run_folder(
    dir: &Path,
    evidence: &chokepoint_evidence::Evidence,
    (layout, version): (u32, &str),
    command: &str,
) {
    std::fs::create_dir_all(dir).expect("dir");
    std::fs::write(
        dir.join("evidence.json"),
        serde_json::to_vec(evidence).expect("json"),
    )
    .expect("write");
    let meta = serde_json::json!({
        "layout": layout, "chokepoint_version": version, "command": command, "label": command,
        "created": "2026-01-01T00:00:00Z", "inputs": [], "notes": [], "attachments": []
    });
    std::fs::write(dir.join("run.json"), meta.to_string()).expect("write");
}

/// A run folder holding a detector fixture's evidence, saved by an older chokepoint.
fn run_from_fixture(dir: &Path, fixture: &str, command: &str) {
    let text =
        std::fs::read_to_string(root().join("crates/detect/tests/fixtures").join(fixture)).expect("fixture");
    let evidence = chokepoint_detect::evidence_from_fixture(&text).expect("evidence");
    run_folder(dir, &evidence, (1, "0.0.1"), command);
}

#[test]
fn a_saved_run_is_shown_again_with_the_same_verdict() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = dir.path().join("before");
    let output = chokepoint(&[
        "traces",
        "examples/testbed.otlp",
        "--run-dir",
        path(&run),
        "--format",
        "json",
    ]);
    assert_exit(&output, 0);
    let first = json(&output);
    for file in ["run.json", "evidence.json", "report.json", "report.md"] {
        assert!(run.join(file).is_file(), "{file} is missing");
    }
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("report.json")).expect("report.json")).expect("JSON");
    assert_eq!(saved["findings"], first["findings"]);
    let again = chokepoint(&["report", path(&run), "--format", "json"]);
    assert_eq!(
        again.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let again = json(&again);
    assert_eq!(again["run"]["command"], "traces");
    assert_eq!(again["findings"], first["findings"]);
    assert_eq!(bottleneck(&again)["detector"], "unbounded-result");
    // A run saved by another version says so, and is analysed by this one.
    run_from_fixture(
        &dir.path().join("old"),
        "n-plus-one/positive-lazy-loading.json",
        "traces",
    );
    let old = chokepoint(&["report", path(&dir.path().join("old"))]);
    assert_eq!(old.status.code(), Some(0));
    let text = String::from_utf8_lossy(&old.stdout);
    assert!(text.contains("saved by chokepoint 0.0.1"), "{text}");
    assert!(text.contains("Bottleneck: n-plus-one"), "{text}");
}

#[test]
fn runs_of_different_endpoints_compare_finding_by_finding() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    for (run, input) in [(&a, "examples/testbed.otlp"), (&b, "examples/shop.otlp.jsonl")] {
        let output = chokepoint(&["traces", input, "--run-dir", path(run), "--quiet"]);
        assert_eq!(output.status.code(), Some(0));
    }
    let output = chokepoint(&["compare", path(&a), path(&b), "--format", "json"]);
    assert_exit(&output, 0);
    let comparison = json(&output);
    let statuses: Vec<&str> = comparison["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter_map(|f| f["status"].as_str())
        .collect();
    assert!(
        statuses.contains(&"fixed") && statuses.contains(&"new"),
        "{statuses:?}"
    );
    assert_eq!(comparison["bottleneck"]["moved"], true);
    assert!(comparison["capacity"].is_null(), "no ramp, no capacity");
    // A profile against traces: nothing in common, nothing breaks.
    let p = dir.path().join("p");
    let output = chokepoint(&[
        "profile",
        "crates/profile/tests/data/workload.raw",
        "--run-dir",
        path(&p),
        "--quiet",
    ]);
    assert_eq!(output.status.code(), Some(0));
    let output = chokepoint(&["compare", path(&a), path(&p)]);
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stdout).contains("The bottleneck moved from unbounded-result"));
}

#[test]
fn a_capacity_regression_fails_ci_when_asked() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (fast, slow) = (dir.path().join("fast"), dir.path().join("slow"));
    // The same ramp shape: a target that scales, then one capped by its CPU.
    run_from_fixture(&fast, "cpu-saturation/negative-io-bound.json", "load");
    run_from_fixture(&slow, "cpu-saturation/positive-gil-bound-handler.json", "load");
    let output = chokepoint(&["compare", path(&fast), path(&slow), "--format", "json"]);
    let comparison = json(&output);
    let capacity = &comparison["capacity"];
    assert!(
        capacity["relative"].as_f64().is_some_and(|r| r < -0.1),
        "{capacity}"
    );
    assert_eq!(
        output.status.code(),
        Some(0),
        "no --fail-on-regression, no failure"
    );
    let output = chokepoint(&["compare", path(&fast), path(&slow), "--fail-on-regression", "10%"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("regression"));
    let output = chokepoint(&["compare", path(&slow), path(&slow), "--fail-on-regression", "10%"]);
    assert_eq!(output.status.code(), Some(0), "the same run is no regression");
    let output = chokepoint(&["compare", path(&slow), path(&fast), "--format", "json"]);
    assert!(
        json(&output)["capacity"]["relative"]
            .as_f64()
            .is_some_and(|r| r > 1.0)
    );
}

#[test]
fn a_damaged_run_folder_says_what_and_where() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = dir.path().join("run");
    let output = chokepoint(&[
        "traces",
        "examples/shop.otlp.jsonl",
        "--run-dir",
        path(&run),
        "--quiet",
    ]);
    assert_eq!(output.status.code(), Some(0));
    let evidence = std::fs::read(run.join("evidence.json")).expect("evidence");
    std::fs::write(run.join("evidence.json"), &evidence[..evidence.len() / 2]).expect("write");
    let output = chokepoint(&["report", path(&run)]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("evidence.json: line 1, column") && stderr.contains("damaged"),
        "{stderr}"
    );
    let output = chokepoint(&["compare", path(&dir.path().join("nothing")), path(&run)]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no such run folder"));
}

#[test]
fn diagnose_without_a_url_gives_one_verdict_over_recorded_evidence() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = dir.path().join("recorded");
    let output = chokepoint(&[
        "diagnose",
        "--trace-file",
        "examples/testbed.otlp",
        "--profile-file",
        "crates/profile/tests/data/workload.speedscope.json",
        "--run-dir",
        path(&run),
        "--format",
        "json",
    ]);
    assert_exit(&output, 0);
    let report = json(&output);
    assert_eq!(report["run"]["command"], "diagnose");
    assert!(report["load"].is_null(), "no ramp was run");
    assert!(report["profile"].is_object());
    // One verdict over both: the traces' findings and the profile's, ranked together.
    let detectors = detectors(&report);
    assert!(detectors.contains(&"unbounded-result"), "{detectors:?}");
    assert!(detectors.contains(&"sync-logging"), "{detectors:?}");
    assert!(bottleneck(&report).is_object());
    let notes = report["notes"].to_string();
    assert!(notes.contains("no load ramp"), "{notes}");
    // Kept as a run like any other: shown again the same.
    let again = json(&chokepoint(&["report", path(&run), "--format", "json"]));
    assert_eq!(again["findings"], report["findings"]);
    assert!(run.join("workload.speedscope.json").is_file());
    // Nothing to diagnose: what to give, exit 2.
    let nothing = chokepoint(&["diagnose"]);
    assert_exit(&nothing, 2);
    let stderr = String::from_utf8_lossy(&nothing.stderr);
    assert!(stderr.contains("--trace-file"), "{stderr}");
    // A recorded file that is not there: the file named, exit 2.
    let missing = chokepoint(&[
        "diagnose",
        "--trace-file",
        "no/such/file.otlp",
        "--run-dir",
        path(&dir.path().join("missing")),
    ]);
    assert_exit(&missing, 2);
    assert!(String::from_utf8_lossy(&missing.stdout).contains("no/such/file.otlp: cannot open"));
}

#[test]
fn a_run_folder_on_a_full_disk_is_an_error_and_the_report_is_still_printed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = dir.path().join("full");
    // `ulimit -f 8`: no file of the command may pass 8 KiB — a write beyond fails (EFBIG, with
    // SIGXFSZ ignored), as on a full disk. The report goes to a pipe, which has no such limit.
    let output = std::process::Command::new("bash")
        .current_dir(root())
        .arg("-c")
        .arg(r#"trap '' XFSZ; ulimit -f 8; exec "$0" traces examples/testbed.otlp --run-dir "$1" --format json"#)
        .arg(env!("CARGO_BIN_EXE_chokepoint"))
        .arg(path(&run))
        .output()
        .expect("bash runs");
    assert_exit(&output, 2);
    let report = json(&output);
    // The same verdict as without the limit: the analysis lost nothing.
    let unlimited = json(&chokepoint(&[
        "traces",
        "examples/testbed.otlp",
        "--format",
        "json",
    ]));
    assert_eq!(bottleneck(&report)["title"], bottleneck(&unlimited)["title"]);
    let errors = common::notes(&report, "error");
    assert!(
        errors
            .iter()
            .any(|n| n.contains("evidence.json") && n.contains("File too large")),
        "{errors:?}"
    );
    // Nothing claims the run was saved.
    assert!(
        !common::notes(&report, "info")
            .iter()
            .any(|n| n.contains("the run is saved here")),
        "{report:#}"
    );
}

/// A run folder of spans written as a fixture's trace templates, saved by this chokepoint.
fn run_from_traces(dir: &Path, traces: &str) {
    let evidence =
        chokepoint_detect::evidence_from_fixture(&format!(r#"{{"traces": [{traces}]}}"#)).expect("evidence");
    run_folder(dir, &evidence, (2, env!("CARGO_PKG_VERSION")), "traces");
}

/// Eight requests of `service`'s `GET /orders`, each loading 20 orders' items one at a time.
fn orders_n_plus_one(service: &str) -> String {
    format!(
        r#"{{"repeat": 8, "spans": [
          {{"id": "root", "kind": "server", "service": "{service}", "name": "GET /orders", "end_ms": 120,
            "attrs": {{"http.route": "/orders", "http.request.method": "GET"}}}},
          {{"id": "q", "parent": "root", "kind": "client", "service": "{service}", "start_ms": 5, "end_ms": 9,
            "times": 20, "every_ms": 5,
            "attrs": {{"db.system": "postgresql", "db.statement": "SELECT * FROM items WHERE order_id = 7"}}}}
        ]}}"#
    )
}

#[test]
fn two_services_with_the_same_route_stay_two_endpoints_through_compare() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    // Before: the shop and the billing service each run the same N+1 on `GET /orders`; after,
    // only billing does.
    run_from_traces(
        &a,
        &format!("{},{}", orders_n_plus_one("shop"), orders_n_plus_one("billing")),
    );
    run_from_traces(&b, &orders_n_plus_one("billing"));
    let output = chokepoint(&["compare", path(&a), path(&b), "--format", "json"]);
    assert_exit(&output, 0);
    let comparison = json(&output);
    let status_of = |service: &str| -> Vec<String> {
        comparison["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .filter(|f| f["detector"] == "n-plus-one" && f["scope"]["service"] == service)
            .map(|f| f["status"].as_str().expect("status").to_owned())
            .collect()
    };
    assert_eq!(status_of("shop"), ["fixed"], "{comparison:#}");
    // Billing's is matched with its own (its size per second of traffic moves with the shorter
    // window): neither fixed nor new.
    let billing = status_of("billing");
    assert!(
        billing.len() == 1 && billing[0] != "fixed" && billing[0] != "new",
        "{billing:?}: {comparison:#}"
    );
    let text = chokepoint(&["compare", path(&a), path(&b)]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("| fixed | n-plus-one | GET /orders (shop) |"),
        "{text}"
    );
    assert!(text.contains("| n-plus-one | GET /orders (billing) |"), "{text}");
}

#[test]
fn a_run_saved_by_the_previous_layout_is_read_and_compared() {
    let dir = tempfile::tempdir().expect("temp dir");
    let old = root().join("crates/chokepoint/tests/data/layout-1");
    // The same example analysed by this chokepoint, against the run an earlier one saved.
    let new = dir.path().join("new");
    let output = chokepoint(&[
        "traces",
        "examples/testbed.otlp",
        "--run-dir",
        path(&new),
        "--quiet",
    ]);
    assert_exit(&output, 0);
    let output = chokepoint(&[
        "compare",
        path(&old.join("traces")),
        path(&new),
        "--format",
        "json",
    ]);
    assert_exit(&output, 0);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("saved in run layout 1"), "{stderr}");
    let comparison = json(&output);
    let findings = comparison["findings"].as_array().expect("findings");
    assert!(!findings.is_empty());
    // The same spans: every finding matched, none fixed or new.
    for finding in findings {
        assert_eq!(finding["status"], "unchanged", "{finding:#}");
    }
    assert_eq!(comparison["bottleneck"]["moved"], false, "{comparison:#}");
    // A diagnose run of the earlier layout (a ramp, spans, the database, a profile) reads too,
    // and `report` says what it lacks.
    let output = chokepoint(&["report", path(&old.join("diagnose-hot-row")), "--format", "json"]);
    assert_exit(&output, 0);
    let report = json(&output);
    let said = common::notes(&report, "info");
    assert!(
        said.iter().any(|n| n.contains("saved in run layout 1")),
        "{said:?}"
    );
    // Its ramp, read today: the lock it queued on is the limit.
    assert!(
        report["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .any(|f| f["detector"] == "lock-contention" && f["impact"]["kind"] == "limit"),
        "{report:#}"
    );
}

/// A run of a profile fixture saved by this chokepoint, then damaged by `damage` on its JSON;
/// `chokepoint report` on it.
fn report_of_damaged_profile(damage: impl FnOnce(&mut serde_json::Value)) -> std::process::Output {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = dir.path().join("run");
    let text = std::fs::read_to_string(
        root().join("crates/detect/tests/fixtures/blocking-call/positive-py-spy-loop-held-on-one-line-without-source.json"),
    )
    .expect("fixture");
    let evidence = chokepoint_detect::evidence_from_fixture(&text).expect("evidence");
    run_folder(&run, &evidence, (3, env!("CARGO_PKG_VERSION")), "profile");
    assert_exit(&chokepoint(&["report", path(&run), "--quiet"]), 0);
    let mut value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("evidence.json")).expect("read")).expect("json");
    damage(&mut value);
    std::fs::write(run.join("evidence.json"), value.to_string()).expect("write");
    chokepoint(&["report", path(&run)])
}

#[test]
fn a_run_naming_what_it_does_not_hold_is_refused_with_the_file_and_what() {
    // One frame fewer than the stacks name (this panicked `report` once).
    let output = report_of_damaged_profile(|v| {
        v["profile"]["frames"].as_array_mut().expect("frames").pop();
    });
    assert_exit(&output, 2);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("evidence.json") && stderr.contains("profile.stacks[") && stderr.contains("frame"),
        "{stderr}"
    );
    // A stack of a thread that does not exist.
    let output = report_of_damaged_profile(|v| {
        v["profile"]["stacks"][0]["thread"] = 7.into();
    });
    assert_exit(&output, 2);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("profile.stacks[0].thread: thread 7"), "{stderr}");
    // A negative duration.
    let output = report_of_damaged_profile(|v| {
        v["profile"]["duration_s"] = (-5.0).into();
    });
    assert_exit(&output, 2);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("profile.duration_s = -5") && stderr.contains("negative"),
        "{stderr}"
    );
}

#[test]
fn a_run_of_an_unknown_layout_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = dir.path().join("run");
    run_folder(
        &run,
        &chokepoint_evidence::Evidence::default(),
        (99, "9.9.9"),
        "traces",
    );
    let output = chokepoint(&["report", path(&run)]);
    assert_exit(&output, 2);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("run layout 99") && stderr.contains("upgrade"),
        "{stderr}"
    );
}

#[test]
fn shards_merged_give_the_findings_of_all_their_spans_and_a_shard_twice_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, b, merged) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("merged"),
    );
    for (run, file) in [(&a, "examples/shop.otlp.jsonl"), (&b, "examples/testbed.otlp")] {
        assert_exit(
            &chokepoint(&["traces", file, "--run-dir", path(run), "--quiet"]),
            0,
        );
    }
    let whole = json(&chokepoint(&[
        "traces",
        "examples/shop.otlp.jsonl",
        "examples/testbed.otlp",
        "--format",
        "json",
    ]));
    let output = chokepoint(&[
        "merge",
        path(&b),
        path(&a),
        "--run-dir",
        path(&merged),
        "--format",
        "json",
    ]);
    let report = json(&output);
    assert_eq!(report["findings"], whole["findings"]);
    assert_eq!(report["verdict"], whole["verdict"]);
    // The merged run is a run: shown again, the same findings.
    let again = json(&chokepoint(&["report", path(&merged), "--format", "json"]));
    assert_eq!(again["findings"], whole["findings"]);
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(merged.join("run.json")).expect("run.json")).expect("json");
    assert_eq!(meta["merged"].as_array().map(Vec::len), Some(2), "{meta:#}");

    // The same shard twice.
    let output = chokepoint(&["merge", path(&a), path(&a)]);
    assert_exit(&output, 2);
    assert!(String::from_utf8_lossy(&output.stderr).contains("comes twice"));
    let copy = dir.path().join("copy");
    std::fs::create_dir(&copy).expect("dir");
    for file in ["run.json", "evidence.json"] {
        std::fs::copy(a.join(file), copy.join(file)).expect("copy");
    }
    let output = chokepoint(&["merge", path(&a), path(&copy)]);
    assert_exit(&output, 2);
    assert!(String::from_utf8_lossy(&output.stderr).contains("same evidence"));
    // A shard saved by another chokepoint.
    let mut meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.join("run.json")).expect("run.json")).expect("json");
    meta["chokepoint_version"] = "0.0.9".into();
    std::fs::write(b.join("run.json"), meta.to_string()).expect("write");
    let output = chokepoint(&["merge", path(&a), path(&b)]);
    assert_exit(&output, 2);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("chokepoint 0.0.9") && stderr.contains("one version"),
        "{stderr}"
    );
}
