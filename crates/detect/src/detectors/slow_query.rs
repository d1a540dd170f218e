//! `slow-query`: statements that take long, absolutely or relative to their request.

use chokepoint_evidence::{Resource, Subject};

use crate::db::{STATEMENTS, StatementView, create_index};
use crate::detectors::{clip, ns, percent};
use crate::finding::{Basis, Confidence, PlanReason};
use crate::registry::{Conclusion, Detector, Estimate, Reads, detector};
use crate::request::Request;
use crate::trace_analysis::{Observation, Observer};
use crate::traces::GroupView;

detector! {
    /// # What it detects
    ///
    /// Database statements that take 500 ms or more (Sentry's threshold), or that take 20 ms or
    /// more and at least half of their request — a statement that dominates a fast endpoint
    /// matters even below half a second (a sequential scan of a million rows takes 50 ms on a
    /// laptop and is still the whole cost of its endpoint).
    ///
    /// # Why it limits throughput
    ///
    /// A slow statement holds a database connection and a worker for its whole duration and
    /// usually burns database CPU or I/O (a sequential scan, a sort spilling to disk). Under load
    /// the pool runs dry and every endpoint that needs a connection queues behind it.
    ///
    /// # Evidence used
    ///
    /// Database client spans with their statement (`db.query.text` or `db.statement`),
    /// normalized and grouped by fingerprint; each span's duration and its request's. A span
    /// that opens a connection (`connect`, a handshake) is never a statement, whatever text an
    /// instrumentation put on it: that is `connection-churn`. From the traces alone, the hint
    /// names the columns PostgreSQL's own parser finds in the statement, per table with aliases
    /// resolved — a B-tree for equality, join and sort columns, a trigram index for a pattern
    /// match (`~*`, `ILIKE`, `LIKE '%…'`), which no B-tree serves. With `chokepoint traces --pg
    /// URL`, the statement's generic plan in that database gives the reason and, proven with
    /// HypoPG, the index.
    ///
    /// `chokepoint db`: `pg_stat_statements` — a mean of 100 ms or more, or of 20 ms or more for
    /// a statement that takes half the database's statement time — and the generic plan: a
    /// sequential scan, a sort or hash spilling to disk (`temp_blks_written`), or a row
    /// mis-estimate (the plan's rows against the rows per call, ten times apart, unless the
    /// statement's `LIMIT` explains the difference: a generic plan's `LIMIT $2` is not a
    /// mis-estimate).
    ///
    /// A statement the database watch saw sessions wait on a lock in, with nothing slow in its
    /// plan, is not slow: its time is the lock's (`lock-contention` names the transaction that
    /// holds it). A pattern a framework matches through a function (Django's `icontains`:
    /// `UPPER(col::text) LIKE UPPER(…)`) gets its index on that expression
    /// (`gin (upper(col) gin_trgm_ops)`), as does a `lower(col) = lower(…)` comparison.
    ///
    /// # Known false positives
    ///
    /// Reports and batch jobs that are slow by design; statements slow only because of a lock
    /// wait the watch did not sample (that is `lock-contention`: check `pg_stat_activity`). The saving assumes the plan
    /// can be fixed; prove it with `EXPLAIN (ANALYZE, BUFFERS)` before acting.
    ///
    /// # Typical fix
    ///
    /// Each reason the plan gives comes with its own fix. A sequential scan filtered on a
    /// selective column wants an index (`CREATE INDEX CONCURRENTLY … ON table (column)`, the
    /// columns named, proven when HypoPG is there); a disk sort wants an index in the `ORDER BY`
    /// order or `SET LOCAL work_mem` sized from the spill; a mis-estimate wants `ANALYZE`, and
    /// `CREATE STATISTICS` for correlated columns; a large result wants a `LIMIT`.
    pub(crate) struct SlowQuery {
        id: SlowQuery,
        summary: "database statements that take long, or most of their request",
        reads: [
            Reads::Traces("database spans with a statement"),
            Reads::Database(STATEMENTS),
        ],
        same_cause: [MissingIndex, LockContention, UnboundedResult],
    }
}

/// A statement this slow is flagged whatever its request, in ms (Sentry's default).
const SLOW_MS: f64 = 500.0;
/// A statement this slow is flagged when it dominates its request, in ms…
const DOMINANT_MS: f64 = 20.0;
/// …taking at least this share of the request.
const DOMINANT_SHARE: f64 = 0.5;
/// What a fixed statement is assumed to take, in ms: an index lookup and its round trip.
const FIXED_MS: f64 = 1.0;
const _: () = assert!(FIXED_MS < DOMINANT_MS && DOMINANT_MS < SLOW_MS);
/// A statement this slow on average is slow in an OLTP database, in ms; so is one of at least
/// [`DOMINANT_MS`] that takes [`DOMINANT_SHARE`] or more of all the statements' time.
const DB_SLOW_MEAN_MS: f64 = 100.0;

impl Detector for SlowQuery {
    fn observe(&self, request: &Request<'_>, out: &mut Observer<'_>) {
        let request_ms = request.root_span().duration_ms();
        for &i in &request.local {
            let Some(statement) = request.statement(i) else {
                continue;
            };
            out.evaluated();
            let span = request.span(i);
            let took_ms = span.duration_ms();
            let slow =
                took_ms >= SLOW_MS || (took_ms >= DOMINANT_MS && took_ms >= DOMINANT_SHARE * request_ms);
            if !slow {
                continue;
            }
            let saved_ns = ns(took_ms - FIXED_MS);
            out.push(Observation {
                subject: statement.subject(),
                location: None,
                related: None,
                code: request.code_near(i),
                saved_ns,
                latency_saved_ns: saved_ns,
                occurrences: 1,
                metrics: vec![
                    ("statement_ms", took_ms),
                    // A statement outlasts its request when clocks disagree or the root ends
                    // before its children: it is then the whole request, not more.
                    (
                        "share_of_request",
                        took_ms / request_ms.max(took_ms).max(f64::MIN_POSITIVE),
                    ),
                ],
            });
        }
    }

    fn conclude(&self, group: &GroupView<'_>) -> Option<Conclusion> {
        // Slow only because it waits on a lock the database watch saw it wait on, with nothing
        // slow in its plan: that is lock-contention's finding, not a plan problem.
        if let (Some(database), Subject::Statement { fingerprint, .. }) = (group.database, group.subject())
            && database.waits_on_locks(*fingerprint)
            && group.db_statement().is_none_or(|s| s.plan_reasons().is_empty())
        {
            return None;
        }
        let mean_ms = group.mean("statement_ms");
        let mut title = format!(
            "`{}` takes {mean_ms:.0} ms on average (max {:.0} ms), {} of {} in {} of {} requests",
            clip(group.location, 80),
            group.max("statement_ms"),
            percent(group.mean("share_of_request")),
            group.endpoint,
            group.requests,
            group.endpoint_requests,
        );
        let mut assumptions = vec![
            format!(
                "a fixed plan answers in about {FIXED_MS:.0} ms (an index lookup); the saving is the rest"
            ),
            format!(
                "seen in {} of the endpoint's requests",
                percent(group.affected_share())
            ),
        ];
        let mut confidence = Confidence::from_share(group.affected_share()).min(Confidence::Medium);
        let mut basis = Basis::Assumed;
        let mut items = Vec::new();
        let mut metrics = Vec::new();
        // With the database read too, its plan explains the statement: the reason, and the index
        // HypoPG proved.
        let explained = match (group.database, group.db_statement()) {
            (Some(_), Some(statement)) => {
                let reasons = statement.plan_reasons();
                let index = statement.proven_index();
                items = statement.plan_items();
                if let Some(plan) = statement.plan {
                    metrics.push(("plan_cost", plan.cost));
                }
                if let Some((check, _)) = index {
                    metrics.push(("cost_after", check.cost_after.unwrap_or(0.0)));
                    confidence = Confidence::High;
                    basis = Basis::Proven;
                }
                let mut shown: Vec<String> = reasons.iter().map(PlanReason::describe).collect();
                if let Some((check, share)) = index {
                    shown.push(format!(
                        "an index on {} ({}) cuts the plan's cost from {:.0} to {:.0} ({:.0} % less), proven with a hypothetical index",
                        check.relation,
                        check.columns.join(", "),
                        check.cost_before,
                        check.cost_after.unwrap_or(check.cost_before),
                        share * 100.0
                    ));
                }
                if shown.is_empty() {
                    assumptions.push(format!(
                        "the generic plan in {} shows no sequential scan, spill or mis-estimate: the time may be waits (locks, I/O)",
                        statement.database
                    ));
                    None
                } else {
                    title.push_str(&format!("; the plan shows {}", shown.join("; ")));
                    Some(match index {
                        Some((check, _)) => format!(
                            "{} Then `ANALYZE {};` and check the plan again.",
                            create_index(check),
                            check.relation
                        ),
                        None => fix_what_the_plan_shows(statement),
                    })
                }
            }
            (Some(database), None) => {
                assumptions.push(format!(
                    "not found in {}'s pg_stat_statements, so not explained by a plan",
                    database.snapshot.database
                ));
                None
            }
            (None, _) => None,
        };
        let fix = explained.unwrap_or_else(|| {
            format!(
                "Run `EXPLAIN (ANALYZE, BUFFERS) {}` with real values and read the plan: sequential scans, \
                 sorts spilling to disk and row mis-estimates are the usual causes.{} (`--pg URL` reads the plan and \
                 proves the index for you.)",
                clip(group.location, 200),
                index_hints(group.location)
            )
        });
        let mut conclusion = Conclusion::new(
            Resource::Database,
            basis,
            Estimate::Observed,
            title,
            fix,
            confidence,
        )
        .assume(assumptions)
        .metrics(metrics);
        conclusion.items = items;
        Some(conclusion)
    }

    fn check_statement(&self, view: &StatementView<'_>) -> Option<Conclusion> {
        let stat = view.stat;
        let dominant = stat.mean_ms >= DOMINANT_MS && view.share_of_total >= DOMINANT_SHARE;
        if !(stat.mean_ms >= DB_SLOW_MEAN_MS || dominant) || stat.calls == 0 {
            return None;
        }
        let reasons = view.plan_reasons();
        // Slow only because it waits on a lock: that is lock-contention's finding.
        if reasons.is_empty() && view.lock_waited {
            return None;
        }
        let fix = match view.proven_index() {
            Some((check, _)) => format!(
                "{} (see missing-index). Then `ANALYZE {};` and check the plan again.",
                create_index(check),
                check.relation
            ),
            None if !reasons.is_empty() => fix_what_the_plan_shows(view),
            None => "Its generic plan shows no sequential scan, spill or mis-estimate: run `EXPLAIN (ANALYZE, BUFFERS)` \
                     on it with real values, and watch for lock waits (`chokepoint db --watch`)."
                .to_owned(),
        };
        let because = if reasons.is_empty() {
            String::new()
        } else {
            let shown: Vec<String> = reasons.iter().map(PlanReason::describe).collect();
            format!("; the plan shows {}", shown.join("; "))
        };
        let mut conclusion = Conclusion::new(
            Resource::Database,
            Basis::Assumed,
            Estimate::StatementShare((1.0 - FIXED_MS / stat.mean_ms).max(0.0)),
            format!(
                "`{}` takes {:.0} ms on average over {} calls ({:.1} s in all){because}",
                clip(&view.shape.normalized, 80),
                stat.mean_ms,
                stat.calls,
                stat.total_ms / 1e3
            ),
            fix,
            Confidence::Medium,
        )
        .assume(vec![format!(
            "a fixed plan answers in about {FIXED_MS:.0} ms; the saving is the rest"
        )]);
        conclusion.items = view.plan_items();
        Some(conclusion)
    }
}

/// The fix for a statement whose plan explains it: each reason's own fix.
fn fix_what_the_plan_shows(view: &StatementView<'_>) -> String {
    format!("Fix what the plan shows — {}.", view.reason_fixes().join("; "))
}

/// The candidate indexes of a statement seen only in traces, table by table, from
/// PostgreSQL's own parse of it (aliases resolved to their tables): a B-tree on what it filters,
/// joins and sorts on, a trigram index on what it matches against patterns.
fn index_hints(normalized: &str) -> String {
    let Ok(parsed) = chokepoint_sql::parse_normalized(normalized) else {
        return String::new();
    };
    let mut hints = Vec::new();
    for table in &parsed.tables {
        let mut fixes = Vec::new();
        for pattern in parsed.patterns_of(table) {
            fixes.push(format!(
                "a trigram index for its `{}` on {} — `CREATE EXTENSION IF NOT EXISTS pg_trgm; CREATE INDEX CONCURRENTLY ON \
                 {table} USING gin ({} gin_trgm_ops);` (no B-tree serves that pattern)",
                pattern.kind.operator(),
                pattern.expression(),
                pattern.expression()
            ));
        }
        // `id` is the primary key by every ORM's convention: already indexed.
        let columns: Vec<String> = parsed
            .index_columns(table)
            .into_iter()
            .filter(|c| c != "id")
            .collect();
        if !columns.is_empty() {
            fixes.push(format!(
                "`CREATE INDEX CONCURRENTLY ON {table} ({});`",
                columns.join(", ")
            ));
        }
        if !fixes.is_empty() {
            hints.push(format!(
                " If it shows a sequential scan on `{table}`, the candidate is {} — check that it cuts the plan's cost before \
                 creating it.",
                fixes.join(", or ")
            ));
        }
    }
    hints.concat()
}
