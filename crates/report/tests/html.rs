//! The HTML page: every positive fixture's page carries its verdict and a picture of each series
//! it has, asks for nothing outside itself, and stays in its budget; names from outside are
//! inert; literals stay redacted.

mod common;

use chokepoint_detect::{analyse, evidence_from_fixture};
use chokepoint_report::{MAX_PAGE_BYTES, Report, render_html, render_markdown};
use common::positive_fixtures;

fn report_of(fixture: &str) -> Report {
    let evidence = evidence_from_fixture(fixture).expect("a fixture");
    let outcome = analyse(&evidence);
    Report::new("diagnose", evidence, outcome, Vec::new(), Vec::new())
}

/// Every `src=`, `href=` or `url(` that would fetch something: the page's own anchors and
/// inferno's gradient (`url(#background)`) are not requests.
fn requests(page: &str) -> Vec<String> {
    let mut found = Vec::new();
    for pattern in ["src=\"", "href=\"", "url(", "@import", "srcset="] {
        for (at, _) in page.match_indices(pattern) {
            let rest = &page[at + pattern.len()..];
            if rest.starts_with('#') {
                continue;
            }
            found.push(rest.chars().take(60).collect());
        }
    }
    found
}

#[test]
fn every_positive_fixture_has_a_page_with_its_verdict_and_a_picture_of_each_series() {
    let mut pictures = [0usize; 5];
    for path in positive_fixtures() {
        let report = report_of(&std::fs::read_to_string(&path).expect("read"));
        let page = render_html(&report);
        let name = path.display();
        assert!(page.starts_with("<!DOCTYPE html>"), "{name}");
        assert!(page.len() <= MAX_PAGE_BYTES, "{name}: {} bytes", page.len());
        assert_eq!(requests(&page), Vec::<String>::new(), "{name}");
        let bottleneck = report.bottleneck().expect("a positive fixture has a bottleneck");
        assert!(page.contains(bottleneck.detector.as_str()), "{name}");
        // Every finding's id is on the page, to copy.
        for f in &report.findings {
            assert!(page.contains(&f.id), "{name}: {}", f.id);
        }
        let series = &report.series;
        for (i, (drawn, chart)) in [
            (series.ramp.is_some(), "data-chart=\"ramp\""),
            (!series.endpoints.is_empty(), "data-chart=\"endpoints\""),
            (series.flame.is_some(), "data-chart=\"flame\""),
            (!series.plans.is_empty(), "data-chart=\"plans\""),
            (
                series.examples.iter().any(|e| e.finding == bottleneck.id),
                "data-chart=\"trace\"",
            ),
        ]
        .into_iter()
        .enumerate()
        {
            assert_eq!(page.contains(chart), drawn, "{name}: {chart}");
            pictures[i] += usize::from(drawn);
        }
    }
    // The fixtures draw every kind of picture.
    assert!(pictures.iter().all(|&n| n > 0), "{pictures:?}");
}

#[test]
fn names_from_outside_are_inert_and_literals_stay_redacted() {
    // A route and a span named as a script, a statement whose quoted identifier closes the SVG
    // and opens a script, with a secret literal; run twelve times per request (an N+1).
    let fixture = r#"{"traces": [{"repeat": 6, "spans": [
      {"id": "root", "kind": "server", "name": "<script>alert(1)</script>", "end_ms": 120,
       "attrs": {"http.route": "/<script>alert(1)</script>", "http.request.method": "GET", "service.name": "<b>shop</b>"}},
      {"id": "q", "parent": "root", "kind": "client", "start_ms": 2, "end_ms": 10, "times": 12, "every_ms": 9,
       "attrs": {"db.system": "postgresql",
                 "db.statement": "SELECT \"</svg><script>alert(2)</script>\" FROM items WHERE secret = 'hunter2' AND order_id = 7"}}
    ]}]}"#;
    let report = report_of(fixture);
    assert!(!report.findings.is_empty(), "the N+1 is found");
    let page = render_html(&report);
    // The page's own script is the only one; every SVG it opens, it closes.
    assert_eq!(page.matches("<script").count(), 1, "{page}");
    assert!(!page.contains("alert(1)</script>") && !page.contains("alert(2)</script>"));
    assert_eq!(page.matches("<svg").count(), page.matches("</svg>").count());
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "the name is shown, escaped"
    );
    assert!(
        page.contains("&lt;/svg&gt;&lt;script&gt;alert(2)"),
        "the statement is shown, escaped"
    );
    assert!(!page.contains("<b>shop</b>"));
    // The bottleneck's example request is drawn, its twelve statements marked.
    assert!(page.contains("data-chart=\"trace\""));
    assert_eq!(page.matches("<tr class=\"marked\">").count(), 12, "{page}");
    // Literals stay redacted, as in the other formats.
    assert!(!render_markdown(&report).contains("hunter2"));
    assert!(!page.contains("hunter2"), "a literal reached the page");
}

#[test]
fn a_page_past_its_budget_folds_detail_and_says_so() {
    let path = positive_fixtures()
        .into_iter()
        .find(|p| p.to_string_lossy().contains("py-spy-lazy-loading"))
        .expect("the py-spy N+1 fixture");
    let mut report = report_of(&std::fs::read_to_string(&path).expect("read"));
    let first = report.findings[0].clone();
    report.findings = (0..4_000)
        .map(|i| {
            let mut f = first.clone();
            f.id = format!("{}-{i}", first.id);
            f.title = format!("{} (copy {i})", f.title);
            f
        })
        .collect();
    let page = render_html(&report);
    assert!(page.len() <= MAX_PAGE_BYTES, "{} bytes", page.len());
    assert!(page.contains("This page folds detail"), "it says so");
    assert!(page.contains("data-chart=\"flame\""), "the pictures stay");
    // Every finding is still in the table, by rank.
    assert!(page.contains(">4000</a>"));
}
