//! The load ramp as a source: steps of load on a URL, the target's CPU sampled, and what watches
//! it while it runs — the service's spans (the OTLP receiver), the database, a py-spy profile of
//! the top steps. One part holds them all: they share the ramp's window.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use chokepoint_evidence::{Evidence, LoadModel, LoadRun, Note, Severity};
use chokepoint_load::{RampConfig, Sampling, Target, pid_listening_on};
use chokepoint_report::{Input, step_header, step_row};

use crate::database::{DatabaseWatch, database_input, snapshot_notes};
use crate::profile::{own_recording_notes, read_profiles};
use crate::receiver::SpanReceiver;
use crate::{Observer, Partial, Source, Stop};

/// What each request of a ramp is.
#[derive(Debug)]
pub struct RequestConfig {
    /// Paths (with query) and their weights in the mix.
    pub paths: Vec<(String, u32)>,
    /// The method.
    pub method: hyper::Method,
    /// Headers sent with each request.
    pub headers: Vec<(String, String)>,
    /// The body sent with each request.
    pub body: bytes::Bytes,
    /// How long a request may take.
    pub timeout: Duration,
    /// HTTP/2 instead of HTTP/1.1.
    pub http2: bool,
    /// Extra trusted roots, PEM.
    pub cacert: Option<Vec<u8>>,
}

/// The steps of a ramp, and when it stops.
#[derive(Debug)]
pub struct RampShape {
    /// Connections (closed model) or requests per second (open model) of each step.
    pub steps: Vec<f64>,
    /// Connections an open ramp may use.
    pub connections: usize,
    /// How long each step runs.
    pub step_duration: Duration,
    /// The whole ramp's bound.
    pub max_duration: Duration,
    /// When it stops early.
    pub stop: chokepoint_load::StopRules,
}

/// How the target is sampled.
#[derive(Debug)]
pub struct SamplingConfig {
    /// The target's process.
    pub pid: Option<u32>,
    /// No process is sampled.
    pub no_pid: bool,
    /// A Prometheus endpoint with the target's CPU.
    pub metrics: Option<hyper::Uri>,
}

/// A py-spy profile of the ramp's top steps.
#[derive(Debug)]
pub struct ProfileSettings {
    /// Where the recording is kept (a temporary file when not given).
    pub out: Option<PathBuf>,
    /// py-spy, when it is not on the PATH.
    pub py_spy: Option<PathBuf>,
    /// Where the profiled code lives.
    pub sources: Vec<PathBuf>,
}

/// A database, read-only.
#[derive(Debug, Clone)]
pub struct PgConfig {
    /// Its URL.
    pub url: String,
    /// Whether statements keep their literals.
    pub show_literals: bool,
}

/// A ramp of load and what watches it.
pub struct Ramp {
    /// The first URL: its scheme, host and port are the target's.
    pub url: hyper::Uri,
    /// What each request is.
    pub request: RequestConfig,
    /// The steps.
    pub shape: RampShape,
    /// How the target is sampled.
    pub sampling: SamplingConfig,
    /// A profile of the top steps.
    pub profile: Option<ProfileSettings>,
    /// Whether a profile that could not be taken is an error (`load --profile` asked for it) or
    /// a warning (`diagnose` profiles when it can).
    pub profile_asked: bool,
    /// Whether the run is saved: a recording of our own then lives in the run alone, and the
    /// note saying where it is kept is not given.
    pub saved: bool,
    /// The database, watched during the ramp.
    pub pg: Option<PgConfig>,
    /// Where the service's spans are received during the ramp.
    pub receiver: Option<SocketAddr>,
    /// Where the received spans are recorded.
    pub record_spans: Option<PathBuf>,
    /// What the arguments had to say (a source that cannot be used): said before the ramp and
    /// kept in the part.
    pub notes: Vec<Note>,
    /// Once requested, the ramp ends and what was measured is kept.
    pub stop: Stop,
}

/// What profiling and sampling the target cost its capacity, measured by scripts/bench-diagnose.sh
/// on the testbed's CPU-bound route (docs/commands.md, "The observer effect").
const OBSERVER_COST_PERCENT: f64 = 7.6;

/// How long the receiver keeps receiving after the ramp: an OpenTelemetry SDK's batch span
/// processor exports every 5 s by default.
const SPAN_GRACE: Duration = Duration::from_secs(5);

/// Profile readings of our own run at this rate.
const PROFILE_HZ: u32 = 100;

impl Source for Ramp {
    fn collect(self: Box<Self>, _before: &Evidence, observer: &dyn Observer) -> anyhow::Result<Partial> {
        // One worker thread per core this process may run on (taskset, cgroups): a thread more
        // than the cores only adds wake-ups between them.
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
        runtime.block_on(self.run(observer))
    }
}

impl Ramp {
    async fn run(self, observer: &dyn Observer) -> anyhow::Result<Partial> {
        let host = self.url.host().unwrap_or("localhost").to_owned();
        let https = self.url.scheme_str() == Some("https");
        let port = self.url.port_u16().unwrap_or(if https { 443 } else { 80 });
        let request = &self.request;
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
        let sampling = &self.sampling;
        let pid = match (sampling.pid, sampling.no_pid) {
            (_, true) => None,
            (Some(pid), false) => Some(pid),
            (None, false) => local.then(|| pid_listening_on(port)).flatten(),
        };
        let host_header = match self.url.port_u16() {
            Some(port) => format!("{host}:{port}"),
            None => host.clone(),
        };
        let shape = &self.shape;
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
        observer.say(&format!(
            "chokepoint: {} steps of {:?} load on {} ({sampled}); Ctrl-C stops and reports what was measured",
            shape.steps.len(),
            shape.stop.model,
            self.url
        ));
        for note in &self.notes {
            observer.say(&format!("chokepoint: warning: {}: {}", note.source, note.message));
        }
        // Steps are said as they complete; the report has them all.
        observer.say(&step_header());
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
        observer.progress(&describe(0), 0, None, "");
        let receiver = match self.receiver {
            Some(addr) => Some(SpanReceiver::start(addr, self.record_spans.clone(), observer).await?),
            None => None,
        };
        let database = match &self.pg {
            Some(pg) => Some(DatabaseWatch::start(&pg.url, shape.max_duration, pg.show_literals).await?),
            None => None,
        };
        // py-spy records the top half of the steps, where the limit shows.
        let profile_from = total / 2;
        let mut recorder = None;
        let start_profile = || match (&self.profile, pid) {
            (Some(profile), Some(pid)) => {
                let left = shape.step_duration * (total - profile_from) as u32 + Duration::from_secs(5);
                let out = profile.out.clone().unwrap_or_else(|| {
                    std::env::temp_dir().join(format!(
                        "chokepoint-load-profile-{pid}-{}.raw",
                        std::process::id()
                    ))
                });
                Some((
                    out.clone(),
                    crate::unix_now(),
                    chokepoint_profile::start(
                        profile.py_spy.as_deref(),
                        pid,
                        left.min(shape.max_duration),
                        PROFILE_HZ,
                        &out,
                    ),
                ))
            }
            _ => None,
        };
        if profile_from == 0 {
            recorder = start_profile();
        }
        let run = chokepoint_load::run(&ramp, self.stop.flag(), |i, step| {
            observer.say(&step_row(step));
            if i + 1 < total {
                observer.progress(&describe(i + 1), 0, None, "");
            }
            if i + 1 == profile_from && recorder.is_none() {
                recorder = start_profile();
            }
        })
        .await;
        observer.done();
        observer.say("");
        let snapshot = match database {
            Some(watch) => Some(watch.finish().await),
            None => None,
        };
        let mut part = Partial {
            inputs: vec![Input {
                source: run.url.clone(),
                format: Some("load ramp".into()),
                spans: 0,
            }],
            notes: self.notes.clone(),
            ..Partial::default()
        };
        if let Some(receiver) = receiver {
            // OpenTelemetry SDKs export in batches (every 5 s by default): the ramp's last spans
            // are still on their way.
            observer.say(&format!(
                "chokepoint: waiting {} s for the service's last spans",
                SPAN_GRACE.as_secs()
            ));
            tokio::time::sleep(SPAN_GRACE).await;
            part = part.join(receiver.finish().await)?;
        }
        if let Some(snapshot) = &snapshot {
            part.notes.extend(snapshot_notes(snapshot));
            part.inputs.push(database_input(snapshot));
        }
        part.notes.extend(ramp_notes(&run));
        let profile = self.profile_of_top_steps(&run, recorder, profile_from, pid, &mut part);
        let evidence = Evidence {
            load: Some(run),
            database: snapshot,
            profile,
            ..Evidence::default()
        };
        part.evidence = std::mem::take(&mut part.evidence).merge(evidence)?;
        Ok(part)
    }

    /// The profile py-spy recorded of the top steps, read, with what it had to say.
    fn profile_of_top_steps(
        &self,
        run: &LoadRun,
        recorder: Option<(
            PathBuf,
            f64,
            Result<chokepoint_profile::Recorder, chokepoint_profile::RecordError>,
        )>,
        profile_from: usize,
        pid: Option<u32>,
        part: &mut Partial,
    ) -> Option<chokepoint_evidence::Profile> {
        let severity = if self.profile_asked {
            Severity::Error
        } else {
            Severity::Warning
        };
        // Started after the step before its first, the recording saw no step when the ramp
        // stopped there: it holds the idle tail, not the limit.
        let profiled_steps = run.steps.len().saturating_sub(profile_from);
        let recorder = match recorder {
            Some((out, _, started)) if profiled_steps == 0 => {
                let _ = started.and_then(chokepoint_profile::Recorder::stop);
                if self.profile.as_ref().is_some_and(|p| p.out.is_none()) {
                    let _ = std::fs::remove_file(out);
                }
                None
            }
            recorder => recorder,
        };
        let settings = self.profile.as_ref()?;
        let Some((out, started, recorder)) = recorder else {
            part.notes.push(Note::new(
                severity,
                "--profile",
                match pid {
                    None => "no target process to profile: pass --pid (a local Python process)".to_owned(),
                    Some(_) => "the ramp ended before its top steps: nothing was profiled".to_owned(),
                },
            ));
            return None;
        };
        let recording = match recorder.and_then(chokepoint_profile::Recorder::stop) {
            Ok(recording) => recording,
            Err(error) => {
                part.notes.push(Note::new(
                    severity,
                    "--profile",
                    format!("{error}; the ramp's findings stand without it, and {WITHOUT_PROFILE}"),
                ));
                return None;
            }
        };
        part.recordings.push(recording.path.clone());
        if settings.out.is_none() {
            part.scratch.push(recording.path.clone());
        }
        let (profile, inputs, notes) = read_profiles(&[recording.path], PROFILE_HZ, &settings.sources);
        part.inputs.extend(inputs);
        part.notes.extend(own_recording_notes(notes, profile.is_some()));
        part.notes.push(Note::new(
            Severity::Info,
            "--profile",
            format!(
                "py-spy sampled the target at {PROFILE_HZ} Hz during the top {profiled_steps} step(s); measured on the testbed \
                 (scripts/bench-diagnose.sh, 2 cores), sampling cost a CPU-bound Python service {OBSERVER_COST_PERCENT} % \
                 of its capacity: the capacity above may be low by about that much"
            ),
        ));
        // A recording of our own in a run that is saved lives on in the run alone.
        if settings.out.is_some() || !self.saved {
            part.notes.push(Note::new(
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
}

/// What a verdict lacks without a profile, for the warning that says py-spy is missing.
pub const WITHOUT_PROFILE: &str = "the verdict lacks the profile: which code burns the CPU, what holds the \
     event loop, which line runs a slow or repeated statement — a limit is then named without the code that consumes it";

/// What the ramp itself has to say: a target that answered nothing, a target lost mid-run.
fn ramp_notes(run: &LoadRun) -> Vec<Note> {
    let mut notes = Vec::new();
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
    notes
}
