//! Database detectors' shared view of a PostgreSQL snapshot: each normalized statement with its
//! plan, candidate indexes and share of the time; what the plans say; and the join from trace
//! statements to the database's own.

use chokepoint_evidence::{
    CandidateCost, EndpointAggregate, Fingerprint, IndexCheck, IndexMethod, PgSnapshot, StatementPlan,
    StatementStat, Subject, TableStat, TraceAggregates,
};
use hashbrown::HashMap;

use crate::finding::{EvidenceItem, PlanReason};
use crate::sql::{self, Statement};

/// What a database detector needs of a snapshot.
#[derive(Debug)]
pub(crate) struct DbNeed {
    /// What it needs, as the end of "skipped: no …".
    pub(crate) what: &'static str,
    /// Whether the snapshot has it.
    pub(crate) met: fn(&PgSnapshot) -> bool,
}

/// Statement statistics: `pg_stat_statements`, readable.
pub(crate) const STATEMENTS: DbNeed = DbNeed {
    what: "pg_stat_statements in the database",
    met: |snapshot| snapshot.extensions.iter().any(|e| e == "pg_stat_statements"),
};

/// Sessions sampled over a window.
pub(crate) const WATCH: DbNeed = DbNeed {
    what: "session sampling (chokepoint db --watch, or load --pg)",
    met: |snapshot| snapshot.activity.is_some(),
};

/// A snapshot read for the detectors: its statements with their shapes, findable by
/// fingerprint.
pub(crate) struct DbView<'a> {
    /// The snapshot.
    pub(crate) snapshot: &'a PgSnapshot,
    /// Every statement, most total time first.
    pub(crate) statements: Vec<StatementView<'a>>,
    /// All the statements' time, in ms.
    pub(crate) total_ms: f64,
    /// The traces read beside the snapshot, when there were any: which endpoint runs a statement,
    /// and what else its requests run around it.
    pub(crate) traces: Option<&'a TraceAggregates>,
    by_fingerprint: HashMap<Fingerprint, usize>,
    /// Statements the watch saw sessions wait on a lock in.
    lock_waiting: Vec<Fingerprint>,
}

impl<'a> DbView<'a> {
    pub(crate) fn new(snapshot: &'a PgSnapshot, traces: Option<&'a TraceAggregates>) -> DbView<'a> {
        let total_ms: f64 = snapshot.statements.iter().map(|s| s.total_ms).sum();
        let waiting: Vec<Fingerprint> = snapshot
            .activity
            .iter()
            .flat_map(|a| &a.lock_waits)
            .map(|w| sql::normalize(&w.waiting_query).fingerprint)
            .collect();
        let statements: Vec<StatementView<'a>> = snapshot
            .statements
            .iter()
            .map(|stat| {
                let shape = sql::normalize(&stat.query);
                StatementView {
                    database: &snapshot.database,
                    window_s: snapshot.window_s,
                    lock_waited: waiting.contains(&shape.fingerprint),
                    shape,
                    stat,
                    index_checks: snapshot
                        .index_checks
                        .iter()
                        .filter(|c| c.query == stat.query && !c.existing)
                        .collect(),
                    existing_indexes: snapshot
                        .index_checks
                        .iter()
                        .filter(|c| c.query == stat.query && c.existing)
                        .collect(),
                    plan: snapshot.plans.iter().find(|p| p.query == stat.query),
                    share_of_total: stat.total_ms / total_ms.max(1e-9),
                    tables: &snapshot.tables,
                }
            })
            .collect();
        let mut by_fingerprint = HashMap::new();
        for (i, view) in statements.iter().enumerate() {
            by_fingerprint.entry(view.shape.fingerprint).or_insert(i);
        }
        DbView {
            snapshot,
            statements,
            total_ms,
            traces,
            by_fingerprint,
            lock_waiting: waiting,
        }
    }

    /// Whether the watch saw sessions wait on a lock while running this statement.
    pub(crate) fn waits_on_locks(&self, fingerprint: Fingerprint) -> bool {
        self.lock_waiting.contains(&fingerprint)
    }

    /// The endpoint whose traced requests run `statement` (normalized as the traces normalize
    /// it) for the most time, when the traces were read.
    pub(crate) fn endpoint_running(&self, statement: &str) -> Option<&'a EndpointAggregate> {
        let fingerprint = sql::normalize(statement).fingerprint;
        let traces = self.traces?;
        traces
            .endpoints
            .iter()
            .filter_map(|e| {
                Some((
                    e,
                    e.statements
                        .iter()
                        .find(|s| s.fingerprint == fingerprint)?
                        .time_ms,
                ))
            })
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(e, _)| e)
    }

    /// The database's statement with this fingerprint (as the traces' normalizer computes it).
    pub(crate) fn statement(&self, fingerprint: Fingerprint) -> Option<&StatementView<'a>> {
        self.by_fingerprint
            .get(&fingerprint)
            .map(|&i| &self.statements[i])
    }
}

/// One statement of a snapshot, with its shape and what was read about it.
pub(crate) struct StatementView<'a> {
    /// The database's name.
    pub(crate) database: &'a str,
    /// Seconds the statistics cover.
    pub(crate) window_s: f64,
    /// The statistics.
    pub(crate) stat: &'a StatementStat,
    /// Its shape (tables, filters, LIMIT) from the SQL lexer.
    pub(crate) shape: Statement,
    /// Candidate indexes costed for it.
    pub(crate) index_checks: Vec<&'a IndexCheck>,
    /// Relations scanned sequentially although an index already leads with the column the
    /// statement filters them on.
    pub(crate) existing_indexes: Vec<&'a IndexCheck>,
    /// Its generic plan, when it was read.
    pub(crate) plan: Option<&'a StatementPlan>,
    /// Its share of all the statements' time in the window (0–1).
    pub(crate) share_of_total: f64,
    /// The database's tables, for their sizes.
    pub(crate) tables: &'a [TableStat],
    /// Whether sessions running it were seen waiting on a lock (`--watch`).
    pub(crate) lock_waited: bool,
}

impl StatementView<'_> {
    /// Rows per call.
    pub(crate) fn rows_per_call(&self) -> f64 {
        self.stat.rows as f64 / self.stat.calls.max(1) as f64
    }

    /// The statement as a subject.
    pub(crate) fn subject(&self) -> Subject {
        self.shape.subject()
    }

    /// Why it is slow, from its plan and statistics.
    pub(crate) fn plan_reasons(&self) -> Vec<PlanReason> {
        plan_reasons(self.stat, self.plan, self.tables, self.shape.has_limit)
    }

    /// What to do about each reason its plan gives, concretely.
    pub(crate) fn reason_fixes(&self) -> Vec<String> {
        self.plan_reasons()
            .iter()
            .map(|reason| format!("{}: {}", reason.describe(), reason_fix(reason, self)))
            .collect()
    }

    /// The candidate index HypoPG proved, and the share of the plan's cost it removes.
    pub(crate) fn proven_index(&self) -> Option<(&IndexCheck, f64)> {
        proven_index(&self.index_checks)
    }

    /// The database's count of the statement, as evidence.
    pub(crate) fn stats_item(&self) -> EvidenceItem {
        EvidenceItem::StatementStats {
            database: self.database.to_owned(),
            calls: self.stat.calls,
            mean_ms: crate::impact::round(self.stat.mean_ms),
            rows_per_call: crate::impact::round(self.rows_per_call()),
            window_s: crate::impact::round(self.window_s),
        }
    }

    /// The plan and the indexes costed, as evidence.
    pub(crate) fn plan_items(&self) -> Vec<EvidenceItem> {
        let mut items = Vec::new();
        if let Some(plan) = self.plan {
            items.push(EvidenceItem::Plan {
                database: self.database.to_owned(),
                cost: crate::impact::round(plan.cost),
                estimated_rows: plan.estimated_rows,
                seq_scans: plan.seq_scans.clone(),
                reasons: self.plan_reasons(),
            });
        }
        items.extend(self.index_checks.iter().map(|check| index_item(check)));
        items
    }
}

/// A candidate index as evidence.
pub(crate) fn index_item(check: &IndexCheck) -> EvidenceItem {
    EvidenceItem::Index {
        relation: check.relation.clone(),
        columns: check.columns.clone(),
        method: check.method,
        cost_before: crate::impact::round(check.cost_before),
        cost_after: check.cost_after.map(crate::impact::round),
        candidates: check
            .candidates
            .iter()
            .map(|c| CandidateCost {
                columns: c.columns.clone(),
                cost_after: c.cost_after.map(crate::impact::round),
            })
            .collect(),
        limit_rows: check.limit_rows,
        create: create_index(check),
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
    has_limit: bool,
) -> Vec<PlanReason> {
    let mut reasons = Vec::new();
    let calls = stat.calls.max(1) as f64;
    if let Some(plan) = plan {
        for relation in &plan.seq_scans {
            let live_rows = tables
                .iter()
                .find(|t| &t.relation == relation)
                .map(|t| t.live_rows);
            if live_rows.is_some_and(|rows| rows < SMALL_TABLE_ROWS) {
                continue;
            }
            reasons.push(PlanReason::SeqScan {
                relation: relation.clone(),
                live_rows,
            });
        }
    }
    let temp_kb = stat.temp_blks_written as f64 * BLOCK_KB / calls;
    if temp_kb > 0.0 {
        let operation = match plan {
            Some(p) if p.sorts && !p.hashes => "sort",
            Some(p) if p.hashes && !p.sorts => "hash",
            _ => "sort or hash",
        };
        reasons.push(PlanReason::Spill {
            operation: operation.to_owned(),
            temp_kb_per_call: crate::impact::round(temp_kb),
        });
    }
    if let Some(plan) = plan.filter(|_| stat.calls > 0) {
        let actual = stat.rows as f64 / calls;
        let (expected, seen) = (plan.estimated_rows.max(1.0), actual.max(1.0));
        // Fewer rows than planned under a LIMIT are the LIMIT's doing (a generic plan guesses
        // that a parameter LIMIT keeps a tenth of the rows), not the statistics'.
        let limited = has_limit && seen < expected;
        if !limited && (expected / seen >= MIS_ESTIMATE_FACTOR || seen / expected >= MIS_ESTIMATE_FACTOR) {
            reasons.push(PlanReason::MisEstimate {
                estimated_rows: plan.estimated_rows,
                actual_rows_per_call: crate::impact::round(actual),
            });
        }
    }
    reasons
}

/// The fix a plan reason asks for, concrete: the index with its columns (proven, or how to
/// prove it), the `work_mem` for the spilling sort, the `ANALYZE` or extended statistics.
pub(crate) fn reason_fix(reason: &PlanReason, view: &StatementView<'_>) -> String {
    let parsed = chokepoint_sql::parse(&view.stat.query).ok();
    match reason {
        PlanReason::SeqScan { relation, .. } => {
            let checks: Vec<&IndexCheck> = view
                .index_checks
                .iter()
                .copied()
                .filter(|c| &c.relation == relation)
                .collect();
            let mut fixes: Vec<String> = checks.iter().map(|check| index_fix(check)).collect();
            if fixes.is_empty() {
                let existing = view.existing_indexes.iter().find(|c| &c.relation == relation);
                let columns = parsed
                    .as_ref()
                    .map(|p| p.index_columns(relation))
                    .unwrap_or_default();
                fixes.push(match (existing, columns.is_empty()) {
                    (Some(existing), _) => format!(
                        "an index leading with {} exists, yet the plan scans {relation}: the filter is not selective \
                         enough for it, or the statistics are stale — `ANALYZE {relation};` and check the plan again",
                        existing.columns.join(", ")
                    ),
                    (None, false) => format!(
                        "`CREATE INDEX CONCURRENTLY ON {relation} ({});` — not costed: check that it cuts the plan's cost \
                         (HypoPG proves it: `CREATE EXTENSION hypopg`)",
                        columns.join(", ")
                    ),
                    (None, true) => format!(
                        "nothing the statement filters {relation} on can use an index: it reads the table whole — bound it \
                         (a LIMIT, a key range) or keep what it computes in a summary table"
                    ),
                });
            }
            fixes.join("; ")
        }
        PlanReason::Spill { temp_kb_per_call, .. } => {
            // A sort in memory needs about twice what it spills, rounded up to whole MB.
            let mb = (temp_kb_per_call * 2.0 / 1024.0).ceil().max(4.0);
            format!(
                "give it the memory to sort in — `SET LOCAL work_mem = '{mb:.0}MB'` in the transaction that runs it (or for \
                 its role: `ALTER ROLE … SET work_mem`) — or an index in its `ORDER BY` order, so nothing is sorted"
            )
        }
        PlanReason::MisEstimate { .. } => {
            let tables = parsed.as_ref().map(|p| p.tables.clone()).unwrap_or_default();
            let mut fix = if tables.is_empty() {
                "`ANALYZE` the tables it reads".to_owned()
            } else {
                format!("`ANALYZE {};`", tables.join(", "))
            };
            // Equality filters on two columns of one table: their values may be correlated,
            // which the planner only knows from extended statistics.
            for table in &tables {
                let columns = parsed
                    .as_ref()
                    .map(|p| {
                        p.columns
                            .iter()
                            .filter(|c| c.role == chokepoint_sql::Role::Equality)
                            .filter(|c| {
                                c.table
                                    .as_ref()
                                    .is_none_or(|t| t == table || table.ends_with(&format!(".{t}")))
                            })
                            .map(|c| c.column.clone())
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default();
                if columns.len() >= 2 {
                    fix.push_str(&format!(
                        "; if {} are correlated, `CREATE STATISTICS ON {} FROM {table}; ANALYZE {table};`",
                        columns.join(" and "),
                        columns.join(", ")
                    ));
                }
            }
            fix
        }
    }
}

/// What to do with a candidate index: create it (proven), prove it, or know that it does not
/// help.
pub(crate) fn index_fix(check: &IndexCheck) -> String {
    let create = create_index(check);
    match (check.method, check.cost_after) {
        (IndexMethod::GinTrigram, _) => format!(
            "`{create}` — a trigram index serves the {} pattern no B-tree can; HypoPG cannot cost a GIN index, so this is \
             unproven: build it CONCURRENTLY (on a copy, or at a quiet hour) and compare `EXPLAIN (ANALYZE, BUFFERS)` before \
             and after; if the pattern is whole words, full-text search (a GIN index on `to_tsvector(…)`, queried with `@@`) \
             is faster still",
            check.pattern.as_deref().unwrap_or("pattern")
        ),
        (IndexMethod::Btree, Some(after)) if after <= PROVEN_COST_SHARE * check.cost_before => format!(
            "`{create}` — proven with a hypothetical index: plan cost {:.0} → {after:.0}",
            check.cost_before
        ),
        (IndexMethod::Btree, Some(after)) => format!(
            "an index on {} ({}) would only bring its plan cost from {:.0} to {after:.0}: not worth its upkeep — the filter \
             is not selective; bound what it reads instead",
            check.relation,
            check.columns.join(", "),
            check.cost_before
        ),
        (IndexMethod::Btree, None) => {
            format!("`{create}` — unverified: install HypoPG (`CREATE EXTENSION hypopg`) to prove it first")
        }
    }
}

/// The candidate index that cuts the plan's cost the most, when HypoPG proved it by
/// [`PROVEN_COST_SHARE`] or more: the check and the share of the cost it removes.
pub(crate) fn proven_index<'a>(checks: &[&'a IndexCheck]) -> Option<(&'a IndexCheck, f64)> {
    checks
        .iter()
        .filter(|c| c.method == IndexMethod::Btree)
        .filter_map(|c| Some((*c, 1.0 - c.cost_after? / c.cost_before.max(1e-9))))
        .filter(|(_, share)| *share >= PROVEN_COST_SHARE)
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

/// `CREATE INDEX CONCURRENTLY …` for a candidate (with the extension a trigram index needs).
pub(crate) fn create_index(check: &IndexCheck) -> String {
    match check.method {
        IndexMethod::Btree => format!(
            "CREATE INDEX CONCURRENTLY ON {} ({});",
            check.relation,
            check.columns.join(", ")
        ),
        IndexMethod::GinTrigram => format!(
            "CREATE EXTENSION IF NOT EXISTS pg_trgm; CREATE INDEX CONCURRENTLY ON {} USING gin ({});",
            check.relation,
            check
                .columns
                .iter()
                .map(|c| format!("{c} gin_trgm_ops"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The database's texts of the statements the traces show (matched by their normalized form):
/// the ones whose plans explain the trace findings, for a collector to read.
pub fn statements_to_explain(traces: &TraceAggregates, snapshot: &PgSnapshot) -> Vec<String> {
    let traced: Vec<Fingerprint> = traces
        .endpoints
        .iter()
        .flat_map(|e| &e.groups)
        .filter_map(|g| match &g.subject {
            Subject::Statement { fingerprint, .. } => Some(*fingerprint),
            _ => None,
        })
        .collect();
    snapshot
        .statements
        .iter()
        .filter(|s| traced.contains(&sql::normalize(&s.query).fingerprint))
        .map(|s| s.query.clone())
        .collect()
}
