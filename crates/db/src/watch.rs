//! Watch mode: `pg_stat_statements` differenced over a window, and `pg_stat_activity` sampled at
//! about 10 Hz. `pg_blocking_pids` is called only for sessions waiting on a lock, since it takes
//! the lock manager's locks. If the database goes away, the watch reconnects with backoff and
//! records the gap; what was sampled is kept.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chokepoint_evidence::{Activity, ActivitySecond, Gap, LockWait, PgSnapshot, StatementStat};
use tokio_postgres::Client;

/// How often sessions are sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// Every client session of the database: its state, whether it waits on a lock and, only then,
/// the sessions blocking it (`pg_blocking_pids` takes the lock manager's locks, so it is not
/// called for the others), and its transaction's age.
const ACTIVITY: &str = "SELECT pid, coalesce(state, ''), coalesce(wait_event_type, '') = 'Lock', coalesce(query, ''), \
                        CASE WHEN wait_event_type = 'Lock' THEN pg_blocking_pids(pid) ELSE '{}' END, \
                        coalesce(extract(epoch FROM now() - xact_start) * 1000, 0)::float8 \
                        FROM pg_stat_activity \
                        WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'";

/// Read only when sessions wait: the locks the waiters ($1) want, and the modes the blockers
/// ($2) hold on relations.
const LOCKS: &str = "SELECT pid, granted, coalesce(relation::regclass::text, locktype), mode FROM pg_locks \
                     WHERE (NOT granted AND pid = ANY($1)) OR (granted AND relation IS NOT NULL AND pid = ANY($2))";

/// One session in one sample.
struct Session {
    pid: i32,
    state: String,
    waiting: bool,
    query: String,
    blocked_by: Vec<i32>,
    transaction_ms: f64,
}

/// A session blocking a waiter: who, what it holds and runs.
struct Blocker {
    pid: i32,
    relation: String,
    mode: String,
    query: String,
    state: String,
    held: Vec<String>,
    transaction_ms: f64,
}

/// The sampler's statements, prepared once per connection: planned once, not every 100 ms.
struct Prepared {
    activity: tokio_postgres::Statement,
    locks: tokio_postgres::Statement,
}

impl Prepared {
    async fn new(client: &Client) -> Result<Prepared, tokio_postgres::Error> {
        Ok(Prepared {
            activity: client.prepare(ACTIVITY).await?,
            locks: client.prepare(LOCKS).await?,
        })
    }
}

/// One sample: the sessions, and for each waiting one, its blockers.
async fn sample(
    client: &Client,
    prepared: &Prepared,
    text: &impl Fn(String) -> String,
) -> Result<(Vec<Session>, HashMap<i32, Vec<Blocker>>), tokio_postgres::Error> {
    let sessions: Vec<Session> = client
        .query(&prepared.activity, &[])
        .await?
        .iter()
        .map(|r| Session {
            pid: r.get(0),
            state: r.get(1),
            waiting: r.get(2),
            query: r.get(3),
            blocked_by: r.get(4),
            transaction_ms: r.get(5),
        })
        .collect();
    let waiters: Vec<i32> = sessions.iter().filter(|s| s.waiting).map(|s| s.pid).collect();
    let mut blocked_by = HashMap::new();
    if waiters.is_empty() {
        return Ok((sessions, blocked_by));
    }
    let blockers: Vec<i32> = sessions
        .iter()
        .flat_map(|s| s.blocked_by.iter().copied())
        .collect();
    let mut wanted: HashMap<i32, (String, String)> = HashMap::new();
    let mut held: HashMap<(i32, String), Vec<String>> = HashMap::new();
    for row in client.query(&prepared.locks, &[&waiters, &blockers]).await? {
        let (pid, granted, relation, mode): (i32, bool, String, String) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        if granted {
            held.entry((pid, relation)).or_default().push(mode);
        } else {
            wanted.insert(pid, (relation, mode));
        }
    }
    let by_pid: HashMap<i32, &Session> = sessions.iter().map(|s| (s.pid, s)).collect();
    for waiter in sessions.iter().filter(|s| s.waiting) {
        let (relation, mode) = wanted.get(&waiter.pid).cloned().unwrap_or_default();
        let list = waiter
            .blocked_by
            .iter()
            .map(|&pid| {
                let blocker = by_pid.get(&pid);
                Blocker {
                    pid,
                    held: held.get(&(pid, relation.clone())).cloned().unwrap_or_default(),
                    relation: relation.clone(),
                    mode: mode.clone(),
                    query: blocker.map(|b| text(b.query.clone())).unwrap_or_default(),
                    state: blocker.map(|b| b.state.clone()).unwrap_or_default(),
                    transaction_ms: blocker.map_or(0.0, |b| b.transaction_ms),
                }
            })
            .collect();
        blocked_by.insert(waiter.pid, list);
    }
    Ok((sessions, blocked_by))
}

const SESSIONS: &str =
    "SELECT sessions, session_time FROM pg_stat_database WHERE datname = current_database()";

/// Watches for `duration`, or until `stop` is set (a load ramp that ended); `url` is used to
/// reconnect. Fills `snapshot.activity` and replaces its statements with their differences over
/// the window.
pub async fn watch(
    url: &str,
    client: &mut Client,
    snapshot: &mut PgSnapshot,
    duration: Duration,
    stop: &AtomicBool,
) {
    let before: HashMap<String, StatementStat> = snapshot
        .statements
        .iter()
        .map(|s| (s.query.clone(), s.clone()))
        .collect();
    let sessions_before = client.query_one(SESSIONS, &[]).await.ok();
    let started = Instant::now();
    let started_unix_s = crate::unix_now();
    let mut activity = Activity {
        started_unix_s,
        ..Activity::default()
    };
    let mut active_sum = 0u64;
    let mut waiting_sum = 0u64;
    let mut waits: HashMap<(String, String, String, String), LockWait> = HashMap::new();
    let mut backoff = Duration::from_millis(200);
    let show_literals = snapshot.literals_shown;
    let text = |query: String| {
        if show_literals {
            query
        } else {
            crate::redact(&query)
        }
    };
    // The current second's sums: active, waiting, samples.
    let mut second = (0u64, 0.0f64, 0.0f64, 0u32);
    let mut prepared: Option<Prepared> = None;
    while started.elapsed() < duration && !stop.load(Ordering::Relaxed) {
        let sampled = match &prepared {
            Some(statements) => sample(client, statements, &text).await,
            None => match Prepared::new(client).await {
                Ok(statements) => {
                    let sampled = sample(client, &statements, &text).await;
                    prepared = Some(statements);
                    sampled
                }
                Err(error) => Err(error),
            },
        };
        match sampled {
            Ok((rows, blocked_by)) => {
                backoff = Duration::from_millis(200);
                activity.samples += 1;
                let (active_before, waiting_before) = (active_sum, waiting_sum);
                // Sessions queue behind each other: a blocker that is itself waiting is not the
                // root of the wait, the session it waits for is.
                for row in &rows {
                    if row.state == "active" {
                        active_sum += 1;
                    }
                    let pid = row.pid;
                    let Some(first_hop) = blocked_by.get(&pid) else {
                        continue;
                    };
                    waiting_sum += 1;
                    let waiting_query = text(row.query.clone());
                    // Follow the queue to the sessions that are not waiting themselves.
                    let mut roots: Vec<&Blocker> = Vec::new();
                    let mut frontier: Vec<&Blocker> = first_hop.iter().collect();
                    let mut seen = vec![pid];
                    while let Some(blocker) = frontier.pop() {
                        if seen.contains(&blocker.pid) {
                            continue;
                        }
                        seen.push(blocker.pid);
                        match blocked_by.get(&blocker.pid) {
                            Some(next) if !next.is_empty() => frontier.extend(next.iter()),
                            _ => roots.push(blocker),
                        }
                    }
                    if roots.is_empty() {
                        roots = first_hop.iter().collect();
                    }
                    let (mut relation, mode) = first_hop
                        .first()
                        .map(|b| (b.relation.clone(), b.mode.clone()))
                        .unwrap_or_default();
                    // A row lock waits on the holder's transaction id: the rows are the
                    // waiting statement's table's.
                    if matches!(relation.as_str(), "transactionid" | "tuple")
                        && let Some(table) = chokepoint_sql::parse(&waiting_query)
                            .ok()
                            .and_then(|p| p.tables.into_iter().next())
                    {
                        relation = format!("{table} (rows)");
                    }
                    for root in roots {
                        let key = (
                            waiting_query.clone(),
                            root.query.clone(),
                            relation.clone(),
                            mode.clone(),
                        );
                        let entry = waits.entry(key).or_insert_with(|| LockWait {
                            waiting_query: waiting_query.clone(),
                            blocker_query: root.query.clone(),
                            blocker_state: root.state.clone(),
                            mode: mode.clone(),
                            blocker_modes: root.held.clone(),
                            relation: relation.clone(),
                            blocker_transaction_ms: 0.0,
                            samples: 0,
                        });
                        // A running mean of the blocker's transaction age.
                        entry.samples += 1;
                        entry.blocker_transaction_ms +=
                            (root.transaction_ms - entry.blocker_transaction_ms) / entry.samples as f64;
                    }
                }
                // Whole seconds of Unix time, so the timeline lines up with other evidence.
                let now = (started_unix_s + started.elapsed().as_secs_f64()).floor() as u64;
                if second.3 > 0 && second.0 != now {
                    push_second(&mut activity.timeline, second);
                    second = (now, 0.0, 0.0, 0);
                }
                second.0 = now;
                second.1 += (active_sum - active_before) as f64;
                second.2 += (waiting_sum - waiting_before) as f64;
                second.3 += 1;
            }
            Err(error) => {
                let lost_unix_s = crate::unix_now();
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                if let Ok(fresh) = crate::connect(url).await {
                    *client = fresh;
                    prepared = None;
                    activity.gaps.push(Gap {
                        lost_unix_s,
                        reconnected_unix_s: crate::unix_now(),
                        reason: crate::describe(&error),
                    });
                }
                continue;
            }
        }
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
    if second.3 > 0 {
        push_second(&mut activity.timeline, second);
    }
    activity.duration_s = started.elapsed().as_secs_f64();
    let n = activity.samples.max(1) as f64;
    activity.active_mean = active_sum as f64 / n;
    activity.lock_waiting_mean = waiting_sum as f64 / n;
    let mut waits: Vec<LockWait> = waits.into_values().collect();
    waits.sort_by_key(|w| std::cmp::Reverse(w.samples));
    activity.lock_waits = waits;
    if let (Some(a), Ok(b)) = (sessions_before, client.query_one(SESSIONS, &[]).await) {
        let (s0, s1): (Option<i64>, Option<i64>) = (a.get(0), b.get(0));
        let (t0, t1): (Option<f64>, Option<f64>) = (a.get(1), b.get(1));
        if let (Some(s0), Some(s1)) = (s0, s1) {
            let ended = (s1 - s0).max(0) as f64;
            activity.sessions_per_s = Some(ended / activity.duration_s.max(1e-3));
            if let (Some(t0), Some(t1)) = (t0, t1) {
                activity.session_ms_mean = (ended > 0.0).then(|| (t1 - t0).max(0.0) / ended);
            }
        }
    }
    if let Ok(after) = crate::snapshot(client, show_literals).await {
        snapshot.statements = after
            .statements
            .into_iter()
            .filter_map(|s| {
                let (calls, total_ms, rows, temp_blks_written) = match before.get(&s.query) {
                    Some(b) => (
                        s.calls.saturating_sub(b.calls),
                        (s.total_ms - b.total_ms).max(0.0),
                        s.rows.saturating_sub(b.rows),
                        s.temp_blks_written.saturating_sub(b.temp_blks_written),
                    ),
                    None => (s.calls, s.total_ms, s.rows, s.temp_blks_written),
                };
                (calls > 0).then(|| StatementStat {
                    mean_ms: total_ms / calls as f64,
                    calls,
                    total_ms,
                    rows,
                    temp_blks_written,
                    query: s.query,
                })
            })
            .collect();
        snapshot
            .statements
            .sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms));
        snapshot.window_s = activity.duration_s;
    }
    snapshot.taken_unix_s = crate::unix_now();
    snapshot.activity = Some(activity);
}

/// One second of the timeline: its start (Unix time), and the sums over its samples averaged.
fn push_second(timeline: &mut Vec<ActivitySecond>, (at, active, waiting, samples): (u64, f64, f64, u32)) {
    let n = f64::from(samples.max(1));
    timeline.push(ActivitySecond {
        unix_s: at as f64,
        active: active / n,
        lock_waiting: waiting / n,
    });
}
