//! The PostgreSQL inspector: connects read-only (`default_transaction_read_only`), with a
//! statement and a lock timeout and `application_name = 'chokepoint'`, and reads
//! `pg_stat_statements`, table and database statistics, open transactions and settings into a
//! [`PgSnapshot`].
//!
//! It never writes: every session it opens is read-only, which the server enforces. Literal
//! values are redacted from every statement text it keeps unless asked to show them.

mod plans;
mod watch;

use std::time::Duration;

use chokepoint_evidence::{
    DatabaseStats, MissingExtension, OpenTransaction, PgSnapshot, Setting, StatementStat, TableStat,
};
use tokio_postgres::{Client, NoTls};

/// Statements read from `pg_stat_statements`, most total time first.
pub const TOP_STATEMENTS: i64 = 500;
/// The longest any inspector statement may run.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest the inspector waits for a lock (it takes none on purpose; this bounds surprises).
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(1);

/// Why the inspector could not read the database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The URL does not describe a database.
    #[error("{0} is not a PostgreSQL URL: {1}")]
    Url(String, String),
    /// The connection failed.
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(String),
    /// A query failed.
    #[error("{step}: {reason}")]
    Query {
        /// What the inspector was reading.
        step: &'static str,
        /// The server's reason.
        reason: String,
    },
}

/// Statements about the database itself (catalogs, statistics, this inspector's own), not the
/// application's: left out of the snapshot.
fn is_housekeeping(query: &str) -> bool {
    const MARKERS: &[&str] = &[
        "pg_stat_",
        "pg_catalog",
        "pg_extension",
        "pg_attribute",
        "pg_index",
        "pg_database",
        "hypopg",
        "current_setting",
        "information_schema",
    ];
    const VERBS: &[&str] = &[
        "EXPLAIN",
        "PREPARE",
        "DEALLOCATE",
        "SET ",
        "SHOW ",
        "BEGIN",
        "COMMIT",
        "ROLLBACK",
    ];
    let upper = query.trim_start().to_ascii_uppercase();
    MARKERS.iter().any(|m| query.contains(m)) || VERBS.iter().any(|v| upper.starts_with(v))
}

/// Seconds since the Unix epoch, now: the time base every kind of evidence shares.
pub(crate) fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Opens a read-only session with timeouts.
pub async fn connect(url: &str) -> Result<Client, DbError> {
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| DbError::Url(url.to_owned(), describe(&e)))?;
    config.application_name("chokepoint");
    config.options(format!(
        "-c default_transaction_read_only=on -c statement_timeout={} -c lock_timeout={}",
        STATEMENT_TIMEOUT.as_millis(),
        LOCK_TIMEOUT.as_millis()
    ));
    config.connect_timeout(Duration::from_secs(10));
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| DbError::Connect(describe(&e)))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

fn query_error(step: &'static str) -> impl FnOnce(tokio_postgres::Error) -> DbError {
    move |e| DbError::Query {
        step,
        reason: describe(&e),
    }
}

/// The server's message (and SQLSTATE) when there is one; the error and its causes otherwise.
pub(crate) fn describe(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return format!("{} (SQLSTATE {})", db.message(), db.code().code());
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

pub use chokepoint_sql::redact;
pub use plans::{PLANNED_STATEMENTS, check_indexes, explain, read_plan_json};
pub use watch::{SAMPLE_EVERY, watch};

/// A transaction open this long is reported in the snapshot.
pub const LONG_TRANSACTION: Duration = Duration::from_secs(1);

/// Settings that bear on the findings, reported with every snapshot (not `statement_timeout`:
/// the inspector's session sets its own).
const SETTINGS: &[&str] = &[
    "max_connections",
    "shared_buffers",
    "work_mem",
    "effective_cache_size",
    "random_page_cost",
    "idle_in_transaction_session_timeout",
    "track_activity_query_size",
];

/// Reads one snapshot of the database's statistics. Statement texts are redacted
/// ([`redact`]) unless `show_literals`.
pub async fn snapshot(client: &Client, show_literals: bool) -> Result<PgSnapshot, DbError> {
    let row = client
        .query_one(
            "SELECT current_setting('server_version'), current_database()",
            &[],
        )
        .await
        .map_err(query_error("reading the server version"))?;
    let mut snapshot = PgSnapshot {
        server_version: row.get(0),
        database: row.get(1),
        literals_shown: show_literals,
        ..PgSnapshot::default()
    };
    let installed: Vec<String> = client
        .query("SELECT extname::text FROM pg_extension", &[])
        .await
        .map_err(query_error("listing extensions"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for (extension, without) in [
        (
            "pg_stat_statements",
            "statement statistics (slow-query, unbounded-result, n-plus-one) were not read",
        ),
        (
            "hypopg",
            "index proposals cannot be proven with hypothetical indexes",
        ),
    ] {
        if installed.iter().any(|e| e == extension) {
            snapshot.extensions.push(extension.to_owned());
        } else {
            snapshot.missing.push(MissingExtension {
                extension: extension.to_owned(),
                consequence: format!("{without} (CREATE EXTENSION {extension})"),
            });
        }
    }
    if snapshot.extensions.iter().any(|e| e == "pg_stat_statements")
        && let Err(error) = read_statements(client, &mut snapshot, show_literals).await
    {
        // Created but not preloaded: the view refuses to be read.
        snapshot.extensions.retain(|e| e != "pg_stat_statements");
        snapshot.missing.push(MissingExtension {
            extension: "pg_stat_statements".to_owned(),
            consequence: format!(
                "installed but not readable ({error}); add it to shared_preload_libraries and restart the server: \
                 statement statistics (slow-query, unbounded-result, n-plus-one) were not read"
            ),
        });
    }
    snapshot.tables = client
        .query(
            "SELECT schemaname || '.' || relname, seq_scan, coalesce(seq_tup_read, 0), coalesce(idx_scan, 0), n_live_tup \
             FROM pg_stat_user_tables ORDER BY seq_tup_read DESC",
            &[],
        )
        .await
        .map_err(query_error("reading table statistics"))?
        .iter()
        .map(|r| TableStat {
            relation: r.get(0),
            seq_scan: r.get::<_, i64>(1).max(0) as u64,
            seq_rows_read: r.get::<_, i64>(2).max(0) as u64,
            idx_scan: r.get::<_, i64>(3).max(0) as u64,
            live_rows: r.get::<_, i64>(4).max(0) as u64,
        })
        .collect();
    snapshot.stats = database_stats(client).await?;
    snapshot.open_transactions = open_transactions(client, show_literals).await?;
    snapshot.settings = client
        .query(
            "SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY($1) ORDER BY name",
            &[&SETTINGS],
        )
        .await
        .map_err(query_error("reading settings"))?
        .iter()
        .map(|r| Setting {
            name: r.get(0),
            value: r.get(1),
        })
        .collect();
    snapshot.taken_unix_s = unix_now();
    Ok(snapshot)
}

async fn database_stats(client: &Client) -> Result<DatabaseStats, DbError> {
    // `sessions` exists from PostgreSQL 14; before, the row says NULL.
    let sessions = if client
        .query_one("SHOW server_version_num", &[])
        .await
        .is_ok_and(|r| r.get::<_, String>(0).parse::<u32>().is_ok_and(|v| v >= 140_000))
    {
        "sessions"
    } else {
        "NULL::bigint"
    };
    let row = client
        .query_one(
            &format!(
                "SELECT {sessions}, extract(epoch FROM now() - stats_reset)::float8, \
                 temp_files, temp_bytes, deadlocks, xact_commit, xact_rollback, \
                 CASE WHEN blks_hit + blks_read > 0 THEN blks_hit::float8 / (blks_hit + blks_read) END \
                 FROM pg_stat_database WHERE datname = current_database()"
            ),
            &[],
        )
        .await
        .map_err(query_error("reading pg_stat_database"))?;
    let count = |i: usize| row.get::<_, Option<i64>>(i).unwrap_or(0).max(0) as u64;
    Ok(DatabaseStats {
        sessions: row.get::<_, Option<i64>>(0).map(|s| s.max(0) as u64),
        window_s: row.get(1),
        temp_files: count(2),
        temp_bytes: count(3),
        deadlocks: count(4),
        commits: count(5),
        rollbacks: count(6),
        cache_hit_ratio: row.get(7),
    })
}

async fn open_transactions(client: &Client, show_literals: bool) -> Result<Vec<OpenTransaction>, DbError> {
    let rows = client
        .query(
            "SELECT pid, coalesce(state, ''), extract(epoch FROM now() - xact_start)::float8 * 1000, coalesce(query, ''), application_name \
             FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND xact_start IS NOT NULL \
             AND (now() - xact_start > $1::float8 * interval '1 second' OR state LIKE 'idle in transaction%') \
             ORDER BY xact_start",
            &[&LONG_TRANSACTION.as_secs_f64()],
        )
        .await
        .map_err(query_error("reading open transactions"))?;
    Ok(rows
        .iter()
        .map(|r| {
            let query: String = r.get(3);
            OpenTransaction {
                pid: r.get(0),
                state: r.get(1),
                transaction_ms: r.get(2),
                query: if show_literals { query } else { redact(&query) },
                application: r.get(4),
            }
        })
        .collect())
}

async fn read_statements(
    client: &Client,
    snapshot: &mut PgSnapshot,
    show_literals: bool,
) -> Result<(), DbError> {
    let window = client
        .query_one(
            "SELECT extract(epoch FROM now() - stats_reset)::float8 FROM pg_stat_statements_info",
            &[],
        )
        .await
        .map_err(query_error("reading pg_stat_statements_info"))?;
    snapshot.window_s = window.get::<_, Option<f64>>(0).unwrap_or(0.0);
    snapshot.statements = client
        .query(
            "SELECT query, calls, total_exec_time, mean_exec_time, rows, temp_blks_written FROM pg_stat_statements \
             WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
             ORDER BY total_exec_time DESC LIMIT $1",
            &[&TOP_STATEMENTS],
        )
        .await
        .map_err(query_error("reading pg_stat_statements"))?
        .iter()
        .filter(|r| !is_housekeeping(&r.get::<_, String>(0)))
        .map(|r| {
            // pg_stat_statements replaces the constants of planned statements with `$n`, but
            // keeps utility statements' and the first text it saw of a statement verbatim.
            let query: String = r.get(0);
            StatementStat {
                query: if show_literals { query } else { redact(&query) },
                calls: r.get::<_, i64>(1).max(0) as u64,
                total_ms: r.get(2),
                mean_ms: r.get(3),
                rows: r.get::<_, i64>(4).max(0) as u64,
                temp_blks_written: r.get::<_, i64>(5).max(0) as u64,
            }
        })
        .collect();
    Ok(())
}
