//! `worker-exhaustion`: throughput capped by a pool of workers (threads, processes, connections)
//! that are busy waiting, not computing.

use chokepoint_evidence::Resource;

use crate::finding::{Basis, Confidence, LimitInputs};
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
    /// first step, then stopped, with the target under half of the cores it can use; the
    /// requests in service at a time are inferred by Little's law (capacity × low-load latency)
    /// and said beside the threads the process runs. Not when the database watched beside the
    /// ramp saw the requests queue on a lock: Little's law says nothing of requests a lock
    /// serializes (that limit is `lock-contention`'s). The fix names the server the process
    /// runs (its frames, its command line): waitress `threads=`, gunicorn `--workers`/`--threads`,
    /// uvicorn and Starlette's thread pool — never another's.
    ///
    /// # Known false positives
    ///
    /// A downstream (database, service) that is itself the limit looks the same from here: the
    /// workers wait on it. Check its CPU and its own findings.
    ///
    /// # Typical fix
    ///
    /// Make the waiting cheaper or shorter — async calls instead of sync ones, a faster
    /// downstream — or size the pool to the load, in the server's terms: waitress `threads=`,
    /// gunicorn `--threads`, Starlette's thread pool (40 by default); and the database pool
    /// (SQLAlchemy `pool_size` + `max_overflow`, psycopg2's `maxconn`).
    pub(crate) struct WorkerExhaustion {
        id: WorkerExhaustion,
        summary: "throughput capped by a pool of busy, mostly idle workers",
        reads: [Reads::Load(TARGET_SAMPLED)],
        same_cause: [],
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
        if curve.queued_on_a_lock() {
            return None; // requests serialized by a database lock: lock-contention's case
        }
        let service_ms = curve.low.latency.mean_ms;
        let workers = (curve.capacity_rps * service_ms / 1e3).round().max(2.0);
        let threads = curve.knee.target.as_ref().map(|t| t.threads).filter(|t| *t > 0.0);
        let title = format!(
            "Throughput plateaus at {:.0} requests/s from {} with the CPU mostly idle ({cores:.2} cores): about {workers:.0} requests in service at a time, each {service_ms:.0} ms{}",
            curve.capacity_rps,
            offered(curve.run, curve.knee.offered),
            threads.map_or_else(String::new, |t| format!(", in a process of {t:.0} threads")),
        );
        let pools = match curve.stack.server {
            Some(server) => format!(
                "{} — and the database pool the handlers take connections from",
                server.workers_setting()
            ),
            None => "the server's workers or threads (gunicorn `--workers`/`--threads`, waitress `threads=`, uvicorn's \
                     thread pool for sync endpoints, `anyio.to_thread.current_default_thread_limiter().total_tokens`) \
                     and the database pool (SQLAlchemy `pool_size`/`max_overflow`, psycopg2's pool `maxconn`)"
                .to_owned(),
        };
        let make_async = match curve.stack.server {
            Some(server) if !server.event_loop() => "shorten what each request waits on",
            _ => "make the slow call async (`async def` with httpx / asyncpg) or shorter",
        };
        let fix = format!(
            "About {workers:.0} requests are in service at a time (capacity {:.0}/s × {service_ms:.0} ms, Little's law) and \
             they wait rather than compute: {make_async}, or raise the pool that caps it — {pools} — to what the load needs.",
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
                "no database lock serialized the requests (with --pg, the watch would have shown sessions waiting on it)"
                    .into(),
            ])
            .metrics(vec![
                ("cpu_cores_at_knee", cores),
                ("inferred_workers", workers),
                ("service_ms", service_ms),
            ])
            .inputs(LimitInputs {
                workers: Some(workers),
                ..LimitInputs::default()
            }),
        )
    }
}
