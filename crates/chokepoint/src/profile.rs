//! `chokepoint profile`: read profiles (or record one with py-spy), find the code that burns the
//! time, report.

use std::path::Path;

use anyhow::Context as _;
use chokepoint_collect::Source;
use chokepoint_collect::profile::{ProfileFiles, Recording};

use crate::args::ProfileConfig;
use crate::output;

pub(crate) fn run(config: ProfileConfig) -> anyhow::Result<u8> {
    let source: Box<dyn Source> = match config.record {
        Some(record) => Box::new(Recording {
            pid: record.pid,
            duration: record.duration,
            out: record.out,
            py_spy: record.py_spy,
            rate_hz: config.rate_hz,
            sources: config.sources,
            stop: crate::signals::watch()?,
        }),
        None => Box::new(ProfileFiles {
            paths: config.paths,
            rate_hz: config.rate_hz,
            sources: config.sources,
            keep: false,
        }),
    };
    let part = output::collect(vec![source], config.report.progress)?;
    let (report, _) = crate::runs::report(
        "profile",
        part.evidence,
        part.inputs,
        part.notes,
        &config.report,
        &part.recordings,
    );
    if let (Some(path), Some(flame)) = (&config.flamegraph, &report.series.flame) {
        write_flamegraph(path, flame)?;
    }
    Ok(output::finish(&report, &config.report))
}

pub(crate) fn write_flamegraph(path: &Path, flame: &chokepoint_report::FlameSeries) -> anyhow::Result<()> {
    let svg = chokepoint_report::render_flamegraph(flame).context("cannot draw the flame graph")?;
    std::fs::write(path, svg).with_context(|| format!("cannot write {}", path.display()))
}
