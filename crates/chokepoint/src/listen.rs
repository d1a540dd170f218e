//! `chokepoint listen`: receive OTLP live, record it, analyse traces as they complete, and report
//! when stopped (Ctrl-C or `--duration`).

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use chokepoint_detect::TraceAnalysis;
use chokepoint_evidence::{Evidence, Note, Severity};
use chokepoint_report::Input;
use chokepoint_traces::receiver::{self, Batch, ConnectionLimits, Counts, ReceiverConfig};
use chokepoint_traces::{Assembler, Limits, encode_request, write_length_prefixed};
use tokio::sync::mpsc;

use crate::args::ListenConfig;
use crate::output;
use crate::traces::assembly_notes;

/// Batches waiting between the receiver and the analysis before senders wait.
pub(crate) const CHANNEL_BATCHES: usize = 256;
/// How often traces are checked for completion and progress is shown.
const TICK: Duration = Duration::from_secs(1);

pub(crate) fn run(config: ListenConfig) -> anyhow::Result<u8> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(listen(config))
}

async fn listen(config: ListenConfig) -> anyhow::Result<u8> {
    let mut recorder = match &config.out {
        Some(path) => {
            Some(BufWriter::new(File::create(path).with_context(|| {
                format!("cannot create --out file {}", path.display())
            })?))
        }
        None => None,
    };
    let (batches_tx, mut batches) = mpsc::channel::<Batch>(CHANNEL_BATCHES);
    let receiver_config = ReceiverConfig {
        http: config.http,
        grpc: config.grpc,
        max_body_bytes: config.max_body_bytes,
        limits: ConnectionLimits {
            max_connections: config.max_connections,
            ..ConnectionLimits::default()
        },
        tls: config.tls.clone(),
        token: config.token.clone(),
    };
    let running = receiver::start(receiver_config, batches_tx).await?;
    let counts = std::sync::Arc::clone(&running.counts);
    let mut endpoints = Vec::new();
    if let Some(addr) = running.http_addr {
        let scheme = if config.tls.is_some() { "https" } else { "http" };
        endpoints.push(format!("OTLP/HTTP {scheme}://{addr}/v1/traces"));
    }
    if let Some(addr) = running.grpc_addr {
        endpoints.push(format!("OTLP/gRPC {addr}"));
    }
    let stop_when = match config.duration {
        Some(d) => format!("for {}", humantime::format_duration(d)),
        None => "until Ctrl-C".to_owned(),
    };
    // Registered once, before the banner: a Ctrl-C that arrives while a batch is being taken
    // is kept for the next turn of the loop (a `ctrl_c()` future made afresh each turn would
    // miss it, and the receiver would run on).
    let mut interrupt = crate::signals::Stop::register().context("cannot watch for Ctrl-C")?;
    eprintln!("chokepoint: listening on {} {stop_when}", endpoints.join(" and "));
    if let Some(path) = &config.out {
        eprintln!("chokepoint: recording to {}", path.display());
    }

    let mut analysis = TraceAnalysis::default();
    let mut assembler = Assembler::new(Limits::default());
    let mut problems: Vec<Note> = Vec::new();
    let mut spans = 0u64;
    let deadline = async {
        match config.duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let mut ticker = tokio::time::interval(TICK);
    let mut last_report = 0u64;
    // The run saved every --checkpoint, so a crash loses at most that much.
    let mut checkpoints = config.checkpoint.map(|every| {
        let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval
    });
    loop {
        tokio::select! {
            batch = batches.recv() => {
                let Some(batch) = batch else { break };
                spans += batch.len() as u64;
                take(batch, recorder.as_mut(), &mut problems, &mut assembler, &mut analysis);
            }
            _ = ticker.tick() => {
                assembler.tick(&mut |trace| analysis.add_trace(&trace));
                if config.report.progress && spans != last_report {
                    eprintln!("chokepoint: {spans} spans received");
                    last_report = spans;
                }
            }
            _ = async { checkpoints.as_mut().expect("guarded").tick().await }, if checkpoints.is_some() => {
                checkpoint(&analysis, &endpoints, spans, &problems, &config);
            }
            _ = interrupt.requested() => break,
            _ = &mut deadline => break,
        }
    }
    eprintln!("chokepoint: stopping; analysing {spans} spans");
    // Requests in flight finish while their batches are taken: a handler waiting for room in
    // the channel would otherwise hold the shutdown forever.
    let stop = running.stop();
    tokio::pin!(stop);
    let mut stopped = false;
    loop {
        let batch = tokio::select! {
            _ = &mut stop, if !stopped => {
                stopped = true;
                continue;
            }
            batch = batches.recv() => batch,
        };
        let Some(batch) = batch else { break };
        spans += batch.len() as u64;
        take(
            batch,
            recorder.as_mut(),
            &mut problems,
            &mut assembler,
            &mut analysis,
        );
    }
    if let Some(mut writer) = recorder
        && let Err(e) = writer.flush()
    {
        problems.push(recording_problem(&e));
    }
    let stats = assembler.finish(&mut |trace| analysis.add_trace(&trace));
    let inputs = vec![Input {
        source: endpoints.join(", "),
        format: Some("OTLP".into()),
        spans,
    }];
    let mut notes = problems;
    notes.extend(assembly_notes(&stats));
    notes.extend(receiver_notes(&counts));
    if spans == 0 {
        notes.push(Note::new(
            Severity::Error,
            "receiver",
            "no spans were received: point the service's exporter at the addresses above \
             (OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318)",
        ));
    }
    let evidence = Evidence {
        traces: Some(analysis.finish()),
        ..Evidence::default()
    };
    let (report, _) = crate::runs::report("listen", evidence, inputs, notes, &config.report, &[]);
    Ok(output::finish(&report, &config.report))
}

/// Saves the run as it stands (the traces complete so far); a failure is said and listening
/// goes on.
fn checkpoint(
    analysis: &TraceAnalysis,
    endpoints: &[String],
    spans: u64,
    problems: &[Note],
    config: &ListenConfig,
) {
    let Some(save) = &config.report.save else { return };
    let evidence = Evidence {
        traces: Some(analysis.aggregates()),
        ..Evidence::default()
    };
    let inputs = [Input {
        source: endpoints.join(", "),
        format: Some("OTLP".into()),
        spans,
    }];
    match crate::runs::save_evidence("listen", &evidence, &inputs, problems, save, &[]) {
        Ok(dir) => {
            if config.report.progress {
                eprintln!(
                    "chokepoint: checkpoint of {spans} spans saved in {}",
                    dir.display()
                );
            }
        }
        Err(error) => eprintln!("chokepoint: cannot save the checkpoint: {error:#}"),
    }
}

/// What the receiver answered without passing spans on: requests that held none (with why,
/// when it is recognisable), requests refused, connections over the cap.
pub(crate) fn receiver_notes(counts: &Counts) -> Vec<Note> {
    let mut notes = Vec::new();
    let empty = counts.empty.load(Ordering::Relaxed);
    if empty > 0 {
        let hint = counts
            .empty_hint
            .lock()
            .map(|h| h.clone())
            .unwrap_or_default()
            .unwrap_or_default();
        notes.push(Note::new(
            Severity::Warning,
            "receiver",
            format!("{empty} export request(s) were valid OTLP yet held no span (answered 200, as OTLP asks): {hint}"),
        ));
    }
    let refused = counts.refused.load(Ordering::Relaxed);
    if refused > 0 {
        notes.push(Note::new(
            Severity::Warning,
            "receiver",
            format!(
                "{refused} export request(s) were refused — not OTLP, undecodable, too large (413) or too slow (408); \
                 each sender was told why, and their spans are not in this report"
            ),
        ));
    }
    let over_cap = counts.over_cap.load(Ordering::Relaxed);
    if over_cap > 0 {
        notes.push(Note::new(
            Severity::Warning,
            "receiver",
            format!(
                "{over_cap} connection(s) were closed on arrival: the receiver already held its --max-connections; \
                 exporters retry, but spans may be missing"
            ),
        ));
    }
    notes
}

/// The note for a recording that could not be written: the analysis goes on without it.
fn recording_problem(error: &std::io::Error) -> Note {
    Note::new(
        Severity::Error,
        "--out",
        format!("cannot write the recording: {error}; analysis goes on"),
    )
}

/// Records a batch and feeds it to the analysis.
pub(crate) fn take(
    batch: Batch,
    recorder: Option<&mut BufWriter<File>>,
    problems: &mut Vec<Note>,
    assembler: &mut Assembler,
    analysis: &mut TraceAnalysis,
) {
    if let Some(writer) = recorder {
        let mut record = Vec::new();
        write_length_prefixed(
            &encode_request(batch.iter().map(|(id, span)| (*id, span))),
            &mut record,
        );
        if let Err(e) = writer.write_all(&record).and_then(|()| writer.flush())
            && problems.is_empty()
        {
            problems.push(recording_problem(&e));
        }
    }
    for (trace_id, span) in batch {
        assembler.push(trace_id, span, &mut |trace| analysis.add_trace(&trace));
    }
}
