//! `lock-contention`: sessions wait on locks held by another session, which is named — and,
//! under a load ramp, requests queue on a lock, which caps throughput.

use chokepoint_evidence::{Activity, EndpointAggregate, LockWait, Resource, Subject};

use crate::db::{DbView, WATCH};
use crate::detectors::{clip, percent};
use crate::finding::{Basis, Confidence, EvidenceItem, Sample, SampleUnit};
use crate::load::{Curve, DATABASE_WATCHED, offered};
use crate::registry::{Conclusion, Detector, Estimate, Reads, detector};

detector! {
    /// # What it detects
    ///
    /// Sessions waiting on locks during a watch, and the session blocking them: a long
    /// transaction, `SELECT … FOR UPDATE` on hot rows, a transaction left idle, or DDL holding
    /// `ACCESS EXCLUSIVE`. Under a load ramp watched with `--pg`, the limit it puts on
    /// throughput: requests that queue on one lock are served one at a time however many workers
    /// the service has.
    ///
    /// # Why it limits throughput
    ///
    /// Waiting sessions hold connections and workers doing nothing; every statement that needs
    /// the same rows or table queues behind the blocker, so throughput is capped by how fast
    /// the blocker lets go — one holder at a time: capacity ≈ 1 ÷ the time each request holds
    /// the lock — however idle the CPU.
    ///
    /// # Evidence used
    ///
    /// `chokepoint db --watch`: `pg_stat_activity` sampled at about 10 Hz; for sessions waiting
    /// on a `Lock`, `pg_blocking_pids` and `pg_locks` name the blocker, its last statement, its
    /// state, the modes it holds and how long its transaction has been open. Flagged when, on
    /// average, a tenth of a session or more waits, that is a tenth or more of the active
    /// sessions, and the blocking transactions have been open 50 ms or more (a short queue of
    /// atomic writes to one row is the data's own serialization); or when the queue is deep
    /// however short the transactions: three sessions or more, half the active ones, waiting on
    /// average over the watch (`pgbench` at scale 1), or three or more, three quarters of the
    /// active ones, in its busiest quarter (a ramp whose top steps queue on one row) when one
    /// session or more waits on average and the blockers stay open 20 ms or more (a hammered
    /// atomic update queues deep for a moment behind transactions open a few ms).
    ///
    /// With traces beside the watch, the transaction that holds the lock is read from the
    /// endpoint that runs the blocking statement: its statements from the one that takes the lock,
    /// how long each request holds it and how much of that is outside any statement — work, or a
    /// call, done while the rows stay locked.
    ///
    /// With a load ramp (`chokepoint diagnose`, `load --pg`): throughput stopped rising while,
    /// at the knee and past it, half the active sessions or more waited on a lock (half a session
    /// at least). The lock is then the limit; its demand is 1 ÷ capacity, the time each request
    /// holds it, and Little's law on workers says nothing about requests it serializes.
    ///
    /// # Known false positives
    ///
    /// Short, expected waits in a busy queue table (use `SKIP LOCKED`); maintenance windows.
    /// The blocker's statement is the one it runs when sampled, which can be the slow work inside
    /// the transaction rather than the statement that took the lock.
    ///
    /// # Typical fix
    ///
    /// Shorten the transactions that take the locks (no slow work or network calls inside them),
    /// update hot rows atomically (`UPDATE … SET balance = balance - $1 WHERE … AND balance >= $1`)
    /// instead of `SELECT … FOR UPDATE` then `UPDATE`, set `idle_in_transaction_session_timeout`,
    /// and run DDL with `lock_timeout` and `CONCURRENTLY` where it exists.
    pub(crate) struct LockContention {
        id: LockContention,
        summary: "sessions wait on locks held by another session",
        reads: [Reads::Database(WATCH), Reads::Load(DATABASE_WATCHED)],
        same_cause: [],
    }
}

/// Sessions waiting on locks, on average, that are worth a finding.
const MIN_WAITING_SESSIONS: f64 = 0.1;
/// …and as a share of the active sessions.
const MIN_WAITING_SHARE: f64 = 0.1;
/// Blocking transactions younger than this, in ms, are a queue of short writes to one row —
/// serialization the data needs, not a transaction holding its locks too long — unless the
/// queue is deep (below). (The testbed's atomic-update twin, hammered by 8 clients on 2 cores,
/// shows blockers open 10 to 20 ms; its transaction holding the row through 50 ms of work,
/// about 370 ms — and 130 to 180 ms in a ramp of 1 to 4 connections.)
const MIN_BLOCKER_TRANSACTION_MS: f64 = 50.0;
/// Sessions waiting on average that make a queue of short transactions contention: most of the
/// clients stand in line (`pgbench` at scale 1 with 16 clients: 12.5 of 13 active sessions wait,
/// throughput half of scale 16's, where 1.4 wait; the testbed's atomic-update twin: 1).
const MIN_QUEUE_SESSIONS: f64 = 3.0;
/// …as a share of the active sessions.
const MIN_QUEUE_SHARE: f64 = 0.5;
/// The share of the active sessions waiting in the watch's busiest quarter that makes a queue
/// there contention: nearly all of them stand in line (a ramp's top steps on one hot row: all
/// but the holder; `pgbench` at scale 16, whose clients update different rows: under half)…
const MIN_BUSIEST_QUEUE_SHARE: f64 = 0.75;
/// …when the queue lasts — sessions waiting on average over the whole watch — behind
/// transactions that stay open: the atomic-update twin hammered by 8 clients queues 4 deep for a
/// second (0.7 waiting on average, blockers open 6 ms); a row held across a 4 ms call, 2.5 on
/// average behind blockers open 36 ms.
const MIN_LASTING_QUEUE_SESSIONS: f64 = 1.0;
/// …in ms.
const MIN_QUEUED_BLOCKER_TRANSACTION_MS: f64 = 20.0;

impl Detector for LockContention {
    fn check_load(&self, curve: &Curve<'_>) -> Option<Conclusion> {
        let (waiting, active) = curve.lock_waits_at_plateau()?;
        if !curve.plateaus() || !curve.queued_on_a_lock() || curve.capacity_rps <= 0.0 {
            return None;
        }
        let activity = curve.database?;
        let held_ms = 1e3 / curve.capacity_rps;
        let top = activity.lock_waits.first();
        let what = top.map_or_else(
            || "a lock".to_owned(),
            |w| {
                format!(
                    "a lock on {} held by `{}`",
                    if w.relation.is_empty() {
                        "a table"
                    } else {
                        &w.relation
                    },
                    clip(&crate::sql::normalize(&w.blocker_query).normalized, 80)
                )
            },
        );
        let title = format!(
            "Throughput stops at {:.0} requests/s from {} while {waiting:.1} of {:.1} active database sessions wait on \
             {what}: requests are served one at a time, each holding it about {held_ms:.1} ms",
            curve.capacity_rps,
            offered(curve.run, curve.knee.offered),
            active.max(waiting),
        );
        let fix = top.map_or_else(
            || "Find the transaction that holds the lock (`chokepoint db --watch` names it) and keep it short: no work or \
                calls while it holds locks."
                .to_owned(),
            |w| hot_row_fix(w, None),
        );
        let cpu_ms = curve.cpu_ms_per_request();
        let mut conclusion = Conclusion::new(
            Resource::Locks,
            Basis::Measured,
            Estimate::Limit {
                demand_ms_per_request: Some(held_ms),
            },
            title,
            fix,
            Confidence::High,
        )
        .assume(vec![
            "one holder at a time: capacity ≈ 1 ÷ the time each request holds the lock".into(),
            format!(
                "{waiting:.1} sessions waited on a lock on average at the knee and past it (the database watched beside \
                 the ramp): more workers would only queue longer"
            ),
        ])
        .metrics(
            [
                ("lock_waiting_sessions_at_plateau", waiting),
                ("active_sessions_at_plateau", active),
                ("held_ms", held_ms),
            ]
            .into_iter()
            .chain(curve.knee_cpu_cores().map(|c| ("cpu_cores_at_knee", c)))
            .chain(cpu_ms.map(|c| ("cpu_ms_per_request", c)))
            .collect(),
        );
        if let Some(w) = top {
            conclusion = conclusion.about(
                lock_subject(w),
                format!("at {}", offered(curve.run, curve.knee.offered)),
            );
            conclusion.items = lock_items(activity);
        }
        Some(conclusion)
    }

    fn check_database(&self, database: &DbView<'_>) -> Option<Conclusion> {
        let activity = database.snapshot.activity.as_ref()?;
        let top = activity.lock_waits.first()?;
        let share =
            activity.lock_waiting_mean / activity.active_mean.max(activity.lock_waiting_mean).max(1e-9);
        let long_blocker = activity.lock_waiting_mean >= MIN_WAITING_SESSIONS
            && share >= MIN_WAITING_SHARE
            && top.blocker_transaction_ms >= MIN_BLOCKER_TRANSACTION_MS;
        let (busiest_waiting, busiest_share) = busiest_quarter(activity);
        let deep_queue = (activity.lock_waiting_mean >= MIN_QUEUE_SESSIONS && share >= MIN_QUEUE_SHARE)
            || (busiest_waiting >= MIN_QUEUE_SESSIONS
                && busiest_share >= MIN_BUSIEST_QUEUE_SHARE
                && activity.lock_waiting_mean >= MIN_LASTING_QUEUE_SESSIONS
                && top.blocker_transaction_ms >= MIN_QUEUED_BLOCKER_TRANSACTION_MS);
        if !long_blocker && !deep_queue {
            return None;
        }
        let blocker = clip(&crate::sql::normalize(&top.blocker_query).normalized, 90);
        let waiting = clip(&crate::sql::normalize(&top.waiting_query).normalized, 90);
        let ddl = top.blocker_modes.iter().any(|m| m == "AccessExclusiveLock");
        let idle = top.blocker_state.starts_with("idle in transaction");
        // The transaction that holds the lock, from the traces of the endpoint that runs its
        // statement.
        let transaction = database
            .endpoint_running(&top.blocker_query)
            .or_else(|| database.endpoint_running(&top.waiting_query))
            .and_then(|endpoint| transaction(endpoint, &top.blocker_query, &top.waiting_query));
        let (kind, fix) = if ddl {
            (
                format!("DDL holding ACCESS EXCLUSIVE on {}", top.relation),
                format!(
                    "The blocker is a schema change holding ACCESS EXCLUSIVE on {} in an open transaction (`{blocker}`): run \
                     migrations with `SET lock_timeout = '2s'` and retry, commit DDL at once, and use `CREATE INDEX \
                     CONCURRENTLY` / `ADD COLUMN` without a default rewrite where possible.",
                    top.relation
                ),
            )
        } else if idle && !hot_rows(top) && transaction.is_none() {
            (
                format!("a transaction left idle after `{blocker}` holds the locks"),
                "The blocker sits idle in an open transaction while holding its locks: commit or roll back as soon as the \
                 work is done (no network calls or slow work inside the transaction), and set \
                 `idle_in_transaction_session_timeout` as a backstop."
                    .to_owned(),
            )
        } else {
            let running = if idle { "left idle after" } else { "still running" };
            let held = match &transaction {
                Some(t) => format!(
                    "; {} holds them {:.1} ms per request, {:.1} ms of it outside any statement",
                    t.endpoint, t.held_ms, t.outside_ms
                ),
                None => format!(", open {:.0} ms on average", top.blocker_transaction_ms),
            };
            (
                format!("hot rows held by a transaction {running} `{blocker}`{held}"),
                hot_row_fix(top, transaction.as_ref()),
            )
        };
        let mut conclusion = Conclusion::new(
            Resource::Locks,
            Basis::Measured,
            Estimate::Recovered {
                saved_ms_total: activity.lock_waiting_mean * activity.duration_s * 1e3,
                share,
                sample: Sample {
                    affected: top.samples,
                    // Sessions active or waiting at each instant sampled.
                    total: (activity.samples as f64 * activity.active_mean.max(activity.lock_waiting_mean))
                        .round()
                        .max(top.samples as f64) as u64,
                    unit: SampleUnit::Samples,
                },
                occurrences: top.samples,
            },
            format!(
                "{:.1} sessions wait on locks on average ({} of active sessions{}); the blocker: {kind}",
                activity.lock_waiting_mean,
                percent(share),
                if deep_queue && busiest_waiting > activity.lock_waiting_mean * 1.2 {
                    format!(", {busiest_waiting:.1} in the busiest quarter of the watch")
                } else {
                    String::new()
                }
            ),
            fix,
            if share >= 0.3 {
                Confidence::High
            } else {
                Confidence::Medium
            },
        )
        .assume(vec![
            "every sampled wait is time the fix gives back: waiting sessions × the watch".into(),
            format!(
                "waiting statement: `{waiting}` ({} wants {})",
                top.relation, top.mode
            ),
        ])
        .metrics(vec![
            ("lock_waiting_sessions_mean", activity.lock_waiting_mean),
            ("active_sessions_mean", activity.active_mean),
            ("waiting_share", share),
            ("lock_waiting_sessions_busiest_quarter", busiest_waiting),
        ])
        .about(lock_subject(top), format!("{blocker} ({})", top.blocker_state));
        conclusion.items = lock_items(activity);
        if let Some(t) = transaction {
            conclusion.items.push(EvidenceItem::Transaction {
                service: t.service,
                endpoint: t.endpoint,
                statements: t.statements,
                held_ms: crate::impact::round(t.held_ms),
                outside_statements_ms: crate::impact::round(t.outside_ms),
            });
        }
        Some(conclusion)
    }
}

/// Whether the blocker holds rows it locked to update them: `SELECT … FOR UPDATE`, an `UPDATE`.
fn hot_rows(wait: &LockWait) -> bool {
    wait.blocker_query.to_ascii_uppercase().contains("FOR UPDATE")
        || wait
            .blocker_query
            .trim_start()
            .to_ascii_uppercase()
            .starts_with("UPDATE")
}

/// What a lock finding is about: the locked relation and the blocker's statement.
fn lock_subject(wait: &LockWait) -> Subject {
    Subject::Lock {
        relation: wait.relation.clone(),
        blocker: crate::sql::normalize(&wait.blocker_query).normalized,
    }
}

/// The watch's top lock waits, as evidence.
fn lock_items(activity: &Activity) -> Vec<EvidenceItem> {
    activity
        .lock_waits
        .iter()
        .take(3)
        .map(|w| EvidenceItem::LockWait {
            waiting: w.waiting_query.clone(),
            blocker: w.blocker_query.clone(),
            blocker_state: w.blocker_state.clone(),
            relation: w.relation.clone(),
            mode: w.mode.clone(),
            blocker_modes: w.blocker_modes.clone(),
            blocker_transaction_ms: crate::impact::round(w.blocker_transaction_ms),
            samples: w.samples,
        })
        .collect()
}

/// Sessions waiting and their share of the active ones, on average over the quarter of the
/// watch's seconds with the most waiting: a queue that is deep when the load is.
fn busiest_quarter(activity: &Activity) -> (f64, f64) {
    let mut seconds: Vec<_> = activity.timeline.iter().collect();
    if seconds.len() < 4 {
        return (0.0, 0.0);
    }
    seconds.sort_by(|a, b| b.lock_waiting.total_cmp(&a.lock_waiting));
    let quarter = &seconds[..seconds.len() / 4];
    let n = quarter.len() as f64;
    let waiting = quarter.iter().map(|s| s.lock_waiting).sum::<f64>() / n;
    let active = quarter.iter().map(|s| s.active.max(s.lock_waiting)).sum::<f64>() / n;
    (waiting, waiting / active.max(1e-9))
}

/// The transaction holding a lock, as one endpoint's requests run it.
struct Transaction {
    service: String,
    endpoint: String,
    statements: Vec<String>,
    held_ms: f64,
    outside_ms: f64,
}

/// The statements of `endpoint`'s requests from the one that takes the lock (the blocker's, or
/// else the waiting one's) on, and how long the lock is held: from the end of that statement
/// (its wait for the lock included in it) to the end of the last, per request.
fn transaction(endpoint: &EndpointAggregate, blocker: &str, waiting: &str) -> Option<Transaction> {
    let fingerprints = [blocker, waiting].map(|q| crate::sql::normalize(q).fingerprint);
    let from = endpoint
        .statements
        .iter()
        .position(|s| fingerprints.contains(&s.fingerprint))?;
    let held: Vec<_> = endpoint.statements[from..]
        .iter()
        .filter(|s| !crate::detectors::n_plus_one::is_housekeeping_statement(&s.text))
        .collect();
    let first = held.first()?;
    let per_request = |s: &chokepoint_evidence::StatementUse| s.time_ms / s.requests.max(1) as f64;
    let locked_at = first.offset_ms.mean() + per_request(first);
    let last_end = held
        .iter()
        .map(|s| s.offset_ms.mean() + per_request(s))
        .fold(locked_at, f64::max);
    let held_ms = (last_end - locked_at).max(0.0);
    let in_statements: f64 = held.iter().skip(1).map(|s| per_request(s)).sum();
    Some(Transaction {
        service: endpoint.service.clone(),
        endpoint: endpoint.endpoint.clone(),
        statements: held.iter().map(|s| clip(&s.text, 120)).collect(),
        held_ms,
        outside_ms: (held_ms - in_statements).max(0.0),
    })
}

/// The fix for rows held while they are worked on: what the transaction does while holding them,
/// when the traces show it, and the atomic update.
fn hot_row_fix(wait: &LockWait, transaction: Option<&Transaction>) -> String {
    let relation = if wait.relation.is_empty() {
        "a table".to_owned()
    } else {
        wait.relation.clone()
    };
    let work = match transaction {
        Some(t) if t.statements.len() >= 2 => format!(
            "In {}, the rows stay locked from `{}` to `{}` — {:.1} ms per request, {:.1} ms of it outside any \
             statement: do that work (the check, the call) before the transaction, then ",
            t.endpoint,
            clip(&t.statements[0], 70),
            clip(t.statements.last().map_or("", String::as_str), 70),
            t.held_ms,
            t.outside_ms
        ),
        _ => {
            "Keep the locking transaction short — no work or calls while it holds the rows — and ".to_owned()
        }
    };
    format!(
        "Sessions queue on the same rows of {relation}. {work}update the hot row atomically (`UPDATE … SET balance = \
         balance - $1 WHERE id = $2 AND balance >= $1 RETURNING balance`) instead of `SELECT … FOR UPDATE` followed by \
         work and an `UPDATE`; for queues, `FOR UPDATE SKIP LOCKED`."
    )
}
