//! Any bytes as the evidence of a saved run (`evidence.json`, which `chokepoint report` and
//! `chokepoint compare` read back): the ramp's steps, the database's statistics and plans, the
//! profile, the traces' aggregates — each read, analysed by every detector, decided into a
//! verdict with its prediction, rendered three ways, and compared with itself and with nothing.
//! Never a panic; the JSON report reads back as the same report.
#![no_main]

#[path = "report.rs"]
mod report;

use chokepoint_detect::{analyse, compare};
use chokepoint_evidence::Evidence;
use chokepoint_report::{ComparisonReport, render_comparison};
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
    report::analyse_and_render("report", evidence);
});
