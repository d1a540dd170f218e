//! The OTLP receiver as a source: `listen`'s (until stopped, saving checkpoints as it goes) and
//! the one that runs beside a ramp (`diagnose`). Spans are assembled into traces and analysed as
//! they complete, and recorded as length-prefixed OTLP protobuf when asked.

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use chokepoint_detect::TraceAnalysis;
use chokepoint_evidence::{Evidence, Note, Severity};
use chokepoint_report::Input;
use chokepoint_traces::receiver::{self, Batch, ConnectionLimits, Counts, ReceiverConfig};
use chokepoint_traces::{Assembler, Limits, encode_request, write_length_prefixed};
use tokio::sync::mpsc;

use crate::traces::assembly_notes;
use crate::{Observer, Partial, Source, Stop};

/// Batches waiting between the receiver and the analysis before senders wait.
pub const CHANNEL_BATCHES: usize = 256;
/// How often traces are checked for completion and progress is shown.
const TICK: Duration = Duration::from_secs(1);

/// What is done with each checkpoint: the part as it stands (the traces complete so far).
pub type Checkpoint = Box<dyn FnMut(&Partial) + Send>;

/// `chokepoint listen`: receive OTLP until stopped or for a while.
pub struct Listen {
    /// OTLP/HTTP's address.
    pub http: Option<SocketAddr>,
    /// OTLP/gRPC's address.
    pub grpc: Option<SocketAddr>,
    /// Where the spans are recorded.
    pub out: Option<PathBuf>,
    /// How long to listen; until stopped without it.
    pub duration: Option<Duration>,
    /// The largest export request taken.
    pub max_body_bytes: usize,
    /// Connections held at once.
    pub max_connections: usize,
    /// TLS, when the receiver serves it.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The bearer token senders must give.
    pub token: Option<Arc<str>>,
    /// Every so often, the part as it stands, so a crash loses at most that interval.
    pub checkpoint: Option<(Duration, Checkpoint)>,
    /// Once requested, receiving stops and what was received is analysed.
    pub stop: Stop,
}

impl Source for Listen {
    fn collect(self: Box<Self>, _before: &Evidence, observer: &dyn Observer) -> anyhow::Result<Partial> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        runtime.block_on(self.listen(observer))
    }
}

impl Listen {
    async fn listen(self, observer: &dyn Observer) -> anyhow::Result<Partial> {
        let Listen {
            http,
            grpc,
            out,
            duration,
            max_body_bytes,
            max_connections,
            tls,
            token,
            mut checkpoint,
            stop,
        } = self;
        let mut recorder = match &out {
            Some(path) => {
                Some(BufWriter::new(File::create(path).with_context(|| {
                    format!("cannot create --out file {}", path.display())
                })?))
            }
            None => None,
        };
        let (batches_tx, mut batches) = mpsc::channel::<Batch>(CHANNEL_BATCHES);
        let https = tls.is_some();
        let receiver_config = ReceiverConfig {
            http,
            grpc,
            max_body_bytes,
            limits: ConnectionLimits {
                max_connections,
                ..ConnectionLimits::default()
            },
            tls,
            token,
        };
        let running = receiver::start(receiver_config, batches_tx).await?;
        let counts = Arc::clone(&running.counts);
        let mut endpoints = Vec::new();
        if let Some(addr) = running.http_addr {
            let scheme = if https { "https" } else { "http" };
            endpoints.push(format!("OTLP/HTTP {scheme}://{addr}/v1/traces"));
        }
        if let Some(addr) = running.grpc_addr {
            endpoints.push(format!("OTLP/gRPC {addr}"));
        }
        let stop_when = match duration {
            Some(d) => format!("for {}", humantime::format_duration(d)),
            None => "until Ctrl-C".to_owned(),
        };
        observer.say(&format!(
            "chokepoint: listening on {} {stop_when}",
            endpoints.join(" and ")
        ));
        if let Some(path) = &out {
            observer.say(&format!("chokepoint: recording to {}", path.display()));
        }
        let input = |spans| Input {
            source: endpoints.join(", "),
            format: Some("OTLP".into()),
            spans,
        };

        let mut analysis = TraceAnalysis::default();
        let mut assembler = Assembler::new(Limits::default());
        let mut problems: Vec<Note> = Vec::new();
        let mut spans = 0u64;
        let deadline = async {
            match duration {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(deadline);
        let mut ticker = tokio::time::interval(TICK);
        let mut last_report = 0u64;
        let mut checkpoints = checkpoint.as_ref().map(|(every, _)| {
            let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + *every, *every);
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
                    if spans != last_report {
                        observer.progress("received", spans, None, "spans");
                        last_report = spans;
                    }
                }
                _ = async { checkpoints.as_mut().expect("guarded").tick().await }, if checkpoints.is_some() => {
                    if let Some((_, save)) = &mut checkpoint {
                        save(&Partial {
                            evidence: Evidence {
                                traces: Some(analysis.aggregates()),
                                ..Evidence::default()
                            },
                            inputs: vec![input(spans)],
                            notes: problems.clone(),
                            ..Partial::default()
                        });
                    }
                }
                () = stop.wait() => break,
                () = &mut deadline => break,
            }
        }
        observer.done();
        observer.say(&format!("chokepoint: stopping; analysing {spans} spans"));
        // Requests in flight finish while their batches are taken: a handler waiting for room in
        // the channel would otherwise hold the shutdown forever.
        let stopping = running.stop();
        tokio::pin!(stopping);
        let mut stopped = false;
        loop {
            let batch = tokio::select! {
                _ = &mut stopping, if !stopped => {
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
        Ok(Partial {
            evidence: Evidence {
                traces: Some(analysis.finish()),
                ..Evidence::default()
            },
            inputs: vec![input(spans)],
            notes,
            ..Partial::default()
        })
    }
}

/// The OTLP receiver of `chokepoint diagnose`: the service's own spans during the ramp, analysed
/// as `chokepoint listen` analyses them, recorded as OTLP protobuf when the run is kept.
pub(crate) struct SpanReceiver {
    running: chokepoint_traces::receiver::Running,
    worker: std::thread::JoinHandle<(chokepoint_evidence::TraceAggregates, u64, Vec<Note>)>,
    address: String,
    recording: Option<PathBuf>,
}

impl SpanReceiver {
    pub(crate) async fn start(
        addr: SocketAddr,
        record: Option<PathBuf>,
        observer: &dyn Observer,
    ) -> anyhow::Result<SpanReceiver> {
        let (tx, mut rx) = mpsc::channel(CHANNEL_BATCHES);
        let running = receiver::start(
            ReceiverConfig {
                http: Some(addr),
                grpc: None,
                max_body_bytes: 64 << 20,
                limits: ConnectionLimits::default(),
                tls: None,
                token: None,
            },
            tx,
        )
        .await
        .with_context(|| format!("cannot receive OTLP on {addr} (pass --otlp ADDR, or --no-traces)"))?;
        let address = running
            .http_addr
            .map_or_else(|| addr.to_string(), |a| format!("http://{a}"));
        observer.say(&format!(
            "chokepoint: receiving the service's spans on {address}/v1/traces (OTEL_EXPORTER_OTLP_ENDPOINT={address})"
        ));
        let mut writer = match &record {
            Some(path) => {
                Some(BufWriter::new(File::create(path).with_context(|| {
                    format!("cannot record spans to {}", path.display())
                })?))
            }
            None => None,
        };
        let worker = std::thread::spawn(move || {
            let mut analysis = TraceAnalysis::default();
            let mut assembler = Assembler::new(Limits::default());
            let mut problems = Vec::new();
            let mut spans = 0u64;
            while let Some(batch) = rx.blocking_recv() {
                spans += batch.len() as u64;
                take(
                    batch,
                    writer.as_mut(),
                    &mut problems,
                    &mut assembler,
                    &mut analysis,
                );
            }
            let stats = assembler.finish(&mut |trace| analysis.add_trace(&trace));
            problems.extend(assembly_notes(&stats));
            (analysis.finish(), spans, problems)
        });
        Ok(SpanReceiver {
            running,
            worker,
            address,
            recording: record,
        })
    }

    /// Stops receiving; the traces, the input, notes and the recording (made for this run alone).
    pub(crate) async fn finish(self) -> Partial {
        let counts = Arc::clone(&self.running.counts);
        self.running.stop().await;
        let (traces, spans, mut notes) = self.worker.join().unwrap_or_else(|_| {
            (
                Default::default(),
                0,
                vec![Note::new(Severity::Error, "receiver", "the span analysis failed")],
            )
        });
        if spans == 0 {
            // Nothing to keep: the empty recording goes.
            if let Some(path) = &self.recording {
                let _ = std::fs::remove_file(path);
            }
            notes.push(Note::new(
                Severity::Warning,
                "receiver",
                format!(
                    "no spans came during the ramp: the verdict stands on the ramp; point the service's exporter at \
                     {} (OTEL_EXPORTER_OTLP_ENDPOINT) to see which endpoint, statement or call consumes the limit",
                    self.address
                ),
            ));
        }
        notes.extend(receiver_notes(&counts));
        let input = Input {
            source: format!("{}/v1/traces", self.address),
            format: Some("OTLP".into()),
            spans,
        };
        let recordings: Vec<PathBuf> = self.recording.into_iter().filter(|_| spans > 0).collect();
        Partial {
            evidence: Evidence {
                traces: Some(traces),
                ..Evidence::default()
            },
            inputs: vec![input],
            notes,
            scratch: recordings.clone(),
            recordings,
        }
    }
}

/// What the receiver answered without passing spans on: requests that held none (with why,
/// when it is recognisable), requests refused, connections over the cap.
pub fn receiver_notes(counts: &Counts) -> Vec<Note> {
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
pub fn take(
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
