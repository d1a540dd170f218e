//! `chokepoint traces`: read trace files (and Jaeger), analyse, report.

use chokepoint_collect::database::Database;
use chokepoint_collect::traces::{Jaeger, TraceFiles};
use chokepoint_collect::{Source, Stop};

use crate::args::{PgConfig, TracesConfig};
use crate::output;

pub(crate) fn run(config: TracesConfig) -> anyhow::Result<u8> {
    let stop = crate::signals::watch()?;
    let mut sources: Vec<Box<dyn Source>> = Vec::new();
    if !config.paths.is_empty() {
        sources.push(Box::new(TraceFiles {
            paths: config.paths,
            max_record_bytes: config.max_record_bytes,
            stop: Some(stop.clone()),
            keep: false,
        }));
    }
    if let Some(query) = config.jaeger {
        sources.push(Box::new(Jaeger {
            query,
            max_record_bytes: config.max_record_bytes,
        }));
    }
    if let Some(pg) = config.pg {
        sources.push(beside(pg, stop));
    }
    let mut part = output::collect(sources, config.report.progress)?;
    part.evidence.traces.get_or_insert_with(Default::default);
    let (report, _) = crate::runs::report(
        "traces",
        part.evidence,
        part.inputs,
        part.notes,
        &config.report,
        &[],
    );
    Ok(output::finish(&report, &config.report))
}

/// The database beside evidence read from files (`traces --pg`, `diagnose` without a ramp),
/// read-only: with traces, its statistics and the plans of the statements they show; without,
/// a snapshot with its index checks. One that cannot be read is a note: the findings stand
/// without it.
pub(crate) fn beside(pg: PgConfig, stop: Stop) -> Box<dyn Source> {
    Box::new(Database {
        url: pg.url,
        show_literals: pg.show_literals,
        watch: None,
        stop,
        beside: true,
    })
}
