//! Shards merge into what the whole stream gives: any split of a set of traces by trace id,
//! analysed apart and merged in any order, gives the findings of one analysis of them all (the
//! same ids, scopes, subjects, counts and rounded numbers, the same example trace ids) — under the
//! caps. Past them, what a merge drops is counted.

use std::path::{Path, PathBuf};

use chokepoint_detect::{TraceAnalysis, analyse};
use chokepoint_evidence::fixture::Fixture;
use chokepoint_evidence::{Evidence, MAX_ENDPOINTS, OTHER_ENDPOINTS, Trace, TraceAggregates, TraceId};
use proptest::prelude::*;

/// Every fixture's traces, by file: the shapes the detectors know, written by hand.
fn pool() -> Vec<(PathBuf, Vec<Trace>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("fixtures")
        .filter_map(|e| e.ok())
        .flat_map(|dir| {
            std::fs::read_dir(dir.path())
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok())
        })
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .filter_map(|path| {
            let text = std::fs::read_to_string(&path).expect("readable");
            let fixture: Fixture = serde_json::from_str(&text).ok()?;
            let traces = fixture.traces().ok()?;
            (!traces.is_empty() && traces.len() <= 400).then_some((path, traces))
        })
        .collect()
}

/// A 64-bit mixer (splitmix64): trace ids that do not follow the order traces arrive in.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn analysed<'t>(traces: impl IntoIterator<Item = &'t Trace>) -> TraceAggregates {
    let mut analysis = TraceAnalysis::default();
    for trace in traces {
        analysis.add_trace(trace);
    }
    analysis.finish()
}

/// What a user compares: the findings, as JSON (numbers rounded as the report writes them).
fn findings(traces: TraceAggregates) -> serde_json::Value {
    let outcome = analyse(&Evidence {
        traces: Some(traces),
        ..Evidence::default()
    });
    serde_json::to_value(&outcome.findings).expect("findings serialize")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn shards_merged_in_any_order_equal_the_whole(
        files in proptest::collection::vec(any::<prop::sample::Index>(), 1..4),
        seed in any::<u64>(),
        shards in 1usize..5,
        order in any::<prop::sample::Index>(),
        pairwise in any::<bool>(),
    ) {
        let pool = pool();
        // The chosen fixtures' traces, with ids of their own, arriving in an order that is not
        // theirs.
        let mut traces: Vec<Trace> = Vec::new();
        for (f, file) in files.iter().enumerate() {
            let (_, chosen) = &pool[file.index(pool.len())];
            for (n, trace) in chosen.iter().enumerate() {
                let mut trace = trace.clone();
                let key = mix(seed ^ ((f as u64) << 32 | n as u64));
                trace.trace_id = TraceId(u128::from(key) << 64 | u128::from(mix(key)));
                traces.push(trace);
            }
        }
        traces.sort_by_key(|t| mix(t.trace_id.0 as u64 ^ seed));
        let whole = analysed(&traces);

        // Split by trace id, as the Collector's load-balancing exporter routes.
        let mut parts: Vec<TraceAggregates> = (0..shards)
            .map(|s| analysed(traces.iter().filter(|t| (mix(t.trace_id.0 as u64) % shards as u64) as usize == s)))
            .collect();
        parts.rotate_left(order.index(shards));
        let merged = if pairwise {
            while parts.len() > 1 {
                let right = parts.pop().expect("two or more");
                let mut left = parts.pop().expect("two or more");
                left.merge(right);
                parts.insert(0, left);
            }
            parts.pop().expect("one")
        } else {
            let mut parts = parts.into_iter().rev();
            let mut first = parts.next().expect("one or more");
            for part in parts {
                first.merge(part);
            }
            first
        };

        prop_assert_eq!(&merged.summary, &whole.summary);
        prop_assert_eq!(&merged.evaluated, &whole.evaluated);
        for (m, w) in merged.endpoints.iter().zip(&whole.endpoints) {
            prop_assert_eq!((&m.service, &m.endpoint, m.requests), (&w.service, &w.endpoint, w.requests));
            prop_assert_eq!(&m.instrumentation, &w.instrumentation);
            let examples = |e: &chokepoint_evidence::EndpointAggregate| {
                e.groups.iter().map(|g| (g.detector, g.subject.clone(), g.location.clone(), g.examples.clone(), g.requests, g.occurrences)).collect::<Vec<_>>()
            };
            prop_assert_eq!(examples(m), examples(w));
        }
        prop_assert_eq!(merged.endpoints.len(), whole.endpoints.len());
        prop_assert_eq!(findings(merged), findings(whole));
    }
}

/// One request to a route of its own, with a statement of its own run three times.
fn route_trace(route: usize, id: u128) -> Trace {
    let fixture = format!(
        r#"{{"traces": [{{"spans": [
          {{"id": "root", "kind": "server", "name": "GET", "end_ms": {end}, "attrs": {{"http.route": "/r{route}", "http.request.method": "GET"}}}},
          {{"id": "q", "parent": "root", "kind": "client", "start_ms": 1, "end_ms": 6, "times": 3, "every_ms": 6, "attrs": {{"db.system": "postgresql", "db.statement": "SELECT * FROM t{route} WHERE id = 1"}}}}
        ]}}]}}"#,
        end = 30 + route % 17
    );
    fixture_trace(&fixture, id)
}

/// The one trace of a fixture written in the compact form, under trace id `id`.
fn fixture_trace(fixture: &str, id: u128) -> Trace {
    let mut trace = serde_json::from_str::<Fixture>(fixture)
        .expect("json")
        .traces()
        .expect("traces")
        .remove(0);
    trace.trace_id = TraceId(id);
    trace
}

#[test]
fn past_the_endpoint_cap_a_merge_folds_the_lightest_and_counts_them() {
    // Each shard keeps its 700 routes; together they are 1,400, past the cap of 1,000.
    let shard = |offset: usize| {
        let traces: Vec<Trace> = (0..700)
            .map(|r| route_trace(r + offset, (r + offset) as u128 + 1))
            .collect();
        analysed(&traces)
    };
    let (a, b) = (shard(0), shard(700));
    assert_eq!(a.summary.folded_endpoints, 0, "each shard is under the cap");
    let mut ab = a.clone();
    ab.merge(b.clone());
    let mut ba = b;
    ba.merge(a);
    for merged in [&ab, &ba] {
        let named = merged
            .endpoints
            .iter()
            .filter(|e| e.endpoint != OTHER_ENDPOINTS)
            .count();
        assert_eq!(named, MAX_ENDPOINTS, "the heaviest kept");
        assert_eq!(merged.summary.folded_endpoints, 400, "what was folded is counted");
        assert_eq!(
            merged.endpoints.iter().map(|e| e.requests).sum::<u64>(),
            1_400,
            "no request is lost: the folded ones are in {OTHER_ENDPOINTS}"
        );
        assert_eq!(merged.summary.requests, 1_400);
    }
    assert_eq!(findings(ab), findings(ba), "past the cap, still commutative");
}

#[test]
fn past_the_subject_cap_a_merge_keeps_the_heaviest_and_counts_what_it_drops() {
    // One route whose requests each run their own statement three times: 200 N+1 subjects per
    // shard, under the cap of 256 each, 400 together.
    let trace = |i: usize| {
        let fixture = format!(
            r#"{{"traces": [{{"spans": [
              {{"id": "root", "kind": "server", "name": "GET", "end_ms": {end}, "attrs": {{"http.route": "/orders", "http.request.method": "GET"}}}},
              {{"id": "q", "parent": "root", "kind": "client", "start_ms": 1, "end_ms": 4, "times": 6, "every_ms": 5, "attrs": {{"db.system": "postgresql", "db.statement": "SELECT * FROM t{i} WHERE id = 1"}}}}
            ]}}]}}"#,
            end = 40 + i % 13
        );
        fixture_trace(&fixture, i as u128 + 1)
    };
    let shard = |range: std::ops::Range<usize>| analysed(&range.map(trace).collect::<Vec<_>>());
    let (a, b) = (shard(0..200), shard(200..400));
    let subjects = |t: &TraceAggregates| {
        t.endpoints
            .iter()
            .flat_map(|e| &e.groups)
            .filter(|g| g.detector == chokepoint_evidence::DetectorId::NPlusOne)
            .count()
    };
    assert_eq!(
        (subjects(&a), subjects(&b)),
        (200, 200),
        "each shard keeps all of its own"
    );
    // (Each shard already dropped statements past the 32 an endpoint keeps: counted too.)
    let before = a.summary.dropped_subjects + b.summary.dropped_subjects;
    let mut merged = a;
    merged.merge(b);
    assert_eq!(subjects(&merged), chokepoint_evidence::MAX_SUBJECTS);
    assert!(
        merged.summary.dropped_subjects >= before + 400 - chokepoint_evidence::MAX_SUBJECTS as u64,
        "the N+1 subjects dropped are counted: {} after {before}",
        merged.summary.dropped_subjects
    );
    assert_eq!(merged.summary.requests, 400, "every request still counted");
    assert_eq!(merged.endpoints.iter().map(|e| e.requests).sum::<u64>(), 400);
}

#[test]
fn past_the_statement_cap_a_merge_keeps_each_endpoints_heaviest_statements_in_either_order() {
    // One route; request i runs its own statement once, for 1 + i ms: 20 statements per shard,
    // under the 32 an endpoint keeps, 40 together.
    let trace = |i: usize| {
        let fixture = format!(
            r#"{{"traces": [{{"spans": [
              {{"id": "root", "kind": "server", "name": "GET", "end_ms": 60, "attrs": {{"http.route": "/report", "http.request.method": "GET"}}}},
              {{"id": "q", "parent": "root", "kind": "client", "start_ms": 1, "end_ms": {end}, "attrs": {{"db.system": "postgresql", "db.statement": "SELECT total FROM s{i} WHERE id = 1"}}}}
            ]}}]}}"#,
            end = 2 + i
        );
        fixture_trace(&fixture, i as u128 + 1)
    };
    let shard = |range: std::ops::Range<usize>| analysed(&range.map(trace).collect::<Vec<_>>());
    let (a, b) = (shard(0..20), shard(20..40));
    let kept = |t: &TraceAggregates| {
        let endpoint = t.endpoints.iter().find(|e| e.requests > 0).expect("the route");
        let mut tables: Vec<String> = endpoint
            .statements
            .iter()
            .map(|s| format!("{:.0}", s.time_ms))
            .collect();
        tables.sort();
        tables
    };
    assert_eq!(
        (kept(&a).len(), kept(&b).len()),
        (20, 20),
        "each shard keeps its own"
    );
    let dropped_before = a.summary.dropped_subjects + b.summary.dropped_subjects;
    let mut ab = a.clone();
    ab.merge(b.clone());
    let mut ba = b;
    ba.merge(a);
    assert_eq!(kept(&ab).len(), chokepoint_evidence::MAX_STATEMENTS_PER_ENDPOINT);
    // The heaviest: requests 8 to 39, whose statements took 9 to 40 ms.
    let mut heaviest: Vec<String> = (8..40).map(|i| format!("{}", 1 + i)).collect();
    heaviest.sort();
    assert_eq!(
        kept(&ab),
        heaviest,
        "the lightest statements are the ones dropped"
    );
    assert_eq!(kept(&ab), kept(&ba), "either order keeps the same statements");
    assert_eq!(
        ab.summary.dropped_subjects,
        dropped_before + 8,
        "the 8 statements dropped are counted"
    );
    assert_eq!(ab.summary.requests, 40, "every request still counted");
}
