//! The `chokepoint` binary as a user runs it: the bundled examples, every output format, exit
//! codes, bad input, standard input, and the documentation commands.

pub mod common;

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

use common::{findings_by_endpoint, root};

fn chokepoint(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chokepoint"))
        .args(args)
        .current_dir(root())
        .env_remove("NO_COLOR")
        .output()
        .expect("chokepoint runs")
}

fn chokepoint_stdin(args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_chokepoint"))
        .args(args)
        .current_dir(root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chokepoint runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write stdin");
    child.wait_with_output().expect("chokepoint ends")
}

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stdout)))
}

fn detectors_found(report: &serde_json::Value) -> Vec<String> {
    report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| f["detector"].as_str().expect("id").to_owned())
        .collect()
}

#[test]
fn the_bundled_example_names_the_bottleneck() {
    let output = chokepoint(&["traces", "examples/shop.otlp.jsonl"]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.starts_with("Bottleneck: slow-query — "), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "no colour when stdout is not a terminal"
    );
    for id in [
        "n-plus-one",
        "sequential-calls",
        "unbounded-result",
        "large-payload",
        "connection-churn",
        "network-latency",
    ] {
        assert!(text.contains(id), "{id} missing from\n{text}");
    }
}

#[test]
fn json_output_follows_the_contract() {
    let output = chokepoint(&["traces", "examples/shop.otlp.jsonl", "--format", "json"]);
    assert_eq!(output.status.code(), Some(0));
    let report = json(&output);
    assert_eq!(report["schema_version"], 4);
    assert_eq!(report["run"]["command"], "traces");
    assert_eq!(report["verdict"]["bottleneck"], report["findings"][0]["id"]);
    let found = detectors_found(&report);
    // The unbounded `SELECT * FROM events` is slow because of what it returns: one cause, its
    // slow-query angle folded into the unbounded-result finding.
    assert_eq!(found.len(), 8, "{found:?}");
    for finding in report["findings"].as_array().expect("findings") {
        for key in [
            "detector",
            "title",
            "scope",
            "subject",
            "location",
            "impact",
            "evidence",
            "confidence",
            "fix",
            "assumptions",
        ] {
            assert!(!finding[key].is_null(), "{key} missing in {finding}");
        }
        assert_eq!(finding["scope"]["kind"], "endpoint");
        assert_eq!(finding["impact"]["kind"], "consumer");
        assert!(
            finding["impact"]["saved_ms_per_request"]
                .as_f64()
                .expect("number")
                > 0.0
        );
        assert!(finding["impact"]["recoverable_s_per_s"].as_f64().expect("number") > 0.0);
        assert!(
            !finding["evidence"]["example_trace_ids"]
                .as_array()
                .expect("ids")
                .is_empty()
        );
    }
    let ranked: Vec<f64> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| f["impact"]["recoverable_s_per_s"].as_f64().expect("number"))
        .collect();
    assert!(ranked.windows(2).all(|w| w[0] >= w[1]), "{ranked:?}");
    assert_eq!(report["traces"]["summary"]["spans"], 280);
    assert!(
        report["run"]["window"]["start_unix_s"]
            .as_f64()
            .expect("a window")
            > 1.6e9
    );
}

#[test]
fn the_schema_in_docs_is_the_one_the_binary_writes() {
    let output = chokepoint(&["schema"]);
    let documented =
        std::fs::read_to_string(root().join("docs/report.schema.json")).expect("docs/report.schema.json");
    assert!(
        String::from_utf8_lossy(&output.stdout) == documented,
        "docs/report.schema.json is stale: run `cargo run -p chokepoint -- schema > docs/report.schema.json`"
    );
}

#[test]
fn markdown_output_has_the_table_and_the_fixes() {
    let output = chokepoint(&["traces", "examples/shop.otlp.jsonl", "--format", "markdown"]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.starts_with("# chokepoint report\n\n**Bottleneck: `slow-query`**"),
        "{text}"
    );
    assert!(
        text.contains("| 1 | `slow-query` | GET /users/search | 119 ms/req (99 %) |"),
        "{text}"
    );
    assert!(
        text.contains("- **Fix:** Load the `items` rows for all the `orders` rows in one query"),
        "{text}"
    );
}

#[test]
fn colour_is_used_when_asked() {
    let output = chokepoint(&["traces", "examples/shop.otlp.jsonl", "--color", "always"]);
    assert!(String::from_utf8_lossy(&output.stdout).contains("\u{1b}["));
}

#[test]
fn fail_on_sets_exit_code_one() {
    assert_eq!(
        chokepoint(&["traces", "examples/shop.otlp.jsonl", "--fail-on", "n-plus-one"])
            .status
            .code(),
        Some(1)
    );
    assert_eq!(
        chokepoint(&["traces", "examples/shop.otlp.jsonl", "--fail-on", "any"])
            .status
            .code(),
        Some(1)
    );
    let jaeger = "crates/traces/tests/data/jaeger.json";
    assert_eq!(
        chokepoint(&["traces", jaeger, "--fail-on", "slow-query"])
            .status
            .code(),
        Some(0)
    );
    let bad = chokepoint(&["traces", jaeger, "--fail-on", "n-plus-two"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a detector id"));
}

#[test]
fn reads_standard_input() {
    let input = std::fs::read(root().join("examples/shop.otlp.jsonl")).expect("example");
    let output = chokepoint_stdin(&["traces", "-", "--format", "json"], &input);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(json(&output)["run"]["inputs"][0]["source"], "-");
    assert_eq!(json(&output)["traces"]["summary"]["spans"], 280);
}

#[test]
fn a_signal_stops_reading_and_what_was_read_is_reported() {
    let example = std::fs::read(root().join("examples/shop.otlp.jsonl")).expect("the example");
    let mut child = Command::new(env!("CARGO_BIN_EXE_chokepoint"))
        .args(["traces", "-", "--format", "json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chokepoint runs");
    let mut stdin = child.stdin.take().expect("stdin");
    // A pipe holds 64 KiB: once 2 MB went in, chokepoint is reading (its handler registered
    // before). Then Ctrl-C, and the input keeps coming — a stream that would never end.
    let copies = 2_000_000 / example.len() + 1;
    for _ in 0..copies {
        stdin.write_all(&example).expect("chokepoint reads");
    }
    common::send_signal("-INT", child.id());
    let feeder = std::thread::spawn(move || while stdin.write_all(&example).is_ok() {});
    let output = child.wait_with_output().expect("chokepoint ends");
    feeder
        .join()
        .expect("the feeder ends when chokepoint closes the pipe");
    common::assert_exit(&output, 0);
    let report = json(&output);
    let warnings = common::notes(&report, "warning");
    let read = report["run"]["inputs"][0]["spans"].as_u64().expect("spans read");
    assert!(
        warnings
            .iter()
            .any(|w| w.contains(&format!("stopped by a signal after {read} spans"))),
        "{warnings:?}"
    );
    // All but the pipe's last 64 KiB went through a read, and every byte read is parsed.
    let once = json(&chokepoint(&[
        "traces",
        "examples/shop.otlp.jsonl",
        "--format",
        "json",
    ]));
    let per_copy = once["run"]["inputs"][0]["spans"].as_u64().expect("spans");
    assert!(
        read >= per_copy * (copies as u64 - 1),
        "{read} spans read of {copies} × {per_copy}"
    );
    assert_eq!(report["traces"]["summary"]["spans"].as_u64(), Some(read));
    assert!(
        !detectors_found(&report).is_empty(),
        "what was read is analysed: {report:#}"
    );
}

#[test]
fn reads_a_folder_of_every_format() {
    let output = chokepoint(&["traces", "crates/traces/tests/data", "--format", "json"]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = json(&output);
    let formats: Vec<&str> = report["run"]["inputs"]
        .as_array()
        .expect("inputs")
        .iter()
        .map(|i| i["format"].as_str().expect("format"))
        .collect();
    assert_eq!(
        formats,
        [
            "Jaeger JSON",
            "Jaeger JSON",
            "OTLP/JSON",
            "OTLP/protobuf",
            "OTLP/JSON",
            "Zipkin v2 JSON",
            "Zipkin v2 JSON"
        ]
    );
}

#[test]
fn one_trace_downloaded_from_jaeger_gets_a_verdict() {
    let output = chokepoint(&[
        "traces",
        "crates/traces/tests/data/jaeger-one-trace.json",
        "--format",
        "json",
    ]);
    assert_eq!(output.status.code(), Some(0));
    let report = json(&output);
    let first = common::bottleneck(&report);
    assert_eq!(first["detector"], "n-plus-one", "{report:#}");
    assert_eq!(first["evidence"]["sample"]["affected"], 1);
    assert_eq!(first["evidence"]["sample"]["total"], 1);
    assert_eq!(first["confidence"], "medium");
    assert_eq!(report["traces"]["below_noise_gate"], 0);
}

#[test]
fn bad_input_exits_two_and_still_reports_what_was_readable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let example = std::fs::read_to_string(root().join("examples/shop.otlp.jsonl")).expect("example");
    let truncated = dir.path().join("truncated.jsonl");
    std::fs::write(&truncated, &example[..example.len() - 2000]).expect("write");
    let output = chokepoint(&["traces", truncated.to_str().expect("path"), "--format", "json"]);
    assert_eq!(output.status.code(), Some(2));
    let report = json(&output);
    assert!(
        !detectors_found(&report).is_empty(),
        "findings from the readable part"
    );
    let problem = &report["notes"][0];
    assert_eq!(problem["severity"], "error");
    assert!(
        problem["source"]
            .as_str()
            .expect("source")
            .ends_with("truncated.jsonl"),
        "{problem}"
    );
    assert_eq!(problem["position"]["kind"], "line", "{problem}");
    assert!(
        problem["position"]["line"].as_u64().expect("a line") > 1,
        "{problem}"
    );
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("the JSON ends early"),
        "problems also go to stderr"
    );
}

#[test]
fn an_input_with_no_spans_is_an_error_and_exit_two() {
    let output = chokepoint_stdin(&["traces", "-"], br#"{"resource_spans":[]}"#);
    assert_eq!(output.status.code(), Some(2));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("No spans were analysed: there is no verdict."),
        "{text}"
    );
    assert!(
        text.contains("error: -: held no spans (read as OTLP/JSON): its keys are snake_case"),
        "{text}"
    );
}

#[test]
fn orphan_spans_are_analysed_and_reported() {
    // Only the database spans of a trace: their parent (the server span) was not exported.
    let line = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","parentSpanId":"0102030405060708","name":"SELECT","kind":3,"startTimeUnixNano":"1000","endTimeUnixNano":"2000000","attributes":[{"key":"db.statement","value":{"stringValue":"SELECT 1"}}]}]}]}]}"#;
    let output = chokepoint_stdin(&["traces", "-"], line.as_bytes());
    assert_eq!(output.status.code(), Some(0));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("1 span(s) have a parent that is not in the input (e.g. in trace 5b8efff798038103d269b633813fc60c)"), "{text}");
}

#[test]
fn detectors_and_explain_document_every_id() {
    let list = String::from_utf8_lossy(&chokepoint(&["detectors"]).stdout).into_owned();
    for id in [
        "n-plus-one",
        "sequential-calls",
        "slow-query",
        "unbounded-result",
        "large-payload",
        "connection-churn",
        "network-latency",
    ] {
        assert!(list.contains(id), "{id}");
        let explain = chokepoint(&["explain", id]);
        assert_eq!(explain.status.code(), Some(0));
        let doc = String::from_utf8_lossy(&explain.stdout);
        assert!(doc.starts_with(&format!("# {id} — ")), "{doc}");
        assert!(doc.contains("# Typical fix"), "{doc}");
    }
    let unknown = chokepoint(&["explain", "n-plus-two"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("the detectors are: n-plus-one"));
}

#[test]
fn help_has_examples_and_exit_codes() {
    let help = String::from_utf8_lossy(&chokepoint(&["traces", "--help"]).stdout).into_owned();
    assert!(
        help.contains("Examples:") && help.contains("Exit codes:"),
        "{help}"
    );
    let help = String::from_utf8_lossy(&chokepoint(&["diagnose", "--help"]).stdout).into_owned();
    assert!(
        help.contains("--trace-file") && help.contains("chokepoint diagnose --trace-file"),
        "{help}"
    );
    // A ramp needs its URL: said, with an example, exit 2.
    let load = chokepoint(&["load"]);
    assert_eq!(load.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&load.stderr).contains("give the URL to load"));
}

#[test]
fn the_testbed_recording_shows_each_scenario_on_its_bad_route_only() {
    // examples/testbed.otlp: every trace scenario's /bad and /fixed routes, three requests each,
    // recorded from the real testbed service (testbed/e2e.py --record).
    let output = chokepoint(&["traces", "examples/testbed.otlp", "--format", "json"]);
    assert_eq!(output.status.code(), Some(0));
    let report = json(&output);
    let found = findings_by_endpoint(&report);
    assert_eq!(
        found,
        [
            "connection-churn GET /connection-churn/bad",
            "large-payload GET /large-payload/bad",
            "n-plus-one GET /n-plus-one-http/bad",
            "n-plus-one GET /n-plus-one/bad",
            "network-latency GET /network-latency/bad",
            "sequential-calls GET /sequential-calls/bad",
            "slow-query GET /slow-query/bad",
            "unbounded-result GET /unbounded-result/bad",
        ]
    );
    assert_eq!(report["findings"][0]["detector"], "unbounded-result");
    assert_eq!(report["verdict"]["bottleneck"], report["findings"][0]["id"]);
}

#[test]
fn scan_finds_the_testbed_shapes_and_counts_them_for_fail_on() {
    let output = chokepoint(&[
        "scan",
        "testbed/service",
        "--format",
        "json",
        "--fail-on",
        "n-plus-one",
    ]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = json(&output);
    let findings = report["findings"].as_array().expect("findings");
    assert!(findings.len() >= 13, "{findings:#?}");
    assert!(findings.iter().all(|f| f["impact"]["kind"] == "potential"));
    assert!(
        report["verdict"]["bottleneck"].is_null(),
        "a shape is no bottleneck"
    );
    let n_plus_one = findings
        .iter()
        .find(|f| {
            f["detector"] == "n-plus-one" && f["fix"].as_str().is_some_and(|x| x.contains("selectinload"))
        })
        .expect("the lazy N+1");
    assert_eq!(n_plus_one["subject"]["file"], "testbed/service/app.py");
    // Nothing read is bad input; a scan without findings passes.
    assert_eq!(chokepoint(&["scan", "no/such/dir"]).status.code(), Some(2));
    let clean = chokepoint(&["scan", "testbed/service/otel.py", "--fail-on", "any"]);
    assert_eq!(
        clean.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&clean.stdout)
    );
}

#[test]
fn sarif_of_a_scan_follows_the_2_1_0_schema() {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("docs/sarif-schema-2.1.0.json")).expect("the schema"),
    )
    .expect("JSON");
    let validator = jsonschema::validator_for(&schema).expect("a schema");
    // The validator refuses what the schema refuses.
    assert!(!validator.is_valid(&serde_json::json!({"version": "2.1.0", "runs": [{"results": []}]})));
    let output = chokepoint(&[
        "scan",
        "testbed/service",
        "testbed/django_shop",
        "--format",
        "sarif",
    ]);
    assert_eq!(output.status.code(), Some(0));
    let log = json(&output);
    let errors: Vec<String> = validator
        .iter_errors(&log)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    let run = &log["runs"][0];
    let results = run["results"].as_array().expect("results");
    let rules = run["tool"]["driver"]["rules"].as_array().expect("rules");
    assert_eq!(rules.len(), chokepoint_detect::detectors().count());
    let scanned = json(&chokepoint(&[
        "scan",
        "testbed/service",
        "testbed/django_shop",
        "--format",
        "json",
    ]));
    assert_eq!(
        results.len(),
        scanned["findings"].as_array().expect("findings").len()
    );
    let books = results
        .iter()
        .find(|r| {
            r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
                == "testbed/django_shop/dj/views.py"
        })
        .expect("a Django result");
    assert_eq!(books["ruleId"], "n-plus-one");
    assert_eq!(
        books["locations"][0]["physicalLocation"]["region"]["startLine"],
        22
    );
    assert!(books["locations"][0]["physicalLocation"]["region"]["startColumn"].as_u64() > Some(1));
    assert_eq!(
        rules[books["ruleIndex"].as_u64().expect("index") as usize]["id"],
        "n-plus-one"
    );
}

#[test]
fn completions_parse_in_their_shell_and_the_manual_renders() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bash = chokepoint(&["completions", "bash"]);
    common::assert_exit(&bash, 0);
    let script = dir.path().join("chokepoint.bash");
    std::fs::write(&script, &bash.stdout).expect("write");
    let checked = std::process::Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .expect("bash runs");
    assert!(
        checked.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&checked.stderr)
    );
    for shell in ["bash", "zsh", "fish"] {
        let script = chokepoint(&["completions", shell]);
        common::assert_exit(&script, 0);
        let text = String::from_utf8_lossy(&script.stdout);
        for command in ["diagnose", "compare", "baseline"] {
            assert!(text.contains(command), "{shell} completes {command}");
        }
    }
    // The manual and a command's page, rendered by man(1) as a reader would see them.
    for (args, wanted) in [
        (&["man"][..], "SUBCOMMANDS"),
        (&["man", "diagnose"][..], "--baseline"),
    ] {
        let page = chokepoint(args);
        common::assert_exit(&page, 0);
        let file = dir.path().join("page.1");
        std::fs::write(&file, &page.stdout).expect("write");
        let shown = std::process::Command::new("man")
            .arg("-l")
            .arg(&file)
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100")
            .output()
            .expect("man runs");
        let text = String::from_utf8_lossy(&shown.stdout);
        assert!(
            shown.status.success() && text.contains(wanted),
            "{args:?}: {text}"
        );
    }
    let unknown = chokepoint(&["man", "nope"]);
    common::assert_exit(&unknown, 2);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("one of traces"));
}

#[test]
fn every_finding_has_its_own_id_and_keeps_it_when_lines_above_it_move() {
    // The testbed's blocking handler holds three blocking calls in one function: three findings
    // of one detector, scope and function — three ids (SARIF's fingerprints, compare's keys).
    let ids = |dir: &std::path::Path| -> Vec<(String, String)> {
        let output = chokepoint(&["scan", dir.to_str().expect("UTF-8"), "--format", "json"]);
        common::assert_exit(&output, 0);
        let report = json(&output);
        let mut ids: Vec<(String, String)> = report["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .map(|f| {
                let location = f["location"].as_str().unwrap_or_default();
                // The place without its line number, which the edit below moves.
                let code = location.split_once(' ').map_or(location, |(_, code)| code);
                (code.to_owned(), f["id"].as_str().unwrap_or_default().to_owned())
            })
            .collect();
        ids.sort();
        ids
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let app = std::fs::read_to_string(root().join("testbed/service/app.py")).expect("the testbed");
    std::fs::write(dir.path().join("app.py"), &app).expect("write");
    let before = ids(dir.path());
    let unique: std::collections::HashSet<&String> = before.iter().map(|(_, id)| id).collect();
    assert_eq!(unique.len(), before.len(), "one id per finding: {before:#?}");
    assert!(before.len() >= 13, "{before:#?}");
    // Two lines added at the top move every shape down: no id changes.
    std::fs::write(dir.path().join("app.py"), format!("# moved\n# down\n{app}")).expect("write");
    assert_eq!(ids(dir.path()), before);
}
