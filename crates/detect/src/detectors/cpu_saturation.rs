//! `cpu-saturation`: throughput stops rising because the target's CPU is used up.

use crate::detectors::{clip, percent};
use chokepoint_evidence::Resource;

use crate::finding::{Basis, Confidence, LimitInputs};
use crate::load::{Curve, HOST_SATURATED, TARGET_SAMPLED, offered, usable_cores};
use crate::profile::ProfileView;
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
    /// uses at least 85 % of the cores it can use (rounded to whole cores, at least one) — in a
    /// closed ramp, counting the time its threads were runnable and waited for a core (a host
    /// shared with the database and the generator): one connection can keep a GIL-bound process
    /// wanting a whole core between its database round trips, and the ramp plateau from its
    /// first step — or the
    /// host is at least 90 % busy. In the second case, when the target is not saturated, the
    /// limit is the host's CPU (other processes take it: a database on the same host), and the
    /// database's findings are what consumes it.
    ///
    /// A sampled profile says where the CPU goes: when its threads are busy at least 80 % of the time
    /// it covers (a Python process runs one thread at a time), the application functions with
    /// the most busy samples of their own — not explained by a category another detector names
    /// (serialization, logging, regex compilation, sorting, the database, HTTP clients) — and
    /// the most inclusive ones — unless that line holds an event loop that never waits for work
    /// (blocking-call's case). With a load ramp of the same process, the profile's finding is
    /// what consumes the ramp's limit — and a profile's busy threads are not a CPU in use when
    /// the ramp's sampler measured the process under the saturated share of its cores over the
    /// profile's time: they waited, in calls the sampler cannot see into or for the GIL, and no
    /// CPU finding rests on them (under half of the cores it can use: a process that saturates
    /// its CPU in the ramp's top steps measures less over a profile that also covers a lighter one).
    ///
    /// # Known false positives
    ///
    /// A generator on the same host competing for the CPU: check the steps' generator CPU (the
    /// report shows it) or run the generator elsewhere.
    ///
    /// # Typical fix
    ///
    /// Find the hot code (`chokepoint profile`, or `chokepoint load --pid PID --profile`) and make it cheaper — caching,
    /// a faster serializer, moving work out of the request; or run more processes (uvicorn or
    /// gunicorn `--workers` = cores) so a GIL-bound service uses every core.
    pub(crate) struct CpuSaturation {
        id: CpuSaturation,
        summary: "throughput capped by the target's CPU",
        reads: [Reads::Load(TARGET_SAMPLED), Reads::Profile("busy samples of application code")],
        same_cause: [NPlusOne, SlowQuery, UnboundedResult, InMemorySort, SlowSerialization, RegexPerRequest, SyncLogging],
    }
}

/// Busy samples per second of profile, per sample rate, that count as a saturated CPU.
const PROFILE_BUSY: f64 = 0.8;
/// The hottest function's share of the busy time that is worth naming.
const MIN_FUNCTION_SHARE: f64 = 0.2;

/// Share of the usable cores that counts as saturated.
const SATURATED_SHARE: f64 = 0.85;

/// The host's CPU used up while the target is not: another process on the host — a database
/// running there, usually — takes it. The demand is the host's CPU per request at the knee, and
/// what the others use of it is what fixing their work can give back.
fn host_saturated_by_others(curve: &Curve<'_>, cores: f64) -> Option<Conclusion> {
    let knee = curve.knee;
    if knee.throughput_rps <= 0.0 {
        return None;
    }
    let host_cores = knee.host_cpu_busy * curve.run.host_cores;
    let demand_ms = host_cores * 1e3 / knee.throughput_rps;
    let other_cores = (host_cores - cores - knee.generator_cpu_cores).max(0.0);
    let other_ms = other_cores * 1e3 / knee.throughput_rps;
    let title = format!(
        "Throughput stops at {:.0} requests/s at {} with the host's CPU saturated ({} busy) but not by the target \
         ({cores:.2} cores): other processes use {other_cores:.2} cores, {other_ms:.1} ms per request",
        curve.capacity_rps,
        offered(curve.run, knee.offered),
        percent(knee.host_cpu_busy),
    );
    let fix = "Find what takes the CPU (`top`, `pidstat 1`): when it is the database on the same host, its statements' \
               findings (with `--pg`) say which work to cut — an index, fewer or cheaper statements; or give the \
               database its own host so the service keeps its CPU."
        .to_owned();
    Some(
        Conclusion::new(
            Resource::HostCpu,
            Basis::Measured,
            Estimate::Limit {
                demand_ms_per_request: Some(demand_ms),
            },
            title,
            fix,
            if curve.plateaus() { Confidence::High } else { Confidence::Medium },
        )
        .assume(vec![
            format!(
                "the host's {:.0} cores bound throughput: {demand_ms:.1} ms of host CPU per request at the knee",
                curve.run.host_cores
            ),
            "what is neither the target nor the generator is another process's: the database, when it runs here".into(),
        ])
        .metrics(
            [
                ("cpu_cores_at_knee", cores),
                ("host_cpu_busy_at_knee", knee.host_cpu_busy),
                ("other_cpu_ms_per_request", other_ms),
            ]
            .into_iter()
            .chain(curve.cpu_ms_per_request().map(|ms| ("cpu_ms_per_request", ms)))
            .collect(),
        )
        .inputs(LimitInputs {
            other_cpu_ms_per_request: Some(other_ms),
            ..LimitInputs::default()
        }),
    )
}

impl Detector for CpuSaturation {
    fn check_profile(&self, profile: &ProfileView<'_>) -> Option<Conclusion> {
        // Measured profiles (cProfile, pyinstrument) have no idle time to tell a full CPU by.
        if !profile.profile.sampled {
            return None;
        }
        let wall_s = profile.wall_s();
        let busy_s = profile.busy as f64 * profile.seconds_per_count();
        let busy_share = if wall_s > 0.0 { busy_s / wall_s } else { 0.0 };
        if busy_share < PROFILE_BUSY {
            return None;
        }
        // Threads busy in the samples are not a CPU in use when the process's measured CPU says
        // otherwise: they waited — in calls the sampler cannot see into, or for the GIL.
        if profile.waited() {
            return None;
        }
        let mut own: Vec<(u32, u64)> = profile.app_uncategorized.iter().map(|(f, c)| (*f, *c)).collect();
        own.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let &(hottest, count) = own.first()?;
        // An event loop held on that one line, never waiting for work: a call blocks it there
        // (blocking-call's case), whatever the sampler counts as busy.
        if profile
            .loop_held_on_one_line()
            .is_some_and(|(line, _)| line == hottest)
        {
            return None;
        }
        let share = count as f64 / profile.busy.max(1) as f64;
        if share < MIN_FUNCTION_SHARE || !profile.enough(count) {
            return None;
        }
        // Of the CPU the process used, the line's share: its samples run code, and the waiting
        // for the GIL shows where other threads take it back, after their calls.
        let split = profile.cpu_share(count, 0);
        let cpu_share = split.share;
        let frame = profile.frame(hottest);
        let seconds = count as f64 * profile.seconds_per_count();
        let mut inclusive: Vec<(u32, u64)> = profile.app_inclusive.iter().map(|(f, c)| (*f, *c)).collect();
        inclusive.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let title = format!(
            "The profiled threads are busy {:.1} s per second of profile, never idle; {} of it runs in {frame} itself ({seconds:.2} s)",
            busy_share,
            percent(share),
        );
        let fix = format!(
            "Make {} cheaper — a closed form, a cache, or precomputing what does not change per request — or move the work \
             out of the request; then run as many processes as cores ({}) so the service uses them all.",
            match &frame.source {
                Some(source) => format!("{frame}: `{}`", clip(source, 80)),
                None => frame.to_string(),
            },
            profile.stack.server.map_or_else(
                || "gunicorn or uvicorn `--workers N`".to_owned(),
                |s| s.processes_setting(None)
            )
        );
        let (subject, location) = crate::profile::code_subject(frame);
        let tally = |count: u64| crate::profile::Tally { count, inferred: 0 };
        let mut conclusion = Conclusion::new(
            Resource::Cpu,
            Basis::Assumed,
            Estimate::Profile {
                saved_s: seconds,
                share: cpu_share,
                affected: count,
                busy: profile.busy,
            },
            title,
            fix,
            if share >= 0.4 { Confidence::High } else { Confidence::Medium },
        )
        .assume(
            std::iter::once(format!(
                "the fix removes the function's own time ({seconds:.2} s of {busy_s:.2} s busy), {:.0} % of the CPU \
                 the process used; what it calls stays",
                cpu_share * 100.0
            ))
            .chain(split.how)
            .collect(),
        )
        .metrics(vec![("busy_share_of_profile", busy_share), ("share_of_busy", share), ("profile_s", wall_s)])
        .about(subject, location);
        conclusion.items = own
            .iter()
            .take(3)
            .chain(
                inclusive
                    .iter()
                    .filter(|(f, _)| !own.iter().take(3).any(|(o, _)| o == f))
                    .take(3),
            )
            .map(|&(f, c)| profile.item(f, &tally(c)))
            .collect();
        Some(conclusion)
    }

    fn check_load(&self, curve: &Curve<'_>) -> Option<Conclusion> {
        let cores = curve.plateau_cpu_cores()?;
        // The cores it wanted: those it used, and the time its threads were runnable and waited
        // for one (a host shared with the database and the generator). One connection can keep a
        // GIL-bound process wanting a whole core between its database round trips, so a closed
        // ramp plateaus from its first step.
        let wanted = match curve.run.model {
            chokepoint_evidence::LoadModel::Closed => curve.knee_cpu_wanted().unwrap_or(cores).max(cores),
            chokepoint_evidence::LoadModel::Open => cores,
        };
        // The cores it can use are those it used, rounded: a GIL-bound process's eight runnable
        // threads want more than the one core they share.
        let usable = usable_cores(cores);
        let process_saturated = wanted >= SATURATED_SHARE * usable;
        let host_saturated = curve.knee.host_cpu_busy >= HOST_SATURATED;
        if !(process_saturated || host_saturated) {
            return None;
        }
        let cpu_ms = curve.cpu_ms_per_request().unwrap_or(0.0);
        if !process_saturated {
            return host_saturated_by_others(curve, cores);
        }
        let title = format!(
            "Throughput stops at {:.0} requests/s at {} with the target's CPU saturated: {cores:.2} cores busy{}{}, {cpu_ms:.1} ms of CPU per request",
            curve.capacity_rps,
            offered(curve.run, curve.knee.offered),
            if wanted > cores + 0.05 {
                format!(" (its threads waited for a core besides: {wanted:.2} wanted)")
            } else {
                String::new()
            },
            if host_saturated {
                format!(", host {} busy", percent(curve.knee.host_cpu_busy))
            } else {
                String::new()
            },
        );
        let processes = match curve.stack.server {
            Some(server) => server.processes_setting(Some(curve.run.host_cores)),
            None => format!(
                "{0:.0} processes (gunicorn `--workers {0:.0}`, uvicorn `--workers {0:.0}`)",
                curve.run.host_cores
            ),
        };
        let fix = format!(
            "Cut the {cpu_ms:.1} ms of CPU each request costs — profile it (`chokepoint load … --profile`, or \
             `chokepoint profile --pid`) and cache, precompute or move the hot work out of the request — or run {processes} \
             so the service uses every core: capacity is cores ÷ CPU per request."
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
                format!("the target can use {usable:.0} core(s): the CPU it used where throughput stopped, rounded"),
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
