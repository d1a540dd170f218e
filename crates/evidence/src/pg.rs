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

/// A candidate index for one statement, costed with `EXPLAIN` before and with a hypothetical
/// index (HypoPG) after.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct IndexCheck {
    /// The statement, as `pg_stat_statements` normalized it.
    pub query: String,
    /// The relation scanned sequentially.
    pub relation: String,
    /// The candidate's columns, in order.
    pub columns: Vec<String>,
    /// The generic plan's total cost without the index.
    pub cost_before: f64,
    /// The total cost with the hypothetical index, when HypoPG could cost it.
    pub cost_after: Option<f64>,
}

/// What `chokepoint db` read from one database.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct PgSnapshot {
    /// `server_version`.
    pub server_version: String,
    /// The database inspected.
    pub database: String,
    /// Seconds the statistics cover (since `pg_stat_statements` was reset).
    pub window_s: f64,
    /// Extensions the inspector used (`pg_stat_statements`, `hypopg`).
    pub extensions: Vec<String>,
    /// Extensions it looked for and did not find, with what that leaves unchecked.
    pub missing: Vec<String>,
    /// Statements, most total time first.
    pub statements: Vec<StatementStat>,
    /// Tables.
    pub tables: Vec<TableStat>,
    /// Candidate indexes for the top statements that scan a table sequentially.
    pub index_checks: Vec<IndexCheck>,
    /// Statements whose plan could not be read, and why.
    pub plan_problems: Vec<String>,
}
