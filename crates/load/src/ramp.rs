//! The ramp controller: runs steps of rising load until the service breaks — a latency
//! objective is missed, the error rate passes its limit, or throughput stops rising or falls —
//! or a safety bound is reached, and keeps every step measured.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chokepoint_evidence::{Latency, LatencyHistogram, LoadModel, LoadRun, LoadStep, StopReason};

use crate::generator::{self, RequestError, StepResult, Target};
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

/// When the ramp stops because the service broke: what is measured against what.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StopRules {
    /// Closed (concurrency steps) or open (rate steps): what "keeping up" means.
    pub model: LoadModel,
    /// The latency objective, if any.
    pub slo: Option<Slo>,
    /// The error rate (0–1) that breaks the ramp.
    pub max_error_rate: f64,
}

/// What to sample of the target while the ramp runs.
#[derive(Clone, Debug, Default)]
pub struct Sampling {
    /// The process to sample.
    pub target_pid: Option<u32>,
    /// The port whose accept queue to sample.
    pub target_port: Option<u16>,
    /// The target's Prometheus endpoint, if any.
    pub metrics_url: Option<hyper::Uri>,
}

/// Everything the ramp needs.
#[derive(Clone, Debug)]
pub struct RampConfig {
    /// What to request.
    pub target: Target,
    /// The offered load of each step: concurrency (closed model), or requests per second (open).
    pub steps: Vec<f64>,
    /// How long each step runs.
    pub step_duration: Duration,
    /// Open model: connections to spread requests over.
    pub connections: usize,
    /// When the service counts as broken.
    pub stop: StopRules,
    /// The whole ramp stops after this long, whatever the steps.
    pub max_duration: Duration,
    /// What to sample of the target.
    pub sampling: Sampling,
}

/// Throughput must grow by this factor when the offered load doubles, or it has stopped rising.
const RISING: f64 = 1.1;
/// Throughput below this share of the best so far has fallen.
const FALLEN: f64 = 0.9;
/// Open model: achieved below this share of the offered rate means the service fell behind.
const KEEPING_UP: f64 = 0.95;

/// Seconds since the Unix epoch, now: the time base every kind of evidence shares.
fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Runs the ramp; `on_step` sees each step as it completes; `interrupted` stops it between or
/// inside steps (Ctrl-C), keeping what was measured.
pub async fn run(
    config: &RampConfig,
    interrupted: Arc<AtomicBool>,
    mut on_step: impl FnMut(usize, &LoadStep),
) -> LoadRun {
    let target = Arc::new(config.target.clone());
    let sampling = &config.sampling;
    let mut sampler = Sampler::start(sampling.target_pid, sampling.target_port);
    let mut scraper = sampling.metrics_url.clone().map(crate::metrics::Scraper::start);
    let started = Instant::now();
    let started_unix_s = unix_now();
    let mut steps: Vec<LoadStep> = Vec::new();
    let mut stopped_because = StopReason::LastStep;
    let mut breaking_step = None;
    let mut target_lost = false;
    for (index, &offered) in config.steps.iter().enumerate() {
        if interrupted.load(Ordering::Relaxed) {
            stopped_because = StopReason::Interrupted;
            break;
        }
        if started.elapsed() + config.step_duration > config.max_duration {
            stopped_because = StopReason::MaxDuration {
                bound_s: config.max_duration.as_secs_f64(),
            };
            break;
        }
        let _ = sampler.step();
        if let Some(scraper) = scraper.as_mut() {
            let _ = scraper.step();
        }
        let step_started = Instant::now();
        let step_started_unix_s = unix_now();
        let model = config.stop.model;
        let (step_target, step_duration, connections) =
            (Arc::clone(&target), config.step_duration, config.connections);
        // Requests still waiting out their timeout when the ramp's bound comes are abandoned:
        // the bound holds whatever the timeout.
        let cutoff = tokio::time::Instant::from_std(started + config.max_duration);
        let run = async move {
            match model {
                LoadModel::Closed => {
                    generator::run_closed(step_target, offered as usize, step_duration, cutoff).await
                }
                LoadModel::Open => {
                    generator::run_open(step_target, offered, connections, step_duration, cutoff).await
                }
            }
        };
        let result = tokio::select! {
            result = run => result,
            _ = wait_for(Arc::clone(&interrupted)) => {
                stopped_because = StopReason::Interrupted;
                break;
            }
        };
        let duration_s = step_started.elapsed().as_secs_f64();
        let cut = started.elapsed() >= config.max_duration;
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
        step.started_unix_s = step_started_unix_s;
        on_step(index, &step);
        let verdict = if lost {
            Some(StopReason::TargetLost {
                step: index + 1,
                error: first_error.map(|e| e.to_string()).unwrap_or_default(),
            })
        } else {
            breaks(&config.stop, &steps, &step, index, first_error.as_ref())
        };
        target_lost |= lost;
        steps.push(step);
        let verdict = verdict.or_else(|| {
            cut.then_some(StopReason::MaxDuration {
                bound_s: config.max_duration.as_secs_f64(),
            })
        });
        if let Some(reason) = verdict {
            breaking_step = reason.broke_the_service().then_some(index);
            stopped_because = reason;
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
        addr: Some(config.target.addr),
        model: config.stop.model,
        host_cores: std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64),
        started_unix_s,
        target_pid: sampling.target_pid,
        target_command: sampling.target_pid.and_then(crate::sampler::command_line),
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
    LoadStep {
        offered,
        duration_s,
        requests: result.requests,
        errors: result.errors,
        timeouts: result.timeouts,
        errors_by_kind: result
            .errors_by_kind
            .iter()
            .map(|(kind, count)| ((*kind).to_owned(), *count))
            .collect(),
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
        latency_histogram: LatencyHistogram::from_hdr(&result.latency_us),
        new_connections: result.new_connections,
        generator_cpu_cores,
        send_lag_p99_ms,
        in_flight_by_littles_law: result.requests as f64 / duration * result.latency_us.mean() / 1e6,
        target,
        metrics: std::collections::BTreeMap::new(),
        host_cpu_busy,
        ..LoadStep::default()
    }
}

/// Whether `step` (the `index`th, after `before`) breaks the service, and how.
fn breaks(
    rules: &StopRules,
    before: &[LoadStep],
    step: &LoadStep,
    index: usize,
    first_error: Option<&RequestError>,
) -> Option<StopReason> {
    let number = index + 1;
    let attempts = step.requests + step.errors.saturating_sub(step.errors.min(step.requests)) + step.timeouts;
    if step.requests == 0 && step.errors > 0 {
        return Some(StopReason::NoAnswers {
            step: number,
            error: first_error.map_or_else(|| "no response".to_owned(), ToString::to_string),
        });
    }
    let error_rate = step.errors as f64 / attempts.max(1) as f64;
    if error_rate > rules.max_error_rate {
        return Some(StopReason::ErrorRate {
            step: number,
            rate: error_rate,
            limit: rules.max_error_rate,
            first_error: first_error.map(ToString::to_string),
        });
    }
    if let Some(slo) = rules.slo {
        let observed_ms = step.latency_ms_at(slo.percentile / 100.0);
        if observed_ms > slo.max_ms {
            return Some(StopReason::Slo {
                step: number,
                percentile: slo.percentile,
                observed_ms,
                limit_ms: slo.max_ms,
            });
        }
    }
    let best = before.iter().map(|s| s.throughput_rps).fold(0.0, f64::max);
    match rules.model {
        LoadModel::Open => {
            if step.throughput_rps < KEEPING_UP * step.offered {
                return Some(StopReason::FellBehind {
                    step: number,
                    achieved_rps: step.throughput_rps,
                    offered_rps: step.offered,
                });
            }
        }
        LoadModel::Closed => {
            if best > 0.0 && step.throughput_rps < FALLEN * best {
                return Some(StopReason::ThroughputFell {
                    step: number,
                    throughput_rps: step.throughput_rps,
                    best_rps: best,
                });
            }
            let flat = |a: &LoadStep, b: &LoadStep| {
                b.offered > a.offered && b.throughput_rps < RISING * a.throughput_rps
            };
            if let [.., a, b] = before
                && flat(a, b)
                && flat(b, step)
            {
                return Some(StopReason::ThroughputFlat {
                    throughput_rps: b.throughput_rps,
                    from: a.offered,
                    to: step.offered,
                });
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

    fn rules(model: LoadModel) -> StopRules {
        StopRules {
            model,
            slo: None,
            max_error_rate: 0.05,
        }
    }

    fn step(offered: f64, throughput_rps: f64) -> LoadStep {
        LoadStep {
            offered,
            requests: (throughput_rps * 5.0) as u64,
            throughput_rps,
            duration_s: 5.0,
            ..LoadStep::default()
        }
    }

    #[test]
    fn a_rising_ramp_goes_on() {
        let before = [step(1.0, 10.0), step(2.0, 19.0)];
        assert_eq!(
            breaks(&rules(LoadModel::Closed), &before, &step(4.0, 37.0), 2, None),
            None
        );
    }

    #[test]
    fn throughput_flat_over_two_doublings_stops_without_breaking() {
        let before = [step(1.0, 10.0), step(2.0, 19.0), step(4.0, 20.0)];
        let reason = breaks(&rules(LoadModel::Closed), &before, &step(8.0, 20.5), 3, None).expect("stops");
        assert_eq!(
            reason,
            StopReason::ThroughputFlat {
                throughput_rps: 20.0,
                from: 2.0,
                to: 8.0
            }
        );
        assert!(!reason.broke_the_service());
    }

    #[test]
    fn falling_throughput_breaks_the_service() {
        let before = [step(1.0, 10.0), step(2.0, 19.0)];
        let reason = breaks(&rules(LoadModel::Closed), &before, &step(4.0, 15.0), 2, None).expect("stops");
        assert!(
            matches!(reason, StopReason::ThroughputFell { step: 3, .. }),
            "{reason:?}"
        );
        assert!(reason.broke_the_service());
    }

    #[test]
    fn errors_over_the_limit_break_and_name_the_first() {
        let mut failing = step(4.0, 30.0);
        failing.errors = 20;
        let error = RequestError::Status(503);
        let reason = breaks(&rules(LoadModel::Closed), &[], &failing, 0, Some(&error)).expect("stops");
        assert!(reason.to_string().contains("HTTP 503"), "{reason}");
        let mut silent = step(4.0, 0.0);
        silent.requests = 0;
        silent.errors = 3;
        let reason = breaks(
            &rules(LoadModel::Closed),
            &[],
            &silent,
            0,
            Some(&RequestError::Timeout),
        )
        .expect("stops");
        assert!(matches!(reason, StopReason::NoAnswers { .. }), "{reason:?}");
    }

    #[test]
    fn an_open_ramp_that_falls_behind_breaks() {
        let reason = breaks(&rules(LoadModel::Open), &[], &step(100.0, 80.0), 0, None).expect("stops");
        assert!(matches!(reason, StopReason::FellBehind { .. }), "{reason:?}");
        assert_eq!(
            breaks(&rules(LoadModel::Open), &[], &step(100.0, 99.0), 0, None),
            None
        );
    }

    #[test]
    fn the_slo_is_checked_at_its_own_percentile() {
        let mut histogram =
            hdrhistogram::Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("bounds");
        // 999 fast answers of 10 ms and one of 2 s: p99 is 10 ms, p99.9 is 2 s.
        for _ in 0..999 {
            histogram.record(10_000).expect("in range");
        }
        histogram.record(2_000_000).expect("in range");
        let mut slow_tail = step(4.0, 200.0);
        slow_tail.latency.p99_ms = 10.0;
        slow_tail.latency_histogram = LatencyHistogram::from_hdr(&histogram);
        let p99 = StopRules {
            slo: Slo::parse("p99<300ms"),
            ..rules(LoadModel::Closed)
        };
        assert_eq!(breaks(&p99, &[], &slow_tail, 0, None), None);
        let p999 = StopRules {
            slo: Slo::parse("p99.9<300ms"),
            ..rules(LoadModel::Closed)
        };
        let reason = breaks(&p999, &[], &slow_tail, 0, None).expect("the tail misses it");
        assert!(
            matches!(reason, StopReason::Slo { observed_ms, .. } if observed_ms > 1_900.0),
            "{reason:?}"
        );
    }
}
