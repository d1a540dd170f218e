//! A load ramp as measured: one entry per step, with the generator's view (throughput, latency)
//! and the samplers' view of the target (CPU, threads, accept queue) side by side.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::LatencyHistogram;

/// How load was offered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LoadModel {
    /// Concurrency steps: N connections, each sending its next request when the last answers.
    Closed,
    /// Arrival-rate steps: requests at fixed intended times, latency measured from them.
    Open,
}

/// Latency percentiles of one step, in ms (a summary of [`LoadStep::latency_histogram`]).
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
    pub outbound_connections: f64,
    /// The remote ends of the outbound connections the target opened during the step that the
    /// sampler saw established (connections already open when sampling began — a pool's — are
    /// not counted): `host:port` → connections seen. Best effort: a connection shorter than the
    /// read of the socket table can be missed.
    pub outbound_peers: std::collections::BTreeMap<String, u64>,
}

/// One step of a load ramp.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct LoadStep {
    /// Concurrency (closed model) or intended requests per second (open model).
    pub offered: f64,
    /// When the step began, in seconds since the Unix epoch.
    pub started_unix_s: f64,
    /// How long the step ran, in seconds.
    pub duration_s: f64,
    /// Responses received.
    pub requests: u64,
    /// Failed requests: connection errors, timeouts, 5xx answers.
    pub errors: u64,
    /// Of which timeouts.
    pub timeouts: u64,
    /// Errors by kind: `connect`, `tls`, `stale`, `broken`, `status` (5xx), `timeout`, ….
    pub errors_by_kind: std::collections::BTreeMap<String, u64>,
    /// Responses per second (answers that were not errors).
    pub throughput_rps: f64,
    /// Response body bytes per second.
    pub bytes_per_s: f64,
    /// Mean response body size, in bytes.
    pub response_bytes_mean: f64,
    /// The share of a sampled response body that gzip removes (0–1), when the sample was not
    /// already compressed.
    pub gzip_saving: Option<f64>,
    /// Latency percentiles; in the open model measured from each request's intended send time.
    pub latency: Latency,
    /// The whole latency distribution, in µs: any percentile can be read from it.
    pub latency_histogram: LatencyHistogram,
    /// Connections the generator had to open during the step (the target closed the others).
    pub new_connections: u64,
    /// The generator's own CPU, in cores.
    pub generator_cpu_cores: f64,
    /// Open model: how late requests were sent after their intended time, 99th percentile, in ms.
    pub send_lag_p99_ms: f64,
    /// Closed model: requests in flight by Little's law (throughput × mean latency), to compare
    /// with `offered`; a gap means the generator could not keep the connections busy.
    pub in_flight_by_littles_law: f64,
    /// The target, when it could be sampled (from `/proc`, or from its Prometheus metrics).
    pub target: Option<TargetSample>,
    /// Gauges scraped from the target's Prometheus endpoint (`--metrics`), averaged over the
    /// step: queue depths, pool sizes, requests in flight.
    pub metrics: std::collections::BTreeMap<String, f64>,
    /// Host CPU busy, 0–1 of all cores.
    pub host_cpu_busy: f64,
}

impl LoadStep {
    /// The latency at quantile `q` (0–1), in ms: from the histogram when it was kept, else the
    /// nearest summary percentile at or above `q`.
    pub fn latency_ms_at(&self, q: f64) -> f64 {
        if let Some(ms) = self.latency_histogram.quantile_ms(q) {
            return ms;
        }
        match q {
            q if q <= 0.5 => self.latency.p50_ms,
            q if q <= 0.9 => self.latency.p90_ms,
            q if q <= 0.99 => self.latency.p99_ms,
            _ => self.latency.max_ms,
        }
    }
}

/// Why a ramp stopped.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StopReason {
    /// Every step ran.
    LastStep,
    /// Ctrl-C.
    Interrupted,
    /// The bound on the whole ramp (`--max-duration`).
    MaxDuration {
        /// The bound, in seconds.
        bound_s: f64,
    },
    /// The target stopped accepting connections during a step (it died or closed its port).
    TargetLost {
        /// The step, from 1.
        step: usize,
        /// The first connection error.
        error: String,
    },
    /// The target answered no request of a step.
    NoAnswers {
        /// The step, from 1.
        step: usize,
        /// The first error.
        error: String,
    },
    /// The error rate passed its limit.
    ErrorRate {
        /// The step, from 1.
        step: usize,
        /// The share of requests that failed (0–1).
        rate: f64,
        /// The limit (0–1).
        limit: f64,
        /// The first error.
        first_error: Option<String>,
    },
    /// A latency objective was missed.
    Slo {
        /// The step, from 1.
        step: usize,
        /// The percentile (0–100).
        percentile: f64,
        /// The latency measured at that percentile, in ms.
        observed_ms: f64,
        /// The objective, in ms.
        limit_ms: f64,
    },
    /// Open model: the service did not keep up with the offered rate.
    FellBehind {
        /// The step, from 1.
        step: usize,
        /// Requests per second achieved.
        achieved_rps: f64,
        /// Requests per second offered.
        offered_rps: f64,
    },
    /// Closed model: throughput fell below its best.
    ThroughputFell {
        /// The step, from 1.
        step: usize,
        /// Requests per second at the step.
        throughput_rps: f64,
        /// The best so far.
        best_rps: f64,
    },
    /// Closed model: throughput stopped rising over two doublings.
    ThroughputFlat {
        /// Requests per second where it stopped.
        throughput_rps: f64,
        /// The concurrency two steps before.
        from: f64,
        /// The concurrency of this step.
        to: f64,
    },
}

impl StopReason {
    /// Whether the service broke a condition at the last step (so the step before it is the
    /// capacity), rather than a bound of ours ending the ramp.
    pub fn broke_the_service(&self) -> bool {
        matches!(
            self,
            StopReason::TargetLost { .. }
                | StopReason::NoAnswers { .. }
                | StopReason::ErrorRate { .. }
                | StopReason::Slo { .. }
                | StopReason::FellBehind { .. }
                | StopReason::ThroughputFell { .. }
        )
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopReason::LastStep => f.write_str("the last step ran"),
            StopReason::Interrupted => f.write_str("interrupted (Ctrl-C)"),
            StopReason::MaxDuration { bound_s } => {
                write!(f, "the {bound_s:.0} s bound on the whole ramp (--max-duration)")
            }
            StopReason::TargetLost { step, error } => {
                write!(
                    f,
                    "the target stopped accepting connections during step {step} ({error})"
                )
            }
            StopReason::NoAnswers { step, error } => {
                write!(f, "the target stopped answering during step {step}: {error}")
            }
            StopReason::ErrorRate {
                step,
                rate,
                limit,
                first_error,
            } => {
                write!(
                    f,
                    "step {step}: {:.1} % of requests failed, over the {:.1} % limit",
                    rate * 100.0,
                    limit * 100.0
                )?;
                match first_error {
                    Some(error) => write!(f, " (first: {error})"),
                    None => Ok(()),
                }
            }
            StopReason::Slo {
                step,
                percentile,
                observed_ms,
                limit_ms,
            } => write!(
                f,
                "step {step}: p{percentile} latency {observed_ms:.0} ms missed the objective of {limit_ms:.0} ms"
            ),
            StopReason::FellBehind {
                step,
                achieved_rps,
                offered_rps,
            } => write!(
                f,
                "step {step}: achieved {achieved_rps:.0} of the {offered_rps:.0} requests/s offered"
            ),
            StopReason::ThroughputFell {
                step,
                throughput_rps,
                best_rps,
            } => write!(
                f,
                "step {step}: throughput fell to {throughput_rps:.0} requests/s (best {best_rps:.0})"
            ),
            StopReason::ThroughputFlat {
                throughput_rps,
                from,
                to,
            } => write!(
                f,
                "throughput stopped rising at {throughput_rps:.0} requests/s: concurrency {from} to {to} added nothing"
            ),
        }
    }
}

/// A whole ramp.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LoadRun {
    /// The URL loaded.
    pub url: String,
    /// The address the URL resolved to, where the requests went.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<std::net::SocketAddr>,
    /// How load was offered.
    pub model: LoadModel,
    /// Cores the generator could run on (its share of the host).
    pub host_cores: f64,
    /// When the ramp began, in seconds since the Unix epoch.
    #[serde(default)]
    pub started_unix_s: f64,
    /// The target process sampled, if any.
    #[serde(default)]
    pub target_pid: Option<u32>,
    /// The sampled process's command line (`gunicorn -w 4 app:app`), arguments joined by spaces
    /// and clipped: which server runs the service, for advice in its terms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_command: Option<String>,
    /// The steps in order.
    pub steps: Vec<LoadStep>,
    /// Why the ramp stopped (the breaking condition, a safety bound, or the last step).
    pub stopped_because: StopReason,
    /// The step that broke a condition (SLO, errors, falling throughput), if one did; the step
    /// before it is the capacity.
    #[serde(default)]
    pub breaking_step: Option<usize>,
    /// Whether the target stopped accepting connections (it died or closed its port) — the run
    /// is incomplete, not a measurement of capacity.
    #[serde(default)]
    pub target_lost: bool,
}

impl LoadRun {
    /// Whether the target is on this host's loopback: no link between generator and target,
    /// every byte copied by the two processes' CPUs. Read from the resolved address, or from the
    /// URL's host when the run predates it.
    pub fn on_loopback(&self) -> bool {
        if let Some(addr) = self.addr {
            return addr.ip().is_loopback();
        }
        let authority = self.url.split("://").nth(1).unwrap_or(&self.url);
        let authority = authority.split(['/', '?', '#', ' ']).next().unwrap_or_default();
        let host = match authority.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default(),
            None => authority.rsplit_once(':').map_or(authority, |(host, _)| host),
        };
        host.eq_ignore_ascii_case("localhost")
            || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(url: &str, addr: Option<&str>) -> LoadRun {
        LoadRun {
            url: url.into(),
            addr: addr.map(|a| a.parse().expect("an address")),
            model: LoadModel::Closed,
            host_cores: 2.0,
            started_unix_s: 0.0,
            target_pid: None,
            target_command: None,
            steps: Vec::new(),
            stopped_because: StopReason::LastStep,
            breaking_step: None,
            target_lost: false,
        }
    }

    #[test]
    fn loopback_is_read_from_the_address_or_else_the_url() {
        assert!(run("http://api.internal/x", Some("127.0.0.1:80")).on_loopback());
        assert!(!run("http://localhost/x", Some("10.0.0.2:80")).on_loopback());
        assert!(run("http://localhost:8000/x", None).on_loopback());
        assert!(run("http://127.0.0.1:8000/x (and 2 more paths)", None).on_loopback());
        assert!(run("https://[::1]:8443/", None).on_loopback());
        assert!(!run("http://10.231.0.1:8000/export", None).on_loopback());
        assert!(!run("http://example.com/", None).on_loopback());
    }
}
