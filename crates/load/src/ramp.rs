//! The ramp controller: runs steps of rising load until the service breaks — a latency
//! objective is missed, the error rate passes its limit, or throughput stops rising or falls —
//! or a safety bound is reached, and keeps every step measured.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chokepoint_evidence::{Latency, LoadModel, LoadRun, LoadStep};

use crate::generator::{self, StepResult, Target};
use crate::sampler::Sampler;

/// A latency objective: `p99<300ms`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Slo {
    /// The percentile, 0–100.
    pub percentile: f64,
    /// The most it may be, in ms.
    pub max_ms: f64,
}

impl Slo {
    /// Parses `p99<300ms` (or `p50<20ms`, `p99.9<1s`).
    pub fn parse(text: &str) -> Option<Slo> {
        let (p, limit) = text.trim().strip_prefix('p')?.split_once('<')?;
        let percentile: f64 = p.parse().ok()?;
        let limit = limit.trim();
        let max_ms = if let Some(ms) = limit.strip_suffix("ms") {
            ms.trim().parse().ok()?
        } else {
            limit.strip_suffix('s')?.trim().parse::<f64>().ok()? * 1e3
        };
        (percentile > 0.0 && percentile < 100.0 && max_ms > 0.0).then_some(Slo { percentile, max_ms })
    }
}

/// Everything the ramp needs.
#[derive(Clone, Debug)]
pub struct RampConfig {
    /// What to request.
    pub target: Target,
    /// Closed (concurrency steps) or open (rate steps).
    pub model: LoadModel,
    /// The offered load of each step: concurrency, or requests per second.
    pub steps: Vec<f64>,
    /// How long each step runs.
    pub step_duration: Duration,
    /// Open model: connections to spread requests over.
    pub connections: usize,
    /// The latency objective, if any.
    pub slo: Option<Slo>,
    /// The error rate (0–1) that breaks the ramp.
    pub max_error_rate: f64,
    /// The whole ramp stops after this long, whatever the steps.
    pub max_duration: Duration,
    /// The process to sample.
    pub target_pid: Option<u32>,
    /// The port whose accept queue to sample.
    pub target_port: Option<u16>,
    /// The target's Prometheus endpoint, if any.
    pub metrics_url: Option<hyper::Uri>,
}

/// Throughput must grow by this factor when the offered load doubles, or it has stopped rising.
const RISING: f64 = 1.1;
/// Throughput below this share of the best so far has fallen.
const FALLEN: f64 = 0.9;
/// Open model: achieved below this share of the offered rate means the service fell behind.
const KEEPING_UP: f64 = 0.95;
/// The generator is the limit when it uses this share of the cores its runtime runs on. (Sending
/// late in the open model is not enough: with every connection waiting on a saturated target,
/// requests leave late because of the target, and their latency already counts from the
/// intended time.)
const GENERATOR_BUSY: f64 = 0.9;

/// Runs the ramp; `on_step` sees each step as it completes; `interrupted` stops it between or
/// inside steps (Ctrl-C), keeping what was measured.
pub async fn run(
    config: &RampConfig,
    interrupted: Arc<AtomicBool>,
    mut on_step: impl FnMut(usize, &LoadStep),
) -> LoadRun {
    let target = Arc::new(config.target.clone());
    let mut sampler = Sampler::start(config.target_pid, config.target_port);
    let mut scraper = config.metrics_url.clone().map(crate::metrics::Scraper::start);
    let started = Instant::now();
    let mut steps: Vec<LoadStep> = Vec::new();
    let mut stopped_because = "the last step ran".to_owned();
    let mut breaking_step = None;
    let mut target_lost = false;
    for (index, &offered) in config.steps.iter().enumerate() {
        if interrupted.load(Ordering::Relaxed) {
            stopped_because = "interrupted (Ctrl-C)".into();
            break;
        }
        if started.elapsed() + config.step_duration > config.max_duration {
            stopped_because = format!(
                "the {} s bound on the whole ramp (--max-duration)",
                config.max_duration.as_secs()
            );
            break;
        }
        let _ = sampler.step();
        if let Some(scraper) = scraper.as_mut() {
            let _ = scraper.step();
        }
        let step_started = Instant::now();
        let started_s = started.elapsed().as_secs_f64();
        let model = config.model;
        let (step_target, step_duration, connections) =
            (Arc::clone(&target), config.step_duration, config.connections);
        let run = async move {
            match model {
                LoadModel::Closed => {
                    generator::run_closed(step_target, offered as usize, step_duration).await
                }
                LoadModel::Open => {
                    generator::run_open(step_target, offered, connections, step_duration).await
                }
            }
        };
        let result = tokio::select! {
            result = run => result,
            _ = wait_for(Arc::clone(&interrupted)) => {
                stopped_because = "interrupted (Ctrl-C)".into();
                break;
            }
        };
        let duration_s = step_started.elapsed().as_secs_f64();
        let sampled = sampler.step();
        let (mut target_sample, host_cpu_busy, generator_cpu_cores) =
            (sampled.target, sampled.host_busy, sampled.generator_cores);
        let scraped = scraper
            .as_mut()
            .map(crate::metrics::Scraper::step)
            .unwrap_or_default();
        if target_sample.is_none() {
            // A target on another host: its own CPU counter is the only view of its CPU.
            target_sample = scraped
                .cpu_cores
                .map(|cpu_cores| chokepoint_evidence::TargetSample {
                    cpu_cores,
                    ..Default::default()
                });
        }
        // The connections opened from this host that are neither the generator's nor the
        // scraper's: the target's own, on a test host.
        let ours = result.opened as f64 + scraped.connections as f64;
        if let Some(target) = target_sample.as_mut() {
            target.outbound_connections = (sampled.active_opens - ours).max(0.0);
        }
        let first_error = result.first_error.clone();
        let lost = result.connect_failures > 0;
        let mut step = summarize(
            offered,
            duration_s,
            result,
            target_sample,
            host_cpu_busy,
            generator_cpu_cores,
        );
        step.metrics = scraped.gauges;
        step.started_s = started_s;
        on_step(index, &step);
        let verdict = if lost {
            Some(Stop {
                text: format!(
                    "the target stopped accepting connections during step {} ({})",
                    index + 1,
                    first_error.unwrap_or_default()
                ),
                breaking: true,
            })
        } else {
            breaks(config, &steps, &step, index, first_error)
        };
        target_lost |= lost;
        steps.push(step);
        if let Some(reason) = verdict {
            stopped_because = reason.text;
            breaking_step = reason.breaking.then_some(index);
            break;
        }
    }
    LoadRun {
        url: {
            let first = config.target.paths.first().map_or("/", |(path, _)| path.as_str());
            let more = config.target.paths.len().saturating_sub(1);
            let also = if more > 0 {
                format!(" (and {more} more paths)")
            } else {
                String::new()
            };
            let scheme = if config.target.tls.is_some() {
                "https"
            } else {
                "http"
            };
            format!("{scheme}://{}{first}{also}", config.target.host)
        },
        model: config.model,
        host_cores: std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64),
        target_pid: config.target_pid,
        steps,
        stopped_because,
        breaking_step,
        target_lost,
    }
}

async fn wait_for(flag: Arc<AtomicBool>) {
    while !flag.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn percentile_ms(result: &StepResult, q: f64) -> f64 {
    result.latency_us.value_at_quantile(q) as f64 / 1e3
}

/// The share of `body` gzip removes; `None` for a body already sent compressed.
fn gzip_saving(sample: Option<&(Vec<u8>, bool)>) -> Option<f64> {
    use std::io::Write as _;
    let (body, encoded) = sample?;
    if *encoded || body.is_empty() {
        return None;
    }
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(body).ok()?;
    let compressed = encoder.finish().ok()?;
    Some((1.0 - compressed.len() as f64 / body.len() as f64).max(0.0))
}

fn summarize(
    offered: f64,
    duration_s: f64,
    result: StepResult,
    target: Option<chokepoint_evidence::TargetSample>,
    host_cpu_busy: f64,
    generator_cpu_cores: f64,
) -> LoadStep {
    let duration = duration_s.max(1e-3);
    let throughput_rps = result.requests.saturating_sub(result.errors.min(result.requests)) as f64 / duration;
    let send_lag_p99_ms = result.send_lag_us.value_at_quantile(0.99) as f64 / 1e3;
    let runtime_cores = std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64);
    LoadStep {
        offered,
        duration_s,
        requests: result.requests,
        errors: result.errors,
        timeouts: result.timeouts,
        throughput_rps,
        bytes_per_s: result.bytes as f64 / duration,
        response_bytes_mean: result.bytes as f64 / result.requests.max(1) as f64,
        gzip_saving: gzip_saving(result.sample_body.as_ref()),
        latency: Latency {
            p50_ms: percentile_ms(&result, 0.5),
            p90_ms: percentile_ms(&result, 0.9),
            p99_ms: percentile_ms(&result, 0.99),
            max_ms: result.latency_us.max() as f64 / 1e3,
            mean_ms: result.latency_us.mean() / 1e3,
        },
        new_connections: result.new_connections,
        generator_cpu_cores,
        send_lag_p99_ms,
        in_flight_by_littles_law: result.requests as f64 / duration * result.latency_us.mean() / 1e6,
        generator_limited: generator_cpu_cores >= GENERATOR_BUSY * runtime_cores,
        target,
        metrics: std::collections::BTreeMap::new(),
        host_cpu_busy,
        ..LoadStep::default()
    }
}

struct Stop {
    text: String,
    /// Whether the step broke a condition of the service (rather than a bound of ours).
    breaking: bool,
}

fn breaks(
    config: &RampConfig,
    before: &[LoadStep],
    step: &LoadStep,
    index: usize,
    first_error: Option<String>,
) -> Option<Stop> {
    let number = index + 1;
    let attempts = step.requests + step.errors.saturating_sub(step.errors.min(step.requests)) + step.timeouts;
    if step.requests == 0 && step.errors > 0 {
        return Some(Stop {
            text: format!(
                "the target stopped answering during step {number}: {}",
                first_error.unwrap_or_else(|| "no response".into())
            ),
            breaking: true,
        });
    }
    let error_rate = step.errors as f64 / attempts.max(1) as f64;
    if error_rate > config.max_error_rate {
        return Some(Stop {
            text: format!(
                "step {number}: {:.1} % of requests failed, over the {:.1} % limit{}",
                error_rate * 100.0,
                config.max_error_rate * 100.0,
                first_error.map(|e| format!(" (first: {e})")).unwrap_or_default()
            ),
            breaking: true,
        });
    }
    if let Some(slo) = config.slo {
        let observed = match slo.percentile {
            p if p <= 50.0 => step.latency.p50_ms,
            p if p <= 90.0 => step.latency.p90_ms,
            _ => step.latency.p99_ms,
        };
        if observed > slo.max_ms {
            return Some(Stop {
                text: format!(
                    "step {number}: p{} latency {observed:.0} ms missed the objective of {:.0} ms",
                    slo.percentile, slo.max_ms
                ),
                breaking: true,
            });
        }
    }
    let best = before.iter().map(|s| s.throughput_rps).fold(0.0, f64::max);
    match config.model {
        LoadModel::Open => {
            if step.throughput_rps < KEEPING_UP * step.offered {
                return Some(Stop {
                    text: format!(
                        "step {number}: achieved {:.0} of the {:.0} requests/s offered",
                        step.throughput_rps, step.offered
                    ),
                    breaking: true,
                });
            }
        }
        LoadModel::Closed => {
            if best > 0.0 && step.throughput_rps < FALLEN * best {
                return Some(Stop {
                    text: format!(
                        "step {number}: throughput fell to {:.0} requests/s (best {best:.0})",
                        step.throughput_rps
                    ),
                    breaking: true,
                });
            }
            let flat = |a: &LoadStep, b: &LoadStep| {
                b.offered > a.offered && b.throughput_rps < RISING * a.throughput_rps
            };
            if let [.., a, b] = before {
                if flat(a, b) && flat(b, step) {
                    return Some(Stop {
                        text: format!(
                            "throughput stopped rising at {:.0} requests/s: concurrency {} to {} added nothing",
                            b.throughput_rps, a.offered, step.offered
                        ),
                        breaking: false,
                    });
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_latency_objectives() {
        assert_eq!(
            Slo::parse("p99<300ms"),
            Some(Slo {
                percentile: 99.0,
                max_ms: 300.0
            })
        );
        assert_eq!(
            Slo::parse("p50<1.5s"),
            Some(Slo {
                percentile: 50.0,
                max_ms: 1500.0
            })
        );
        assert_eq!(Slo::parse("p99>300ms"), None);
        assert_eq!(Slo::parse("99<300ms"), None);
        assert_eq!(Slo::parse("p100<3ms"), None);
    }
}
