//! Load detectors' shared view of a ramp — where throughput stopped rising (the knee), the
//! capacity, the low-load baseline — what they need of it, what the step series says about the
//! measurement itself, and the join of the database's sessions with the steps.

use chokepoint_evidence::{Activity, LoadModel, LoadRun, LoadStep, Note, Position, Severity};
use schemars::JsonSchema;

use crate::finding::{CpuCost, CpuCostBasis};
use serde::{Deserialize, Serialize};

/// Throughput must grow by this factor from one step to the next, or it has stopped rising.
pub(crate) const RISING: f64 = 1.1;
/// Host CPU busy that counts as saturated, whoever uses it: requests that wait on it neither
/// overlap nor free their workers.
pub(crate) const HOST_SATURATED: f64 = 0.9;
/// The generator is the limit of a step when it used this share of the cores it could run on.
/// (Sending late in the open model is not enough: with every connection waiting on a saturated
/// target, requests leave late because of the target, and their latency already counts from the
/// intended time.)
const GENERATOR_BUSY: f64 = 0.9;
/// How far throughput × latency may stray from the concurrency before a step is suspect.
const LITTLES_LAW_TOLERANCE: f64 = 0.2;

/// Sessions waiting on a lock at a ramp's knee and past it, on average, that make the lock its
/// limit…
pub(crate) const LOCK_QUEUE_SESSIONS: f64 = 0.5;
/// …as a share of the active sessions there.
pub(crate) const LOCK_QUEUE_SHARE: f64 = 0.5;

/// What a load detector needs of a ramp beyond a knee to read.
#[derive(Debug)]
pub(crate) struct LoadNeed {
    /// What it needs, as the end of "skipped: no …".
    pub(crate) what: &'static str,
    /// Whether the ramp has it.
    pub(crate) met: fn(&Curve<'_>) -> bool,
}

/// Any ramp with a knee.
pub(crate) const RAMP: LoadNeed = LoadNeed {
    what: "load ramp",
    met: |_| true,
};

/// The target process sampled: its CPU, threads, accept queue.
pub(crate) const TARGET_SAMPLED: LoadNeed = LoadNeed {
    what: "target process sampled (run on the target's host, or pass --pid)",
    met: |curve| curve.low.target.is_some(),
};

/// The database's sessions watched beside the ramp (`--pg`).
pub(crate) const DATABASE_WATCHED: LoadNeed = LoadNeed {
    what: "database sessions watched beside the ramp (--pg)",
    met: |curve| curve.database.is_some(),
};

/// A ramp read for its shape.
pub(crate) struct Curve<'a> {
    /// The ramp.
    pub(crate) run: &'a LoadRun,
    /// The first step.
    pub(crate) low: &'a LoadStep,
    /// The step where throughput stopped rising (or the best step).
    pub(crate) knee: &'a LoadStep,
    /// The knee's index among the steps with answers.
    pub(crate) knee_index: usize,
    /// The highest throughput of any step, in requests per second.
    pub(crate) capacity_rps: f64,
    /// The database's sessions, sampled beside the ramp (`--pg`), when a watch ran: who waited
    /// on locks while the steps ran.
    pub(crate) database: Option<&'a Activity>,
    /// What the service is built with, for advice in its terms.
    pub(crate) stack: crate::stack::ServiceStack,
}

impl<'a> Curve<'a> {
    /// Reads the curve; `Err` says why it cannot be read.
    pub(crate) fn of(run: &'a LoadRun) -> Result<Curve<'a>, String> {
        let steps: Vec<&LoadStep> = run.steps.iter().filter(|s| s.requests > 0).collect();
        if steps.len() < 2 {
            return Err("fewer than two load steps with answers".into());
        }
        let capacity_rps = steps.iter().map(|s| s.throughput_rps).fold(0.0, f64::max);
        let knee_index = (1..steps.len())
            .find(|&i| steps[i].throughput_rps < RISING * steps[i - 1].throughput_rps)
            .map_or(steps.len() - 1, |i| i - 1);
        let curve = Curve {
            run,
            low: steps[0],
            knee: steps[knee_index],
            knee_index,
            capacity_rps,
            database: None,
            stack: crate::stack::ServiceStack::default(),
        };
        if generator_limited(run, curve.knee) {
            return Err(
                "the generator itself was the limit at the knee (its CPU, or sending late): run it on another host"
                    .into(),
            );
        }
        Ok(curve)
    }

    /// The curve with what ran beside it: the database's watch, and the service's stack.
    pub(crate) fn beside(
        mut self,
        database: Option<&'a Activity>,
        stack: crate::stack::ServiceStack,
    ) -> Curve<'a> {
        self.database = database;
        self.stack = stack;
        self
    }

    /// The database sessions of each step with answers, from the watch beside the ramp: `None`
    /// for a step the watch did not cover.
    pub(crate) fn step_sessions(&self) -> Vec<Option<StepSessions>> {
        let Some(activity) = self.database else {
            return Vec::new();
        };
        let joined = step_sessions(self.run, activity);
        (0..self.run.steps.len())
            .map(|i| joined.iter().find(|s| s.step == i).copied())
            .collect()
    }

    /// Sessions waiting on a lock at the knee and past it, on average, with the active ones:
    /// requests queued on a database lock while throughput stopped rising. `None` without a
    /// watch over those steps.
    pub(crate) fn lock_waits_at_plateau(&self) -> Option<(f64, f64)> {
        let sessions = self.step_sessions();
        let answered: Vec<usize> = (0..self.run.steps.len())
            .filter(|&i| self.run.steps[i].requests > 0)
            .collect();
        let at: Vec<StepSessions> = answered
            .iter()
            .skip(self.knee_index)
            .filter_map(|&i| sessions.get(i).copied().flatten())
            .collect();
        if at.is_empty() {
            return None;
        }
        let n = at.len() as f64;
        Some((
            at.iter().map(|s| s.lock_waiting).sum::<f64>() / n,
            at.iter().map(|s| s.active).sum::<f64>() / n,
        ))
    }

    /// Whether requests queued on a database lock while throughput stopped rising: at the most
    /// load past the knee, half the requests in flight or more waited on a lock in the database
    /// (half a session at least) — the lock serializes them, whatever else the ramp alone would
    /// take the limit for. A short atomic update that many requests take in turn keeps a few in
    /// line (2 of 8 in flight, the testbed's twin): the data's own order, not the limit.
    pub(crate) fn queued_on_a_lock(&self) -> bool {
        let sessions = self.step_sessions();
        let answered: Vec<usize> = (0..self.run.steps.len())
            .filter(|&i| self.run.steps[i].requests > 0)
            .collect();
        let Some(&top) = answered
            .iter()
            .skip(self.knee_index)
            .rev()
            .find(|&&i| sessions.get(i).copied().flatten().is_some())
        else {
            return false;
        };
        let Some(at) = sessions[top] else { return false };
        let in_flight = self.run.steps[top]
            .in_flight_by_littles_law
            .max(at.active)
            .max(at.lock_waiting);
        at.lock_waiting >= LOCK_QUEUE_SESSIONS && at.lock_waiting >= LOCK_QUEUE_SHARE * in_flight
    }

    /// CPU the target spent per request, in ms, if it was sampled: the least a step measured.
    /// Costs that grow slower than the load (waking an idle event loop and its threads, an
    /// exporter's batches, a profiler attaching) weigh most on the lightest step, so the first
    /// step alone overstates what a request costs — about twice, at 18 requests/s against 200.
    pub(crate) fn cpu_ms_per_request(&self) -> Option<f64> {
        self.run
            .steps
            .iter()
            .filter(|s| s.requests > 0 && s.throughput_rps > 0.0)
            .filter_map(|s| Some(s.target.as_ref()?.cpu_cores * 1e3 / s.throughput_rps))
            .min_by(f64::total_cmp)
    }

    /// The target's CPU against its rate, from the steps up to the knee (never past it, where a
    /// saturated process's CPU per request is no longer a cost): a line `cores = fixed +
    /// marginal × rate` fitted by least squares when at least [`FIT_STEPS`] steps span
    /// [`FIT_SPAN`]× in rate, its slope's range ± two standard errors; otherwise the least CPU
    /// per request a step measured, all of it marginal, its range the steps' spread. `None`
    /// when the target was not sampled.
    pub(crate) fn cpu_cost(&self) -> Option<CpuCost> {
        let points: Vec<(f64, f64)> = self
            .run
            .steps
            .iter()
            .filter(|s| s.requests > 0 && s.throughput_rps > 0.0)
            .take(self.knee_index + 1)
            .filter_map(|s| Some((s.throughput_rps, s.target.as_ref()?.cpu_cores)))
            .collect();
        let per_request: Vec<f64> = points.iter().map(|(rate, cores)| cores * 1e3 / rate).collect();
        let least = per_request.iter().copied().min_by(f64::total_cmp)?;
        let most = per_request
            .iter()
            .copied()
            .max_by(f64::total_cmp)
            .unwrap_or(least);
        let fitted = fit_line(&points).filter(|fit| fit.marginal_ms_per_request > 0.0);
        Some(fitted.unwrap_or(CpuCost {
            fixed_cores: 0.0,
            marginal_ms_per_request: least,
            marginal_range_ms: [least, most],
            basis: CpuCostBasis::LeastStep {
                steps: points.len() as u32,
            },
        }))
    }

    /// CPU the target used at the knee, in cores.
    pub(crate) fn knee_cpu_cores(&self) -> Option<f64> {
        self.knee.target.as_ref().map(|t| t.cpu_cores)
    }

    /// The CPU the target used where throughput stopped, in cores: at the knee of a closed ramp;
    /// at the knee or past it (the most) in an open one, whose knee is the last rate it kept up
    /// with — the CPU may fill only in the step that fell behind.
    pub(crate) fn plateau_cpu_cores(&self) -> Option<f64> {
        if self.run.model == LoadModel::Closed {
            return self.knee_cpu_cores();
        }
        let answered = self.run.steps.iter().filter(|s| s.requests > 0);
        answered
            .skip(self.knee_index)
            .filter_map(|s| s.target.as_ref().map(|t| t.cpu_cores))
            .max_by(f64::total_cmp)
    }

    /// The cores the target wanted at the knee: those it used and the time its threads were
    /// runnable but waited for one (another process had it).
    pub(crate) fn knee_cpu_wanted(&self) -> Option<f64> {
        self.knee
            .target
            .as_ref()
            .map(|t| t.cpu_cores + t.run_delay_ms_per_s / 1e3)
    }

    /// Whether the throughput is flat past the knee (the ramp went on and gained nothing).
    pub(crate) fn plateaus(&self) -> bool {
        self.run
            .steps
            .iter()
            .skip(self.knee_index + 1)
            .any(|s| s.offered > self.knee.offered)
    }

    /// The highest step with answers: where the most load was measured.
    pub(crate) fn top(&self) -> &'a LoadStep {
        self.run
            .steps
            .iter()
            .rfind(|s| s.requests > 0)
            .unwrap_or(self.knee)
    }
}

/// Whether the generator, not the target, was the limit in `step`.
pub(crate) fn generator_limited(run: &LoadRun, step: &LoadStep) -> bool {
    step.generator_cpu_cores >= GENERATOR_BUSY * run.host_cores.max(1.0)
}

/// Responses at least this large make a ramp transfer-bound before anything else.
pub(crate) const LARGE_RESPONSE_BYTES: f64 = 64.0 * 1024.0;

/// Whether the responses at the knee are large enough that moving their bytes is the work.
pub(crate) fn transfer_bound(curve: &Curve<'_>) -> bool {
    curve.knee.response_bytes_mean >= LARGE_RESPONSE_BYTES
}

/// Steps a line of CPU against rate needs…
const FIT_STEPS: usize = 3;
/// …spanning this ratio of rates.
const FIT_SPAN: f64 = 2.0;

/// A line through (requests/s, cores): least squares, or through the origin when the intercept
/// comes out negative (a fixed cost below nothing is noise). `None` when the points do not span
/// enough rates to tell a slope.
fn fit_line(points: &[(f64, f64)]) -> Option<CpuCost> {
    let n = points.len();
    let (low, high) = points
        .iter()
        .fold((f64::INFINITY, 0.0_f64), |(l, h), (x, _)| (l.min(*x), h.max(*x)));
    if n < FIT_STEPS || high < FIT_SPAN * low {
        return None;
    }
    let nf = n as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / nf;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / nf;
    let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    let mut slope = sxy / sxx;
    let mut intercept = mean_y - slope * mean_x;
    let mut spread_x = sxx;
    if intercept < 0.0 {
        slope = points.iter().map(|p| p.0 * p.1).sum::<f64>() / points.iter().map(|p| p.0 * p.0).sum::<f64>();
        intercept = 0.0;
        spread_x = points.iter().map(|p| p.0 * p.0).sum();
    }
    let residuals: f64 = points
        .iter()
        .map(|p| (p.1 - intercept - slope * p.0).powi(2))
        .sum();
    let standard_error = (residuals / (nf - 2.0).max(1.0) / spread_x).sqrt();
    Some(CpuCost {
        fixed_cores: intercept,
        marginal_ms_per_request: slope * 1e3,
        marginal_range_ms: [
            ((slope - 2.0 * standard_error) * 1e3).max(slope * 1e3 / 2.0),
            (slope + 2.0 * standard_error) * 1e3,
        ],
        basis: CpuCostBasis::Fit { steps: n as u32 },
    })
}

/// Cores a process's CPU use is measured against: one for a single-threaded (or GIL-bound)
/// process near one core, more when it spreads over more.
pub(crate) fn usable_cores(cpu_cores: f64) -> f64 {
    cpu_cores.round().max(1.0)
}

/// The step's load in words: "1 concurrent connection", "80 requests/s offered".
pub(crate) fn offered(run: &LoadRun, value: f64) -> String {
    match run.model {
        LoadModel::Closed if value == 1.0 => "1 concurrent connection".to_owned(),
        LoadModel::Closed => format!("{value} concurrent connections"),
        LoadModel::Open => format!("{value} requests/s offered"),
    }
}

/// What the step series says about the measurement itself: steps the generator limited, and
/// closed-model steps whose connections were not kept busy (Little's law).
pub(crate) fn notes(run: &LoadRun) -> Vec<Note> {
    let mut notes = Vec::new();
    if let Some(step) = run.steps.iter().position(|s| generator_limited(run, s)) {
        notes.push(
            Note::new(
                Severity::Warning,
                "load ramp",
                "the generator was the limit from this step on (its CPU, or sending late): those steps measure it, \
                 not the target; run it on another host",
            )
            .at(Position::Step {
                step: step as u64 + 1,
            }),
        );
    }
    if run.model == LoadModel::Closed {
        for (i, step) in run.steps.iter().enumerate() {
            let gap = (step.in_flight_by_littles_law - step.offered).abs() / step.offered.max(1.0);
            if step.requests > 0 && step.errors == 0 && gap > LITTLES_LAW_TOLERANCE {
                notes.push(
                    Note::new(
                        Severity::Warning,
                        "load ramp",
                        format!(
                            "Little's law gives {:.1} requests in flight for {} connections (throughput × latency); \
                             the connections were not kept busy",
                            step.in_flight_by_littles_law, step.offered
                        ),
                    )
                    .at(Position::Step { step: i as u64 + 1 }),
                );
            }
        }
    }
    notes
}

/// The database's sessions during one load step, from the watch that ran beside the ramp.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StepSessions {
    /// The step, counted from 0.
    pub step: usize,
    /// Active sessions, on average over the step.
    pub active: f64,
    /// Sessions waiting on a lock, on average over the step.
    pub lock_waiting: f64,
}

/// Lines the watch's seconds up with the steps (both on the Unix time base): each step's mean
/// active and lock-waiting sessions, for the steps the watch covered.
pub(crate) fn step_sessions(run: &LoadRun, activity: &Activity) -> Vec<StepSessions> {
    run.steps
        .iter()
        .enumerate()
        .filter_map(|(step, s)| {
            let (start, end) = (s.started_unix_s, s.started_unix_s + s.duration_s);
            // Each second of the watch weighs by how much of it the step covers: the second a
            // step ends in may lie mostly after it, when the requests are gone.
            let during: Vec<(f64, _)> = activity
                .timeline
                .iter()
                .map(|second| {
                    let overlap = (end.min(second.unix_s + 1.0) - start.max(second.unix_s)).clamp(0.0, 1.0);
                    (overlap, second)
                })
                .filter(|(overlap, _)| *overlap > 0.0)
                .collect();
            let n: f64 = during.iter().map(|(w, _)| w).sum();
            (n > 0.0).then(|| StepSessions {
                step,
                active: crate::finding::round(during.iter().map(|(w, s)| w * s.active).sum::<f64>() / n),
                lock_waiting: crate::finding::round(
                    during.iter().map(|(w, s)| w * s.lock_waiting).sum::<f64>() / n,
                ),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use chokepoint_evidence::{ActivitySecond, StopReason};

    use super::*;

    fn run(steps: Vec<LoadStep>) -> LoadRun {
        LoadRun {
            url: "http://127.0.0.1:8000/".into(),
            addr: None,
            model: LoadModel::Closed,
            host_cores: 2.0,
            started_unix_s: 1_700_000_000.0,
            target_pid: None,
            target_command: None,
            steps,
            stopped_because: StopReason::LastStep,
            breaking_step: None,
            target_lost: false,
        }
    }

    fn step(offered: f64, started_unix_s: f64, throughput_rps: f64) -> LoadStep {
        LoadStep {
            offered,
            started_unix_s,
            duration_s: 2.0,
            requests: (throughput_rps * 2.0) as u64,
            throughput_rps,
            in_flight_by_littles_law: offered,
            ..LoadStep::default()
        }
    }

    #[test]
    fn database_seconds_join_the_steps_they_overlap() {
        let run = run(vec![step(1.0, 100.5, 10.0), step(2.0, 102.5, 20.0)]);
        let second = |unix_s, lock_waiting| ActivitySecond {
            unix_s,
            active: 1.0,
            lock_waiting,
        };
        let activity = Activity {
            timeline: vec![
                second(100.0, 0.0),
                second(101.0, 1.0),
                second(102.0, 2.0),
                second(103.0, 4.0),
            ],
            ..Activity::default()
        };
        let joined = step_sessions(&run, &activity);
        assert_eq!(joined.len(), 2);
        // Step 1 runs 100.5–102.5: half of second 100, second 101, half of second 102.
        assert_eq!(joined[0].lock_waiting, 1.0);
        // Step 2 runs 102.5–104.5: half of second 102 and second 103 — (1 + 4) ÷ 1.5.
        assert_eq!(joined[1].lock_waiting, 3.333);
    }

    #[test]
    fn a_busy_generator_makes_the_curve_unreadable_and_a_note() {
        let mut busy = step(4.0, 104.0, 40.0);
        busy.generator_cpu_cores = 1.9;
        let run = run(vec![step(1.0, 100.0, 10.0), step(2.0, 102.0, 20.0), busy]);
        let reason = Curve::of(&run).err().expect("unreadable");
        assert!(reason.contains("generator"), "{reason}");
        let notes = notes(&run);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert_eq!(notes[0].position, Some(Position::Step { step: 3 }));
    }

    #[test]
    fn cpu_per_request_is_the_least_a_step_measured() {
        let sampled = |offered, throughput_rps, cpu_cores| LoadStep {
            target: Some(chokepoint_evidence::TargetSample {
                cpu_cores,
                ..Default::default()
            }),
            ..step(offered, 100.0 + offered, throughput_rps)
        };
        // The first step pays the process's fixed costs (10 ms a request); a step with no
        // answers says nothing.
        let mut failed = sampled(8.0, 0.0, 0.05);
        failed.requests = 0;
        let run = run(vec![
            sampled(1.0, 25.0, 0.25),
            sampled(2.0, 28.0, 0.2),
            sampled(4.0, 28.0, 0.19),
            failed,
        ]);
        let curve = Curve::of(&run).expect("readable");
        let cpu_ms = curve.cpu_ms_per_request().expect("sampled");
        assert!((cpu_ms - 0.19 * 1e3 / 28.0).abs() < 1e-9, "{cpu_ms}");
    }

    #[test]
    fn cpu_cost_separates_the_fixed_cost_from_the_marginal_one_below_the_knee() {
        let sampled = |offered: f64, throughput_rps: f64, cpu_cores: f64| LoadStep {
            target: Some(chokepoint_evidence::TargetSample {
                cpu_cores,
                ..Default::default()
            }),
            ..step(offered, 100.0 + offered, throughput_rps)
        };
        // 0.05 cores whatever the rate, 4 ms a request: 9 ms a request at 10/s, 4.25 at 200/s;
        // the saturated step past the knee (0.9 cores at 205/s) is not read.
        let run = run(vec![
            sampled(10.0, 10.0, 0.09),
            sampled(50.0, 50.0, 0.25),
            sampled(100.0, 100.0, 0.45),
            sampled(200.0, 200.0, 0.85),
            sampled(400.0, 205.0, 0.9),
        ]);
        let curve = Curve::of(&run).expect("readable");
        let cpu = curve.cpu_cost().expect("sampled");
        assert_eq!(cpu.basis, CpuCostBasis::Fit { steps: 4 });
        assert!((cpu.fixed_cores - 0.05).abs() < 1e-9, "{cpu:?}");
        assert!((cpu.marginal_ms_per_request - 4.0).abs() < 1e-9, "{cpu:?}");
        assert!(
            cpu.marginal_range_ms[0] <= 4.0 && 4.0 <= cpu.marginal_range_ms[1],
            "{cpu:?}"
        );
        // Steps too close in rate to fit: the least CPU per request, its range the steps' spread.
        let run = run_of_one_rate();
        let cpu = Curve::of(&run).expect("readable").cpu_cost().expect("sampled");
        assert_eq!(cpu.basis, CpuCostBasis::LeastStep { steps: 2 });
        assert!(
            (cpu.marginal_ms_per_request - 0.2 * 1e3 / 28.0).abs() < 1e-9,
            "{cpu:?}"
        );
        assert!((cpu.marginal_range_ms[1] - 10.0).abs() < 1e-9, "{cpu:?}");
    }

    /// A ramp whose steps ran at about one rate: the first step pays the fixed costs.
    fn run_of_one_rate() -> LoadRun {
        let sampled = |offered: f64, throughput_rps: f64, cpu_cores: f64| LoadStep {
            target: Some(chokepoint_evidence::TargetSample {
                cpu_cores,
                ..Default::default()
            }),
            ..step(offered, 100.0 + offered, throughput_rps)
        };
        run(vec![
            sampled(1.0, 25.0, 0.25),
            sampled(2.0, 28.0, 0.2),
            sampled(4.0, 27.0, 0.19),
        ])
    }
}
