//! A load ramp as measured: one entry per step, with the generator's view (throughput, latency)
//! and the samplers' view of the target (CPU, threads, accept queue) side by side.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How load was offered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LoadModel {
    /// Concurrency steps: N connections, each sending its next request when the last answers.
    Closed,
    /// Arrival-rate steps: requests at fixed intended times, latency measured from them.
    Open,
}

/// Latency percentiles of one step, in ms.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Latency {
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
    /// Mean.
    pub mean_ms: f64,
}

/// What the samplers saw of the target process (and its children) during one step.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct TargetSample {
    /// CPU used, in cores (1.0 = one core busy all the step).
    pub cpu_cores: f64,
    /// Threads running or runnable, on average.
    pub threads_running: f64,
    /// Threads in uninterruptible sleep (usually disk I/O), on average.
    pub threads_blocked_io: f64,
    /// Threads in all, at the end of the step.
    pub threads: f64,
    /// Time threads waited for a CPU (scheduler run delay), in ms per second of the step.
    pub run_delay_ms_per_s: f64,
    /// Connections waiting in the listen socket's accept queue, on average.
    pub accept_queue: f64,
    /// The same, at most.
    pub accept_queue_max: f64,
    /// Connections the kernel dropped because an accept queue was full (host-wide counter
    /// `ListenOverflows`, during the step).
    pub listen_overflows: f64,
    /// New TCP connections opened from the host during the step other than the generator's and
    /// the metrics scraper's (`ActiveOpens`): on a test host, the target's own outbound
    /// connections — to its database and downstream services.
    #[serde(default)]
    pub outbound_connections: f64,
    /// The remote end the target's established outbound connections went to most often.
    #[serde(default)]
    pub outbound_peer: Option<String>,
}

/// One step of a load ramp.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct LoadStep {
    /// Concurrency (closed model) or intended requests per second (open model).
    pub offered: f64,
    /// How long the step ran, in seconds.
    pub duration_s: f64,
    /// Responses received.
    pub requests: u64,
    /// Failed requests: connection errors, timeouts, 5xx answers.
    pub errors: u64,
    /// Of which timeouts.
    pub timeouts: u64,
    /// Responses per second.
    pub throughput_rps: f64,
    /// Response body bytes per second.
    pub bytes_per_s: f64,
    /// Mean response body size, in bytes.
    pub response_bytes_mean: f64,
    /// The share of a sampled response body that gzip removes (0–1), when the sample was not
    /// already compressed.
    pub gzip_saving: Option<f64>,
    /// Latency; in the open model measured from each request's intended send time.
    pub latency: Latency,
    /// Connections the generator had to open during the step (the target closed the others).
    pub new_connections: u64,
    /// The generator's own CPU, in cores.
    pub generator_cpu_cores: f64,
    /// Open model: how late requests were sent after their intended time, 99th percentile, in ms.
    pub send_lag_p99_ms: f64,
    /// Closed model: requests in flight by Little's law (throughput × mean latency), to compare
    /// with `offered`; a gap means the generator could not keep the connections busy.
    pub in_flight_by_littles_law: f64,
    /// Whether the generator itself was the limit in this step (its CPU, or sending late).
    pub generator_limited: bool,
    /// The target, when it could be sampled (from `/proc`, or from its Prometheus metrics).
    pub target: Option<TargetSample>,
    /// Gauges scraped from the target's Prometheus endpoint (`--metrics`), averaged over the
    /// step: queue depths, pool sizes, requests in flight.
    pub metrics: std::collections::BTreeMap<String, f64>,
    /// Host CPU busy, 0–1 of all cores.
    pub host_cpu_busy: f64,
    /// When the step began, in seconds since the ramp began.
    pub started_s: f64,
    /// `--pg`: the database's active sessions during the step, on average.
    pub pg_active: Option<f64>,
    /// `--pg`: the database's sessions waiting on a lock during the step, on average.
    pub pg_lock_waiting: Option<f64>,
}

/// A whole ramp.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LoadRun {
    /// The URL loaded.
    pub url: String,
    /// How load was offered.
    pub model: LoadModel,
    /// Cores of the host.
    pub host_cores: f64,
    /// The target process sampled, if any.
    #[serde(default)]
    pub target_pid: Option<u32>,
    /// The steps in order.
    pub steps: Vec<LoadStep>,
    /// Why the ramp stopped (the breaking condition, a safety bound, or the last step).
    pub stopped_because: String,
    /// The step that broke a condition (SLO, errors, falling throughput), if one did; the step
    /// before it is the capacity.
    #[serde(default)]
    pub breaking_step: Option<usize>,
    /// Whether the target stopped accepting connections (it died or closed its port) — the run
    /// is incomplete, not a measurement of capacity.
    #[serde(default)]
    pub target_lost: bool,
}
