//! Database detectors' shared analysis of a PostgreSQL snapshot: each normalized statement's
//! totals become findings whose saving is part of the statement's total time in the window.

use std::collections::BTreeMap;

use chokepoint_evidence::{IndexCheck, PgSnapshot, StatementPlan, StatementStat, TableStat};

use crate::analysis::{Outcome, Skipped, Summary};
use crate::finding::{Confidence, Evidence, Finding, Impact};
use crate::registry::DB_DETECTORS;
use crate::sql::{self, Statement};

/// What a database detector concluded about one statement.
pub(crate) struct DbConclusion {
    pub title: String,
    pub fix: String,
    pub confidence: Confidence,
    pub assumptions: Vec<String>,
    /// Share of the statement's total time the fix removes (0–1).
    pub saved_share: f64,
    pub metrics: Vec<(&'static str, f64)>,
}

/// What a database detector concluded about the database as a whole.
pub(crate) struct DatabaseConclusion {
    pub title: String,
    pub fix: String,
    pub confidence: Confidence,
    pub assumptions: Vec<String>,
    /// What exactly: the blocker, the sessions.
    pub location: String,
    /// Time the fix recovers over the window, in ms.
    pub saved_ms_total: f64,
    /// Occurrences behind it (samples, sessions).
    pub occurrences: u64,
    /// The share of the database's session time it costs (0–1).
    pub share: f64,
    pub metrics: Vec<(&'static str, f64)>,
}

/// A statement with its normalized shape.
pub(crate) struct StatementView<'a> {
    /// The statistics.
    pub stat: &'a StatementStat,
    /// Its shape (tables, filters, LIMIT) from the SQL lexer.
    pub shape: Statement,
    /// Candidate indexes costed for it.
    pub index_checks: Vec<&'a IndexCheck>,
    /// Its generic plan, when it was read.
    pub plan: Option<&'a StatementPlan>,
    /// Its share of all the statements' time in the window (0–1).
    pub share_of_total: f64,
    /// The database's tables, for their sizes.
    pub tables: &'a [TableStat],
    /// Whether sessions running it were seen waiting on a lock (`--watch`).
    pub lock_waited: bool,
}

impl StatementView<'_> {
    /// Rows per call.
    pub(crate) fn rows_per_call(&self) -> f64 {
        self.stat.rows as f64 / self.stat.calls.max(1) as f64
    }
}

/// Runs every database detector over a snapshot.
pub fn analyse_db(snapshot: &PgSnapshot) -> Outcome {
    let mut findings = Vec::new();
    let mut skipped = Vec::new();
    let total_ms: f64 = snapshot.statements.iter().map(|s| s.total_ms).sum();
    let waiting: Vec<String> = snapshot
        .activity
        .iter()
        .flat_map(|a| &a.lock_waits)
        .map(|w| sql::normalize(&w.waiting_query).normalized)
        .collect();
    let views: Vec<StatementView<'_>> = snapshot
        .statements
        .iter()
        .map(|stat| (stat, sql::normalize(&stat.query)))
        .map(|(stat, shape)| StatementView {
            stat,
            lock_waited: waiting.contains(&shape.normalized),
            shape,
            index_checks: snapshot
                .index_checks
                .iter()
                .filter(|c| c.query == stat.query)
                .collect(),
            plan: snapshot.plans.iter().find(|p| p.query == stat.query),
            share_of_total: stat.total_ms / total_ms.max(1e-9),
            tables: &snapshot.tables,
        })
        .collect();
    for detector in DB_DETECTORS {
        let meta = detector.meta();
        if let Some(conclusion) = detector.check_database(snapshot) {
            findings.push(database_finding(meta.id, snapshot, conclusion));
        }
        if !snapshot.extensions.iter().any(|e| e == "pg_stat_statements") {
            skipped.push(Skipped {
                detector: meta.id.into(),
                reason: "no pg_stat_statements in this database".into(),
            });
            continue;
        }
        for view in &views {
            if let Some(conclusion) = detector.check(view) {
                findings.push(finding(meta.id, snapshot, view, total_ms, conclusion));
            }
        }
    }
    crate::rank(&mut findings);
    Outcome {
        findings,
        skipped,
        usl: None,
        summary: Summary {
            requests: snapshot.statements.iter().map(|s| s.calls).sum(),
            endpoints: snapshot.statements.len() as u64,
            window_s: snapshot.window_s,
            ..Summary::default()
        },
    }
}

fn finding(
    detector: &str,
    snapshot: &PgSnapshot,
    view: &StatementView<'_>,
    total_ms: f64,
    c: DbConclusion,
) -> Finding {
    let stat = view.stat;
    let saved_ms_total = stat.total_ms * c.saved_share;
    let mut metrics = BTreeMap::from([
        ("calls".to_owned(), stat.calls as f64),
        ("mean_ms".to_owned(), round(stat.mean_ms)),
        ("total_ms".to_owned(), round(stat.total_ms)),
        ("rows_per_call".to_owned(), round(view.rows_per_call())),
    ]);
    for (name, value) in c.metrics {
        metrics.insert(name.to_owned(), round(value));
    }
    Finding {
        detector: detector.to_owned(),
        title: c.title,
        service: format!("postgresql {}", snapshot.database),
        endpoint: format!("database {}", snapshot.database),
        location: view.shape.normalized.clone(),
        impact: Impact {
            saved_ms_per_request: round(stat.mean_ms * c.saved_share),
            latency_saved_ms_per_request: round(stat.mean_ms * c.saved_share),
            saved_ms_total: round(saved_ms_total),
            share_of_endpoint_time: round(saved_ms_total / total_ms.max(1e-9)),
            recoverable_s_per_s: if snapshot.window_s > 0.0 {
                round(saved_ms_total / 1e3 / snapshot.window_s)
            } else {
                0.0
            },
        },
        evidence: Evidence {
            affected_requests: stat.calls,
            endpoint_requests: stat.calls,
            occurrences: stat.calls,
            example_trace_ids: Vec::new(),
            metrics,
        },
        confidence: c.confidence,
        fix: c.fix,
        assumptions: c.assumptions,
    }
}

fn database_finding(detector: &str, snapshot: &PgSnapshot, c: DatabaseConclusion) -> Finding {
    let window_s = snapshot
        .activity
        .as_ref()
        .map_or(snapshot.window_s, |a| a.duration_s);
    let metrics = c
        .metrics
        .into_iter()
        .map(|(name, value)| (name.to_owned(), round(value)))
        .collect();
    Finding {
        detector: detector.to_owned(),
        title: c.title,
        service: format!("postgresql {}", snapshot.database),
        endpoint: format!("database {}", snapshot.database),
        location: c.location,
        impact: Impact {
            // Per occurrence: per new session, or per sampled wait.
            saved_ms_per_request: round(c.saved_ms_total / c.occurrences.max(1) as f64),
            latency_saved_ms_per_request: round(c.saved_ms_total / c.occurrences.max(1) as f64),
            saved_ms_total: round(c.saved_ms_total),
            share_of_endpoint_time: round(c.share.clamp(0.0, 1.0)),
            recoverable_s_per_s: if window_s > 0.0 {
                round(c.saved_ms_total / 1e3 / window_s)
            } else {
                0.0
            },
        },
        evidence: Evidence {
            affected_requests: c.occurrences,
            endpoint_requests: c.occurrences,
            occurrences: c.occurrences,
            example_trace_ids: Vec::new(),
            metrics,
        },
        confidence: c.confidence,
        fix: c.fix,
        assumptions: c.assumptions,
    }
}

/// A plan cost cut by this share or more proves an index (Dexter's bar).
pub(crate) const PROVEN_COST_SHARE: f64 = 0.5;
/// Estimated and actual rows per call this many times apart are a mis-estimate.
const MIS_ESTIMATE_FACTOR: f64 = 10.0;
/// The size of a PostgreSQL block, in kB.
const BLOCK_KB: f64 = 8.0;

/// A sequential scan of a table with fewer live rows than this is no reason to be slow.
const SMALL_TABLE_ROWS: u64 = 10_000;

/// Why a statement is slow, from its plan, its statistics and the tables' sizes: sequential
/// scans of large tables, sorts and hashes spilling to disk, row mis-estimates. Empty when
/// nothing in them explains it.
pub(crate) fn plan_reasons(
    stat: &StatementStat,
    plan: Option<&StatementPlan>,
    tables: &[TableStat],
) -> Vec<String> {
    let mut reasons = Vec::new();
    let calls = stat.calls.max(1) as f64;
    if let Some(plan) = plan {
        let small = |relation: &str| {
            tables
                .iter()
                .any(|t| t.relation == relation && t.live_rows < SMALL_TABLE_ROWS)
        };
        reasons.extend(
            plan.seq_scans
                .iter()
                .filter(|r| !small(r))
                .map(|r| format!("a sequential scan on {r}")),
        );
    }
    let temp_kb = stat.temp_blks_written as f64 * BLOCK_KB / calls;
    if temp_kb > 0.0 {
        let what = match plan {
            Some(p) if p.sorts && !p.hashes => "a sort spilling to disk",
            Some(p) if p.hashes && !p.sorts => "a hash spilling to disk in batches",
            _ => "sorts or hashes spilling to disk",
        };
        reasons.push(format!(
            "{what} ({temp_kb:.0} kB of temporary files per call; raise `work_mem` for it, or let an index give the order)"
        ));
    }
    if let Some(plan) = plan.filter(|_| stat.calls > 0) {
        let actual = stat.rows as f64 / calls;
        let (expected, seen) = (plan.estimated_rows.max(1.0), actual.max(1.0));
        if expected / seen >= MIS_ESTIMATE_FACTOR || seen / expected >= MIS_ESTIMATE_FACTOR {
            reasons.push(format!(
                "a row mis-estimate: the planner expects {:.0} rows, calls return {actual:.0} on average (`ANALYZE` the tables, or add extended statistics)",
                plan.estimated_rows
            ));
        }
    }
    reasons
}

/// The candidate index that cuts the plan's cost the most, when HypoPG proved it by
/// [`PROVEN_COST_SHARE`] or more: the check and the share of the cost it removes.
pub(crate) fn proven_index<'a>(checks: &[&'a IndexCheck]) -> Option<(&'a IndexCheck, f64)> {
    checks
        .iter()
        .filter_map(|c| Some((*c, 1.0 - c.cost_after? / c.cost_before.max(1e-9))))
        .filter(|(_, share)| *share >= PROVEN_COST_SHARE)
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

/// `CREATE INDEX CONCURRENTLY …` for a candidate.
pub(crate) fn create_index(check: &IndexCheck) -> String {
    format!(
        "CREATE INDEX CONCURRENTLY ON {} ({});",
        check.relation,
        check.columns.join(", ")
    )
}

/// The bridge from traces to plans: each `slow-query` finding of a trace analysis whose
/// statement `snapshot` knows (matched by normalized text) gets the plan's reasons and, where
/// HypoPG proved one, its index — in the title's evidence, the fix and the metrics; each
/// `n-plus-one` finding whose statement it knows gets the database's count of it. Returns a
/// note for each slow statement the database did not know.
pub fn explain_with_plans(findings: &mut [crate::Finding], snapshot: &PgSnapshot) -> Vec<String> {
    let mut notes = Vec::new();
    let known = |location: &str| {
        snapshot
            .statements
            .iter()
            .find(|s| sql::normalize(&s.query).normalized == location)
    };
    // The database's own count of an N+1's statement confirms its scale beyond the traces.
    for finding in findings.iter_mut().filter(|f| f.detector == "n-plus-one") {
        if let Some(stat) = known(&finding.location) {
            let metrics = &mut finding.evidence.metrics;
            metrics.insert("db_calls".into(), stat.calls as f64);
            metrics.insert("db_mean_ms".into(), round(stat.mean_ms));
            metrics.insert(
                "db_rows_per_call".into(),
                round(stat.rows as f64 / stat.calls.max(1) as f64),
            );
            finding.assumptions.push(format!(
                "confirmed in {}: pg_stat_statements counts {} calls of it at {:.3} ms, {:.1} rows each, over {:.0} s",
                snapshot.database,
                stat.calls,
                stat.mean_ms,
                stat.rows as f64 / stat.calls.max(1) as f64,
                snapshot.window_s
            ));
        }
    }
    for finding in findings.iter_mut().filter(|f| f.detector == "slow-query") {
        let Some(stat) = known(&finding.location) else {
            notes.push(format!(
                "slow statement not found in {}'s pg_stat_statements, so not explained: {}",
                snapshot.database,
                crate::detectors::clip(&finding.location, 100)
            ));
            continue;
        };
        let plan = snapshot.plans.iter().find(|p| p.query == stat.query);
        let checks: Vec<&IndexCheck> = snapshot
            .index_checks
            .iter()
            .filter(|c| c.query == stat.query)
            .collect();
        let mut reasons = plan_reasons(stat, plan, &snapshot.tables);
        if let Some(plan) = plan {
            finding
                .evidence
                .metrics
                .insert("plan_cost".into(), round(plan.cost));
        }
        let index = proven_index(&checks);
        if let Some((check, share)) = index {
            reasons.push(format!(
                "an index on {} ({}) cuts the plan's cost from {:.0} to {:.0} ({:.0} % less), proven with a hypothetical index",
                check.relation,
                check.columns.join(", "),
                check.cost_before,
                check.cost_after.unwrap_or(check.cost_before),
                share * 100.0
            ));
            finding
                .evidence
                .metrics
                .insert("cost_after".into(), round(check.cost_after.unwrap_or(0.0)));
            finding.confidence = crate::Confidence::High;
        }
        if reasons.is_empty() {
            finding.assumptions.push(format!(
                "the generic plan in {} shows no sequential scan, spill or mis-estimate: the time may be waits (locks, I/O)",
                snapshot.database
            ));
            continue;
        }
        finding
            .title
            .push_str(&format!("; the plan shows {}", reasons.join("; ")));
        finding.fix = match index {
            Some((check, _)) => format!(
                "{} Then `ANALYZE {};` and check the plan again.",
                create_index(check),
                check.relation
            ),
            None => format!("Address {}.", reasons.join("; ")),
        };
    }
    notes
}

fn round(value: f64) -> f64 {
    (value * 1e3).round() / 1e3
}
