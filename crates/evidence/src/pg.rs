//! A PostgreSQL snapshot: statement statistics from `pg_stat_statements`, table statistics, and
//! what the inspector could and could not use.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One normalized statement's totals since `pg_stat_statements` was last reset.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct StatementStat {
    /// The statement as `pg_stat_statements` normalized it (`$1` for constants).
    pub query: String,
    /// Times it ran.
    pub calls: u64,
    /// Total execution time, in ms.
    pub total_ms: f64,
    /// Mean execution time, in ms.
    pub mean_ms: f64,
    /// Rows returned or affected, in all.
    pub rows: u64,
    /// Blocks written to temporary files, in all: sorts and hashes that spilled to disk.
    pub temp_blks_written: u64,
}

/// The generic plan of one statement, as `EXPLAIN` estimated it (never executed).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct StatementPlan {
    /// The statement, as `pg_stat_statements` normalized it.
    pub query: String,
    /// The plan's total cost.
    pub cost: f64,
    /// The rows the planner expects the statement to return.
    pub estimated_rows: f64,
    /// Relations it scans sequentially (`schema.table`).
    pub seq_scans: Vec<String>,
    /// Every scan in the plan, in plan order, in words: `Seq Scan on public.users`,
    /// `Index Scan using users_email_idx on public.users`.
    pub scans: Vec<String>,
    /// Whether the plan sorts.
    pub sorts: bool,
    /// Whether the plan builds a hash table (hash join or hash aggregate).
    pub hashes: bool,
}

/// A session whose transaction is open long, or idle in a transaction, when the snapshot was
/// taken.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct OpenTransaction {
    /// The session's backend process id.
    pub pid: i32,
    /// `active`, `idle in transaction`, …
    pub state: String,
    /// How long its transaction has been open, in ms.
    pub transaction_ms: f64,
    /// The statement it last ran (literals redacted unless asked otherwise).
    pub query: String,
    /// The application that opened it (`application_name`).
    pub application: String,
}

/// Database-wide counters from `pg_stat_database`, since its statistics were reset.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct DatabaseStats {
    /// Sessions established (PostgreSQL 14+).
    pub sessions: Option<u64>,
    /// Seconds the counters cover, since `stats_reset`; `None` when they were never reset
    /// (they then run from the cluster's creation, across restarts).
    pub window_s: Option<f64>,
    /// Temporary files written by queries.
    pub temp_files: u64,
    /// Bytes written to temporary files.
    pub temp_bytes: u64,
    /// Deadlocks detected.
    pub deadlocks: u64,
    /// Transactions committed.
    pub commits: u64,
    /// Transactions rolled back.
    pub rollbacks: u64,
    /// Share of block reads served from shared buffers (0–1).
    pub cache_hit_ratio: Option<f64>,
}

/// One table's access statistics.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct TableStat {
    /// `schema.table`.
    pub relation: String,
    /// Sequential scans.
    pub seq_scan: u64,
    /// Rows read by sequential scans.
    pub seq_rows_read: u64,
    /// Index scans.
    pub idx_scan: u64,
    /// Live rows (estimated).
    pub live_rows: u64,
}

/// The kind of index a candidate is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum IndexMethod {
    /// A B-tree on the columns: equality filters, join keys, a range or the sort order.
    #[default]
    Btree,
    /// A trigram GIN index (`pg_trgm`) on a column matched against patterns (`~`, `~*`,
    /// `ILIKE`, `LIKE '%…'`), which no B-tree serves. HypoPG cannot cost it.
    GinTrigram,
}

/// One candidate's cost with a hypothetical index.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct CandidateCost {
    /// The candidate's columns, in order.
    pub columns: Vec<String>,
    /// The plan's total cost with it, when HypoPG could cost it.
    pub cost_after: Option<f64>,
}

/// A candidate index for one statement, costed with `EXPLAIN` before and with a hypothetical
/// index (HypoPG) after.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct IndexCheck {
    /// The statement, as `pg_stat_statements` normalized it.
    pub query: String,
    /// The relation scanned sequentially.
    pub relation: String,
    /// The proposed candidate's columns, in order.
    pub columns: Vec<String>,
    /// The kind of index.
    pub method: IndexMethod,
    /// For a trigram index, the pattern operator it serves (`~*`, `ILIKE`, …).
    pub pattern: Option<String>,
    /// The generic plan's total cost without the index.
    pub cost_before: f64,
    /// The total cost with the hypothetical index, when HypoPG could cost it.
    pub cost_after: Option<f64>,
    /// Every candidate costed for the relation (the leading column alone, all of them), the
    /// proposed one among them.
    pub candidates: Vec<CandidateCost>,
    /// The rows per call the statement's `LIMIT` parameter was costed with — the page its calls
    /// really ask for (`pg_stat_statements`' rows per call), not a generic plan's guess.
    pub limit_rows: Option<u64>,
    /// An index of the relation already leads with `columns[0]`, yet the plan scans the table:
    /// nothing new to propose (the filter is not selective enough, or the statistics are stale).
    pub existing: bool,
}

/// Sessions waiting on one lock, and who held it, over a watch.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct LockWait {
    /// The waiting statement.
    pub waiting_query: String,
    /// The statement the blocking session last ran.
    pub blocker_query: String,
    /// The blocking session's state (`active`, `idle in transaction`, …).
    pub blocker_state: String,
    /// The lock mode the waiter asked for (`RowExclusiveLock`, `AccessShareLock`, …).
    pub mode: String,
    /// The modes the blocker holds on the same relation, when it holds one
    /// (`AccessExclusiveLock` for DDL).
    pub blocker_modes: Vec<String>,
    /// The relation, when the lock is on one.
    pub relation: String,
    /// How long the blocker's transaction had been open when sampled, on average, in ms.
    pub blocker_transaction_ms: f64,
    /// Samples in which a session waited like this (each sample is one session at one instant).
    pub samples: u64,
}

/// What sampling `pg_stat_activity` over a watch showed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Activity {
    /// When the watch began, in seconds since the Unix epoch.
    pub started_unix_s: f64,
    /// Samples taken.
    pub samples: u64,
    /// Seconds sampled.
    pub duration_s: f64,
    /// Active sessions, on average.
    pub active_mean: f64,
    /// Sessions waiting on a lock, on average.
    pub lock_waiting_mean: f64,
    /// The waits, grouped by waiter, blocker and relation, most samples first.
    pub lock_waits: Vec<LockWait>,
    /// New sessions per second (`pg_stat_database.sessions`, PostgreSQL 14+).
    pub sessions_per_s: Option<f64>,
    /// Mean lifetime of the sessions that ended, in ms.
    pub session_ms_mean: Option<f64>,
    /// Sampling gaps: the database went away, and the inspector reconnected.
    pub gaps: Vec<Gap>,
    /// Second by second: the sessions active and waiting on a lock, each averaged over the
    /// second's samples.
    pub timeline: Vec<ActivitySecond>,
}

/// One second of a watch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct ActivitySecond {
    /// When the second began, in seconds since the Unix epoch.
    pub unix_s: f64,
    /// Active sessions, on average over the second's samples.
    pub active: f64,
    /// Sessions waiting on a lock, on average over the second's samples.
    pub lock_waiting: f64,
}

/// A time the database could not be sampled: it went away, and the inspector reconnected.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Gap {
    /// When sampling failed, in seconds since the Unix epoch.
    pub lost_unix_s: f64,
    /// When the inspector was connected again, in seconds since the Unix epoch.
    pub reconnected_unix_s: f64,
    /// Why sampling failed, as the driver said.
    pub reason: String,
}

/// An extension the inspector looked for and did not find (or could not read).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct MissingExtension {
    /// `pg_stat_statements`, `hypopg`.
    pub extension: String,
    /// What its absence leaves unchecked, and how to get it.
    pub consequence: String,
}

/// A server setting, as the server shows it (`work_mem = 4MB`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Setting {
    /// Its name.
    pub name: String,
    /// Its value, with units (`current_setting`).
    pub value: String,
}

/// A statement whose plan could not be read.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct PlanProblem {
    /// The statement.
    pub query: String,
    /// Why, as the server said.
    pub reason: String,
}

/// What `chokepoint db` read from one database.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct PgSnapshot {
    /// `server_version`.
    pub server_version: String,
    /// The database inspected.
    pub database: String,
    /// When the snapshot was read (the end of the watch, with one), in seconds since the Unix
    /// epoch.
    pub taken_unix_s: f64,
    /// Seconds the statistics cover (since `pg_stat_statements` was reset, or the watch).
    pub window_s: f64,
    /// Extensions the inspector used (`pg_stat_statements`, `hypopg`).
    pub extensions: Vec<String>,
    /// Extensions it looked for and did not find, with what that leaves unchecked.
    pub missing: Vec<MissingExtension>,
    /// Statements, most total time first.
    pub statements: Vec<StatementStat>,
    /// Tables.
    pub tables: Vec<TableStat>,
    /// Candidate indexes for the top statements that scan a table sequentially.
    pub index_checks: Vec<IndexCheck>,
    /// The generic plans read for the top statements.
    pub plans: Vec<StatementPlan>,
    /// Statements whose plan could not be read, and why.
    pub plan_problems: Vec<PlanProblem>,
    /// `pg_stat_database`'s counters for this database.
    pub stats: DatabaseStats,
    /// Transactions open longer than a second, and sessions idle in a transaction, at the
    /// snapshot.
    pub open_transactions: Vec<OpenTransaction>,
    /// Settings that bear on the findings (`work_mem`, `max_connections`, …).
    pub settings: Vec<Setting>,
    /// Whether statement texts keep their literal values (`--show-literals`); redacted otherwise.
    pub literals_shown: bool,
    /// `--watch`: sessions sampled over the window.
    pub activity: Option<Activity>,
}
