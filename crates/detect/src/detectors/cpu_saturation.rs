//! `cpu-saturation`: throughput stops rising because the target's CPU is used up.

use crate::detectors::percent;
use chokepoint_evidence::Resource;

use crate::finding::{Basis, Confidence};
use crate::load::{Curve, TARGET_SAMPLED, offered, usable_cores};
use crate::registry::{Conclusion, Detector, Estimate, Reads, detector};

detector! {
    /// # What it detects
    ///
    /// A load ramp whose throughput stops rising while the target process keeps its CPU busy:
    /// one core for a single Python process (the GIL), all of them for a multi-process server,
    /// or the host's CPU when something else takes it.
    ///
    /// # Why it limits throughput
    ///
    /// Every request needs its CPU time; once the CPU is used up, more concurrency only queues.
    /// Capacity is cores ÷ CPU time per request, and latency grows linearly with concurrency
    /// beyond it (R = N / Xmax).
    ///
    /// # Evidence used
    ///
    /// `chokepoint load`'s steps: throughput at each step, the target's CPU (all its threads and
    /// child processes, from `/proc`) and the host's CPU. Flagged when, at the knee, the target
    /// uses at least 85 % of the cores it can use (rounded to whole cores, at least one), or the
    /// host is at least 90 % busy.
    ///
    /// # Known false positives
    ///
    /// A generator on the same host competing for the CPU: check the steps' generator CPU (the
    /// report shows it) or run the generator elsewhere.
    ///
    /// # Typical fix
    ///
    /// Find the hot code (py-spy, `chokepoint profile` later) and make it cheaper — caching,
    /// a faster serializer, moving work out of the request; or run more processes (uvicorn or
    /// gunicorn `--workers` = cores) so a GIL-bound service uses every core.
    pub(crate) struct CpuSaturation {
        id: CpuSaturation,
        summary: "throughput capped by the target's CPU",
        reads: [Reads::Load(TARGET_SAMPLED)],
    }
}

/// Share of the usable cores that counts as saturated.
const SATURATED_SHARE: f64 = 0.85;
/// Host CPU busy that counts as saturated, whoever uses it.
const HOST_SATURATED: f64 = 0.9;

impl Detector for CpuSaturation {
    fn check_load(&self, curve: &Curve<'_>) -> Option<Conclusion> {
        let cores = curve.knee_cpu_cores()?;
        let usable = usable_cores(cores);
        let process_saturated = cores >= SATURATED_SHARE * usable;
        let host_saturated = curve.knee.host_cpu_busy >= HOST_SATURATED;
        if !(process_saturated || host_saturated) {
            return None;
        }
        let cpu_ms = curve.cpu_ms_per_request().unwrap_or(0.0);
        let title = format!(
            "Throughput stops at {:.0} requests/s at {} with the target's CPU saturated: {cores:.2} cores busy{}, {cpu_ms:.1} ms of CPU per request",
            curve.capacity_rps,
            offered(curve.run, curve.knee.offered),
            if host_saturated {
                format!(", host {} busy", percent(curve.knee.host_cpu_busy))
            } else {
                String::new()
            },
        );
        let fix = format!(
            "Cut the {cpu_ms:.1} ms of CPU each request costs — profile it (py-spy record, or `chokepoint profile` \
             when it lands) and cache, precompute or move the hot work out of the request — or run {} processes \
             (`uvicorn --workers {}` / gunicorn) so the service uses every core: capacity is cores ÷ CPU per request.",
            curve.run.host_cores, curve.run.host_cores
        );
        Some(
            Conclusion::new(
                Resource::Cpu,
                Basis::Measured,
                Estimate::Limit {
                    demand_ms_per_request: Some(cpu_ms),
                },
                title,
                fix,
                if process_saturated && curve.plateaus() {
                    Confidence::High
                } else {
                    Confidence::Medium
                },
            )
            .assume(vec![
                format!("the target can use {usable:.0} core(s): its CPU at the knee, rounded"),
                "the generator's own CPU did not starve the target (see the step table)".into(),
            ])
            .metrics(vec![
                ("cpu_cores_at_knee", cores),
                ("cpu_ms_per_request", cpu_ms),
                ("host_cpu_busy_at_knee", curve.knee.host_cpu_busy),
            ]),
        )
    }
}
