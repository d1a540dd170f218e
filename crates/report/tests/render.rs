//! Snapshots of the rendered findings of every detector's positive fixtures, so a change in a
//! title, a fix or a number shows as a readable diff.

use std::path::{Path, PathBuf};

use chokepoint_detect::{Analysis, analyse_db, analyse_load};
use chokepoint_evidence::fixture::Fixture;
use chokepoint_evidence::{LoadRun, PgSnapshot};
use chokepoint_report::{Report, render_markdown, render_text};

fn fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../detect/tests/fixtures");
    let mut paths = Vec::new();
    for detector in std::fs::read_dir(&dir).expect("fixture dir") {
        let detector = detector.expect("entry").path();
        for file in std::fs::read_dir(&detector).expect("detector dir") {
            let file = file.expect("entry").path();
            if file
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("positive"))
            {
                paths.push(file);
            }
        }
    }
    paths.sort();
    paths
}

fn report(path: &Path) -> Report {
    let text = std::fs::read_to_string(path).expect("read");
    if text.contains("\"statements\"") {
        let snapshot: PgSnapshot = serde_json::from_str(&text).expect("a snapshot");
        return Report::new(analyse_db(&snapshot));
    }
    if text.contains("\"steps\"") {
        let run: LoadRun = serde_json::from_str(&text).expect("a load run");
        return Report::new(analyse_load(&run));
    }
    let fixture: Fixture = serde_json::from_str(&text).expect("json");
    let mut analysis = Analysis::default();
    for trace in fixture.traces().expect("traces") {
        analysis.add_trace(&trace);
    }
    Report::new(analysis.finish())
}

fn name(path: &Path) -> String {
    let detector = path
        .parent()
        .and_then(Path::file_name)
        .expect("dir")
        .to_string_lossy();
    let file = path.file_stem().expect("stem").to_string_lossy();
    format!("{detector}__{file}")
}

#[test]
fn text_of_every_positive_fixture() {
    for path in fixtures() {
        insta::assert_snapshot!(
            format!("text__{}", name(&path)),
            render_text(&report(&path), false)
        );
    }
}

#[test]
fn markdown_of_every_positive_fixture() {
    for path in fixtures() {
        insta::assert_snapshot!(
            format!("markdown__{}", name(&path)),
            render_markdown(&report(&path))
        );
    }
}

#[test]
fn colour_wraps_the_headline_only_when_asked() {
    let path = &fixtures()[0];
    let plain = render_text(&report(path), false);
    let coloured = render_text(&report(path), true);
    assert!(!plain.contains('\u{1b}'));
    assert!(coloured.starts_with("\u{1b}["), "{coloured}");
}
