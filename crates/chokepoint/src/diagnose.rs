//! `chokepoint diagnose`: one run over every source. With a URL, the live ramp with its
//! receiver, database watch and profile, and evidence recorded before joined to it; without one,
//! the recorded evidence (trace files, Jaeger, a profile, a database) read into the same one
//! verdict, kept as a run like any other.

use chokepoint_evidence::{Note, Severity};

use crate::args::{DiagnoseConfig, RecordedRun};
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
    let mut sources = recorded.sources(&stop);
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
