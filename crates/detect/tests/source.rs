//! Source as evidence beside what runs: a shape in the source on the route, statement or line a
//! runtime finding measured is one finding with both kinds of evidence; a shape alone stays
//! potential, after every measured finding, and is never the bottleneck.

use std::path::Path;

use chokepoint_detect::{EvidenceItem, Impact, analyse, evidence_from_fixture};
use chokepoint_evidence::{Anchor, Certainty, DetectorId, Evidence, Handler, Shape, SourceScan};

fn lazy_loading() -> Evidence {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/n-plus-one/positive-lazy-loading.json");
    evidence_from_fixture(&std::fs::read_to_string(path).expect("the fixture")).expect("a fixture")
}

fn shape(detector: DetectorId, line: u32, route: &str) -> Shape {
    Shape {
        detector,
        file: "shop/views.py".to_owned(),
        line,
        column: 9,
        function: "orders".to_owned(),
        excerpt: "return [len(o.items) for o in rows]".to_owned(),
        what: "`Order.items` is loaded lazily".to_owned(),
        fix: "`.options(selectinload(Order.items))`".to_owned(),
        certainty: Certainty::High,
        handler: Some(Handler {
            framework: "fastapi".to_owned(),
            function: "orders".to_owned(),
            routes: vec![route.to_owned()],
            direct: true,
        }),
        statement: None,
    }
}

fn with_source(shapes: Vec<Shape>) -> Evidence {
    Evidence {
        source: Some(SourceScan {
            roots: vec!["shop".to_owned()],
            files: 1,
            bytes: 100,
            shapes,
        }),
        ..lazy_loading()
    }
}

#[test]
fn a_shape_on_the_measured_route_joins_the_runtime_finding() {
    let outcome = analyse(&with_source(vec![
        shape(DetectorId::NPlusOne, 12, "GET /orders"),
        shape(DetectorId::BlockingCall, 30, "GET /other"),
    ]));
    let first = &outcome.findings[0];
    assert_eq!(outcome.verdict.bottleneck, Some(0));
    assert_eq!(first.detector, DetectorId::NPlusOne);
    assert!(
        matches!(first.impact, Impact::Consumer(_)),
        "the measured cost is kept"
    );
    assert!(
        first
            .anchors
            .iter()
            .any(|a| matches!(a, Anchor::Code { file, line: Some(12), .. } if file == "shop/views.py")),
        "{:?}",
        first.anchors
    );
    assert!(
        first.fix.contains("shop/views.py:12") && first.fix.contains("selectinload"),
        "{}",
        first.fix
    );
    assert!(first.evidence.items.iter().any(|i| matches!(
        i,
        EvidenceItem::Corroboration {
            detector: DetectorId::NPlusOne,
            ..
        }
    )));
    // The other shape stays a shape: potential, last.
    let last = outcome.findings.last().expect("a finding");
    assert_eq!(last.detector, DetectorId::BlockingCall);
    assert!(matches!(last.impact, Impact::Potential(_)));
    assert_eq!(
        outcome.findings.len(),
        analyse(&lazy_loading()).findings.len() + 1
    );
}

#[test]
fn a_shape_on_another_route_stays_apart() {
    let outcome = analyse(&with_source(vec![shape(
        DetectorId::NPlusOne,
        12,
        "GET /invoices",
    )]));
    assert_eq!(
        outcome.findings.len(),
        analyse(&lazy_loading()).findings.len() + 1
    );
    assert!(!outcome.findings[0].fix.contains("views.py"));
    assert!(matches!(
        outcome.findings.last().expect("a finding").impact,
        Impact::Potential(_)
    ));
}

#[test]
fn shapes_alone_are_no_bottleneck() {
    let evidence = Evidence {
        source: Some(SourceScan {
            shapes: vec![shape(DetectorId::NPlusOne, 12, "GET /orders")],
            ..SourceScan::default()
        }),
        ..Evidence::default()
    };
    let outcome = analyse(&evidence);
    assert_eq!(outcome.findings.len(), 1);
    assert_eq!(outcome.verdict.bottleneck, None);
    assert!(outcome.skipped.iter().all(|s| s.detector != DetectorId::NPlusOne));
}
