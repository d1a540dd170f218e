//! Any bytes as the evidence of a saved run (`evidence.json`, which `chokepoint report` and
//! `chokepoint compare` read back): the ramp's steps, the database's statistics and plans, the
//! profile, the traces' aggregates — each read, analysed by every detector, decided into a
//! verdict with its prediction, rendered three ways, and compared with itself and with nothing.
//! Never a panic; the JSON report reads back as the same report.
#![no_main]

use chokepoint_detect::{analyse, compare};
use chokepoint_evidence::Evidence;
use chokepoint_report::{
    ComparisonReport, Report, render_comparison, render_json, render_markdown, render_text,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(evidence) = serde_json::from_slice::<Evidence>(data) else {
        return;
    };
    let outcome = analyse(&evidence);
    let empty = Evidence::default();
    let nothing = analyse(&empty);
    for (a, b) in [
        ((&evidence, &outcome), (&evidence, &outcome)),
        ((&empty, &nothing), (&evidence, &outcome)),
        ((&evidence, &outcome), (&empty, &nothing)),
    ] {
        let comparison = ComparisonReport::new("a", "b", compare(a, b));
        let _ = render_comparison(&comparison, false);
        let _ = render_comparison(&comparison, true);
        serde_json::to_string(&comparison).expect("a comparison writes as JSON");
    }
    let report = Report::new("report", evidence, outcome, Vec::new(), Vec::new());
    let _ = render_text(&report, true);
    let _ = render_markdown(&report);
    let json = render_json(&report);
    let back: Report = serde_json::from_str(&json).unwrap_or_else(|e| {
        let context: Vec<&str> = json.lines().skip(e.line().saturating_sub(8)).take(10).collect();
        panic!("the JSON report does not read back: {e}\n{}", context.join("\n"))
    });
    assert_eq!(back, report);
});
