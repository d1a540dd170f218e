//! `chokepoint traces`: read trace files, assemble traces, analyse, report.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use chokepoint_detect::TraceAnalysis;
use chokepoint_evidence::{Evidence, Note, Severity, Trace, TraceAggregates};
use chokepoint_report::Input;
use chokepoint_traces::{Assembler, AssemblyStats, Limits, ReadOptions, ReadReport, expand_paths, read_path};
use indicatif::{ProgressBar, ProgressStyle};

use crate::args::TracesConfig;
use crate::output;

/// Spans between progress updates.
const PROGRESS_EVERY: u64 = 1 << 16;
/// Traces handed from the reading thread to the analysis at a time — fewer when they hold
/// more than `SPANS_PER_CHUNK` spans (a wide trace's parts).
const TRACES_PER_CHUNK: usize = 256;
const SPANS_PER_CHUNK: usize = 20_000;
/// Chunks waiting for the analysis before the reader waits (bounds memory).
const CHUNKS_IN_FLIGHT: usize = 16;
/// Spans handed on and not yet analysed before the reader waits: with a wide trace's parts of
/// up to 200,000 spans each, a count of chunks alone would not bound memory.
const SPANS_IN_FLIGHT: usize = 200_000;

pub(crate) fn run(config: TracesConfig) -> anyhow::Result<u8> {
    let (traces, mut inputs, mut notes) =
        read_files(&config.paths, config.max_record_bytes, config.report.progress)?;
    let mut evidence = Evidence {
        traces: Some(traces),
        ..Evidence::default()
    };
    if let Some(pg) = &config.pg {
        crate::db::add_database(&mut evidence, pg, &mut inputs, &mut notes);
    }
    let (report, _) = crate::runs::report("traces", evidence, inputs, notes, &config.report, &[]);
    Ok(output::finish(&report, &config.report))
}

/// Reads trace files and folders, assembles their traces and analyses them: the aggregates,
/// the inputs read and what reading them had to say.
pub(crate) fn read_files(
    paths: &[std::path::PathBuf],
    max_record_bytes: usize,
    show_progress: bool,
) -> anyhow::Result<(TraceAggregates, Vec<Input>, Vec<Note>)> {
    let files = expand_paths(paths).map_err(|p| anyhow::anyhow!("{p}"))?;
    let options = ReadOptions { max_record_bytes };
    let progress = progress_bar(show_progress);
    let mut analysis = TraceAnalysis::default();
    // Two stages on two threads: decoding and assembly, then the detectors.
    let (traces_tx, traces_rx) = mpsc::sync_channel::<(Vec<Trace>, usize)>(CHUNKS_IN_FLIGHT);
    let in_flight = AtomicUsize::new(0);
    let (reads, stats) = std::thread::scope(|scope| {
        let (files, options, progress, in_flight) = (&files, &options, &progress, &in_flight);
        let reader = scope.spawn(move || {
            let mut assembler = Assembler::new(Limits::default());
            let mut chunk = Vec::with_capacity(TRACES_PER_CHUNK);
            let mut chunk_spans = 0;
            let mut send = |trace: Trace, chunk: &mut Vec<Trace>| {
                chunk_spans += trace.spans.len();
                chunk.push(trace);
                if chunk.len() >= TRACES_PER_CHUNK || chunk_spans >= SPANS_PER_CHUNK {
                    while in_flight.load(Ordering::Acquire) >= SPANS_IN_FLIGHT {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    in_flight.fetch_add(chunk_spans, Ordering::AcqRel);
                    // The receiver only goes away if the analysis panicked; nothing to do then.
                    let _ = traces_tx.send((std::mem::take(chunk), std::mem::take(&mut chunk_spans)));
                }
            };
            let mut reads = Vec::new();
            let mut spans_seen = 0u64;
            for path in files {
                progress.set_message(format!("reading {}", path.display()));
                let read = read_path(path, options, &mut |trace_id, span| {
                    spans_seen += 1;
                    if spans_seen % PROGRESS_EVERY == 0 {
                        progress.set_position(spans_seen);
                    }
                    assembler.push(trace_id, span, &mut |trace| send(trace, &mut chunk));
                });
                reads.push(read);
            }
            let stats = assembler.finish(&mut |trace| send(trace, &mut chunk));
            let _ = traces_tx.send((chunk, 0));
            (reads, stats)
        });
        for (chunk, spans) in &traces_rx {
            for trace in &chunk {
                analysis.add_trace(trace);
            }
            drop(chunk);
            in_flight.fetch_sub(spans, Ordering::AcqRel);
        }
        reader.join()
    })
    .map_err(|_| anyhow::anyhow!("the reading thread failed"))?;
    progress.finish_and_clear();
    let (inputs, notes) = read_notes(&reads, &stats);
    Ok((analysis.finish(), inputs, notes))
}

fn progress_bar(enabled: bool) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg}: {human_pos} spans ({per_sec})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// The inputs read, and what reading them has to say: problems with their positions, sources
/// that held no spans, traces cut to bound memory.
pub(crate) fn read_notes(reads: &[ReadReport], stats: &AssemblyStats) -> (Vec<Input>, Vec<Note>) {
    let mut inputs = Vec::new();
    let mut notes = Vec::new();
    for read in reads {
        inputs.push(Input {
            source: read.source.clone(),
            format: read.format.map(|f| f.to_string()),
            spans: read.spans,
        });
        notes.extend(read.problems.iter().map(|p| p.to_note()));
        notes.extend(read.warnings.iter().map(|p| p.to_note_of(Severity::Warning)));
        if read.spans == 0 && read.problems.is_empty() {
            let format = read
                .format
                .map_or("no recognisable format".to_owned(), |f| format!("read as {f}"));
            let hint = read
                .empty_hint
                .as_deref()
                .map_or(String::new(), |h| format!(": {h}"));
            notes.push(Note::new(
                Severity::Error,
                read.source.clone(),
                format!("held no spans ({format}){hint}"),
            ));
        }
    }
    notes.extend(assembly_notes(stats));
    (inputs, notes)
}

/// Notes about trace completeness.
pub(crate) fn assembly_notes(stats: &AssemblyStats) -> Vec<Note> {
    let mut notes = Vec::new();
    if stats.continued_parts > 0 {
        notes.push(Note::new(
            Severity::Warning,
            "traces",
            format!(
                "a trace with more spans than are held at once ({}) was analysed in parts, to bound memory: {} later \
                 part(s), {} spans, each analysed without the parents that went with an earlier part; its findings \
                 may be split across the parts.",
                chokepoint_traces::Limits::default().max_pending_spans,
                stats.continued_parts,
                stats.continued_spans
            ),
        ));
    }
    if stats.evicted_incomplete > 0 {
        notes.push(Note::new(
            Severity::Warning,
            "traces",
            format!(
                "{} trace(s) were analysed before their root span arrived, to bound memory; their findings may be partial.",
                stats.evicted_incomplete
            ),
        ));
    }
    notes
}
