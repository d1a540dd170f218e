//! Load detectors' shared view of a ramp: where throughput stopped rising (the knee), the
//! capacity, and the low-load baseline; and the analysis that turns a ramp into findings.

use std::collections::BTreeMap;

use chokepoint_evidence::{LoadRun, LoadStep};

use crate::analysis::{Outcome, Skipped, Summary};
use crate::finding::{Confidence, Evidence, Finding, Impact};
use crate::registry::LOAD_DETECTORS;

/// Throughput must grow by this factor from one step to the next, or it has stopped rising.
pub(crate) const RISING: f64 = 1.1;

/// A ramp read for its shape.
pub(crate) struct Curve<'a> {
    /// The ramp.
    pub run: &'a LoadRun,
    /// The first step.
    pub low: &'a LoadStep,
    /// The step where throughput stopped rising (or the best step).
    pub knee: &'a LoadStep,
    /// The knee's index.
    pub knee_index: usize,
    /// The highest throughput of any step, in requests per second.
    pub capacity_rps: f64,
}

impl<'a> Curve<'a> {
    /// Reads the curve; `None` without at least two steps with answers.
    pub(crate) fn of(run: &'a LoadRun) -> Option<Curve<'a>> {
        let steps: Vec<&LoadStep> = run.steps.iter().filter(|s| s.requests > 0).collect();
        if steps.len() < 2 {
            return None;
        }
        let capacity_rps = steps.iter().map(|s| s.throughput_rps).fold(0.0, f64::max);
        let knee_index = (1..steps.len())
            .find(|&i| steps[i].throughput_rps < RISING * steps[i - 1].throughput_rps)
            .map_or(steps.len() - 1, |i| i - 1);
        Some(Curve {
            run,
            low: steps[0],
            knee: steps[knee_index],
            knee_index,
            capacity_rps,
        })
    }

    /// CPU the target spent per request at low load, in ms, if it was sampled.
    pub(crate) fn cpu_ms_per_request(&self) -> Option<f64> {
        let target = self.low.target.as_ref()?;
        (self.low.throughput_rps > 0.0).then(|| target.cpu_cores * 1e3 / self.low.throughput_rps)
    }

    /// CPU the target used at the knee, in cores.
    pub(crate) fn knee_cpu_cores(&self) -> Option<f64> {
        self.knee.target.as_ref().map(|t| t.cpu_cores)
    }

    /// Whether the throughput is flat past the knee (the ramp went on and gained nothing).
    pub(crate) fn plateaus(&self) -> bool {
        self.run
            .steps
            .iter()
            .skip(self.knee_index + 1)
            .any(|s| s.offered > self.knee.offered)
    }
}

/// Responses at least this large make a ramp transfer-bound before anything else.
pub(crate) const LARGE_RESPONSE_BYTES: f64 = 64.0 * 1024.0;

/// Whether the responses at the knee are large enough that moving their bytes is the work.
pub(crate) fn transfer_bound(curve: &Curve<'_>) -> bool {
    curve.knee.response_bytes_mean >= LARGE_RESPONSE_BYTES
}

/// Cores a process's CPU use is measured against: one for a single-threaded (or GIL-bound)
/// process near one core, more when it spreads over more.
pub(crate) fn usable_cores(cpu_cores: f64) -> f64 {
    cpu_cores.round().max(1.0)
}

/// What a load detector concluded.
pub(crate) struct LoadConclusion {
    pub title: String,
    pub fix: String,
    pub confidence: Confidence,
    pub assumptions: Vec<String>,
    pub metrics: Vec<(&'static str, f64)>,
}

/// Runs every load detector over a ramp; findings are ranked like trace findings.
pub fn analyse_load(run: &LoadRun) -> Outcome {
    let mut findings = Vec::new();
    let mut skipped = Vec::new();
    let curve = Curve::of(run);
    let window_s: f64 = run.steps.iter().map(|s| s.duration_s).sum();
    for detector in LOAD_DETECTORS {
        let meta = detector.meta();
        let Some(curve) = curve.as_ref() else {
            skipped.push(Skipped {
                detector: meta.id.into(),
                reason: "fewer than two load steps with answers".into(),
            });
            continue;
        };
        if curve.knee.generator_limited {
            skipped.push(Skipped {
                detector: meta.id.into(),
                reason: "the generator itself was the limit at the knee (its CPU, or sending late): run it on another host".into(),
            });
            continue;
        }
        if detector.needs_target() && curve.low.target.is_none() {
            skipped.push(Skipped {
                detector: meta.id.into(),
                reason: format!("no {}", meta.requires),
            });
            continue;
        }
        if let Some(conclusion) = detector.check(curve) {
            findings.push(finding(meta.id, curve, window_s, conclusion));
        }
    }
    crate::rank(&mut findings);
    let requests: u64 = run.steps.iter().map(|s| s.requests).sum();
    let usl = if run.model == chokepoint_evidence::LoadModel::Closed {
        let points: Vec<(f64, f64)> = run
            .steps
            .iter()
            .filter(|s| s.errors == 0)
            .map(|s| (s.offered, s.throughput_rps))
            .collect();
        crate::UslFit::fit(&points)
    } else {
        None
    };
    Outcome {
        findings,
        skipped,
        usl,
        summary: Summary {
            requests,
            endpoints: 1,
            window_s,
            ..Summary::default()
        },
    }
}

fn finding(detector: &str, curve: &Curve<'_>, window_s: f64, conclusion: LoadConclusion) -> Finding {
    // The limit's cost: the queueing it adds once load passes it, on every request of the
    // highest step measured.
    let top = curve
        .run
        .steps
        .iter()
        .rfind(|s| s.requests > 0)
        .unwrap_or(curve.knee);
    let queueing_ms = (top.latency.p50_ms - curve.low.latency.p50_ms).max(0.0);
    let saved_ms_total = queueing_ms * top.requests as f64;
    let mut metrics = BTreeMap::new();
    metrics.insert("capacity_rps".to_owned(), round(curve.capacity_rps));
    metrics.insert("knee_offered".to_owned(), curve.knee.offered);
    metrics.insert("p50_ms_low_load".to_owned(), round(curve.low.latency.p50_ms));
    metrics.insert("p50_ms_at_knee".to_owned(), round(curve.knee.latency.p50_ms));
    for (name, value) in conclusion.metrics {
        metrics.insert(name.to_owned(), round(value));
    }
    Finding {
        detector: detector.to_owned(),
        title: conclusion.title,
        service: curve
            .run
            .target_pid
            .map_or("target".to_owned(), |pid| format!("pid {pid}")),
        endpoint: curve.run.url.clone(),
        location: format!("at {}", offered(curve.run, curve.knee.offered)),
        impact: Impact {
            saved_ms_per_request: round(queueing_ms),
            latency_saved_ms_per_request: round(queueing_ms),
            saved_ms_total: round(saved_ms_total),
            share_of_endpoint_time: round((queueing_ms / top.latency.p50_ms.max(1e-9)).min(1.0)),
            recoverable_s_per_s: if window_s > 0.0 {
                round(saved_ms_total / 1e3 / window_s)
            } else {
                0.0
            },
        },
        evidence: Evidence {
            affected_requests: top.requests,
            endpoint_requests: curve.run.steps.iter().map(|s| s.requests).sum(),
            // Steps at or past the knee: where the limit held.
            occurrences: curve.run.steps.len().saturating_sub(curve.knee_index) as u64,
            example_trace_ids: Vec::new(),
            metrics,
        },
        confidence: conclusion.confidence,
        fix: conclusion.fix,
        assumptions: conclusion.assumptions,
    }
}

/// The step's load in words: "1 concurrent connection", "80 requests/s offered".
pub(crate) fn offered(run: &LoadRun, value: f64) -> String {
    match run.model {
        chokepoint_evidence::LoadModel::Closed if value == 1.0 => "1 concurrent connection".to_owned(),
        chokepoint_evidence::LoadModel::Closed => format!("{value} concurrent connections"),
        chokepoint_evidence::LoadModel::Open => format!("{value} requests/s offered"),
    }
}

fn round(value: f64) -> f64 {
    (value * 1e3).round() / 1e3
}
