//! Reading trace files: gzip and format sniffing, record framing, and problems with positions.
//!
//! A file is read record by record (a JSON line, one JSON document, or one length-prefixed
//! protobuf message), so memory is bounded by the largest record, not the file. A record that
//! cannot be read becomes a [`Problem`] naming the file and the position; the records around it
//! are still read, so what was readable still reaches the analysis.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use chokepoint_evidence::{Note, Position, Severity, Span, TraceId};
use flate2::read::MultiGzDecoder;
use serde::de::IgnoredAny;

use crate::{SpanSink, jaeger, otlp_json, otlp_proto, zipkin};

/// The default largest record (JSON line, JSON document or protobuf message) read whole.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 64 << 20;

/// How many bytes of the first record are looked at to tell the JSON formats apart.
const SNIFF_BYTES: usize = 64 << 10;

/// What to accept when reading.
#[derive(Clone, Debug)]
pub struct ReadOptions {
    /// The largest record read whole; a longer one is reported, not read.
    pub max_record_bytes: usize,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
        }
    }
}

/// A trace file format chokepoint reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// OTLP/JSON: one `ExportTraceServiceRequest` per line, or one document.
    OtlpJson,
    /// OTLP/protobuf: length-prefixed messages, or one bare message.
    OtlpProtobuf,
    /// Jaeger JSON (query API or UI export).
    Jaeger,
    /// Zipkin v2 JSON.
    Zipkin,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::OtlpJson => "OTLP/JSON",
            Format::OtlpProtobuf => "OTLP/protobuf",
            Format::Jaeger => "Jaeger JSON",
            Format::Zipkin => "Zipkin v2 JSON",
        })
    }
}

/// Something in a source that could not be read, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The file name, or `-` for standard input.
    pub source: String,
    /// Where in the source; `None` for the source as a whole.
    pub position: Option<Position>,
    /// What is wrong, in words.
    pub message: String,
}

impl Problem {
    /// The problem as a note of the report: input that could not be read is an error.
    pub fn to_note(&self) -> Note {
        self.to_note_of(Severity::Error)
    }

    /// The problem as a note of the given severity (a warning: read, but not as the format asks).
    pub fn to_note_of(&self, severity: Severity) -> Note {
        Note {
            severity,
            source: self.source.clone(),
            position: self.position.clone(),
            message: self.message.clone(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            None => write!(f, "{}: {}", self.source, self.message),
            Some(ref position) => write!(f, "{}: {position}: {}", self.source, self.message),
        }
    }
}

/// What reading one source yielded.
#[derive(Clone, Debug, Default)]
pub struct ReadReport {
    /// The file name, or `-` for standard input.
    pub source: String,
    /// The format recognised, if any.
    pub format: Option<Format>,
    /// Whether the source was gzip-compressed.
    pub gzip: bool,
    /// Spans handed on for analysis.
    pub spans: u64,
    /// Records (lines, documents, messages) read.
    pub records: u64,
    /// What could not be read, with positions.
    pub problems: Vec<Problem>,
    /// A likely reason when the source held no spans (e.g. snake_case keys).
    pub empty_hint: Option<String>,
    /// What was read, but not as the format asks (ids that are not hex), with positions.
    pub warnings: Vec<Problem>,
}

/// Lists the files to read for the given paths: files as given, directories recursively in
/// name order (hidden entries skipped), `-` as standard input.
pub fn expand_paths(paths: &[PathBuf]) -> Result<Vec<PathBuf>, Problem> {
    let mut files = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" || !path.is_dir() {
            files.push(path.clone());
            continue;
        }
        collect_dir(path, &mut files)?;
    }
    Ok(files)
}

fn collect_dir(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), Problem> {
    let problem = |e: io::Error| Problem {
        source: dir.display().to_string(),
        position: None,
        message: format!("cannot list directory: {e}"),
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(problem)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            collect_dir(&entry, files)?;
        } else {
            files.push(entry);
        }
    }
    Ok(())
}

/// Reads one file (or `-`, standard input) and hands every span to `sink`.
pub fn read_path(path: &Path, options: &ReadOptions, sink: &mut SpanSink<'_>) -> ReadReport {
    let name = path.display().to_string();
    if name == "-" {
        return read_source(&name, io::stdin().lock(), options, sink);
    }
    match File::open(path) {
        Ok(file) => read_source(&name, file, options, sink),
        Err(e) => ReadReport {
            problems: vec![Problem {
                source: name.clone(),
                position: None,
                message: format!("cannot open: {e}"),
            }],
            source: name,
            ..ReadReport::default()
        },
    }
}

/// Reads trace data in any supported format from `input` and hands every span to `sink`.
pub fn read_source(
    name: &str,
    input: impl Read,
    options: &ReadOptions,
    sink: &mut SpanSink<'_>,
) -> ReadReport {
    let mut report = ReadReport {
        source: name.to_owned(),
        ..ReadReport::default()
    };
    let mut input = BufReader::with_capacity(1 << 20, input);
    let gzip = match input.fill_buf() {
        Ok(head) => head.starts_with(&[0x1f, 0x8b]),
        Err(e) => {
            report.problem(Position::Byte { byte: 0 }, format!("cannot read: {e}"));
            return report;
        }
    };
    report.gzip = gzip;
    // Spans that end before they start are read with zero duration and reported once, with the
    // first of them: a producer with a skewed clock writes them by the million.
    let mut skewed: Option<(Position, String, u64)> = None;
    // Spans whose ids were not hex, read with derived ids: said once, with the first of them.
    let mut derived: Option<(Position, String, u64)> = None;
    let mut checked_sink = |trace_id: TraceId,
                            mut span: Span,
                            report: &mut ReadReport,
                            position: &Position| {
        if let Some(texts) = crate::ids::take_mark(&mut span) {
            match &mut derived {
                Some((_, _, count)) => *count += 1,
                None => derived = Some((position.clone(), format!("span {:?} (ids {texts})", span.name), 1)),
            }
        }
        if span.end_unix_nano < span.start_unix_nano {
            match &mut skewed {
                Some((_, _, count)) => *count += 1,
                None => {
                    skewed = Some((
                        position.clone(),
                        format!("span {} ({:?}) of trace {trace_id}", span.span_id, span.name),
                        1,
                    ))
                }
            }
        }
        report.spans += 1;
        sink(trace_id, span);
    };
    let result = if gzip {
        let mut decoded = BufReader::with_capacity(1 << 20, MultiGzDecoder::new(input));
        read_decoded(&mut decoded, options, &mut report, &mut checked_sink)
    } else {
        read_decoded(&mut input, options, &mut report, &mut checked_sink)
    };
    if let Err(problem) = result {
        report.problems.push(problem);
    }
    if let Some((position, first, count)) = derived {
        report.warnings.push(Problem {
            source: report.source.clone(),
            position: Some(position),
            message: format!(
                "{count} span(s) have ids that are not hex, as the format asks — the first: {first}; read with ids \
                 derived from their text (the same text, the same id, so they still join)"
            ),
        });
    }
    if let Some((position, first, count)) = skewed {
        let more = match count {
            1 => String::new(),
            n => format!(" ({} more spans here and after it do the same)", n - 1),
        };
        report.problem(
            position,
            format!("{first} ends before it starts; read with zero duration{more}"),
        );
    }
    report
}

type CheckedSink<'a> = dyn FnMut(TraceId, Span, &mut ReadReport, &Position) + 'a;

impl ReadReport {
    fn problem(&mut self, position: Position, message: String) {
        self.problems.push(Problem {
            source: self.source.clone(),
            position: Some(position),
            message,
        });
    }
}

/// Counts bytes consumed so problems can name a byte offset.
struct Counted<R> {
    inner: R,
    offset: u64,
}

impl<R: BufRead> Counted<R> {
    /// The first byte that is not whitespace or a UTF-8 byte order mark, if any. Consumes
    /// nothing unless a whole buffer is blank (a protobuf message may begin with a byte that
    /// looks like a newline).
    fn peek_non_space(&mut self) -> io::Result<Option<u8>> {
        loop {
            let buf = self.inner.fill_buf()?;
            if buf.is_empty() {
                return Ok(None);
            }
            let body = buf.strip_prefix(&[0xef, 0xbb, 0xbf][..]).unwrap_or(buf);
            if let Some(&byte) = body.iter().find(|b| !b.is_ascii_whitespace()) {
                return Ok(Some(byte));
            }
            let blank = buf.len();
            self.inner.consume(blank);
            self.offset += blank as u64;
        }
    }

    /// Reads up to and including the next newline into `line`, at most `max` bytes.
    /// Returns `Ok(false)` at the end of input; `Err(Overlong)` when the line is longer than `max`
    /// (the rest of that line is skipped).
    fn read_line(&mut self, line: &mut Vec<u8>, max: usize) -> Result<bool, LineError> {
        line.clear();
        let mut overlong = false;
        loop {
            let buf = self.inner.fill_buf().map_err(LineError::Io)?;
            if buf.is_empty() {
                break;
            }
            let (take, done) = match memchr::memchr(b'\n', buf) {
                Some(i) => (i + 1, true),
                None => (buf.len(), false),
            };
            if !overlong {
                if line.len() + take > max {
                    overlong = true;
                    line.clear();
                } else {
                    line.extend_from_slice(&buf[..take]);
                }
            }
            self.inner.consume(take);
            self.offset += take as u64;
            if done {
                break;
            }
        }
        if overlong {
            return Err(LineError::Overlong);
        }
        Ok(!line.is_empty())
    }

    fn read_exact_or_eof(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.inner.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.offset += filled as u64;
        Ok(filled)
    }
}

enum LineError {
    Io(io::Error),
    Overlong,
}

fn read_decoded(
    input: &mut impl BufRead,
    options: &ReadOptions,
    report: &mut ReadReport,
    sink: &mut CheckedSink<'_>,
) -> Result<(), Problem> {
    let mut input = Counted {
        inner: input,
        offset: 0,
    };
    let first = input
        .peek_non_space()
        .map_err(|e| io_problem(report, input.offset, e))?;
    match first {
        None => Ok(()),
        Some(b'{' | b'[') => read_json(&mut input, options, report, sink),
        Some(_) => read_protobuf(&mut input, options, report, sink),
    }
}

fn io_problem(report: &ReadReport, offset: u64, e: io::Error) -> Problem {
    let message = if e.kind() == io::ErrorKind::InvalidInput || e.kind() == io::ErrorKind::InvalidData {
        format!("the gzip stream is corrupt: {e}")
    } else {
        format!("read failed: {e}")
    };
    Problem {
        source: report.source.clone(),
        position: Some(Position::Byte { byte: offset }),
        message,
    }
}

/// Which JSON format a record is, from its first bytes.
fn sniff_json(record: &[u8]) -> Format {
    let head = &record[..record.len().min(SNIFF_BYTES)];
    let has = |needle: &[u8]| head.windows(needle.len()).any(|w| w == needle);
    let first = head.iter().find(|b| !b.is_ascii_whitespace()).copied();
    if has(b"\"resourceSpans\"") || has(b"\"resource_spans\"") {
        Format::OtlpJson
    } else if has(b"\"traceID\"") {
        Format::Jaeger
    } else if first == Some(b'[') {
        Format::Zipkin
    } else {
        Format::OtlpJson
    }
}

fn decode_json(format: Format, record: &[u8], sink: &mut SpanSink<'_>) -> Result<usize, JsonError> {
    // The record's UTF-8 is checked once, in bulk; serde_json then reads it as text and need not
    // check every string again (a sixth of the decoding time on OTLP/JSON Lines). Invalid UTF-8
    // is read as bytes, for serde_json to say where it is.
    match std::str::from_utf8(record) {
        Ok(text) => match format {
            Format::Jaeger => emit_json(
                serde_json::from_str::<jaeger::Document>(text),
                sink,
                jaeger::Document::emit,
            ),
            Format::Zipkin => emit_json(
                serde_json::from_str::<zipkin::Document>(text),
                sink,
                zipkin::Document::emit,
            ),
            Format::OtlpJson | Format::OtlpProtobuf => emit_json(
                serde_json::from_str::<otlp_json::Request>(text),
                sink,
                otlp_json::Request::emit,
            ),
        },
        Err(_) => match format {
            Format::Jaeger => emit_json(
                serde_json::from_slice::<jaeger::Document>(record),
                sink,
                jaeger::Document::emit,
            ),
            Format::Zipkin => emit_json(
                serde_json::from_slice::<zipkin::Document>(record),
                sink,
                zipkin::Document::emit,
            ),
            Format::OtlpJson | Format::OtlpProtobuf => emit_json(
                serde_json::from_slice::<otlp_json::Request>(record),
                sink,
                otlp_json::Request::emit,
            ),
        },
    }
}

/// A decoded document's spans handed to `sink`, or what was wrong.
fn emit_json<T>(
    decoded: serde_json::Result<T>,
    sink: &mut SpanSink<'_>,
    emit: fn(T, &mut SpanSink<'_>) -> Result<usize, String>,
) -> Result<usize, JsonError> {
    emit(decoded.map_err(JsonError::Syntax)?, sink).map_err(JsonError::Content)
}

enum JsonError {
    Syntax(serde_json::Error),
    Content(String),
}

/// JSON lines decoded together — in parallel, on the cores the analysis leaves free — and then
/// handed on in their order: at most this many…
const PARALLEL_LINES: usize = 8;
/// …and this many bytes of them, so memory stays bounded by a few records.
const PARALLEL_BYTES: usize = 16 << 20;
/// Batches being decoded while the reader goes on.
const IN_FLIGHT: usize = 2;

/// One line read, waiting to be decoded with its batch.
struct PendingLine {
    line_no: u64,
    bytes: Vec<u8>,
}

/// A line decoded: its spans, and how many there were or what was wrong.
struct DecodedLine {
    line: PendingLine,
    spans: Vec<(TraceId, Span)>,
    result: Result<usize, JsonError>,
}

/// Batches of lines on their way from the reader to the sink. Each batch is decoded on the
/// thread pool while this thread reads the next ones and hands on those decoded before it, so
/// reading, decoding and analysis overlap; at most [`IN_FLIGHT`] batches are out at once.
struct LinePipeline {
    format: Format,
    batch: Vec<PendingLine>,
    batch_bytes: usize,
    in_flight: std::collections::VecDeque<std::sync::mpsc::Receiver<Vec<DecodedLine>>>,
    /// Emptied line buffers, for the lines still to read.
    spare: Vec<Vec<u8>>,
}

impl LinePipeline {
    fn new(format: Format) -> Self {
        LinePipeline {
            format,
            batch: Vec::with_capacity(PARALLEL_LINES),
            batch_bytes: 0,
            in_flight: Default::default(),
            spare: Vec::new(),
        }
    }

    /// An empty buffer to read the next line into.
    fn buffer(&mut self) -> Vec<u8> {
        self.spare.pop().unwrap_or_default()
    }

    /// Queues a line; starts decoding its batch when the batch is full.
    fn push(&mut self, line_no: u64, bytes: Vec<u8>, report: &mut ReadReport, sink: &mut CheckedSink<'_>) {
        self.batch_bytes += bytes.len();
        self.batch.push(PendingLine { line_no, bytes });
        if self.batch.len() >= PARALLEL_LINES || self.batch_bytes >= PARALLEL_BYTES {
            self.send_batch(report, sink);
        }
    }

    /// Starts decoding the batch on the pool; hands on the oldest batch once too many are out.
    fn send_batch(&mut self, report: &mut ReadReport, sink: &mut CheckedSink<'_>) {
        if self.batch.is_empty() {
            return;
        }
        let lines = std::mem::replace(&mut self.batch, Vec::with_capacity(PARALLEL_LINES));
        self.batch_bytes = 0;
        let format = self.format;
        let (done, decoded) = std::sync::mpsc::sync_channel(1);
        rayon::spawn(move || {
            // The receiver is gone only when reading stopped early; nothing waits for this.
            let _ = done.send(decode_lines(format, lines));
        });
        self.in_flight.push_back(decoded);
        while self.in_flight.len() > IN_FLIGHT {
            self.hand_on_oldest(report, sink);
        }
    }

    /// Decodes and hands on everything still queued or out.
    fn finish(&mut self, report: &mut ReadReport, sink: &mut CheckedSink<'_>) {
        self.send_batch(report, sink);
        while !self.in_flight.is_empty() {
            self.hand_on_oldest(report, sink);
        }
    }

    /// Waits for the oldest batch out and hands its spans on in line order, with each line's
    /// problem where it had one; the lines' buffers go back to `spare`.
    fn hand_on_oldest(&mut self, report: &mut ReadReport, sink: &mut CheckedSink<'_>) {
        let Some(decoded) = self.in_flight.pop_front() else {
            return;
        };
        // A decode that panicked drops its sender: say so rather than lose the records silently.
        let Ok(decoded) = decoded.recv() else {
            report.problems.push(Problem {
                source: report.source.clone(),
                position: None,
                message: "a batch of lines could not be decoded (internal error); its spans are missing"
                    .into(),
            });
            return;
        };
        for DecodedLine {
            mut line,
            spans,
            result,
        } in decoded
        {
            let position = Position::Line {
                line: line.line_no,
                column: 1,
            };
            for (trace_id, span) in spans {
                sink(trace_id, span, report, &position);
            }
            match result {
                Ok(0) => note_empty_record(report, &line.bytes),
                Ok(_) => {}
                Err(e) => {
                    let (position, message) = json_problem(e, line.line_no, 1);
                    report.problem(position, message);
                }
            }
            line.bytes.clear();
            self.spare.push(line.bytes);
        }
    }
}

/// Decodes a batch of lines in parallel.
fn decode_lines(format: Format, lines: Vec<PendingLine>) -> Vec<DecodedLine> {
    use rayon::prelude::*;
    lines
        .into_par_iter()
        .map(|line| {
            // About one span per 400 bytes of OTLP/JSON: one allocation, not a chain of regrowths.
            let mut spans = Vec::with_capacity(line.bytes.len() / 400 + 1);
            let result = decode_json(format, &line.bytes, &mut |trace_id, span| {
                spans.push((trace_id, span))
            });
            DecodedLine { line, spans, result }
        })
        .collect()
}

fn read_json(
    input: &mut Counted<impl BufRead>,
    options: &ReadOptions,
    report: &mut ReadReport,
    sink: &mut CheckedSink<'_>,
) -> Result<(), Problem> {
    let max = options.max_record_bytes;
    let mut line = Vec::new();
    let mut line_no = 0u64;
    let mut pipeline: Option<LinePipeline> = None;
    loop {
        let line_start = input.offset;
        line_no += 1;
        match input.read_line(&mut line, max) {
            Ok(false) => {
                if let Some(pipeline) = &mut pipeline {
                    pipeline.finish(report, sink);
                }
                return Ok(());
            }
            Ok(true) => {}
            Err(LineError::Io(e)) => {
                if let Some(pipeline) = &mut pipeline {
                    pipeline.finish(report, sink);
                }
                return Err(io_problem(report, input.offset, e));
            }
            Err(LineError::Overlong) => {
                // The lines before it are decoded first, so problems come in the file's order.
                if let Some(pipeline) = &mut pipeline {
                    pipeline.finish(report, sink);
                }
                report.problem(
                    Position::Line {
                        line: line_no,
                        column: 1,
                    },
                    format!(
                        "line starting at byte {line_start} is longer than the {} MiB record limit; \
                         skipped (split the file, or raise --max-record-mib)",
                        max >> 20
                    ),
                );
                continue;
            }
        }
        if line_no == 1 && line.starts_with(&[0xef, 0xbb, 0xbf]) {
            line.drain(..3);
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if pipeline.is_none() {
            // A document spread over several lines is read whole instead of line by line.
            if let Err(e) = serde_json::from_slice::<IgnoredAny>(&line)
                && e.is_eof()
            {
                return read_json_document(input, line, options, report, sink);
            }
        }
        let pipeline = pipeline.get_or_insert_with(|| LinePipeline::new(sniff_json(&line)));
        report.format = Some(pipeline.format);
        report.records += 1;
        let next = pipeline.buffer();
        pipeline.push(line_no, std::mem::replace(&mut line, next), report, sink);
    }
}

fn read_json_document(
    input: &mut Counted<impl BufRead>,
    mut document: Vec<u8>,
    options: &ReadOptions,
    report: &mut ReadReport,
    sink: &mut CheckedSink<'_>,
) -> Result<(), Problem> {
    let max = options.max_record_bytes;
    let limit = (max - document.len().min(max)) as u64 + 1;
    (&mut input.inner)
        .take(limit)
        .read_to_end(&mut document)
        .map_err(|e| io_problem(report, input.offset, e))?;
    if document.len() > max {
        report.problem(
            Position::Byte { byte: 0 },
            format!(
                "the JSON document is larger than the {} MiB record limit; not read \
                 (write JSON Lines, one request per line, or raise --max-record-mib)",
                max >> 20
            ),
        );
        return Ok(());
    }
    let format = sniff_json(&document);
    report.format = Some(format);
    report.records += 1;
    let position = Position::Line { line: 1, column: 1 };
    let mut emit = |trace_id, span| sink(trace_id, span, report, &position);
    match decode_json(format, &document, &mut emit) {
        Ok(0) => note_empty_record(report, &document),
        Ok(_) => {}
        Err(e) => {
            let (position, message) = json_problem(e, 1, 1);
            report.problem(position, message);
        }
    }
    Ok(())
}

/// Remembers why a JSON record held no spans, when the reason is recognisable.
fn note_empty_record(report: &mut ReadReport, record: &[u8]) {
    if report.empty_hint.is_none() {
        report.empty_hint = empty_json_hint(record);
    }
}

/// Why an OTLP/JSON record with no spans held none, when the reason is recognisable.
pub(crate) fn empty_json_hint(record: &[u8]) -> Option<String> {
    let head = &record[..record.len().min(SNIFF_BYTES)];
    let needle = b"\"resource_spans\"";
    head.windows(needle.len()).any(|w| w == needle).then(|| {
        "its keys are snake_case (\"resource_spans\"); OTLP/JSON requires lowerCamelCase \
         (\"resourceSpans\"), so nothing in it was read. Export with the OTLP JSON encoder \
         (protojson with UseProtoNames off)"
            .into()
    })
}

/// Turns a JSON error inside a record that starts at `line`, `column` into a position.
fn json_problem(error: JsonError, line: u64, column: u64) -> (Position, String) {
    match error {
        JsonError::Syntax(e) => {
            let what = if e.is_eof() {
                "the JSON ends early (truncated?)"
            } else if e.is_syntax() {
                "invalid JSON"
            } else {
                "unexpected JSON structure"
            };
            let at_line = line + e.line().saturating_sub(1) as u64;
            let at_column = if e.line() <= 1 {
                column + e.column().saturating_sub(1) as u64
            } else {
                e.column() as u64
            };
            let message = e.to_string();
            let detail = message.split(" at line ").next().unwrap_or(&message);
            (
                Position::Line {
                    line: at_line,
                    column: at_column.max(1),
                },
                format!("{what}: {detail}"),
            )
        }
        JsonError::Content(message) => (Position::Line { line, column }, message),
    }
}

fn read_protobuf(
    input: &mut Counted<impl BufRead>,
    options: &ReadOptions,
    report: &mut ReadReport,
    sink: &mut CheckedSink<'_>,
) -> Result<(), Problem> {
    // Records are decoded here, one after another: the analysis runs on another thread, and
    // protobuf decodes fast enough that a pool would only add threads to the two cores.
    report.format = Some(Format::OtlpProtobuf);
    let max = options.max_record_bytes;
    let mut prefix = [0u8; 4];
    let mut message = Vec::new();
    let mut index = 0u64;
    loop {
        let record_start = input.offset;
        index += 1;
        let got = input
            .read_exact_or_eof(&mut prefix)
            .map_err(|e| io_problem(report, input.offset, e))?;
        if got == 0 {
            return Ok(());
        }
        let position = Position::Record {
            index,
            byte: record_start,
        };
        if got < 4 {
            report.problem(
                position,
                format!("truncated: {got} bytes where a 4-byte length prefix was expected"),
            );
            return Ok(());
        }
        let len = u32::from_be_bytes(prefix) as usize;
        if len > max {
            if index == 1 {
                return read_bare_protobuf(input, prefix, options, report, sink);
            }
            report.problem(
                position,
                format!("a record of {len} bytes is larger than the {} MiB record limit, or the framing is corrupt; stopped", max >> 20),
            );
            return Ok(());
        }
        message.resize(len, 0);
        let got = input
            .read_exact_or_eof(&mut message)
            .map_err(|e| io_problem(report, input.offset, e))?;
        if got < len {
            if index == 1 {
                message.truncate(got);
                let mut bare = prefix.to_vec();
                bare.extend_from_slice(&message);
                return decode_bare(bare, report, sink);
            }
            report.problem(
                position,
                format!("truncated: the record declares {len} bytes but only {got} follow"),
            );
            return Ok(());
        }
        let mut emit = |trace_id, span| sink(trace_id, span, report, &position);
        match otlp_proto::decode_message(&message, &mut emit) {
            Ok(_) => report.records += 1,
            Err(_) if index == 1 => {
                // Not length-prefixed after all: one bare message.
                let mut bare = prefix.to_vec();
                bare.extend_from_slice(&message);
                (&mut input.inner)
                    .take((max.saturating_sub(bare.len())) as u64 + 1)
                    .read_to_end(&mut bare)
                    .map_err(|e| io_problem(report, input.offset, e))?;
                return decode_bare(bare, report, sink);
            }
            Err(e) => report.problem(position, e),
        }
    }
}

fn read_bare_protobuf(
    input: &mut Counted<impl BufRead>,
    prefix: [u8; 4],
    options: &ReadOptions,
    report: &mut ReadReport,
    sink: &mut CheckedSink<'_>,
) -> Result<(), Problem> {
    let mut bare = prefix.to_vec();
    (&mut input.inner)
        .take(options.max_record_bytes as u64)
        .read_to_end(&mut bare)
        .map_err(|e| io_problem(report, input.offset, e))?;
    if bare.len() > options.max_record_bytes {
        report.problem(
            Position::Byte { byte: 0 },
            format!(
                "not length-prefixed OTLP/protobuf, and larger than the {} MiB record limit as one message; not read",
                options.max_record_bytes >> 20
            ),
        );
        return Ok(());
    }
    decode_bare(bare, report, sink)
}

fn decode_bare(bare: Vec<u8>, report: &mut ReadReport, sink: &mut CheckedSink<'_>) -> Result<(), Problem> {
    let position = Position::Byte { byte: 0 };
    let mut emit = |trace_id, span| sink(trace_id, span, report, &position);
    match otlp_proto::decode_message(&bare, &mut emit) {
        Ok(_) => {
            report.records += 1;
            Ok(())
        }
        Err(e) => Err(Problem {
            source: report.source.clone(),
            position: Some(Position::Byte { byte: 0 }),
            message: format!("neither JSON nor OTLP/protobuf (length-prefixed records or one message): {e}"),
        }),
    }
}
