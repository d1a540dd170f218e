//! Command-line arguments in two stages: what the user typed (clap), then a validated
//! configuration that the commands run on.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
pub(crate) use chokepoint_collect::ramp::{
    PgConfig, ProfileSettings, RampShape, RequestConfig, SamplingConfig,
};
use chokepoint_evidence::{DetectorId, LoadModel};
use clap::{Args, Parser, Subcommand, ValueEnum};

const EXAMPLES: &str = "\
Examples:
  chokepoint traces examples/                 analyse every trace file in a folder
  chokepoint traces spans.jsonl.gz --format json > report.json
  zcat spans.jsonl.gz | chokepoint traces -  read from standard input
  chokepoint listen --duration 60s --out run.otlp
                                              receive OTLP for a minute, record it, analyse it
  chokepoint traces run.otlp --fail-on n-plus-one
                                              exit 1 in CI when an N+1 is found
  chokepoint load http://127.0.0.1:8000/orders --slo 'p99<300ms'
                                              ramp concurrency until it breaks, and say why
  chokepoint db postgresql://app@127.0.0.1/shop --watch 60s
                                              read-only: missing indexes, slow, unbounded and
                                              N+1 statements, lock waits and their blockers
  chokepoint traces run.otlp --pg postgresql://app@127.0.0.1/shop
                                              slow statements explained by their plans
  chokepoint load http://127.0.0.1:8000/orders --pg postgresql://app@127.0.0.1/shop
                                              the database's sessions during the ramp
  chokepoint profile --pid 4242 --duration 30s --out api.raw
                                              record a running Python service with py-spy, and say
                                              which code burns the time
  chokepoint profile api.raw --source src/    analyse a recording again (py-spy raw, speedscope,
                                              pprof, cProfile), reading the lines it names
  chokepoint load http://127.0.0.1:8000/orders --profile
                                              the ramp, with a profile of the target in its findings
  chokepoint diagnose http://127.0.0.1:8000/orders --pg postgresql://app@127.0.0.1/shop
                                              the ramp, the service's spans, the database and a
                                              profile in one run: one verdict, its gain predicted
  chokepoint diagnose http://127.0.0.1:8000/orders --baseline .chokepoint/runs/*-diagnose
                                              after the fix: the same run, compared with the first
  chokepoint diagnose --trace-file prod.otlp --profile-file api.raw --pg $DATABASE_URL
                                              one verdict over evidence recorded before, no ramp
  chokepoint load http://127.0.0.1:8000/orders --save --label before
                                              keep the run in .chokepoint/runs/
  chokepoint compare .chokepoint/runs/*-before .chokepoint/runs/*-after --fail-on-regression 10%
                                              did the fix work, and where is the bottleneck now
  chokepoint scan app/ --format sarif > scan.sarif
                                              the shapes of bottlenecks in Python source, each at
                                              its line, for code scanning
  chokepoint diagnose http://127.0.0.1:8000/orders --source app/
                                              what runs, joined to the lines that cause it
  chokepoint explain n-plus-one               what a detector looks for, and the fix

Exit codes: 0 analysed (no finding matched --fail-on), 1 a finding matched --fail-on,
2 bad input or usage (unreadable or empty input, bad arguments, a port in use).
Ctrl-C or SIGTERM stops traces, load, diagnose, listen, db --watch and profile --pid: what was
gathered is analysed and reported; a second one ends it at once (130).

Shell completions: chokepoint completions bash|zsh|fish; the manual: chokepoint man | man -l -";

/// Finds the bottleneck of a web backend from its traces, proves it with numbers, and says how
/// to fix it.
#[derive(Parser, Debug)]
#[command(name = "chokepoint", version, about, after_help = EXAMPLES, propagate_version = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Analyse trace files: OTLP JSON/JSON Lines/protobuf, Jaeger JSON, Zipkin v2 JSON, gzip.
    #[command(after_help = EXAMPLES)]
    Traces(TracesArgs),
    /// Receive OTLP traces live (HTTP 4318, gRPC 4317), record them, analyse them when stopped.
    #[command(after_help = EXAMPLES)]
    Listen(ListenArgs),
    /// Ramp load on a URL until throughput stops rising, sample the target, and say what limits it.
    #[command(after_help = EXAMPLES)]
    Load(Box<LoadArgs>),
    /// One run, every source at once: the ramp, the service's spans (an OTLP receiver), the
    /// database (--pg) and a py-spy profile of a local target — or evidence recorded before
    /// (--trace-file, --profile-file), with the ramp or without one; one verdict with the
    /// capacity its fix should buy; the run kept for `chokepoint compare`.
    #[command(after_help = EXAMPLES)]
    Diagnose(Box<DiagnoseArgs>),
    /// Inspect a PostgreSQL database, read-only: missing indexes, slow, unbounded and N+1-shaped
    /// statements, lock waits and connection churn.
    #[command(after_help = EXAMPLES)]
    Db(DbArgs),
    /// Read or record a Python profile (py-spy, speedscope, pprof, cProfile) and say which code
    /// burns the time: serialization, logging, regex compilation, sorting, a blocked event loop.
    #[command(after_help = EXAMPLES)]
    Profile(ProfileArgs),
    /// Find the shapes of bottlenecks in Python source before they ship: blocking calls in
    /// `async def`, N+1 loops, unbounded queries, sorts in memory, patterns compiled per request,
    /// clients made per request, awaits one after another, logging that syncs per record.
    Scan(ScanArgs),
    /// Show a saved run (`--save`) again, analysed with this version's detectors.
    #[command(after_help = EXAMPLES)]
    Report {
        /// The run folder (`.chokepoint/runs/…`).
        run: PathBuf,
        #[command(flatten)]
        report: ReportArgs,
    },
    /// Merge saved runs of the shards of one stream (receivers behind a load-balancing
    /// OpenTelemetry Collector, `listen --shard`) into one run, and report it: the findings of
    /// the whole stream.
    #[command(after_help = EXAMPLES)]
    Merge {
        /// The shards' run folders.
        #[arg(required = true, num_args = 1.., value_name = "RUN")]
        runs: Vec<PathBuf>,
        #[command(flatten)]
        report: ReportArgs,
    },
    /// Compare two saved runs: capacity, latency at equal load, every finding fixed, better,
    /// worse or new, and where the bottleneck moved.
    #[command(after_help = EXAMPLES)]
    Compare {
        /// The run before the fix.
        before: PathBuf,
        /// The run after it.
        after: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Exit with 1 when capacity fell, or a median or p99 at equal load rose, by more than
        /// this: `10%`.
        #[arg(long, value_name = "PERCENT")]
        fail_on_regression: Option<String>,
    },
    /// List the detectors and what each finds.
    Detectors,
    /// Print a detector's documentation: what it detects, why it matters, the fix.
    Explain {
        /// The detector id, e.g. `n-plus-one` (see `chokepoint detectors`).
        id: String,
    },
    /// Print the JSON Schema of `--format json` output.
    Schema,
    /// Print the completion script of a shell: `chokepoint completions bash >
    /// ~/.local/share/bash-completion/completions/chokepoint`, `zsh`, `fish`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff): `chokepoint man | man -l -`, or a command's:
    /// `chokepoint man diagnose | man -l -`.
    Man {
        /// The command whose page to print (`chokepoint-diagnose(1)`); the main page without it.
        command: Option<String>,
    },
}

#[derive(Args, Debug)]
pub(crate) struct ScanArgs {
    /// Python files or folders (read recursively, `.gitignore` respected).
    #[arg(required = true, value_name = "FILE|DIR")]
    pub(crate) paths: Vec<PathBuf>,
    /// Paths not to scan, as gitignore globs (repeatable): `--exclude 'scripts/**'`.
    #[arg(long, value_name = "GLOB")]
    pub(crate) exclude: Vec<String>,
    /// Scan virtual environments, migrations and tests too (skipped by default).
    #[arg(long)]
    pub(crate) no_default_excludes: bool,
    /// Files larger than this are taken for generated code and skipped, in KiB.
    #[arg(long, default_value_t = 1024, value_name = "KIB")]
    pub(crate) max_file_size: u64,
    /// A detector id not to report (repeatable).
    #[arg(long, value_name = "ID")]
    pub(crate) disable: Vec<String>,
    #[command(flatten)]
    pub(crate) report: ReportArgs,
}

/// A validated `scan` command.
#[derive(Debug)]
pub(crate) struct ScanConfig {
    pub(crate) paths: Vec<PathBuf>,
    pub(crate) options: chokepoint_scan::Options,
    pub(crate) report: ReportConfig,
}

impl ScanArgs {
    pub(crate) fn validate(self) -> anyhow::Result<ScanConfig> {
        let mut disabled = Vec::new();
        for id in &self.disable {
            match DetectorId::parse(id) {
                Some(id) => disabled.push(id),
                None => bail!("--disable {id:?} is not a detector id (`chokepoint detectors` lists them)"),
            }
        }
        if self.max_file_size == 0 {
            bail!("--max-file-size is in KiB: a whole number above 0");
        }
        let mut report = self.report.validate()?;
        report.fail_on_potential = true;
        Ok(ScanConfig {
            paths: self.paths,
            options: chokepoint_scan::Options {
                exclude: self.exclude,
                default_excludes: !self.no_default_excludes,
                max_file_bytes: self.max_file_size << 10,
                disabled,
            },
            report,
        })
    }
}

/// Options shared by every command that reports findings.
#[derive(Args, Debug)]
pub(crate) struct ReportArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub(crate) format: Format,
    /// Exit with 1 when a finding of this detector id is reported (repeat it, or `any`).
    #[arg(long, value_name = "ID")]
    pub(crate) fail_on: Vec<String>,
    /// Colour the text output.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto)]
    pub(crate) color: ColorChoice,
    /// No progress on standard error.
    #[arg(long, short)]
    pub(crate) quiet: bool,
    /// Keep the run — its evidence and its report — in `.chokepoint/runs/<time>-<label>/`, for
    /// `chokepoint report` and `chokepoint compare`.
    #[arg(long)]
    pub(crate) save: bool,
    /// Keep the run in this folder (implies --save).
    #[arg(long, value_name = "DIR")]
    pub(crate) run_dir: Option<PathBuf>,
    /// A label for the saved run's folder name (default: the command).
    #[arg(long, value_name = "TEXT")]
    pub(crate) label: Option<String>,
    /// The service's source (repeatable): its Python is scanned, and what runs is joined to the
    /// lines that cause it; a profile's frames are read from it when their paths are not found.
    #[arg(long, value_name = "DIR")]
    pub(crate) source: Vec<PathBuf>,
    /// With --fail-on: count the shapes found in the source that nothing measured too (`scan`
    /// always counts them).
    #[arg(long)]
    pub(crate) fail_on_potential: bool,
}

/// Where to keep a run.
#[derive(Debug, Clone)]
pub(crate) struct SaveConfig {
    pub(crate) dir: Option<PathBuf>,
    pub(crate) label: Option<String>,
    /// The shard this receiver is (`listen --shard`), and what the stream was split by.
    pub(crate) shard: Option<String>,
    pub(crate) routing_key: String,
}

impl SaveConfig {
    /// The folder the run is saved in: the one named, or a new one under `.chokepoint/runs/`.
    pub(crate) fn folder(&self, command: &str) -> PathBuf {
        self.dir.clone().unwrap_or_else(|| {
            chokepoint_run::default_folder(
                self.label.as_deref().unwrap_or(command),
                &chokepoint_run::rfc3339_now(),
            )
        })
    }
}

#[derive(Args, Debug)]
pub(crate) struct TracesArgs {
    /// Trace files or folders (read recursively); `-` reads standard input.
    #[arg(required_unless_present = "jaeger", value_name = "FILE|DIR")]
    pub(crate) paths: Vec<PathBuf>,
    #[command(flatten)]
    pub(crate) jaeger: JaegerArgs,
    /// With --jaeger: a header sent with every request to Jaeger (`--header 'Authorization:
    /// Bearer …'`), repeatable; its value is never printed or saved.
    #[arg(long, value_name = "'NAME: VALUE'", requires = "jaeger")]
    pub(crate) header: Vec<String>,
    /// The largest single record read whole (a JSON line, a JSON document, a protobuf message), in MiB.
    #[arg(long, default_value_t = 64, value_name = "MIB")]
    pub(crate) max_record_mib: usize,
    #[command(flatten)]
    pub(crate) pg: PgArgs,
    #[command(flatten)]
    pub(crate) report: ReportArgs,
}

/// Traces read from Jaeger's query service (api/v3).
#[derive(Args, Debug)]
pub(crate) struct JaegerArgs {
    /// Read traces from Jaeger's query service at this URL (`http://jaeger:16686`), api/v3.
    #[arg(long, value_name = "URL", requires = "service")]
    pub(crate) jaeger: Option<String>,
    /// With --jaeger: the service whose traces to read.
    #[arg(long, value_name = "NAME", requires = "jaeger")]
    pub(crate) service: Option<String>,
    /// With --jaeger: only traces with a span of this operation.
    #[arg(long, value_name = "OP", requires = "jaeger")]
    pub(crate) operation: Option<String>,
    /// With --jaeger: the window's start, this long ago.
    #[arg(long, default_value = "15m", value_name = "DURATION")]
    pub(crate) since: humantime::Duration,
    /// With --jaeger: the window's end, an RFC 3339 time or this long ago (default: now).
    #[arg(long, value_name = "TIME|DURATION", requires = "jaeger")]
    pub(crate) until: Option<String>,
    /// With --jaeger: at most this many traces.
    #[arg(long, value_name = "N", requires = "jaeger")]
    pub(crate) limit: Option<usize>,
    /// With --jaeger: a header sent with every request to Jaeger
    /// (`--jaeger-header 'Authorization: Bearer …'`; `--header` on `traces`), repeatable; its
    /// value is never printed or saved.
    #[arg(long, value_name = "'NAME: VALUE'", requires = "jaeger")]
    pub(crate) jaeger_header: Vec<String>,
    /// With --jaeger: how long one request may take.
    #[arg(long, default_value = "30s", value_name = "DURATION")]
    pub(crate) jaeger_timeout: humantime::Duration,
    /// With --jaeger: traces one answer may hold before its slice of the window is cut in two
    /// and asked again (the store's search depth, when it is set lower).
    #[arg(long, default_value_t = chokepoint_traces::jaeger_query::SEARCH_DEPTH, value_name = "N")]
    pub(crate) jaeger_search_depth: usize,
}

impl JaegerArgs {
    pub(crate) fn validate(self) -> anyhow::Result<Option<chokepoint_traces::jaeger_query::JaegerQuery>> {
        let Some(url) = self.jaeger else { return Ok(None) };
        let now = std::time::SystemTime::now();
        let since = now
            .checked_sub(self.since.into())
            .context("--since reaches before 1970")?;
        let until = match self.until.as_deref() {
            None => now,
            Some(text) => match humantime::parse_rfc3339_weak(text) {
                Ok(time) => time,
                Err(_) => now
                    .checked_sub(humantime::parse_duration(text).with_context(|| {
                        format!("--until {text:?} is neither an RFC 3339 time nor a duration ago")
                    })?)
                    .context("--until reaches before 1970")?,
            },
        };
        if until <= since {
            bail!("--until is not after --since: the window is empty");
        }
        let headers = self
            .jaeger_header
            .iter()
            .map(|h| {
                h.split_once(':')
                    .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
                    .filter(|(name, _)| !name.is_empty() && !name.contains(char::is_whitespace))
                    // The value is left out of the message: it may be a secret.
                    .with_context(|| {
                        format!(
                            "--header {:?}… is not 'NAME: VALUE'",
                            h.chars().take_while(|c| *c != ':').take(40).collect::<String>()
                        )
                    })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Some(chokepoint_traces::jaeger_query::JaegerQuery {
            url,
            service: self.service.unwrap_or_default(),
            operation: self.operation,
            since,
            until,
            limit: self.limit,
            headers,
            timeout: self.jaeger_timeout.into(),
            search_depth: self.jaeger_search_depth.max(1),
        }))
    }
}

/// The service's PostgreSQL, read beside another kind of evidence.
#[derive(Args, Debug)]
pub(crate) struct ProfileArgs {
    /// Profile files: py-spy raw or other collapsed stacks, speedscope JSON, pprof, cProfile
    /// statistics (gzip-compressed or not); `-` reads standard input. Several files are one
    /// profile.
    #[arg(value_name = "FILE", required_unless_present = "pid")]
    pub(crate) paths: Vec<PathBuf>,
    /// Record this running Python process with py-spy instead (idle samples and thread ids
    /// included, the process not paused).
    #[arg(long, conflicts_with = "paths")]
    pub(crate) pid: Option<u32>,
    /// How long to record.
    #[arg(long, default_value = "30s", value_name = "DURATION")]
    pub(crate) duration: humantime::Duration,
    /// Samples per second: of the recording, or of a collapsed-stacks file (which does not say;
    /// py-spy's default is 100).
    #[arg(long, default_value_t = 100)]
    pub(crate) rate: u32,
    /// Keep the recording here, to analyse it again (default: a file in the temporary folder,
    /// named in the report).
    #[arg(long, value_name = "FILE")]
    pub(crate) out: Option<PathBuf>,
    /// The py-spy to run (default: on PATH, else ./.venv/bin/py-spy).
    #[arg(long, value_name = "PATH")]
    pub(crate) py_spy: Option<PathBuf>,
    /// Also write a flame graph of the profile to this SVG file, frames coloured by category.
    #[arg(long, value_name = "FILE.svg")]
    pub(crate) flamegraph: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) report: ReportArgs,
}

/// A validated `profile` command.
#[derive(Debug)]
pub(crate) struct ProfileConfig {
    pub(crate) paths: Vec<PathBuf>,
    pub(crate) record: Option<RecordConfig>,
    pub(crate) rate_hz: u32,
    pub(crate) sources: Vec<PathBuf>,
    pub(crate) flamegraph: Option<PathBuf>,
    pub(crate) report: ReportConfig,
}

/// A recording to make with py-spy.
#[derive(Debug, Clone)]
pub(crate) struct RecordConfig {
    pub(crate) pid: u32,
    pub(crate) duration: Duration,
    pub(crate) out: Option<PathBuf>,
    pub(crate) py_spy: Option<PathBuf>,
}

/// `10%`, `10` or `0.1%` as a share (0.1).
pub(crate) fn parse_percent(text: &str) -> anyhow::Result<f64> {
    let number = text.trim().trim_end_matches('%').trim();
    let value: f64 = number
        .parse()
        .with_context(|| format!("{text:?} is not a percentage (write 10%)"))?;
    if !(0.0..=1000.0).contains(&value) {
        bail!("{text:?}: a percentage between 0% and 1000%");
    }
    Ok(value / 100.0)
}

impl ProfileArgs {
    pub(crate) fn validate(self) -> anyhow::Result<ProfileConfig> {
        if self.rate == 0 || self.rate > 10_000 {
            bail!("--rate must be between 1 and 10000 samples per second");
        }
        let duration: Duration = self.duration.into();
        if duration < Duration::from_secs(1) {
            bail!("--duration must be at least 1s");
        }
        Ok(ProfileConfig {
            paths: self.paths,
            record: self.pid.map(|pid| RecordConfig {
                pid,
                duration,
                out: self.out,
                py_spy: self.py_spy,
            }),
            rate_hz: self.rate,
            sources: self.report.source.clone(),
            flamegraph: self.flamegraph,
            report: self.report.validate()?,
        })
    }
}

#[derive(Args, Debug)]
pub(crate) struct PgArgs {
    /// Also read the service's PostgreSQL (read-only, like `chokepoint db`): with traces, the
    /// database's counts and plans of the statements they show (the reason a statement is slow,
    /// the index proven with HypoPG); with a load ramp, its sessions watched during the ramp.
    #[arg(long, value_name = "URL")]
    pub(crate) pg: Option<String>,
    /// With --pg: keep literal values in the database's statement texts (redacted by default;
    /// statements read from traces are always shown normalized).
    #[arg(long, requires = "pg")]
    pub(crate) show_literals: bool,
}

impl PgArgs {
    fn validate(self) -> Option<PgConfig> {
        self.pg.map(|url| PgConfig {
            url: database_url(url),
            show_literals: self.show_literals,
        })
    }
}

#[derive(Args, Debug)]
pub(crate) struct ListenArgs {
    /// OTLP/HTTP address (`POST /v1/traces`, protobuf or JSON); `off` disables it.
    #[arg(long, default_value = "127.0.0.1:4318", value_name = "ADDR")]
    pub(crate) http: String,
    /// OTLP/gRPC address; `off` disables it.
    #[arg(long, default_value = "127.0.0.1:4317", value_name = "ADDR")]
    pub(crate) grpc: String,
    /// Record every span received to this file (length-prefixed OTLP/protobuf, readable by
    /// `chokepoint traces`).
    #[arg(long, value_name = "FILE")]
    pub(crate) out: Option<PathBuf>,
    /// Stop after this long (`90s`, `5m`) instead of at Ctrl-C.
    #[arg(long, value_name = "DURATION")]
    pub(crate) duration: Option<humantime::Duration>,
    /// The largest request body accepted, compressed or not, in MiB.
    #[arg(long, default_value_t = 16, value_name = "MIB")]
    pub(crate) max_body_mib: usize,
    /// Connections served at once, per port; one more is closed on arrival. Headers must
    /// arrive within 10 s (an idle kept-alive connection is closed after 10 s) and a body
    /// within 30 s.
    #[arg(long, default_value_t = 512, value_name = "N")]
    pub(crate) max_connections: usize,
    /// Accept only exports with `Authorization: Bearer TOKEN` (401 otherwise); default:
    /// $CHOKEPOINT_TOKEN. Needed, with --tls-cert, to listen beyond loopback.
    #[arg(long, env = "CHOKEPOINT_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// Serve TLS with this certificate chain (PEM), on both ports.
    #[arg(long, value_name = "FILE.pem", requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE.pem", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
    /// Listen beyond loopback without TLS and a token: anyone who reaches the port can send
    /// spans, in the clear.
    #[arg(long)]
    pub(crate) insecure: bool,
    /// This receiver is one shard of a stream split by trace id (behind the OpenTelemetry
    /// Collector's load-balancing exporter): its name among the shards, kept in the saved run so
    /// `chokepoint merge` joins each shard once.
    #[arg(long, value_name = "ID")]
    pub(crate) shard: Option<String>,
    /// With --save: write the run every this long (atomic replace), so a crash loses at most
    /// that much; SIGTERM and Ctrl-C write the last one. `0s` turns checkpoints off.
    #[arg(long, default_value = "60s", value_name = "DURATION")]
    pub(crate) checkpoint: humantime::Duration,
    #[command(flatten)]
    pub(crate) report: ReportArgs,
}

#[derive(Args, Debug)]
pub(crate) struct LoadArgs {
    /// The URL to load (http:// or https://; the target is sampled when it listens on this
    /// host). Several URLs of one service make a request mix (see --weights).
    #[arg(value_name = "URL")]
    pub(crate) urls: Vec<String>,
    /// Weights of the URLs in the mix, in order (default: equal): `--weights 3,1`.
    #[arg(long, value_delimiter = ',', value_name = "W,W,…")]
    pub(crate) weights: Vec<u32>,
    /// `closed`: steps of concurrent connections; `open`: steps of requests per second, latency
    /// measured from each request's intended send time.
    #[arg(long, value_enum, default_value_t = Model::Closed)]
    pub(crate) model: Model,
    /// Closed model: the concurrency of each step (default: doubling from 1 to --max-concurrency).
    #[arg(long, value_delimiter = ',', value_name = "N,N,…")]
    pub(crate) concurrency: Vec<u32>,
    /// Open model: the rate of each step (default: doubling from 10/s to --max-rate).
    #[arg(long, value_delimiter = ',', value_name = "RPS,RPS,…")]
    pub(crate) rate: Vec<f64>,
    /// The highest concurrency the ramp may reach.
    #[arg(long, default_value_t = 64)]
    pub(crate) max_concurrency: u32,
    /// The highest rate the ramp may offer, in requests per second.
    #[arg(long, default_value_t = 2000.0)]
    pub(crate) max_rate: f64,
    /// Open model: connections requests are spread over.
    #[arg(long, default_value_t = 64)]
    pub(crate) connections: u32,
    /// How long each step runs.
    #[arg(long, default_value = "5s", value_name = "DURATION")]
    pub(crate) step_duration: humantime::Duration,
    /// The whole ramp stops after this long, whatever the steps.
    #[arg(long, default_value = "120s", value_name = "DURATION")]
    pub(crate) max_duration: humantime::Duration,
    /// A latency objective that breaks the ramp when missed: `p99<300ms`.
    #[arg(long, value_name = "pNN<LIMIT")]
    pub(crate) slo: Option<String>,
    /// The error rate, in percent, that breaks the ramp.
    #[arg(long, default_value_t = 5.0, value_name = "PERCENT")]
    pub(crate) max_error_rate: f64,
    /// Per-request timeout.
    #[arg(long, default_value = "10s", value_name = "DURATION")]
    pub(crate) timeout: humantime::Duration,
    /// The HTTP method.
    #[arg(long, short = 'X', default_value = "GET")]
    pub(crate) method: String,
    /// A request header, `Name: value` (repeatable).
    #[arg(long, short = 'H', value_name = "NAME: VALUE")]
    pub(crate) header: Vec<String>,
    /// The request body; `@FILE` reads it from a file.
    #[arg(long, short = 'd')]
    pub(crate) body: Option<String>,
    /// The target process to sample (default: the one listening on the URL's port, if on this host).
    #[arg(long)]
    pub(crate) pid: Option<u32>,
    /// Do not sample the target process from /proc (a target in another container or host);
    /// give --metrics for its CPU instead.
    #[arg(long, conflicts_with = "pid")]
    pub(crate) no_pid: bool,
    /// The target's Prometheus endpoint (`http://host:port/metrics`): its CPU
    /// (`process_cpu_seconds_total`) and queue, pool and in-flight gauges, per step.
    #[arg(long, value_name = "URL")]
    pub(crate) metrics: Option<String>,
    /// Speak HTTP/2 instead of HTTP/1.1: h2c (prior knowledge) for http://, ALPN h2 for https://.
    #[arg(long)]
    pub(crate) http2: bool,
    /// Also trust the certificates in this PEM file (a private CA, a self-signed test server),
    /// besides the Mozilla roots.
    #[arg(long, value_name = "FILE.pem")]
    pub(crate) cacert: Option<PathBuf>,
    /// Also write the latency-versus-throughput curve to this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub(crate) chart: Option<PathBuf>,
    /// Profile the target (a local Python process) with py-spy during the top half of the
    /// ramp's steps, so its findings name the code (see `chokepoint profile`).
    #[arg(long, conflicts_with = "no_pid")]
    pub(crate) profile: bool,
    /// With --profile: keep the recording here (default: a file in the temporary folder).
    #[arg(long, value_name = "FILE")]
    pub(crate) profile_out: Option<PathBuf>,
    /// With --profile: the py-spy to run (default: on PATH, else ./.venv/bin/py-spy).
    #[arg(long, value_name = "PATH")]
    pub(crate) py_spy: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) pg: PgArgs,
    #[command(flatten)]
    pub(crate) report: ReportArgs,
}

#[derive(Args, Debug)]
pub(crate) struct DiagnoseArgs {
    #[command(flatten)]
    pub(crate) load: LoadArgs,
    /// Where to receive the service's spans over OTLP/HTTP during the ramp.
    #[arg(long, default_value = "127.0.0.1:4318", value_name = "ADDR")]
    pub(crate) otlp: SocketAddr,
    /// No OTLP receiver.
    #[arg(long)]
    pub(crate) no_traces: bool,
    /// No py-spy profile of the target.
    #[arg(long)]
    pub(crate) no_profile: bool,
    /// Compare this run with a saved one (`chokepoint compare BASELINE <this run>`), printed
    /// after the report and kept in the run folder.
    #[arg(long, value_name = "RUN")]
    pub(crate) baseline: Option<PathBuf>,
    /// Traces recorded before (any file or folder `chokepoint traces` reads; repeatable): joined
    /// with the ramp instead of receiving spans, or, without a URL, analysed with the other
    /// recorded evidence.
    #[arg(long = "trace-file", value_name = "FILE")]
    pub(crate) trace_files: Vec<PathBuf>,
    /// A profile recorded before (any file `chokepoint profile` reads; repeatable): used instead
    /// of recording one.
    #[arg(long = "profile-file", value_name = "FILE")]
    pub(crate) profile_files: Vec<PathBuf>,
    /// With --profile-file: the sample rate of collapsed stacks that do not say it, per second.
    #[arg(long, default_value_t = 100, value_name = "HZ")]
    pub(crate) profile_rate: u32,
    #[command(flatten)]
    pub(crate) jaeger: JaegerArgs,
}

/// Evidence recorded before, given to `diagnose`.
#[derive(Debug, Default, Clone)]
pub(crate) struct Recorded {
    pub(crate) trace_files: Vec<PathBuf>,
    /// Traces read from Jaeger.
    pub(crate) jaeger: Option<chokepoint_traces::jaeger_query::JaegerQuery>,
    pub(crate) profile_files: Vec<PathBuf>,
    pub(crate) profile_rate_hz: u32,
    /// Where the profiled code lives (--source).
    pub(crate) sources: Vec<PathBuf>,
}

impl Recorded {
    /// The sources of the evidence recorded before: trace files, Jaeger, profiles — each kept in
    /// the run folder when it is a file.
    pub(crate) fn sources(self, stop: &chokepoint_collect::Stop) -> Vec<Box<dyn chokepoint_collect::Source>> {
        let mut sources: Vec<Box<dyn chokepoint_collect::Source>> = Vec::new();
        if !self.trace_files.is_empty() {
            sources.push(Box::new(chokepoint_collect::traces::TraceFiles {
                paths: self.trace_files,
                max_record_bytes: chokepoint_collect::traces::MAX_RECORD_BYTES,
                stop: Some(stop.clone()),
                keep: true,
            }));
        }
        if let Some(query) = self.jaeger {
            sources.push(Box::new(chokepoint_collect::traces::Jaeger {
                query,
                max_record_bytes: chokepoint_collect::traces::MAX_RECORD_BYTES,
            }));
        }
        if !self.profile_files.is_empty() {
            sources.push(Box::new(chokepoint_collect::profile::ProfileFiles {
                paths: self.profile_files,
                rate_hz: self.profile_rate_hz,
                sources: self.sources,
                keep: true,
            }));
        }
        sources
    }
}

/// What `diagnose` runs: a ramp (with whatever was recorded before joined to it), or the
/// recorded evidence alone.
pub(crate) enum DiagnoseConfig {
    Live(Box<LoadConfig>),
    Recorded(Box<RecordedRun>),
}

/// `diagnose` without a URL.
pub(crate) struct RecordedRun {
    pub(crate) recorded: Recorded,
    pub(crate) pg: Option<PgConfig>,
    pub(crate) report: ReportConfig,
    pub(crate) baseline: Option<PathBuf>,
}

impl DiagnoseArgs {
    pub(crate) fn validate(self) -> anyhow::Result<DiagnoseConfig> {
        let DiagnoseArgs {
            mut load,
            otlp,
            no_traces,
            no_profile,
            baseline,
            trace_files,
            profile_files,
            profile_rate,
            jaeger,
        } = self;
        if let Some(run) = &baseline
            && !run.join("run.json").is_file()
        {
            bail!(
                "--baseline {}: not a saved run (no run.json); runs are saved under .chokepoint/runs/",
                run.display()
            );
        }
        if profile_rate == 0 {
            bail!("--profile-rate is samples per second: a whole number above 0");
        }
        // Runs are kept: `diagnose` is the first half of `compare`.
        if load.report.run_dir.is_none() {
            load.report.save = true;
        }
        if load.report.label.is_none() {
            load.report.label = Some("diagnose".to_owned());
        }
        let recorded = Recorded {
            trace_files,
            jaeger: jaeger.validate()?,
            profile_files,
            profile_rate_hz: profile_rate,
            sources: load.report.source.clone(),
        };
        if load.urls.is_empty() {
            if recorded.trace_files.is_empty()
                && recorded.jaeger.is_none()
                && recorded.profile_files.is_empty()
                && load.pg.pg.is_none()
            {
                bail!(
                    "give the URL to load, or evidence recorded before: --trace-file, --jaeger, --profile-file, --pg \
                     (`chokepoint diagnose http://127.0.0.1:8000/orders`)"
                );
            }
            return Ok(DiagnoseConfig::Recorded(Box::new(RecordedRun {
                recorded,
                pg: load.pg.validate(),
                report: load.report.validate()?,
                baseline,
            })));
        }
        // Every source the machine allows: a profile when the target is local and py-spy is there
        // and none was given — and when py-spy is not there, the report says what that costs.
        let wants_profile = !no_profile && recorded.profile_files.is_empty() && !load.no_pid;
        let py_spy = chokepoint_profile::find_py_spy(load.py_spy.as_deref());
        load.profile = wants_profile && py_spy.is_ok();
        let missing_profiler = match py_spy {
            Err(error) if wants_profile => Some(chokepoint_evidence::Note::new(
                chokepoint_evidence::Severity::Warning,
                "--profile",
                format!(
                    "{error}; {} (--no-profile runs without it knowingly)",
                    chokepoint_collect::ramp::WITHOUT_PROFILE
                ),
            )),
            _ => None,
        };
        let mut config = load.validate()?;
        config.notes.extend(missing_profiler);
        config.command = "diagnose";
        config.baseline = baseline;
        if !no_traces && recorded.trace_files.is_empty() && recorded.jaeger.is_none() {
            config.receiver = Some(otlp);
            config.record_spans =
                Some(std::env::temp_dir().join(format!("chokepoint-diagnose-{}.otlp", std::process::id())));
        }
        config.recorded = recorded;
        Ok(DiagnoseConfig::Live(Box::new(config)))
    }
}

#[derive(Args, Debug)]
pub(crate) struct DbArgs {
    /// The database URL (`postgresql://user@host:5432/db`); default: $DATABASE_URL. Every session
    /// is read-only, with a statement and a lock timeout.
    pub(crate) url: Option<String>,
    /// Watch for this long (`30s`, `2m`): statements differenced over the window, sessions
    /// sampled at 10 Hz for lock waits and their blockers, the session rate.
    #[arg(long, value_name = "DURATION")]
    pub(crate) watch: Option<humantime::Duration>,
    /// Keep literal values in statement texts (they are redacted by default: `$1`, `$2`, …).
    #[arg(long)]
    pub(crate) show_literals: bool,
    #[command(flatten)]
    pub(crate) report: ReportArgs,
}

/// A validated `db` command.
#[derive(Debug)]
pub(crate) struct DbConfig {
    pub(crate) url: String,
    pub(crate) watch: Option<Duration>,
    pub(crate) show_literals: bool,
    pub(crate) report: ReportConfig,
}

impl DbArgs {
    pub(crate) fn validate(self) -> anyhow::Result<DbConfig> {
        let url = match self
            .url
            .or_else(|| std::env::var("DATABASE_URL").ok())
            .or_else(libpq_url)
        {
            Some(url) => database_url(url),
            None => {
                bail!("give the database URL, or set DATABASE_URL (postgresql://user@host:5432/db) or PGHOST")
            }
        };
        let watch: Option<Duration> = self.watch.map(Into::into);
        if watch.is_some_and(|w| w > Duration::from_secs(3600)) {
            bail!("--watch is bounded to an hour");
        }
        Ok(DbConfig {
            url,
            watch,
            show_literals: self.show_literals,
            report: self.report.validate()?,
        })
    }
}

/// A URL as tokio-postgres reads it: SQLAlchemy's dialect-qualified URLs are common in the
/// environments chokepoint reads.
fn database_url(url: String) -> String {
    url.replacen("postgresql+psycopg://", "postgresql://", 1)
        .replacen("postgresql+psycopg2://", "postgresql://", 1)
}

/// A connection string from libpq's environment variables (`PGHOST`, `PGPORT`, `PGUSER`,
/// `PGPASSWORD`, `PGDATABASE`), when `PGHOST` is set.
fn libpq_url() -> Option<String> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    var("PGHOST")?;
    let mut url = String::new();
    for (name, key) in [
        ("PGHOST", "host"),
        ("PGPORT", "port"),
        ("PGUSER", "user"),
        ("PGPASSWORD", "password"),
        ("PGDATABASE", "dbname"),
    ] {
        if let Some(value) = var(name) {
            url.push_str(&format!(
                "{key}='{}' ",
                value.replace('\\', "\\\\").replace('\'', "\\'")
            ));
        }
    }
    Some(url)
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Model {
    /// Concurrency steps.
    Closed,
    /// Arrival-rate steps.
    Open,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// For a terminal.
    Text,
    /// For tools: see `chokepoint schema`.
    Json,
    /// For a pull request or a ticket.
    Markdown,
    /// SARIF 2.1.0, for code scanning: the findings that name a line of source.
    Sarif,
    /// One self-contained HTML page (offline: no request of any kind): redirect it to a file.
    Html,
}

impl Format {
    /// The report's rendering for this format.
    pub(crate) fn rendering(self, color: bool) -> chokepoint_report::Rendering {
        use chokepoint_report::Rendering;
        match self {
            Format::Text => Rendering::Text { color },
            Format::Json => Rendering::Json,
            Format::Markdown => Rendering::Markdown,
            Format::Sarif => Rendering::Sarif,
            Format::Html => Rendering::Html,
        }
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ColorChoice {
    /// When standard output is a terminal and NO_COLOR is unset.
    Auto,
    Always,
    Never,
}

/// Validated reporting options.
#[derive(Debug)]
pub(crate) struct ReportConfig {
    pub(crate) format: Format,
    pub(crate) fail_on: FailOn,
    pub(crate) color: bool,
    pub(crate) progress: bool,
    pub(crate) save: Option<SaveConfig>,
    /// The service's source, scanned beside the other evidence.
    pub(crate) sources: Vec<PathBuf>,
    /// Whether --fail-on counts findings nothing measured.
    pub(crate) fail_on_potential: bool,
}

/// Which findings make the exit code 1.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FailOn {
    Never,
    Any,
    Ids(Vec<DetectorId>),
}

/// A validated `traces` command.
#[derive(Debug)]
pub(crate) struct TracesConfig {
    pub(crate) paths: Vec<PathBuf>,
    pub(crate) jaeger: Option<chokepoint_traces::jaeger_query::JaegerQuery>,
    pub(crate) max_record_bytes: usize,
    pub(crate) pg: Option<PgConfig>,
    pub(crate) report: ReportConfig,
}

/// A validated `listen` command.
#[derive(Debug)]
pub(crate) struct ListenConfig {
    pub(crate) http: Option<SocketAddr>,
    pub(crate) grpc: Option<SocketAddr>,
    pub(crate) out: Option<PathBuf>,
    pub(crate) duration: Option<Duration>,
    pub(crate) max_body_bytes: usize,
    pub(crate) max_connections: usize,
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
    pub(crate) token: Option<Arc<str>>,
    /// How often the run is saved while listening, when it is saved.
    pub(crate) checkpoint: Option<Duration>,
    pub(crate) report: ReportConfig,
}

/// A validated `load` command.
#[derive(Debug)]
pub(crate) struct LoadConfig {
    /// The first URL: its scheme, host and port are the target's.
    pub(crate) url: hyper::Uri,
    pub(crate) request: RequestConfig,
    pub(crate) ramp: RampShape,
    pub(crate) sampling: SamplingConfig,
    pub(crate) chart: Option<PathBuf>,
    pub(crate) profile: Option<ProfileSettings>,
    pub(crate) pg: Option<PgConfig>,
    pub(crate) report: ReportConfig,
    /// `load` or `diagnose`.
    pub(crate) command: &'static str,
    /// `diagnose`: where the service's spans are received during the ramp.
    pub(crate) receiver: Option<SocketAddr>,
    /// `diagnose`: where the received spans are recorded (in the run folder).
    pub(crate) record_spans: Option<PathBuf>,
    /// `diagnose --baseline`: the run to compare this one with.
    pub(crate) baseline: Option<PathBuf>,
    /// `diagnose`: evidence recorded before, joined with the ramp.
    pub(crate) recorded: Recorded,
    /// What validating the arguments found to say in the report: a source `diagnose` would use
    /// and cannot (py-spy missing).
    pub(crate) notes: Vec<chokepoint_evidence::Note>,
}

impl LoadArgs {
    pub(crate) fn validate(self) -> anyhow::Result<LoadConfig> {
        if self.urls.is_empty() {
            bail!("give the URL to load: `chokepoint load http://127.0.0.1:8000/orders`");
        }
        let mut uris = Vec::new();
        for text in &self.urls {
            let uri: hyper::Uri = text.parse().with_context(|| format!("{text:?} is not a URL"))?;
            if !matches!(uri.scheme_str(), Some("http" | "https")) {
                bail!("{text:?}: give a full http:// or https:// URL");
            }
            if uri.host().is_none() {
                bail!("{text:?} has no host");
            }
            uris.push(uri);
        }
        let url = uris[0].clone();
        if uris
            .iter()
            .any(|u| u.authority() != url.authority() || u.scheme() != url.scheme())
        {
            bail!("the URLs of a mix must share one host and port: they load one service");
        }
        if !self.weights.is_empty() && self.weights.len() != uris.len() {
            bail!(
                "--weights has {} values for {} URLs",
                self.weights.len(),
                uris.len()
            );
        }
        if self.weights.iter().any(|&w| w == 0 || w > 1000) {
            bail!("--weights are whole numbers from 1 to 1000");
        }
        let paths = uris
            .iter()
            .enumerate()
            .map(|(i, u)| {
                let path = u
                    .path_and_query()
                    .map_or("/".to_owned(), |p| p.as_str().to_owned());
                (path, self.weights.get(i).copied().unwrap_or(1))
            })
            .collect();
        let steps: Vec<f64> = match self.model {
            Model::Closed if self.concurrency.is_empty() => {
                std::iter::successors(Some(1u32), |n| n.checked_mul(2))
                    .take_while(|&n| n <= self.max_concurrency)
                    .map(f64::from)
                    .collect()
            }
            Model::Closed => self.concurrency.iter().map(|&n| f64::from(n)).collect(),
            Model::Open if self.rate.is_empty() => std::iter::successors(Some(10.0f64), |r| Some(r * 2.0))
                .take_while(|&r| r <= self.max_rate)
                .collect(),
            Model::Open => self.rate.clone(),
        };
        if steps.is_empty() || steps.iter().any(|&s| s <= 0.0) {
            bail!("the steps must be positive numbers");
        }
        if self.max_duration < self.step_duration {
            bail!(
                "--max-duration {} is shorter than one step (--step-duration {}): the ramp would run nothing",
                self.max_duration,
                self.step_duration
            );
        }
        if let Some(bad) = steps.iter().find(|&&s| match self.model {
            Model::Closed => s > f64::from(self.max_concurrency),
            Model::Open => s > self.max_rate,
        }) {
            bail!(
                "step {bad} is over the safety bound (--max-concurrency {}, --max-rate {})",
                self.max_concurrency,
                self.max_rate
            );
        }
        let slo = match &self.slo {
            Some(text) => Some(
                chokepoint_load::Slo::parse(text)
                    .with_context(|| format!("--slo {text:?}: write it like p99<300ms"))?,
            ),
            None => None,
        };
        if !(0.0..=100.0).contains(&self.max_error_rate) {
            bail!("--max-error-rate is a percentage, 0 to 100");
        }
        let method = hyper::Method::from_bytes(self.method.to_ascii_uppercase().as_bytes())
            .with_context(|| format!("{:?} is not an HTTP method", self.method))?;
        let headers = self
            .header
            .iter()
            .map(|h| {
                h.split_once(':')
                    .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
                    .with_context(|| format!("--header {h:?}: write it as `Name: value`"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let body = match self.body.as_deref() {
            Some(file) if file.starts_with('@') => bytes::Bytes::from(
                std::fs::read(&file[1..])
                    .with_context(|| format!("cannot read the body file {}", &file[1..]))?,
            ),
            Some(text) => bytes::Bytes::from(text.to_owned()),
            None => bytes::Bytes::new(),
        };
        Ok(LoadConfig {
            url,
            request: RequestConfig {
                paths,
                method,
                headers,
                body,
                timeout: self.timeout.into(),
                http2: self.http2,
                cacert: match &self.cacert {
                    Some(path) => Some(
                        std::fs::read(path)
                            .with_context(|| format!("cannot read --cacert {}", path.display()))?,
                    ),
                    None => None,
                },
            },
            ramp: RampShape {
                steps,
                connections: self.connections.max(1) as usize,
                step_duration: self.step_duration.into(),
                max_duration: self.max_duration.into(),
                stop: chokepoint_load::StopRules {
                    model: match self.model {
                        Model::Closed => LoadModel::Closed,
                        Model::Open => LoadModel::Open,
                    },
                    slo,
                    max_error_rate: self.max_error_rate / 100.0,
                },
            },
            chart: self.chart,
            command: "load",
            receiver: None,
            record_spans: None,
            baseline: None,
            recorded: Recorded::default(),
            notes: Vec::new(),
            profile: self.profile.then_some(ProfileSettings {
                out: self.profile_out,
                py_spy: self.py_spy,
                sources: self.report.source.clone(),
            }),
            pg: self.pg.validate(),
            sampling: SamplingConfig {
                pid: self.pid,
                no_pid: self.no_pid,
                metrics: match &self.metrics {
                    Some(text) => {
                        let uri: hyper::Uri = text
                            .parse()
                            .with_context(|| format!("--metrics {text:?} is not a URL"))?;
                        if uri.scheme_str() != Some("http") || uri.host().is_none() {
                            bail!(
                                "--metrics {text:?}: give an http:// URL, like http://127.0.0.1:9100/metrics"
                            );
                        }
                        Some(uri)
                    }
                    None => None,
                },
            },
            report: self.report.validate()?,
        })
    }
}

impl ReportArgs {
    pub(crate) fn validate(self) -> anyhow::Result<ReportConfig> {
        use std::io::IsTerminal as _;
        let fail_on = if self.fail_on.is_empty() {
            FailOn::Never
        } else if self.fail_on.iter().any(|id| id == "any") {
            FailOn::Any
        } else {
            let mut ids = Vec::new();
            for id in &self.fail_on {
                match chokepoint_detect::find_detector(id) {
                    Some(meta) => ids.push(meta.id),
                    None => {
                        let known: Vec<_> = chokepoint_detect::detectors().map(|d| d.id.as_str()).collect();
                        bail!(
                            "--fail-on {id:?} is not a detector id; use `any` or one of: {}",
                            known.join(", ")
                        );
                    }
                }
            }
            FailOn::Ids(ids)
        };
        let color = match self.color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        };
        Ok(ReportConfig {
            format: self.format,
            fail_on,
            color: color && self.format == Format::Text,
            progress: !self.quiet && std::io::stderr().is_terminal(),
            save: (self.save || self.run_dir.is_some()).then_some(SaveConfig {
                dir: self.run_dir,
                label: self.label,
                shard: None,
                routing_key: String::new(),
            }),
            sources: self.source,
            fail_on_potential: self.fail_on_potential,
        })
    }
}

impl TracesArgs {
    pub(crate) fn validate(self) -> anyhow::Result<TracesConfig> {
        if self.max_record_mib == 0 || self.max_record_mib > 4096 {
            bail!("--max-record-mib must be between 1 and 4096");
        }
        Ok(TracesConfig {
            paths: self.paths,
            jaeger: JaegerArgs {
                jaeger_header: [self.jaeger.jaeger_header, self.header].concat(),
                ..self.jaeger
            }
            .validate()?,
            max_record_bytes: self.max_record_mib << 20,
            pg: self.pg.validate(),
            report: self.report.validate()?,
        })
    }
}

impl ListenArgs {
    pub(crate) fn validate(self) -> anyhow::Result<ListenConfig> {
        let address = |text: &str, flag: &str| -> anyhow::Result<Option<SocketAddr>> {
            if text == "off" {
                return Ok(None);
            }
            text.parse()
                .map(Some)
                .with_context(|| format!("{flag} {text:?} is not an address like 127.0.0.1:4318 (or `off`)"))
        };
        let http = address(&self.http, "--http")?;
        let grpc = address(&self.grpc, "--grpc")?;
        if http.is_none() && grpc.is_none() {
            bail!("--http and --grpc are both off: there is nothing to listen on");
        }
        if self.max_body_mib == 0 || self.max_body_mib > 1024 {
            bail!("--max-body-mib must be between 1 and 1024");
        }
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(tls_config(cert, key)?),
            _ => None,
        };
        let open = [http, grpc].into_iter().flatten().find(|a| !a.ip().is_loopback());
        if let Some(open) = open
            && !(self.insecure || (tls.is_some() && self.token.is_some()))
        {
            bail!(
                "{open} is reachable beyond this host: give --tls-cert/--tls-key and --token (exporters then send \
                 OTEL_EXPORTER_OTLP_HEADERS=Authorization=Bearer%20<token> over https), or --insecure to accept \
                 anyone's spans in the clear"
            );
        }
        let mut report = self.report.validate()?;
        match report.save.as_mut() {
            Some(save) => {
                // One folder for every checkpoint and the last save.
                save.dir = Some(save.folder("listen"));
                save.shard = self.shard;
                save.routing_key = "traceID".to_owned();
            }
            None if self.shard.is_some() => {
                anyhow::bail!("--shard names the run this receiver saves: add --save or --run-dir DIR")
            }
            None => {}
        }
        Ok(ListenConfig {
            http,
            grpc,
            out: self.out,
            duration: self.duration.map(Into::into),
            max_body_bytes: self.max_body_mib << 20,
            max_connections: self.max_connections.max(1),
            tls,
            token: self.token.filter(|t| !t.is_empty()).map(Into::into),
            checkpoint: report
                .save
                .is_some()
                .then_some(Duration::from(self.checkpoint))
                .filter(|d| !d.is_zero()),
            report,
        })
    }
}

/// The receiver's TLS: the certificate chain and key of `cert` and `key` (PEM), HTTP/2 and
/// HTTP/1.1 offered.
fn tls_config(cert: &Path, key: &Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("cannot read --tls-cert {}", cert.display()))?;
    if chain.is_empty() {
        bail!("--tls-cert {} holds no certificate", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("cannot read --tls-key {}", key.display()))?;
    let mut config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .context("TLS")?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .context("--tls-cert and --tls-key do not make a usable certificate")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn rejects_unknown_fail_on_ids_with_the_list() {
        let cli =
            Cli::try_parse_from(["chokepoint", "traces", "x", "--fail-on", "n-plus-two"]).expect("parses");
        let Command::Traces(args) = cli.command else {
            panic!("traces")
        };
        let error = args.validate().expect_err("unknown id").to_string();
        assert!(error.contains("n-plus-one"), "{error}");
    }

    #[test]
    fn listen_defaults_to_loopback() {
        let cli = Cli::try_parse_from(["chokepoint", "listen"]).expect("parses");
        let Command::Listen(args) = cli.command else {
            panic!("listen")
        };
        let config = args.validate().expect("valid");
        assert!(config.http.is_some_and(|a| a.ip().is_loopback()));
        assert!(config.grpc.is_some_and(|a| a.ip().is_loopback()));
    }
}
