//! Every rule against its fixtures: `tests/fixtures/<id>/positive*.py` mark each line a rule must
//! find with `# expect: <id> …`, and nothing else may be found in them; `negative*.py` hold the
//! same features written the right way, and nothing may be found there.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use chokepoint_evidence::DetectorId;

fn fixtures() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut paths = Vec::new();
    for dir in std::fs::read_dir(&root).expect("present") {
        for file in std::fs::read_dir(dir.expect("present").path()).expect("present") {
            paths.push(file.expect("present").path());
        }
    }
    paths.sort();
    paths
}

/// The (line, id) pairs a file's `# expect:` comments name.
fn expected(text: &str) -> BTreeSet<(u32, String)> {
    let mut pairs = BTreeSet::new();
    for (i, line) in text.lines().enumerate() {
        if let Some((_, ids)) = line.split_once("# expect:") {
            for id in ids.split_whitespace() {
                assert!(DetectorId::parse(id).is_some(), "{id} is not a detector id");
                pairs.insert((i as u32 + 1, id.to_owned()));
            }
        }
    }
    pairs
}

fn found(path: &Path) -> (String, BTreeSet<(u32, String)>) {
    let text = std::fs::read_to_string(path).expect("present");
    let name = format!(
        "{}/{}",
        path.parent()
            .expect("present")
            .file_name()
            .expect("present")
            .to_string_lossy(),
        path.file_name().expect("present").to_string_lossy()
    );
    let (shapes, notes) = chokepoint_scan::scan_text(&name, &text);
    assert!(notes.is_empty(), "{name}: {notes:?}");
    for shape in &shapes {
        assert!(
            !shape.fix.is_empty() && !shape.what.is_empty() && !shape.excerpt.is_empty(),
            "{shape:?}"
        );
    }
    (
        text,
        shapes
            .into_iter()
            .map(|s| (s.line, s.detector.as_str().to_owned()))
            .collect(),
    )
}

#[test]
fn every_rule_has_positive_and_negative_fixtures() {
    let ids = [
        "blocking-call",
        "n-plus-one",
        "unbounded-result",
        "in-memory-sort",
        "regex-per-request",
        "connection-churn",
        "sequential-calls",
        "sync-logging",
    ];
    let paths = fixtures();
    for id in ids {
        for kind in ["positive", "negative"] {
            assert!(
                paths.iter().any(|p| p.parent().expect("present").ends_with(id)
                    && p.file_name()
                        .expect("present")
                        .to_string_lossy()
                        .starts_with(kind)),
                "{id}: no {kind} fixture"
            );
        }
    }
}

#[test]
fn positive_fixtures_find_exactly_the_marked_lines() {
    for path in fixtures().iter().filter(|p| {
        p.file_name()
            .expect("present")
            .to_string_lossy()
            .starts_with("positive")
    }) {
        let (text, found) = found(path);
        let expected = expected(&text);
        let id = path
            .parent()
            .expect("present")
            .file_name()
            .expect("present")
            .to_string_lossy()
            .into_owned();
        assert!(
            expected.iter().any(|(_, e)| *e == id),
            "{}: marks no {id}",
            path.display()
        );
        assert_eq!(found, expected, "{}", path.display());
    }
}

#[test]
fn negative_fixtures_find_nothing() {
    for path in fixtures().iter().filter(|p| {
        p.file_name()
            .expect("present")
            .to_string_lossy()
            .starts_with("negative")
    }) {
        let (_, found) = found(path);
        assert!(found.is_empty(), "{}: {found:?}", path.display());
    }
}
