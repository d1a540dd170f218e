//! `chokepoint diagnose`: one run over every source. With a URL, the live ramp with its
//! receiver, database watch and profile, and evidence recorded before joined to it; without one,
//! the recorded evidence (trace files, Jaeger, a profile, a database) read into the same one
//! verdict, kept as a run like any other.

use chokepoint_collect::profile::ProfileFiles;
use chokepoint_collect::traces::{Jaeger, MAX_RECORD_BYTES, TraceFiles};
use chokepoint_collect::{Source, Stop};
use chokepoint_evidence::{Note, Severity};

use crate::args::{DiagnoseConfig, Recorded, RecordedRun};
use crate::output;

pub(crate) fn run(config: DiagnoseConfig) -> anyhow::Result<u8> {
    let RecordedRun {
        recorded,
        pg,
        report,
        baseline,
    } = match config {
        DiagnoseConfig::Live(config) => return crate::load::run(*config),
        DiagnoseConfig::Recorded(run) => *run,
    };
    let stop = crate::signals::watch()?;
    let mut sources = recorded_sources(recorded, &stop);
    if let Some(pg) = pg {
        sources.push(crate::traces::beside(pg, stop));
    }
    let mut part = output::collect(sources, report.progress)?;
    part.notes.push(Note::new(
        Severity::Info,
        "diagnose",
        "no load ramp (no URL given): the findings are what the recorded evidence shows; capacity is neither measured \
         nor predicted",
    ));
    let (report_out, saved) = crate::runs::report(
        "diagnose",
        part.evidence,
        part.inputs,
        part.notes,
        &report,
        &part.recordings,
    );
    let code = output::finish(&report_out, &report);
    if let (Some(baseline), Some(run)) = (&baseline, saved) {
        crate::runs::compare_with_baseline(baseline, &run, report.format)?;
    }
    Ok(code)
}

/// The sources of the evidence recorded before: trace files, Jaeger, profiles — each kept in
/// the run folder when it is a file.
pub(crate) fn recorded_sources(recorded: Recorded, stop: &Stop) -> Vec<Box<dyn Source>> {
    let mut sources: Vec<Box<dyn Source>> = Vec::new();
    if !recorded.trace_files.is_empty() {
        sources.push(Box::new(TraceFiles {
            paths: recorded.trace_files,
            max_record_bytes: MAX_RECORD_BYTES,
            stop: Some(stop.clone()),
            keep: true,
        }));
    }
    if let Some(query) = recorded.jaeger {
        sources.push(Box::new(Jaeger {
            query,
            max_record_bytes: MAX_RECORD_BYTES,
        }));
    }
    if !recorded.profile_files.is_empty() {
        sources.push(Box::new(ProfileFiles {
            paths: recorded.profile_files,
            rate_hz: recorded.profile_rate_hz,
            sources: recorded.sources,
            keep: true,
        }));
    }
    sources
}
