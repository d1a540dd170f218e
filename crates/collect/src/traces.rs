//! Trace sources: files and folders of recorded traces, and Jaeger's query API. Each reads
//! spans, assembles traces and analyses them as they complete (the detectors' streaming stage),
//! so a part holds aggregates, never the spans.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use chokepoint_detect::TraceAnalysis;
use chokepoint_evidence::{Evidence, Note, Severity, Trace};
use chokepoint_report::Input;
use chokepoint_traces::jaeger_query::JaegerQuery;
use chokepoint_traces::{
    Assembler, AssemblyStats, Limits, ReadOptions, ReadReport, SpanSink, expand_paths, read_path, read_source,
};

use crate::{Observer, Partial, Source, Stop};

/// The largest single trace record read whole, by default.
pub const MAX_RECORD_BYTES: usize = 64 << 20;
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
const SPANS_IN_FLIGHT: usize = 100_000;

/// Trace files and folders (`-` is standard input).
pub struct TraceFiles {
    /// Files and folders, read in this order.
    pub paths: Vec<PathBuf>,
    /// The largest single record read whole.
    pub max_record_bytes: usize,
    /// Once requested, reading ends where it is and what was read is analysed, with a warning
    /// saying where it stopped.
    pub stop: Option<Stop>,
    /// Whether the files read are kept in a saved run (`diagnose` keeps its evidence).
    pub keep: bool,
}

impl Source for TraceFiles {
    fn collect(self: Box<Self>, _before: &Evidence, observer: &dyn Observer) -> anyhow::Result<Partial> {
        let files = expand_paths(&self.paths).map_err(|p| anyhow::anyhow!("{p}"))?;
        let options = ReadOptions {
            max_record_bytes: self.max_record_bytes,
        };
        let stop = self.stop.as_ref().map(Stop::flag);
        let mut analysis = TraceAnalysis::default();
        // Two stages on two threads: decoding and assembly, then the detectors.
        let (traces_tx, traces_rx) = mpsc::sync_channel::<(Vec<Trace>, usize)>(CHUNKS_IN_FLIGHT);
        let in_flight = AtomicUsize::new(0);
        let (reads, stats) = std::thread::scope(|scope| {
            let (files, options, in_flight, stop) = (&files, &options, &in_flight, stop.as_deref());
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
                for (index, path) in files.iter().enumerate() {
                    let what = format!("reading {}", path.display());
                    observer.progress(&what, spans_seen, None, "spans");
                    let mut read = read_stoppable(path, options, stop, &mut |trace_id, span| {
                        spans_seen += 1;
                        if spans_seen.is_multiple_of(PROGRESS_EVERY) {
                            observer.progress(&what, spans_seen, None, "spans");
                        }
                        assembler.push(trace_id, span, &mut |trace| send(trace, &mut chunk));
                    });
                    let stopped = stop.is_some_and(|s| s.load(Ordering::Acquire));
                    if stopped {
                        said_where_it_stopped(&mut read, files.len() - index - 1);
                    }
                    reads.push(read);
                    if stopped {
                        break;
                    }
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
        observer.done();
        let (inputs, notes) = read_notes(&reads, &stats);
        let recordings = crate::files_kept(&self.paths, self.keep);
        Ok(Partial {
            evidence: Evidence {
                traces: Some(analysis.finish()),
                ..Evidence::default()
            },
            inputs,
            notes,
            recordings,
            scratch: Vec::new(),
        })
    }
}

/// Traces read from Jaeger's query API (api/v3) over a window.
pub struct Jaeger {
    /// What to read, from where.
    pub query: JaegerQuery,
    /// The largest single record read whole.
    pub max_record_bytes: usize,
}

impl Source for Jaeger {
    fn collect(self: Box<Self>, _before: &Evidence, observer: &dyn Observer) -> anyhow::Result<Partial> {
        let query = &self.query;
        let options = ReadOptions {
            max_record_bytes: self.max_record_bytes,
        };
        let mut analysis = TraceAnalysis::default();
        let mut assembler = Assembler::new(Limits::default());
        let report = chokepoint_traces::jaeger_query::read(
            query,
            &options,
            &mut |trace_id, span| assembler.push(trace_id, span, &mut |trace| analysis.add_trace(&trace)),
            &mut |done, known, traces| {
                observer.progress(
                    &format!("Jaeger: slices of the window read, {traces} traces"),
                    done as u64,
                    Some(known as u64),
                    "slices",
                );
            },
        )?;
        observer.done();
        let stats = assembler.finish(&mut |trace| analysis.add_trace(&trace));
        let (_, mut notes) = read_notes(&report.reads, &stats);
        let window = format!(
            "{} to {}",
            humantime::format_rfc3339_seconds(query.since),
            humantime::format_rfc3339_seconds(query.until)
        );
        if report.traces == 0 {
            notes.push(Note::new(
                Severity::Error,
                query.url.clone(),
                format!(
                    "Jaeger holds no trace of {:?}{} from {window}: widen --since, or check the service sends spans",
                    query.service,
                    query.operation.as_deref().map(|o| format!(" with operation {o:?}")).unwrap_or_default()
                ),
            ));
        }
        if report.limited {
            notes.push(Note::new(
                Severity::Info,
                query.url.clone(),
                format!(
                    "--limit {}: the first traces of the window were read, the rest left",
                    report.traces
                ),
            ));
        }
        if !report.cut.is_empty() {
            notes.push(Note::new(
                Severity::Warning,
                query.url.clone(),
                format!(
                    "{} slice(s) of a millisecond still held as many traces as Jaeger searches ({}): traces may be missing there (first at {})",
                    report.cut.len(),
                    query.search_depth,
                    humantime::format_rfc3339_seconds(report.cut[0])
                ),
            ));
        }
        if report.duplicates > 0 {
            notes.push(Note::new(
                Severity::Info,
                query.url.clone(),
                format!(
                    "{} trace(s) that two slices returned were read once",
                    report.duplicates
                ),
            ));
        }
        let input = Input {
            source: format!("{} (service {}, {window})", query.url, query.service),
            format: Some("Jaeger api/v3 (OTLP/JSON)".into()),
            spans: report.spans,
        };
        Ok(Partial {
            evidence: Evidence {
                traces: Some(analysis.finish()),
                ..Evidence::default()
            },
            inputs: vec![input],
            notes,
            ..Partial::default()
        })
    }
}

/// What a read that a signal interrupted says in its problem.
const STOPPED: &str = "stopped by a signal";

/// A reader that fails with [`STOPPED`] once `stop` is set.
struct Stoppable<'a, R> {
    inner: R,
    stop: &'a AtomicBool,
}

impl<R: Read> Read for Stoppable<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.stop.load(Ordering::Acquire) {
            return Err(std::io::Error::other(STOPPED));
        }
        self.inner.read(buf)
    }
}

/// [`read_path`], ended early when `stop` is set.
fn read_stoppable(
    path: &Path,
    options: &ReadOptions,
    stop: Option<&AtomicBool>,
    sink: &mut SpanSink<'_>,
) -> ReadReport {
    let Some(stop) = stop else {
        return read_path(path, options, sink);
    };
    let name = path.display().to_string();
    if name == "-" {
        let inner = std::io::stdin().lock();
        return read_source(&name, Stoppable { inner, stop }, options, sink);
    }
    match std::fs::File::open(path) {
        Ok(inner) => read_source(&name, Stoppable { inner, stop }, options, sink),
        Err(_) => read_path(path, options, sink),
    }
}

/// A read a signal ended: not a broken input but a warning that says where reading stopped and
/// what was left unread.
fn said_where_it_stopped(read: &mut ReadReport, files_left: usize) {
    let position = read
        .problems
        .iter()
        .find(|p| p.message.contains(STOPPED))
        .and_then(|p| p.position.clone());
    read.problems.retain(|p| !p.message.contains(STOPPED));
    let left = match files_left {
        0 => String::new(),
        n => format!(", nor the {n} file(s) after it"),
    };
    let mut warning = chokepoint_traces::Problem {
        source: read.source.clone(),
        position,
        message: format!(
            "{STOPPED} after {} spans: the rest of it was not read{left}; what was read is analysed",
            read.spans
        ),
    };
    if warning.position.is_none() {
        warning.message = format!("{STOPPED} at the end of it{left}; what was read is analysed");
    }
    read.warnings.push(warning);
}

/// The inputs read, and what reading them has to say: problems with their positions, sources
/// that held no spans, traces cut to bound memory.
pub fn read_notes(reads: &[ReadReport], stats: &AssemblyStats) -> (Vec<Input>, Vec<Note>) {
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
pub fn assembly_notes(stats: &AssemblyStats) -> Vec<Note> {
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
