//! `blocking-call`: a blocking call holds the event loop, so requests never overlap.

use chokepoint_evidence::Resource;

use crate::finding::{Basis, Confidence, EvidenceItem, LimitInputs};
use crate::load::{Curve, HOST_SATURATED, TARGET_SAMPLED, usable_cores};
use crate::profile::{Category, ProfileView};
use crate::registry::{Conclusion, Detector, Estimate, Reads, detector};

detector! {
    /// # What it detects
    ///
    /// Requests that do not overlap: throughput at concurrency 2 and beyond stays where it was
    /// at concurrency 1, the CPU is low, and each request takes far longer than its CPU time —
    /// the signature of a blocking call (`time.sleep`, sync HTTP, sync file or database I/O)
    /// inside `async def`, which stalls the whole event loop while it waits.
    ///
    /// # Why it limits throughput
    ///
    /// An event loop serves many requests at once only while each awaits. A blocking call
    /// waits without yielding, so one request at a time makes progress: capacity is 1 ÷ latency
    /// however many connections arrive, and every other request queues behind it.
    ///
    /// # Evidence used
    ///
    /// `chokepoint load`'s steps (closed model) and the target's CPU: throughput at the second
    /// step under 1.1 × the first while concurrency rose, the target under half of a core, the
    /// host's CPU under 90 % busy at the second step (a host with no CPU left does not let
    /// requests overlap either: that is cpu-saturation), and the low-load latency at least 3 ×
    /// the CPU time per request.
    ///
    /// A profile with idle samples (`chokepoint profile`, py-spy `--idle`) locates the call: an
    /// asyncio event loop's thread running a callback whose stack is blocked — in `time.sleep`
    /// (seen as the line that calls it), a synchronous HTTP client or database driver waiting on
    /// its socket, or the application's own file I/O — for at least 10 % of the loop's samples
    /// and 20 samples. The finding names the call and its line, and consumes the ramp's limit
    /// when a ramp of the same process ran. Without the source, a loop thread whose samples sit
    /// on one line of the application (half of them or more, in no category) and almost never
    /// reach the selector (under 5 %) is held by a call there the sampler cannot see into — told
    /// so, unless the ramp measured the process's CPU at half a core or more.
    ///
    /// A ramp alone cannot tell a held loop from requests queued on a database lock: when the
    /// watch beside it saw the sessions queue on one (`--pg`), the limit is `lock-contention`'s;
    /// and a service on threads or processes (waitress, gunicorn) is told what serializes its
    /// workers, not about an event loop it does not have.
    ///
    /// In the source (`chokepoint scan`, `--source DIR`): `time.sleep`, `requests.*`, a sync
    /// client's calls, `open`, `subprocess.*` inside `async def` (not in a `lambda` or nested `def`,
    /// which run elsewhere).
    /// A shape read there is potential — not measured — until a runtime finding meets it on its
    /// line, statement or route.
    ///
    /// # Known false positives
    ///
    /// A service with exactly one worker (one thread, `--workers 1` with sync endpoints) behaves
    /// the same; the fix is the same family. A downstream that serializes requests (a lock,
    /// a single-connection pool) too.
    ///
    /// # Typical fix
    ///
    /// Inside `async def`: `await asyncio.sleep`, `httpx.AsyncClient` instead of `requests`,
    /// `await asyncio.to_thread(...)` for file I/O and sync libraries — or declare the endpoint
    /// with plain `def` so the framework runs it in its thread pool.
    pub(crate) struct BlockingCall {
        id: BlockingCall,
        summary: "a blocking call stalls the event loop, so requests never overlap",
        reads: [Reads::Load(TARGET_SAMPLED), Reads::Profile("an event loop's blocked samples"), Reads::Source("a call that blocks inside `async def`")],
        same_cause: [],
    }
}

/// An event-loop thread whose samples sit on one line of the application and never reach the
/// selector — while the process's CPU, when a ramp measured it, stayed low: a call there blocks
/// the loop, which the sampler cannot see into (a C call: `time.sleep`, a socket read, a file),
/// told without the source ([`ProfileView::loop_held_on_one_line`]).
fn held_on_one_line(profile: &ProfileView<'_>) -> Option<Conclusion> {
    let (line, count) = profile.loop_held_on_one_line()?;
    let loop_samples = profile.loop_samples;
    let share = count as f64 / loop_samples as f64;
    let place = profile.frame(line);
    let seconds = count as f64 * profile.seconds_per_count();
    let (subject, location) = crate::profile::code_subject(place);
    let mut conclusion = Conclusion::new(
        Resource::EventLoop,
        Basis::Assumed,
        Estimate::Profile {
            saved_s: seconds,
            share,
            affected: count,
            busy: loop_samples,
        },
        format!(
            "The event loop sits on one line, {place}, in {} of its samples and never waits for work: a call there blocks it",
            crate::detectors::percent(share)
        ),
        format!(
            "At {place}: the call on that line does not await — make it (`await asyncio.sleep(…)`, `httpx.AsyncClient`, an \
             async driver, `await asyncio.to_thread(…)` for file I/O and sync libraries), or declare the endpoint with plain \
             `def` so the framework runs it in its thread pool."
        ),
        Confidence::Medium,
    )
    .assume(vec![
        format!(
            "told from the loop thread without the source: {} of its samples sit on this line and {} reach the selector, as \
             a blocking call's do (a sampler does not see into C calls); `--source` would read what the line calls",
            crate::detectors::percent(share),
            crate::detectors::percent(profile.loop_idle as f64 / loop_samples as f64)
        ),
        "an awaited call frees the loop for other requests: all the blocked time is given back".into(),
    ])
    .metrics(vec![
        ("blocked_share_of_loop", share),
        ("blocked_s", seconds),
        ("profile_s", profile.wall_s()),
    ])
    .about(subject, location);
    conclusion.items = vec![EvidenceItem::HotFrame {
        function: place.function.clone(),
        file: place.file.clone(),
        line: place.line,
        source: place.source.clone(),
        share_of_busy: crate::impact::round(share),
        seconds: crate::impact::round(seconds),
        inferred_from_source: false,
    }];
    Some(conclusion)
}

/// Share of the loop thread's samples blocked in calls that is flagged.
const MIN_BLOCKED_SHARE: f64 = 0.1;

/// Latency at least this many times the CPU per request means the request mostly waits.
const WAITING_FACTOR: f64 = 3.0;
/// CPU below this share of one core is "low".
const LOW_CPU: f64 = 0.5;

impl Detector for BlockingCall {
    fn check_profile(&self, profile: &ProfileView<'_>) -> Option<Conclusion> {
        let blocked: u64 = profile.loop_blocked.values().map(|t| t.count).sum();
        let share = blocked as f64 / profile.loop_samples.max(1) as f64;
        if share < MIN_BLOCKED_SHARE || !profile.enough(blocked) {
            return held_on_one_line(profile);
        }
        let mut calls: Vec<_> = profile.loop_blocked.iter().collect();
        calls.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(a.0.cmp(b.0)));
        let ((category, caller), _) = calls[0];
        let place = caller.map(|c| profile.frame(c));
        let seconds = blocked as f64 * profile.seconds_per_count();
        let what: Vec<String> = calls
            .iter()
            .take(3)
            .map(|((category, caller), tally)| {
                format!(
                    "{} at {} ({:.2} s)",
                    category.describe(),
                    caller.map_or("?".to_owned(), |c| profile.frame(c).to_string()),
                    tally.count as f64 * profile.seconds_per_count()
                )
            })
            .collect();
        let remedy = match category {
            Category::Sleep => "`await asyncio.sleep(…)` instead of `time.sleep(…)`",
            Category::HttpClient => "`httpx.AsyncClient` (awaited) instead of `requests`",
            Category::Database => {
                "an async driver (asyncpg, psycopg's AsyncConnection) or a plain `def` endpoint"
            }
            _ => "`await asyncio.to_thread(…)` (or aiofiles) for the file I/O",
        };
        let title = format!(
            "The event loop is blocked {} of the time in calls that do not await: {}",
            crate::detectors::percent(share),
            what.join(", ")
        );
        let fix = format!(
            "At {}: {remedy}; or declare the endpoint with plain `def` so the framework runs it in its thread pool. \
             Every blocking call in an `async def` stalls all requests of the loop.",
            place.map_or("the call".to_owned(), |p| match &p.source {
                Some(source) => format!("{p}: `{}`", crate::detectors::clip(source, 80)),
                None => p.to_string(),
            })
        );
        let mut conclusion = Conclusion::new(
            Resource::EventLoop,
            Basis::Measured,
            Estimate::Profile {
                saved_s: seconds,
                share,
                affected: blocked,
                busy: profile.loop_samples,
            },
            title,
            fix,
            if share >= 0.3 {
                Confidence::High
            } else {
                Confidence::Medium
            },
        )
        .assume(vec![
            "an awaited call frees the loop for other requests: all the blocked time is given back".into(),
        ])
        .metrics(vec![
            ("blocked_share_of_loop", share),
            ("blocked_s", seconds),
            ("profile_s", profile.wall_s()),
        ]);
        if let Some(place) = place {
            let (subject, location) = crate::profile::code_subject(place);
            conclusion = conclusion.about(subject, location);
        }
        // The loop's time is the resource: shares are of the loop thread's samples, the blocked
        // total first (what a fix of the place gives back), then each call.
        let of_loop =
            |frame: &chokepoint_evidence::Frame, count: u64, inferred: bool| EvidenceItem::HotFrame {
                function: frame.function.clone(),
                file: frame.file.clone(),
                line: frame.line,
                source: frame.source.clone(),
                share_of_busy: crate::impact::round(count as f64 / profile.loop_samples.max(1) as f64),
                seconds: crate::impact::round(count as f64 * profile.seconds_per_count()),
                inferred_from_source: inferred,
            };
        conclusion.items = place
            .map(|p| of_loop(p, blocked, false))
            .into_iter()
            .chain(
                calls
                    .iter()
                    .filter_map(|((_, caller), tally)| {
                        caller
                            .map(|c| of_loop(profile.frame(c), tally.count, tally.inferred * 2 > tally.count))
                    })
                    .take(3),
            )
            .collect();
        Some(conclusion)
    }

    fn check_load(&self, curve: &Curve<'_>) -> Option<Conclusion> {
        let cores = curve.knee_cpu_cores()?;
        if crate::load::transfer_bound(curve) {
            return None; // bandwidth-limit's case
        }
        let cpu_ms = curve.cpu_ms_per_request()?;
        let steps = &curve.run.steps;
        let (first, second) = (steps.first()?, steps.get(1)?);
        let no_overlap = second.offered > first.offered
            && second.throughput_rps < crate::load::RISING * first.throughput_rps;
        let waiting = curve.low.latency.mean_ms >= WAITING_FACTOR * cpu_ms.max(0.01);
        if !(no_overlap && waiting && cores < LOW_CPU * usable_cores(cores)) {
            return None;
        }
        if second.host_cpu_busy >= HOST_SATURATED {
            return None; // the host had no CPU left for a second request: cpu-saturation's case
        }
        if curve.queued_on_a_lock() {
            return None; // requests queued on a database lock: lock-contention's case
        }
        let last = steps.last()?;
        // A service on threads or processes has no event loop to hold: something else lets one
        // request through at a time.
        let threaded = curve.stack.server.is_some_and(|server| !server.event_loop());
        let title = format!(
            "Requests never overlap: {:.0} requests/s at concurrency {} and {:.0} at {}, each waiting {:.0} ms for {cpu_ms:.1} ms of CPU — {}",
            first.throughput_rps,
            first.offered,
            last.throughput_rps,
            last.offered,
            curve.low.latency.mean_ms,
            if threaded {
                "something serializes the workers: a lock, or one worker"
            } else {
                "a blocking call holds the event loop"
            },
        );
        let fix = match curve.stack.server.filter(|_| threaded) {
            Some(server) => format!(
                "The service runs on {}, whose workers should overlap: find what lets one request through at a time — a \
                 database row locked across the request (`chokepoint diagnose … --pg` watches the locks), a Python lock \
                 around shared state, or a single worker ({}).",
                server.name(),
                server.workers_setting()
            ),
            None => "Find the blocking call inside `async def` and make it yield: `await asyncio.sleep(...)` instead of \
                     `time.sleep`, `httpx.AsyncClient` instead of `requests`, `await asyncio.to_thread(...)` around file I/O \
                     and sync drivers — or declare the endpoint with plain `def` so it runs in the thread pool."
                .to_owned(),
        };
        Some(
            Conclusion::new(
                Resource::EventLoop,
                Basis::Measured,
                Estimate::Limit {
                    demand_ms_per_request: Some(curve.low.latency.mean_ms),
                },
                title,
                fix,
                if curve.plateaus() {
                    Confidence::High
                } else {
                    Confidence::Medium
                },
            )
            .assume(vec![
                "one request at a time makes progress: capacity ≈ 1 ÷ low-load latency".into(),
            ])
            .metrics(vec![
                ("cpu_cores_at_knee", cores),
                ("cpu_ms_per_request", cpu_ms),
                ("waiting_ms", curve.low.latency.mean_ms - cpu_ms),
            ])
            .inputs(LimitInputs {
                waiting_ms_per_request: Some(curve.low.latency.mean_ms - cpu_ms).filter(|w| *w > 0.0),
                ..LimitInputs::default()
            }),
        )
    }
}
