//! Every detector against its fixtures: each `positive*.json` must make the detector the
//! bottleneck, each `negative*.json` must not show it — and must prove the detector ran, not
//! skipped; every detector must have both.

use std::path::{Path, PathBuf};

use chokepoint_detect::{Impact, Outcome, TraceAnalysis, analyse, detectors, evidence_from_fixture};
use chokepoint_evidence::{DetectorId, Evidence, Resource, Subject};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn evidence(path: &Path) -> Evidence {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    evidence_from_fixture(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn analyse_fixture(path: &Path) -> Outcome {
    analyse(&evidence(path))
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
            !fixtures(meta.id.as_str(), "positive").is_empty(),
            "{}: no positive fixture",
            meta.id
        );
        assert!(
            !fixtures(meta.id.as_str(), "negative").is_empty(),
            "{}: no negative fixture",
            meta.id
        );
    }
}

#[test]
fn positive_fixtures_make_the_detector_the_bottleneck() {
    for meta in detectors() {
        for path in fixtures(meta.id.as_str(), "positive") {
            let evidence = evidence(&path);
            let outcome = analyse(&evidence);
            assert_eq!(outcome.verdict.bottleneck, Some(0), "{}", path.display());
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
            match &first.impact {
                Impact::Consumer(c) => assert!(c.saved_ms_per_request > 0.0, "{}: no saving", path.display()),
                Impact::Limit(l) => assert!(l.capacity_rps > 0.0, "{}: no capacity", path.display()),
                Impact::Potential(_) => panic!("{}: a shape in the source is no bottleneck", path.display()),
            }
            assert!(
                evidence.traces.is_none() || !first.evidence.example_trace_ids.is_empty(),
                "{}: no example trace",
                path.display()
            );
            assert!(!first.fix.is_empty() && !first.title.is_empty());
        }
    }
}

#[test]
fn negative_fixtures_do_not_show_the_detector_and_prove_it_ran() {
    for meta in detectors() {
        for path in fixtures(meta.id.as_str(), "negative") {
            let outcome = analyse_fixture(&path);
            let wrong: Vec<_> = outcome
                .findings
                .iter()
                .filter(|f| f.detector == meta.id)
                .collect();
            assert!(wrong.is_empty(), "{}: unexpected {wrong:#?}", path.display());
            let skipped: Vec<_> = outcome.skipped.iter().filter(|s| s.detector == meta.id).collect();
            assert!(
                skipped.is_empty(),
                "{}: the detector did not run, so the fixture proves nothing: {skipped:?}",
                path.display()
            );
        }
    }
}

fn consumption(finding: &chokepoint_detect::Finding) -> &chokepoint_detect::Consumption {
    finding.impact.consumption().expect("a consumer")
}

#[test]
fn lazy_loading_fixture_numbers_add_up() {
    let outcome = analyse_fixture(&fixture_dir().join("n-plus-one/positive-lazy-loading.json"));
    let finding = &outcome.findings[0];
    assert_eq!(finding.scope.endpoint(), Some("GET /orders"));
    assert_eq!(
        finding.location,
        "SELECT items.id, items.sku FROM items WHERE items.order_id = ?"
    );
    assert!(matches!(&finding.subject, Subject::Statement { text, .. } if text == &finding.location));
    assert_eq!(finding.evidence.sample.affected, 10);
    assert_eq!(finding.evidence.occurrences, 200);
    assert_eq!(finding.evidence.metrics["repeats_per_request_mean"], 20.0);
    // 20 × 4 ms, 1 ms apart; 16 of the 19 gaps hold nothing else (3 hold a pool connect), so the
    // loop costs 80 + 16 = 96 ms; batching keeps one 4 ms call: 92 ms saved per request.
    assert_eq!(finding.evidence.metrics["loop_ms_mean"], 96.0);
    let impact = consumption(finding);
    assert_eq!(impact.saved_ms_per_request, 92.0);
    assert_eq!(impact.latency_saved_ms_per_request, 92.0);
    // 140 ms requests: 92/140 of the endpoint's time.
    assert!((impact.share_of_scope_time - 92.0 / 140.0).abs() < 1e-3);
    // Ten requests one second apart span 9.14 s; 920 ms saved over it.
    assert!((impact.recoverable_s_per_s - 0.92 / 9.14).abs() < 1e-3);
    assert!(finding.fix.contains("selectinload"), "{}", finding.fix);
    assert!(finding.fix.contains("order_id = ANY(:ids)"), "{}", finding.fix);
}

#[test]
fn concurrent_repeats_save_service_time_more_than_latency() {
    let outcome = analyse_fixture(&fixture_dir().join("n-plus-one/positive-concurrent-http.json"));
    let finding = &outcome.findings[0];
    assert_eq!(finding.location, "GET inventory:8001/stock/{id}");
    assert_eq!(consumption(finding).saved_ms_per_request, 7.0 * 75.0);
    assert_eq!(consumption(finding).latency_saved_ms_per_request, 0.0);
}

#[test]
fn sequential_saving_is_sum_minus_longest() {
    let outcome =
        analyse_fixture(&fixture_dir().join("sequential-calls/positive-three-downstream-calls.json"));
    let finding = &outcome.findings[0];
    assert_eq!(consumption(finding).saved_ms_per_request, 200.0);
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
    let outcome = analyse_fixture(&fixture_dir().join("slow-query/negative-fast-statements.json"));
    let reason = |id: DetectorId| {
        outcome
            .skipped
            .iter()
            .find(|s| s.detector == id)
            .map(|s| s.reason.clone())
    };
    let unbounded = reason(DetectorId::UnboundedResult).expect("unbounded-result skipped");
    assert!(unbounded.contains("row count"), "{unbounded}");
    assert!(unbounded.contains("no PostgreSQL evidence"), "{unbounded}");
    assert!(reason(DetectorId::LargePayload).is_some());
    assert_eq!(reason(DetectorId::SlowQuery), None);
    let cpu = reason(DetectorId::CpuSaturation).expect("cpu-saturation skipped");
    assert!(cpu.contains("no load ramp"), "{cpu}");
}

#[test]
fn a_database_without_pg_stat_statements_still_judges_lock_waits() {
    let mut evidence = evidence(&fixture_dir().join("lock-contention/positive-db-hot-row.json"));
    if let Some(db) = evidence.database.as_mut() {
        db.extensions.clear();
    }
    let outcome = analyse(&evidence);
    assert_eq!(outcome.findings[0].detector, DetectorId::LockContention);
    assert!(
        outcome
            .skipped
            .iter()
            .all(|s| s.detector != DetectorId::LockContention)
    );
    let missing = outcome
        .skipped
        .iter()
        .find(|s| s.detector == DetectorId::MissingIndex)
        .expect("missing-index skipped");
    assert!(
        missing.reason.contains("pg_stat_statements"),
        "{}",
        missing.reason
    );
}

#[test]
fn merged_analyses_equal_one_analysis_of_all_traces() {
    let text = std::fs::read_to_string(fixture_dir().join("n-plus-one/positive-lazy-loading.json"))
        .expect("fixture");
    let traces = serde_json::from_str::<chokepoint_evidence::fixture::Fixture>(&text)
        .expect("json")
        .traces()
        .expect("traces");
    let mut whole = TraceAnalysis::default();
    let (mut left, mut right) = (TraceAnalysis::default(), TraceAnalysis::default());
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
    for aggregates in [&mut merged, &mut single] {
        for endpoint in &mut aggregates.endpoints {
            for group in &mut endpoint.groups {
                group.examples.clear();
            }
        }
    }
    // The aggregates are the same but for the order floating-point sums were added in: the
    // findings, rounded, are equal.
    assert_eq!(merged.summary, single.summary);
    assert_eq!(merged.evaluated, single.evaluated);
    let outcome = |traces| {
        analyse(&Evidence {
            traces: Some(traces),
            ..Evidence::default()
        })
    };
    assert_eq!(outcome(merged).findings, outcome(single).findings);
}

#[test]
fn a_lock_that_serializes_requests_explains_the_limit_the_ramp_shows() {
    let evidence =
        evidence(&fixture_dir().join("lock-contention/positive-load-and-db-requests-queue-on-a-row.json"));
    let outcome = analyse(&evidence);
    let ids: Vec<_> = outcome.findings.iter().map(|f| f.detector).collect();
    // The watch beside the ramp shows the requests queued on the row: the lock is the limit
    // (not the event loop a ramp alone would take it for), and its holder what consumes it.
    assert_eq!(
        ids[..2],
        [DetectorId::LockContention, DetectorId::LockContention],
        "{ids:?}"
    );
    assert!(matches!(outcome.findings[1].impact, Impact::Limit(ref l) if l.resource == Resource::Locks));
    assert!(!ids.contains(&DetectorId::BlockingCall), "{ids:?}");
    assert_eq!(outcome.verdict.limit, Some(1));
    assert_eq!(outcome.verdict.consumer_findings(), [0]);
    // The watch's seconds land on the steps they overlap.
    let waiting: Vec<f64> = outcome.step_sessions.iter().map(|s| s.lock_waiting).collect();
    assert_eq!(waiting, [0.0, 1.0, 3.0, 5.6]);
}

#[test]
fn requests_that_do_not_overlap_on_a_full_host_wait_on_its_cpu() {
    let outcome =
        analyse_fixture(&fixture_dir().join("blocking-call/negative-host-full-from-the-first-step.json"));
    let limit = outcome.verdict.limit.map(|i| outcome.findings[i].detector);
    assert_eq!(limit, Some(DetectorId::CpuSaturation), "{:#?}", outcome.findings);
}

#[test]
fn one_trace_gets_a_verdict_that_says_how_few_requests_it_rests_on() {
    let outcome = analyse_fixture(&fixture_dir().join("n-plus-one/positive-one-trace.json"));
    let finding = &outcome.findings[0];
    assert_eq!(finding.detector, DetectorId::NPlusOne);
    assert_eq!(
        (finding.evidence.sample.affected, finding.evidence.sample.total),
        (1, 1)
    );
    assert_eq!(finding.confidence, chokepoint_detect::Confidence::Medium);
    assert!(
        finding
            .assumptions
            .iter()
            .any(|a| a.contains("1 of the endpoint's 1 request")),
        "{:?}",
        finding.assumptions
    );
    assert_eq!(outcome.below_noise_gate, 0);
}

#[test]
fn the_index_in_the_sort_order_is_proposed_for_the_latest_n_with_both_costs() {
    let outcome =
        analyse_fixture(&fixture_dir().join("missing-index/positive-db-latest-n-in-sort-order.json"));
    let finding = &outcome.findings[0];
    assert!(
        finding
            .fix
            .starts_with("CREATE INDEX CONCURRENTLY ON public.messages (user_id, created_at);"),
        "{}",
        finding.fix
    );
    assert!(
        finding.title.contains("on (user_id) it would cost 1285"),
        "{}",
        finding.title
    );
    assert!(finding.title.contains("LIMIT 20"), "{}", finding.title);
    let costed = finding.evidence.items.iter().any(|item| {
        matches!(item, chokepoint_detect::EvidenceItem::Index { candidates, .. } if candidates.len() == 2)
    });
    assert!(costed, "{:#?}", finding.evidence.items);
}

#[test]
fn every_plan_reason_comes_with_its_own_fix_and_a_limit_is_no_mis_estimate() {
    let outcome = analyse_fixture(&fixture_dir().join("slow-query/positive-db-regex-search-explained.json"));
    let finding = &outcome.findings[0];
    assert_eq!(finding.detector, DetectorId::SlowQuery);
    assert!(!finding.title.contains("mis-estimate"), "{}", finding.title);
    assert!(!finding.fix.contains("Address"), "{}", finding.fix);
    assert!(
        finding.fix.contains("USING gin (body gin_trgm_ops)") && finding.fix.contains("public.reviews"),
        "{}",
        finding.fix
    );
    assert!(
        finding.fix.contains("HypoPG cannot cost a GIN index"),
        "{}",
        finding.fix
    );
    assert!(
        finding.fix.contains("public.books (price) would only"),
        "{}",
        finding.fix
    );
    // The missing-index angle of the same statement is folded in, not listed again.
    assert!(
        outcome
            .findings
            .iter()
            .all(|f| f.detector != DetectorId::MissingIndex)
    );
}

#[test]
fn a_statement_seen_only_in_traces_gets_the_index_of_the_right_table() {
    let outcome = analyse_fixture(&fixture_dir().join("slow-query/positive-regex-search-in-traces.json"));
    let finding = &outcome.findings[0];
    assert!(
        finding.fix.contains("ON reviews USING gin (body gin_trgm_ops)"),
        "{}",
        finding.fix
    );
    assert!(finding.fix.contains("ON books (price)"), "{}", finding.fix);
    assert!(finding.fix.contains("ON reviews (book_id)"), "{}", finding.fix);
    assert!(!finding.fix.contains("reviews (price)"), "{}", finding.fix);
}

#[test]
fn a_sequential_scan_gets_the_index_it_lacks_or_fresh_statistics_when_it_has_one() {
    // No index was costed (no HypoPG): the columns the statement filters on, as the index to try.
    let outcome = analyse_fixture(&fixture_dir().join("slow-query/positive-db-seq-scan.json"));
    let fix = &outcome.findings[0].fix;
    assert!(
        fix.contains("CREATE INDEX CONCURRENTLY ON public.users (email);"),
        "{fix}"
    );
    assert!(fix.contains("not costed"), "{fix}");
    // An index already leads with the column: nothing new to build.
    let outcome =
        analyse_fixture(&fixture_dir().join("slow-query/positive-db-seq-scan-despite-an-index.json"));
    let fix = &outcome.findings[0].fix;
    assert!(fix.contains("an index leading with status exists"), "{fix}");
    assert!(fix.contains("ANALYZE public.orders;"), "{fix}");
    assert!(!fix.contains("CREATE INDEX"), "{fix}");
}

#[test]
fn busy_threads_are_cpu_only_when_the_measured_cpu_bears_them_out() {
    let path = fixture_dir().join("cpu-saturation/negative-py-spy-busy-threads-the-ramp-measured-idle.json");
    let with_ramp = evidence(&path);
    // The same profile alone: four threads busy every second look like a saturated CPU.
    let alone = Evidence {
        load: None,
        ..with_ramp.clone()
    };
    let outcome = analyse(&alone);
    assert!(
        outcome
            .findings
            .iter()
            .any(|f| f.detector == DetectorId::CpuSaturation),
        "{:#?}",
        outcome.findings
    );
    // Beside the ramp that measured 0.3 cores over the same seconds, they waited: no CPU
    // finding, and the report says why.
    let outcome = analyse(&with_ramp);
    assert!(
        outcome
            .findings
            .iter()
            .all(|f| f.detector != DetectorId::CpuSaturation),
        "{:#?}",
        outcome.findings
    );
    let said: Vec<&str> = outcome.notes.iter().map(|n| n.message.as_str()).collect();
    assert!(
        said.iter()
            .any(|n| n.contains("while the process used 0.32 cores")
                && n.contains("no CPU finding rests on them")),
        "{said:?}"
    );
}
