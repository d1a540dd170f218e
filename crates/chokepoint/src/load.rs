//! `chokepoint load`: ramp load on a URL, show each step as it completes, and report what caps
//! the throughput.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use chokepoint_evidence::{Evidence, LoadModel, Note, Severity};
use chokepoint_load::{RampConfig, Sampling, Target, pid_listening_on};
use chokepoint_report::{Input, step_header, step_row};

use crate::args::LoadConfig;
use crate::output;

pub(crate) fn run(config: LoadConfig) -> anyhow::Result<u8> {
    // One worker thread per core this process may run on (taskset, cgroups): a thread more than
    // the cores only adds wake-ups between them.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let runtime = if cores == 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cores)
            .enable_all()
            .build()
    }
    .context("cannot start the async runtime")?;
    runtime.block_on(load(config))
}

async fn load(config: LoadConfig) -> anyhow::Result<u8> {
    let host = config.url.host().unwrap_or("localhost").to_owned();
    let https = config.url.scheme_str() == Some("https");
    let port = config.url.port_u16().unwrap_or(if https { 443 } else { 80 });
    let request = &config.request;
    let tls = if https {
        Some(chokepoint_load::Tls::new(
            &host,
            request.cacert.as_deref(),
            request.http2,
        )?)
    } else {
        None
    };
    let addr = tokio::net::lookup_host((host.as_str(), port))
        .await
        .with_context(|| format!("cannot resolve {host}"))?
        .next()
        .with_context(|| format!("{host} has no address"))?;
    let local = addr.ip().is_loopback() || addr.ip().is_unspecified();
    let sampling = &config.sampling;
    let pid = match (sampling.pid, sampling.no_pid) {
        (_, true) => None,
        (Some(pid), false) => Some(pid),
        (None, false) => local.then(|| pid_listening_on(port)).flatten(),
    };
    let host_header = match config.url.port_u16() {
        Some(port) => format!("{host}:{port}"),
        None => host.clone(),
    };
    let shape = &config.ramp;
    let ramp = RampConfig {
        target: Target {
            addr,
            host: host_header,
            paths: request.paths.clone(),
            method: request.method.clone(),
            headers: request.headers.clone(),
            body: request.body.clone(),
            timeout: request.timeout,
            http2: request.http2,
            tls,
        },
        steps: shape.steps.clone(),
        step_duration: shape.step_duration,
        connections: shape.connections,
        stop: shape.stop,
        max_duration: shape.max_duration,
        sampling: Sampling {
            target_pid: pid,
            target_port: (local && !sampling.no_pid).then_some(port),
            metrics_url: sampling.metrics.clone(),
        },
    };
    let sampled = match (pid, &sampling.metrics) {
        (Some(pid), _) => format!("sampling target pid {pid}"),
        (None, Some(url)) => format!("reading the target's CPU from {url}"),
        (None, None) => "no target process to sample (pass --pid, or --metrics)".to_owned(),
    };
    eprintln!(
        "chokepoint: {} steps of {:?} load on {} ({sampled}); Ctrl-C stops and reports what was measured",
        shape.steps.len(),
        shape.stop.model,
        config.url
    );
    for note in &config.notes {
        eprintln!("chokepoint: warning: {}: {}", note.source, note.message);
    }
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let interrupted = Arc::clone(&interrupted);
        let mut signals = crate::signals::Stop::register().context("cannot watch for Ctrl-C")?;
        tokio::spawn(async move {
            signals.requested().await;
            interrupted.store(true, Ordering::Relaxed);
        });
    }
    // Steps are shown live on stderr as they complete; the report on stdout has them all.
    let show = |line: String| eprintln!("{line}");
    show(step_header());
    let progress = if config.report.progress {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let total = shape.steps.len();
    let unit = match shape.stop.model {
        LoadModel::Closed => "connections",
        LoadModel::Open => "requests/s",
    };
    let describe = |i: usize| {
        format!(
            "step {}/{total}: {} {} for {:?}",
            i + 1,
            shape.steps[i],
            unit,
            shape.step_duration
        )
    };
    progress.set_message(describe(0));
    let receiver = match config.receiver {
        Some(addr) => Some(SpanReceiver::start(addr, config.record_spans.clone()).await?),
        None => None,
    };
    let database = match &config.pg {
        Some(pg) => {
            Some(crate::db::DatabaseWatch::start(&pg.url, shape.max_duration, pg.show_literals).await?)
        }
        None => None,
    };
    // `--profile`: py-spy records the top half of the steps, where the limit shows.
    let profile_from = total / 2;
    let mut recorder = None;
    let start_profile = || match (&config.profile, pid) {
        (Some(profile), Some(pid)) => {
            let left =
                shape.step_duration * (total - profile_from) as u32 + std::time::Duration::from_secs(5);
            let out = profile.out.clone().unwrap_or_else(|| {
                std::env::temp_dir().join(format!(
                    "chokepoint-load-profile-{pid}-{}.raw",
                    std::process::id()
                ))
            });
            Some((
                out.clone(),
                crate::profile::unix_now(),
                chokepoint_profile::start(
                    profile.py_spy.as_deref(),
                    pid,
                    left.min(shape.max_duration),
                    100,
                    &out,
                ),
            ))
        }
        _ => None,
    };
    if profile_from == 0 {
        recorder = start_profile();
    }
    let run = chokepoint_load::run(&ramp, interrupted, |i, step| {
        progress.suspend(|| show(step_row(step)));
        if i + 1 < total {
            progress.set_message(describe(i + 1));
        }
        if i + 1 == profile_from && recorder.is_none() {
            recorder = start_profile();
        }
    })
    .await;
    progress.finish_and_clear();
    show(String::new());
    let snapshot = match database {
        Some(watch) => Some(watch.finish().await),
        None => None,
    };
    let mut notes = config.notes.clone();
    let mut inputs = vec![Input {
        source: run.url.clone(),
        format: Some("load ramp".into()),
        spans: 0,
    }];
    let mut recordings = Vec::new();
    // Recordings made in the temporary folder for this run alone: once copied into a saved run,
    // they are removed.
    let mut scratch = Vec::new();
    let traces = match receiver {
        Some(receiver) => {
            // OpenTelemetry SDKs export in batches (every 5 s by default): the ramp's last spans
            // are still on their way.
            eprintln!(
                "chokepoint: waiting {} s for the service's last spans",
                SPAN_GRACE.as_secs()
            );
            tokio::time::sleep(SPAN_GRACE).await;
            let (traces, input, span_notes, recording) = receiver.finish().await;
            inputs.push(input);
            notes.extend(span_notes);
            scratch.extend(recording.clone());
            recordings.extend(recording);
            Some(traces)
        }
        None => None,
    };
    // Evidence recorded before (`diagnose --trace-file/--profile-file`), joined with the ramp's.
    let mut joined = Evidence::default();
    recordings.extend(crate::diagnose::join(
        &config.recorded,
        &mut joined,
        &mut inputs,
        &mut notes,
        config.report.progress,
    )?);
    let traces = traces.or(joined.traces);
    if let Some(snapshot) = &snapshot {
        notes.extend(crate::db::snapshot_notes(snapshot));
        inputs.push(crate::db::database_input(snapshot));
    }
    if !run.steps.is_empty() && run.steps.iter().all(|s| s.throughput_rps <= 0.0) {
        let kinds: Vec<String> = run
            .steps
            .iter()
            .flat_map(|s| s.errors_by_kind.iter())
            .fold(
                std::collections::BTreeMap::<&str, u64>::new(),
                |mut all, (kind, n)| {
                    *all.entry(kind.as_str()).or_default() += n;
                    all
                },
            )
            .into_iter()
            .map(|(kind, n)| format!("{n} {kind}"))
            .collect();
        notes.push(Note::new(
            Severity::Error,
            "load ramp",
            format!(
                "no request succeeded in {} step(s) ({}): the target is down, refuses these requests, or answers only \
                 errors — nothing here measures its capacity; {}",
                run.steps.len(),
                if kinds.is_empty() { "no answer".to_owned() } else { kinds.join(", ") },
                run.stopped_because
            ),
        ));
    }
    if run.target_lost {
        notes.push(Note::new(
            Severity::Error,
            "load ramp",
            run.stopped_because.to_string(),
        ));
    }
    if let Some(path) = &config.chart
        && let Err(e) = std::fs::write(path, chokepoint_report::render_chart_svg(&run))
    {
        notes.push(Note::new(
            Severity::Error,
            "--chart",
            format!("cannot write the chart to {}: {e}", path.display()),
        ));
    }
    // Started after the step before its first, the recording saw no step when the ramp stopped
    // there: it holds the idle tail, not the limit.
    let profiled_steps = run.steps.len().saturating_sub(profile_from);
    let recorder = match recorder {
        Some((out, _, started)) if profiled_steps == 0 => {
            let _ = started.and_then(chokepoint_profile::Recorder::stop);
            if config.profile.as_ref().is_some_and(|p| p.out.is_none()) {
                let _ = std::fs::remove_file(out);
            }
            None
        }
        recorder => recorder,
    };
    let profile = match (&config.profile, recorder) {
        (None, _) => None,
        (Some(_), None) => {
            notes.push(Note::new(
                // `diagnose` profiles when it can; `load --profile` was asked to.
                if config.command == "diagnose" {
                    Severity::Warning
                } else {
                    Severity::Error
                },
                "--profile",
                match pid {
                    None => "no target process to profile: pass --pid (a local Python process)".to_owned(),
                    Some(_) => "the ramp ended before its top steps: nothing was profiled".to_owned(),
                },
            ));
            None
        }
        (Some(settings), Some((out, started, recorder))) => {
            match recorder.and_then(chokepoint_profile::Recorder::stop) {
                Ok(recording) => {
                    recordings.push(recording.path.clone());
                    if settings.out.is_none() {
                        scratch.push(recording.path.clone());
                    }
                    let (profile, profile_inputs, profile_notes) =
                        crate::profile::read_profiles(&[recording.path], 100, &settings.sources);
                    inputs.extend(profile_inputs);
                    notes.extend(own_recording_notes(profile_notes, profile.is_some()));
                    notes.push(Note::new(
                        Severity::Info,
                        "--profile",
                        format!(
                            "py-spy sampled the target at 100 Hz during the top {profiled_steps} step(s); measured on the testbed \
                             (scripts/bench-diagnose.sh, 2 cores), sampling cost a CPU-bound Python service {OBSERVER_COST_PERCENT} % \
                             of its capacity: the capacity above may be low by about that much"
                        ),
                    ));
                    // A recording of our own in a run that is saved lives on in the run alone.
                    if settings.out.is_some() || config.report.save.is_none() {
                        notes.push(Note::new(
                            Severity::Info,
                            out.display().to_string(),
                            format!(
                                "the profile of the top {profiled_steps} step(s) is kept here: `chokepoint profile {}` analyses it again",
                                out.display()
                            ),
                        ));
                    }
                    profile.map(|mut p| {
                        p.pid = pid;
                        p.started_unix_s = started;
                        p
                    })
                }
                Err(error) => {
                    notes.push(Note::new(
                        if config.command == "diagnose" {
                            Severity::Warning
                        } else {
                            Severity::Error
                        },
                        "--profile",
                        format!(
                            "{error}; the ramp's findings stand without it, and {}",
                            crate::args::WITHOUT_PROFILE
                        ),
                    ));
                    None
                }
            }
        }
    };
    let evidence = Evidence {
        load: Some(run),
        database: snapshot,
        profile: profile.or(joined.profile),
        traces,
        source: None,
    };
    let (report, saved) = crate::runs::report(
        config.command,
        evidence,
        inputs,
        notes,
        &config.report,
        &recordings,
    );
    if saved.is_some() {
        for path in &scratch {
            let _ = std::fs::remove_file(path);
        }
    }
    let code = output::finish(&report, &config.report);
    if let (Some(baseline), Some(run)) = (&config.baseline, saved) {
        crate::runs::compare_with_baseline(baseline, &run, config.report.format)?;
    }
    Ok(code)
}

/// What profiling and sampling the target cost its capacity, measured by scripts/bench-diagnose.sh
/// on the testbed's CPU-bound route (README, "The observer effect").
const OBSERVER_COST_PERCENT: f64 = 7.6;

/// How long `diagnose` keeps receiving after the ramp: an OpenTelemetry SDK's batch span
/// processor exports every 5 s by default.
const SPAN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// The OTLP receiver of `chokepoint diagnose`: the service's own spans during the ramp, analysed
/// as `chokepoint listen` analyses them, recorded as OTLP protobuf when the run is kept.
struct SpanReceiver {
    running: chokepoint_traces::receiver::Running,
    worker: std::thread::JoinHandle<(chokepoint_evidence::TraceAggregates, u64, Vec<Note>)>,
    address: String,
    recording: Option<std::path::PathBuf>,
}

impl SpanReceiver {
    async fn start(
        addr: std::net::SocketAddr,
        record: Option<std::path::PathBuf>,
    ) -> anyhow::Result<SpanReceiver> {
        use chokepoint_traces::receiver::{self, ReceiverConfig};
        let (tx, mut rx) = tokio::sync::mpsc::channel(crate::listen::CHANNEL_BATCHES);
        let running = receiver::start(
            ReceiverConfig {
                http: Some(addr),
                grpc: None,
                max_body_bytes: 64 << 20,
                limits: receiver::ConnectionLimits::default(),
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
        eprintln!(
            "chokepoint: receiving the service's spans on {address}/v1/traces (OTEL_EXPORTER_OTLP_ENDPOINT={address})"
        );
        let mut writer = match &record {
            Some(path) => Some(std::io::BufWriter::new(
                std::fs::File::create(path)
                    .with_context(|| format!("cannot record spans to {}", path.display()))?,
            )),
            None => None,
        };
        let worker = std::thread::spawn(move || {
            let mut analysis = chokepoint_detect::TraceAnalysis::default();
            let mut assembler = chokepoint_traces::Assembler::new(chokepoint_traces::Limits::default());
            let mut problems = Vec::new();
            let mut spans = 0u64;
            while let Some(batch) = rx.blocking_recv() {
                spans += batch.len() as u64;
                crate::listen::take(
                    batch,
                    writer.as_mut(),
                    &mut problems,
                    &mut assembler,
                    &mut analysis,
                );
            }
            let stats = assembler.finish(&mut |trace| analysis.add_trace(&trace));
            problems.extend(crate::traces::assembly_notes(&stats));
            (analysis.finish(), spans, problems)
        });
        Ok(SpanReceiver {
            running,
            worker,
            address,
            recording: record,
        })
    }

    /// Stops receiving; the traces, the input, notes and the recording.
    async fn finish(
        self,
    ) -> (
        chokepoint_evidence::TraceAggregates,
        Input,
        Vec<Note>,
        Option<std::path::PathBuf>,
    ) {
        let counts = std::sync::Arc::clone(&self.running.counts);
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
                    "no spans came during the ramp: the verdict stands on the ramp{}; point the service's exporter at \
                     {} (OTEL_EXPORTER_OTLP_ENDPOINT) to see which endpoint, statement or call consumes the limit",
                    "", self.address
                ),
            ));
        }
        notes.extend(crate::listen::receiver_notes(&counts));
        let input = Input {
            source: format!("{}/v1/traces", self.address),
            format: Some("OTLP".into()),
            spans,
        };
        (traces, input, notes, self.recording.filter(|_| spans > 0))
    }
}

/// The notes on a recording of our own. py-spy's non-blocking sampling reads a running process's
/// memory, so a torn read can leave a line no reader can split; when the rest was read, those
/// lines are one warning, not an error that fails the run.
fn own_recording_notes(notes: Vec<Note>, read: bool) -> Vec<Note> {
    if !read {
        return notes;
    }
    let (torn, mut kept): (Vec<Note>, Vec<Note>) =
        notes.into_iter().partition(|n| n.severity == Severity::Error);
    if let Some(first) = torn.first() {
        kept.push(Note::new(
            Severity::Warning,
            first.source.clone(),
            format!(
                "parts of py-spy's recording could not be read and were skipped (torn reads of the running process \
                 by non-blocking sampling; the first, {}: {}); the other stacks are analysed",
                first.position.as_ref().map_or_else(String::new, |p| p.to_string()),
                first.message
            ),
        ));
    }
    kept
}

#[cfg(test)]
mod tests {
    use chokepoint_evidence::Position;

    use super::*;

    #[test]
    fn torn_lines_of_our_own_recording_warn_when_the_rest_was_read() {
        let torn = |line| Note {
            position: Some(Position::Line { line, column: 1 }),
            ..Note::new(Severity::Error, "/tmp/p.raw", "expected `frame;frame;… count`")
        };
        let notes = vec![
            torn(152),
            torn(154),
            Note::new(Severity::Info, "/tmp/p.raw", "read"),
        ];
        let read = own_recording_notes(notes.clone(), true);
        assert!(read.iter().all(|n| n.severity != Severity::Error), "{read:?}");
        let warning = read
            .iter()
            .find(|n| n.severity == Severity::Warning)
            .expect("a warning");
        assert!(warning.message.contains("line 152"), "{}", warning.message);
        // Nothing read at all stays an error.
        let unread = own_recording_notes(notes, false);
        assert_eq!(unread.iter().filter(|n| n.severity == Severity::Error).count(), 2);
    }
}
