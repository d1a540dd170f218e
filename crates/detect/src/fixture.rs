//! Evidence from a fixture file ([`chokepoint_evidence::fixture`]): its trace templates run
//! through the trace detectors' streaming stage, its load ramp and database snapshot as they are, its profile from collapsed stacks.
//! What the detector tests, the report's snapshot tests and the examples read.

use chokepoint_evidence::Evidence;
use chokepoint_evidence::fixture::Fixture;

use crate::TraceAnalysis;

/// The evidence a fixture describes; `Err` says what is wrong with it.
pub fn evidence_from_fixture(json: &str) -> Result<Evidence, String> {
    let fixture: Fixture = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let traces = match &fixture.traces {
        Some(_) => {
            let mut analysis = TraceAnalysis::default();
            for trace in fixture.traces().map_err(|e| e.to_string())? {
                analysis.add_trace(&trace);
            }
            Some(analysis.finish())
        }
        None => None,
    };
    Ok(Evidence {
        traces,
        load: fixture.load,
        database: fixture.database,
        profile: fixture.profile.as_ref().map(|p| p.profile()),
        source: fixture.source,
    })
}
