//! Every detector against its fixtures: each `positive*.json` must yield a finding with the
//! detector's id, each `negative*.json` must not; every detector must have both.

use std::path::{Path, PathBuf};

use chokepoint_detect::{Analysis, Outcome, analyse_db, analyse_load, detectors};
use chokepoint_evidence::fixture::Fixture;
use chokepoint_evidence::{LoadRun, PgSnapshot};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn analyse(path: &Path) -> Outcome {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if text.contains("\"statements\"") {
        let snapshot: PgSnapshot =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        return analyse_db(&snapshot);
    }
    if is_load_fixture(path) {
        let run: LoadRun = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        return analyse_load(&run);
    }
    let fixture: Fixture = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut analysis = Analysis::default();
    for trace in fixture
        .traces()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    {
        analysis.add_trace(&trace);
    }
    analysis.finish()
}

/// Load fixtures are a `LoadRun` (with `steps`), database fixtures a `PgSnapshot` (with
/// `statements`); trace fixtures a `Fixture` (with `traces`). Only trace findings carry traces.
fn is_load_fixture(path: &Path) -> bool {
    std::fs::read_to_string(path)
        .is_ok_and(|text| text.contains("\"steps\"") || text.contains("\"statements\""))
}

fn fixtures(id: &str, prefix: &str) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(fixture_dir().join(id))
        .map(|dir| dir.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    paths.retain(|p| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
    });
    paths.sort();
    paths
}

#[test]
fn every_detector_has_positive_and_negative_fixtures() {
    for meta in detectors() {
        assert!(
            !fixtures(meta.id, "positive").is_empty(),
            "{}: no positive fixture",
            meta.id
        );
        assert!(
            !fixtures(meta.id, "negative").is_empty(),
            "{}: no negative fixture",
            meta.id
        );
    }
}

#[test]
fn positive_fixtures_make_the_detector_the_bottleneck() {
    for meta in detectors() {
        for path in fixtures(meta.id, "positive") {
            let outcome = analyse(&path);
            let first = outcome
                .findings
                .first()
                .unwrap_or_else(|| panic!("{}: no finding", path.display()));
            assert_eq!(
                first.detector,
                meta.id,
                "{}: bottleneck is {first:#?}",
                path.display()
            );
            assert!(
                first.impact.saved_ms_per_request > 0.0,
                "{}: no saving",
                path.display()
            );
            assert!(
                is_load_fixture(&path) || !first.evidence.example_trace_ids.is_empty(),
                "{}: no example trace",
                path.display()
            );
            assert!(!first.fix.is_empty() && !first.title.is_empty());
        }
    }
}

#[test]
fn negative_fixtures_do_not_show_the_detector() {
    for meta in detectors() {
        for path in fixtures(meta.id, "negative") {
            let outcome = analyse(&path);
            let wrong: Vec<_> = outcome
                .findings
                .iter()
                .filter(|f| f.detector == meta.id)
                .collect();
            assert!(wrong.is_empty(), "{}: unexpected {wrong:#?}", path.display());
        }
    }
}

#[test]
fn lazy_loading_fixture_numbers_add_up() {
    let outcome = analyse(&fixture_dir().join("n-plus-one/positive-lazy-loading.json"));
    let finding = &outcome.findings[0];
    assert_eq!(finding.endpoint, "GET /orders");
    assert_eq!(
        finding.location,
        "SELECT items.id, items.sku FROM items WHERE items.order_id = ?"
    );
    assert_eq!(finding.evidence.affected_requests, 10);
    assert_eq!(finding.evidence.occurrences, 200);
    assert_eq!(finding.evidence.metrics["repeats_per_request_mean"], 20.0);
    // 20 × 4 ms, 1 ms apart; 16 of the 19 gaps hold nothing else (3 hold a pool connect), so the
    // loop costs 80 + 16 = 96 ms; batching keeps one 4 ms call: 92 ms saved per request.
    assert_eq!(finding.evidence.metrics["loop_ms_mean"], 96.0);
    assert_eq!(finding.impact.saved_ms_per_request, 92.0);
    assert_eq!(finding.impact.latency_saved_ms_per_request, 92.0);
    // 140 ms requests: 92/140 of the endpoint's time.
    assert!((finding.impact.share_of_endpoint_time - 92.0 / 140.0).abs() < 1e-3);
    // Ten requests one second apart span 9.14 s; 920 ms saved over it.
    assert!((finding.impact.recoverable_s_per_s - 0.92 / 9.14).abs() < 1e-3);
    assert!(finding.fix.contains("selectinload"), "{}", finding.fix);
    assert!(finding.fix.contains("order_id IN"), "{}", finding.fix);
}

#[test]
fn concurrent_repeats_save_service_time_more_than_latency() {
    let outcome = analyse(&fixture_dir().join("n-plus-one/positive-concurrent-http.json"));
    let finding = &outcome.findings[0];
    assert_eq!(finding.location, "GET inventory:8001/stock/{id}");
    assert_eq!(finding.impact.saved_ms_per_request, 7.0 * 75.0);
    assert_eq!(finding.impact.latency_saved_ms_per_request, 0.0);
}

#[test]
fn sequential_saving_is_sum_minus_longest() {
    let outcome = analyse(&fixture_dir().join("sequential-calls/positive-three-downstream-calls.json"));
    let finding = &outcome.findings[0];
    assert_eq!(finding.impact.saved_ms_per_request, 200.0);
    assert!(
        finding
            .location
            .starts_with("GET users:8001/profile/{id} → GET orders:8002/recent"),
        "{}",
        finding.location
    );
}

#[test]
fn missing_evidence_is_reported_as_skipped_not_clean() {
    let outcome = analyse(&fixture_dir().join("slow-query/negative-fast-statements.json"));
    let skipped: Vec<_> = outcome.skipped.iter().map(|s| s.detector.as_str()).collect();
    assert!(skipped.contains(&"unbounded-result"), "{skipped:?}");
    assert!(skipped.contains(&"large-payload"), "{skipped:?}");
    assert!(!skipped.contains(&"slow-query"), "{skipped:?}");
}

#[test]
fn merged_analyses_equal_one_analysis_of_all_traces() {
    let text = std::fs::read_to_string(fixture_dir().join("n-plus-one/positive-lazy-loading.json"))
        .expect("fixture");
    let traces = serde_json::from_str::<Fixture>(&text)
        .expect("json")
        .traces()
        .expect("traces");
    let mut whole = Analysis::default();
    let (mut left, mut right) = (Analysis::default(), Analysis::default());
    for (i, trace) in traces.iter().enumerate() {
        whole.add_trace(trace);
        if i % 2 == 0 {
            left.add_trace(trace)
        } else {
            right.add_trace(trace)
        }
    }
    left.merge(right);
    let (mut merged, mut single) = (left.finish(), whole.finish());
    for outcome in [&mut merged, &mut single] {
        for finding in &mut outcome.findings {
            finding.evidence.example_trace_ids.sort();
        }
    }
    assert_eq!(merged.summary, single.summary);
    assert_eq!(merged.findings.len(), single.findings.len());
    assert_eq!(merged.findings[0].impact, single.findings[0].impact);
}
