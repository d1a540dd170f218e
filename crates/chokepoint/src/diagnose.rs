//! `chokepoint diagnose`: one run over every source. With a URL, the live ramp of load.rs with
//! its receiver, database watch and profile, and evidence recorded before joined to it; without
//! one, the recorded evidence (trace files, a profile, a database) read into the same one
//! verdict, kept as a run like any other.

use std::path::PathBuf;

use chokepoint_evidence::{Evidence, Note, Severity};
use chokepoint_report::Input;

use crate::args::{DiagnoseConfig, Recorded, RecordedRun};
use crate::output;

/// The largest single trace record read whole, as `chokepoint traces` reads by default.
const MAX_RECORD_BYTES: usize = 64 << 20;

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
    let mut evidence = Evidence::default();
    let (mut inputs, mut notes) = (Vec::new(), Vec::new());
    let kept = join(&recorded, &mut evidence, &mut inputs, &mut notes, report.progress)?;
    if let Some(pg) = &pg {
        crate::db::add_database(&mut evidence, pg, &mut inputs, &mut notes);
    }
    notes.push(Note::new(
        Severity::Info,
        "diagnose",
        "no load ramp (no URL given): the findings are what the recorded evidence shows; capacity is neither measured \
         nor predicted",
    ));
    let (report_out, saved) = crate::runs::report("diagnose", evidence, inputs, notes, &report, &kept);
    let code = output::finish(&report_out, &report);
    if let (Some(baseline), Some(run)) = (&baseline, saved) {
        crate::runs::compare_with_baseline(baseline, &run, report.format)?;
    }
    Ok(code)
}

/// Reads the evidence recorded before into `evidence` (its traces and profile), with what
/// reading it had to say; returns the files to keep in the run folder.
pub(crate) fn join(
    recorded: &Recorded,
    evidence: &mut Evidence,
    inputs: &mut Vec<Input>,
    notes: &mut Vec<Note>,
    progress: bool,
) -> anyhow::Result<Vec<PathBuf>> {
    let mut kept = Vec::new();
    if !recorded.trace_files.is_empty() {
        let (traces, read, said) =
            crate::traces::read_files(&recorded.trace_files, MAX_RECORD_BYTES, progress, None)?;
        evidence.traces = Some(traces);
        inputs.extend(read);
        notes.extend(said);
        kept.extend(files_in(&recorded.trace_files));
    }
    if let Some(query) = &recorded.jaeger {
        let (traces, input, said) = crate::traces::read_jaeger(query, MAX_RECORD_BYTES, progress)?;
        match &mut evidence.traces {
            Some(ours) => ours.merge(traces),
            None => evidence.traces = Some(traces),
        }
        inputs.push(input);
        notes.extend(said);
    }
    if !recorded.profile_files.is_empty() {
        let (profile, read, said) = crate::profile::read_profiles(
            &recorded.profile_files,
            recorded.profile_rate_hz,
            &recorded.sources,
        );
        evidence.profile = profile;
        inputs.extend(read);
        notes.extend(said);
        kept.extend(files_in(&recorded.profile_files));
    }
    Ok(kept)
}

/// The files among `paths` (folders are read, not copied into the run).
fn files_in(paths: &[PathBuf]) -> impl Iterator<Item = PathBuf> + '_ {
    paths.iter().filter(|p| p.is_file()).cloned()
}
