//! `lock-contention`: sessions wait on locks held by another session, which is named.

use chokepoint_evidence::{Resource, Subject};

use crate::db::{DbView, WATCH};
use crate::detectors::{clip, percent};
use crate::finding::{Basis, Confidence, EvidenceItem, Sample, SampleUnit};
use crate::registry::{Conclusion, Detector, Estimate, Reads, detector};

detector! {
    /// # What it detects
    ///
    /// Sessions waiting on locks during a watch, and the session blocking them: a long
    /// transaction, `SELECT … FOR UPDATE` on hot rows, a transaction left idle, or DDL holding
    /// `ACCESS EXCLUSIVE`.
    ///
    /// # Why it limits throughput
    ///
    /// Waiting sessions hold connections and workers doing nothing; every statement that needs
    /// the same rows or table queues behind the blocker, so throughput is capped by how fast
    /// the blocker lets go, however idle the CPU.
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
    /// average (`pgbench` at scale 1).
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
        reads: [Reads::Database(WATCH)],
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

impl Detector for LockContention {
    fn check_database(&self, database: &DbView<'_>) -> Option<Conclusion> {
        let activity = database.snapshot.activity.as_ref()?;
        let top = activity.lock_waits.first()?;
        let share =
            activity.lock_waiting_mean / activity.active_mean.max(activity.lock_waiting_mean).max(1e-9);
        let long_blocker = activity.lock_waiting_mean >= MIN_WAITING_SESSIONS
            && share >= MIN_WAITING_SHARE
            && top.blocker_transaction_ms >= MIN_BLOCKER_TRANSACTION_MS;
        let deep_queue = activity.lock_waiting_mean >= MIN_QUEUE_SESSIONS && share >= MIN_QUEUE_SHARE;
        if !long_blocker && !deep_queue {
            return None;
        }
        let blocker = clip(&crate::sql::normalize(&top.blocker_query).normalized, 90);
        let waiting = clip(&crate::sql::normalize(&top.waiting_query).normalized, 90);
        let ddl = top.blocker_modes.iter().any(|m| m == "AccessExclusiveLock");
        let idle = top.blocker_state.starts_with("idle in transaction");
        let hot_rows = top.blocker_query.to_ascii_uppercase().contains("FOR UPDATE")
            || top
                .blocker_query
                .trim_start()
                .to_ascii_uppercase()
                .starts_with("UPDATE");
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
        } else if idle && !hot_rows {
            (
                format!("a transaction left idle after `{blocker}` holds the locks"),
                "The blocker sits idle in an open transaction while holding its locks: commit or roll back as soon as the \
                 work is done (no network calls or slow work inside the transaction), and set \
                 `idle_in_transaction_session_timeout` as a backstop."
                    .to_owned(),
            )
        } else {
            let running = if idle { "left idle after" } else { "still running" };
            (
                format!(
                    "hot rows held by a transaction {running} `{blocker}`, open {:.0} ms on average",
                    top.blocker_transaction_ms
                ),
                format!(
                    "Sessions queue on the same rows of {}: keep the locking transaction short, and update the hot row \
                     atomically (`UPDATE … SET balance = balance - $1 WHERE id = $2 AND balance >= $1`) instead of `SELECT … \
                     FOR UPDATE` followed by work and an `UPDATE`; for queues, `FOR UPDATE SKIP LOCKED`.",
                    if top.relation.is_empty() {
                        "a table".to_owned()
                    } else {
                        top.relation.clone()
                    }
                ),
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
                "{:.1} sessions wait on locks on average ({} of active sessions); the blocker: {kind}",
                activity.lock_waiting_mean,
                percent(share)
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
        ])
        .about(
            Subject::Lock {
                relation: top.relation.clone(),
                blocker: crate::sql::normalize(&top.blocker_query).normalized,
            },
            format!("{blocker} ({})", top.blocker_state),
        );
        conclusion.items = activity
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
            .collect();
        Some(conclusion)
    }
}
