//! Sources composed as the commands compose them: parts folded by `collect` give what one source
//! reading everything gives; bad input is a note and the rest is kept; once-only kinds are never
//! added twice.

use std::path::{Path, PathBuf};

use chokepoint_collect::database::Database;
use chokepoint_collect::profile::ProfileFiles;
use chokepoint_collect::traces::{MAX_RECORD_BYTES, TraceFiles};
use chokepoint_collect::{Partial, Silent, Source, Stop, collect};
use chokepoint_evidence::{Evidence, Severity};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(path)
}

fn trace_files(paths: &[&str]) -> Box<dyn Source> {
    Box::new(TraceFiles {
        paths: paths.iter().map(|p| repo(p)).collect(),
        max_record_bytes: MAX_RECORD_BYTES,
        stop: None,
        keep: true,
    })
}

fn profile_files(path: &str) -> Box<dyn Source> {
    Box::new(ProfileFiles {
        paths: vec![repo(path)],
        rate_hz: 100,
        sources: Vec::new(),
        keep: false,
    })
}

/// What a user reads of the evidence: the findings and the traces' summary, as JSON.
fn findings(evidence: &Evidence) -> serde_json::Value {
    let outcome = chokepoint_detect::analyse(evidence);
    serde_json::json!({
        "findings": serde_json::to_value(&outcome.findings).expect("findings serialize"),
        "traces": evidence.traces.as_ref().map(|t| (t.summary.spans, t.summary.traces)),
    })
}

#[test]
fn two_trace_sources_folded_equal_one_source_reading_both() {
    let files = ["examples/testbed.otlp", "examples/shop.otlp.jsonl"];
    let one = collect(vec![trace_files(&files)], &Silent).expect("read");
    let two = collect(vec![trace_files(&files[..1]), trace_files(&files[1..])], &Silent).expect("read");
    let read = findings(&one.evidence);
    assert!(
        read["findings"].as_array().is_some_and(|f| f.len() >= 3),
        "the example files hold findings: {read:#}"
    );
    assert_eq!(read, findings(&two.evidence));
    // Inputs, and the files kept in a saved run, side by side in the order the sources came.
    let sources = |part: &Partial| part.inputs.iter().map(|i| i.source.clone()).collect::<Vec<_>>();
    assert_eq!(sources(&one), sources(&two));
    assert_eq!(one.recordings, two.recordings);
    assert_eq!(two.recordings.len(), 2);
}

#[test]
fn a_missing_file_is_an_error_note_with_its_name_and_the_rest_is_kept() {
    let part = collect(
        vec![
            trace_files(&["examples/testbed.otlp"]),
            trace_files(&["examples/no-such.otlp"]),
        ],
        &Silent,
    )
    .expect("what could be read is kept");
    assert_eq!(
        part.evidence.traces.as_ref().map(|t| t.summary.spans),
        Some(1011),
        "the first file's spans"
    );
    let error = part
        .notes
        .iter()
        .find(|n| n.severity == Severity::Error)
        .expect("an error note");
    assert!(error.source.ends_with("no-such.otlp"), "{error:?}");
    assert!(error.message.contains("cannot open"), "{error:?}");
    assert_eq!(part.recordings.len(), 1, "only a file that exists is kept");
}

#[test]
fn a_profile_is_taken_once_and_two_are_refused() {
    let part = collect(
        vec![
            trace_files(&["examples/testbed.otlp"]),
            profile_files("crates/profile/tests/data/workload.raw"),
        ],
        &Silent,
    )
    .expect("traces and a profile");
    assert!(part.evidence.traces.is_some() && part.evidence.profile.is_some());
    let error = collect(
        vec![
            profile_files("crates/profile/tests/data/workload.raw"),
            profile_files("crates/profile/tests/data/workload.speedscope.json"),
        ],
        &Silent,
    )
    .expect_err("two different profiles of one run");
    assert!(format!("{error:#}").contains("profile"), "{error:#}");
}

#[test]
fn a_database_beside_other_evidence_that_cannot_be_reached_is_a_note_not_a_failure() {
    // Port 1 on loopback: nothing listens there.
    let database = |beside| -> Box<dyn Source> {
        Box::new(Database {
            url: "postgresql://chokepoint@127.0.0.1:1/shop".into(),
            show_literals: false,
            watch: None,
            stop: Stop::default(),
            beside,
        })
    };
    let part = collect(
        vec![trace_files(&["examples/testbed.otlp"]), database(true)],
        &Silent,
    )
    .expect("the traces stand without the database");
    assert!(part.evidence.traces.is_some() && part.evidence.database.is_none());
    let note = part
        .notes
        .iter()
        .find(|n| n.source == "--pg")
        .expect("a note on the database");
    assert_eq!(note.severity, Severity::Error);
    assert!(
        note.message.contains("stand without the database"),
        "{}",
        note.message
    );
    // Alone (`chokepoint db`), the database is the evidence: not reaching it fails.
    let error = collect(vec![database(false)], &Silent).expect_err("no database");
    assert!(
        format!("{error:#}").contains("cannot connect to PostgreSQL"),
        "{error:#}"
    );
}

#[test]
fn a_stop_already_requested_ends_reading_with_a_warning_and_keeps_the_part() {
    let stop = Stop::default();
    stop.request();
    let part = collect(
        vec![Box::new(TraceFiles {
            paths: vec![repo("examples/testbed.otlp"), repo("examples/shop.otlp.jsonl")],
            max_record_bytes: MAX_RECORD_BYTES,
            stop: Some(stop),
            keep: false,
        })],
        &Silent,
    )
    .expect("what was read is kept");
    let warning = part
        .notes
        .iter()
        .find(|n| n.severity == Severity::Warning && n.message.contains("stopped by a signal"))
        .unwrap_or_else(|| panic!("a warning saying where reading stopped: {:?}", part.notes));
    assert!(
        warning.message.contains("nor the 1 file(s) after it"),
        "{}",
        warning.message
    );
}
