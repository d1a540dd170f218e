//! Snapshots of the rendered findings of every detector's positive fixtures, so a change in a
//! title, a fix or a number shows as a readable diff. The reports are built as the commands
//! build theirs: the fixture's evidence, `analyse`, `Report::new`.

mod common;

use std::path::{Path, PathBuf};

use chokepoint_detect::{analyse, evidence_from_fixture};
use chokepoint_report::{Report, render_json, render_markdown, render_text};

fn fixtures() -> Vec<PathBuf> {
    common::positive_fixtures()
}

fn report(path: &Path) -> Report {
    let text = std::fs::read_to_string(path).expect("read");
    let evidence = evidence_from_fixture(&text).expect("a fixture");
    // The command that gathers this kind of evidence.
    let command = match (&evidence.traces, &evidence.load, &evidence.profile) {
        (Some(_), _, _) => "traces",
        (None, Some(_), _) => "load",
        (None, None, Some(_)) => "profile",
        (None, None, None) => "db",
    };
    let outcome = analyse(&evidence);
    Report::new(command, evidence, outcome, Vec::new(), Vec::new())
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

/// The JSON is the report's numbers rounded as rendered (the analysis keeps them whole): read
/// back, it writes the same JSON, so nothing in it is lost to the schema.
#[test]
fn json_reads_back_as_the_same_report() {
    for path in fixtures() {
        let report = report(&path);
        let json = render_json(&report);
        let back: Report = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(render_json(&back), json, "{}", path.display());
        assert_eq!(back.findings.len(), report.findings.len(), "{}", path.display());
        assert_eq!(
            back.verdict.bottleneck,
            report.verdict.bottleneck,
            "{}",
            path.display()
        );
    }
}

#[test]
fn colour_wraps_the_headline_only_when_asked() {
    for path in fixtures() {
        let plain = render_text(&report(&path), false);
        let coloured = render_text(&report(&path), true);
        assert!(!plain.contains('\u{1b}'), "{}", path.display());
        let headline = coloured
            .lines()
            .find(|line| line.contains("Bottleneck:"))
            .unwrap_or_else(|| panic!("{}: no headline", path.display()));
        assert!(headline.starts_with("\u{1b}["), "{headline}");
    }
}
