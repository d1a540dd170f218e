//! `worker-exhaustion`: throughput capped by a pool of workers (threads, processes, connections)
//! that are busy waiting, not computing.

use chokepoint_evidence::Resource;

use crate::finding::{Basis, Confidence};
use crate::load::{Curve, TARGET_SAMPLED, offered, usable_cores};
use crate::registry::{Conclusion, Detector, Estimate, Reads, detector};

detector! {
    /// # What it detects
    ///
    /// A load ramp whose throughput rises and then stops while the target's CPU stays low: a
    /// fixed number of workers (a thread pool, a process count, a database connection pool)
    /// each hold a request for its whole duration, mostly waiting.
    ///
    /// # Why it limits throughput
    ///
    /// With W workers each busy S seconds per request, throughput can never exceed W / S
    /// (Little's law), however idle the CPU. Past it, requests queue for a worker, latency grows
    /// with concurrency, and timeouts and 5xx appear suddenly.
    ///
    /// # Evidence used
    ///
    /// `chokepoint load`'s steps and the target's CPU. Flagged when throughput rose past the
    /// first step, then stopped, with the target under half of the cores it can use; the pool
    /// size is inferred by Little's law: capacity × low-load latency.
    ///
    /// # Known false positives
    ///
    /// A downstream (database, service) that is itself the limit looks the same from here: the
    /// workers wait on it. Check its CPU and its own findings.
    ///
    /// # Typical fix
    ///
    /// Make the waiting cheaper or shorter — async calls instead of sync ones, a faster
    /// downstream — or size the pool to the load: Starlette's thread pool (40 by default),
    /// gunicorn `--threads`, SQLAlchemy `pool_size` + `max_overflow`.
    pub(crate) struct WorkerExhaustion {
        id: WorkerExhaustion,
        summary: "throughput capped by a pool of busy, mostly idle workers",
        reads: [Reads::Load(TARGET_SAMPLED)],
    }
}

/// CPU below this share of the usable cores is "low".
const LOW_CPU_SHARE: f64 = 0.5;

impl Detector for WorkerExhaustion {
    fn check_load(&self, curve: &Curve<'_>) -> Option<Conclusion> {
        let cores = curve.knee_cpu_cores()?;
        if crate::load::transfer_bound(curve) {
            return None; // bandwidth-limit's case
        }
        if cores >= LOW_CPU_SHARE * usable_cores(cores) || curve.knee_index == 0 || !curve.plateaus() {
            return None;
        }
        if curve.knee.host_cpu_busy >= crate::load::HOST_SATURATED {
            return None; // the workers wait on a host whose CPU is used up: cpu-saturation's case
        }
        let service_ms = curve.low.latency.mean_ms;
        let workers = (curve.capacity_rps * service_ms / 1e3).round().max(2.0);
        let title = format!(
            "Throughput plateaus at {:.0} requests/s from {} with the CPU mostly idle ({cores:.2} cores): about {workers:.0} workers, each busy {service_ms:.0} ms per request",
            curve.capacity_rps,
            offered(curve.run, curve.knee.offered),
        );
        let fix = format!(
            "The service runs about {workers:.0} requests at a time (capacity {:.0}/s × {service_ms:.0} ms, Little's law) and \
             they wait rather than compute: make the slow call async (`async def` with httpx / asyncpg) or shorter, or raise \
             the pool that caps it — Starlette's thread pool (`anyio.to_thread.current_default_thread_limiter().total_tokens`), \
             gunicorn `--threads`, SQLAlchemy `pool_size`/`max_overflow` — to what the load needs.",
            curve.capacity_rps
        );
        Some(
            Conclusion::new(
                Resource::Workers,
                Basis::Measured,
                Estimate::Limit {
                    demand_ms_per_request: Some(service_ms),
                },
                title,
                fix,
                Confidence::Medium,
            )
            .assume(vec![
                "the low-load latency is the time a worker is held per request".into(),
                "a downstream that is itself saturated looks the same: check its resources".into(),
            ])
            .metrics(vec![
                ("cpu_cores_at_knee", cores),
                ("inferred_workers", workers),
                ("service_ms", service_ms),
                ("cpu_ms_per_request", curve.cpu_ms_per_request().unwrap_or(0.0)),
            ]),
        )
    }
}
