//! `slow-query`: statements that take long, absolutely or relative to their request.

use crate::analysis::{Conclusion, GroupView, Observation, Observer};
use crate::detectors::{clip, ns, percent};
use crate::finding::Confidence;
use crate::registry::{Detector, detector};
use crate::request::Request;
use crate::sql;

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
    /// normalized and grouped by fingerprint; each span's duration and its request's. With
    /// `chokepoint traces --pg URL`, the statement's generic plan in that database gives the
    /// reason and, proven with HypoPG, the index.
    ///
    /// `chokepoint db`: `pg_stat_statements` — a mean of 100 ms or more, or of 20 ms or more for
    /// a statement that takes half the database's statement time — and the generic plan: a
    /// sequential scan, a sort or hash spilling to disk (`temp_blks_written`), or a row
    /// mis-estimate (the plan's rows against the rows per call, ten times apart).
    ///
    /// # Known false positives
    ///
    /// Reports and batch jobs that are slow by design; statements slow only because of a lock
    /// wait (that is `lock-contention`: check `pg_stat_activity`). The saving assumes the plan
    /// can be fixed; prove it with `EXPLAIN (ANALYZE, BUFFERS)` before acting.
    ///
    /// # Typical fix
    ///
    /// Read the plan. A sequential scan filtered on a selective column wants an index
    /// (`CREATE INDEX CONCURRENTLY … ON table (column)`); a disk sort wants an index in the
    /// `ORDER BY` order or more `work_mem`; a large result wants a `LIMIT`.
    pub(crate) struct SlowQuery {
        id: "slow-query",
        summary: "database statements that take long, or most of their request",
        requires: "database spans with a statement",
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
                key: statement.fingerprint.clone(),
                location: statement.normalized.clone(),
                saved_ns,
                latency_saved_ns: saved_ns,
                occurrences: 1,
                metrics: vec![
                    ("statement_ms", took_ms),
                    ("share_of_request", took_ms / request_ms.max(f64::MIN_POSITIVE)),
                ],
            });
        }
    }

    fn conclude(&self, group: &GroupView<'_>) -> Option<Conclusion> {
        let mean_ms = group.mean("statement_ms");
        let title = format!(
            "`{}` takes {mean_ms:.0} ms on average (max {:.0} ms), {} of {} in {} of {} requests",
            clip(group.location, 80),
            group.max("statement_ms"),
            percent(group.mean("share_of_request")),
            group.endpoint,
            group.requests,
            group.endpoint_requests,
        );
        let statement = sql::normalize(group.location);
        let index_hint = match (statement.tables.first(), statement.filter_columns.is_empty()) {
            (Some(table), false) => format!(
                " If it shows a sequential scan on `{table}`, the candidate index is \
                 `CREATE INDEX CONCURRENTLY ON {table} ({});` — check that it cuts the plan's cost before creating it.",
                statement.filter_columns.join(", ")
            ),
            _ => String::new(),
        };
        let fix = format!(
            "Run `EXPLAIN (ANALYZE, BUFFERS) {}` with real values and read the plan: sequential scans, \
             sorts spilling to disk and row mis-estimates are the usual causes.{index_hint}",
            clip(group.location, 200)
        );
        Some(Conclusion {
            title,
            fix,
            confidence: Confidence::from_share(group.affected_share()).min(Confidence::Medium),
            assumptions: vec![
                format!(
                    "a fixed plan answers in about {FIXED_MS:.0} ms (an index lookup); the saving is the rest"
                ),
                format!(
                    "seen in {} of the endpoint's requests",
                    percent(group.affected_share())
                ),
            ],
        })
    }
}

/// A statement this slow on average is slow in an OLTP database, in ms; so is one of at least
/// [`DOMINANT_MS`] that takes [`DOMINANT_SHARE`] or more of all the statements' time.
const DB_SLOW_MEAN_MS: f64 = 100.0;

impl crate::registry::DbDetector for SlowQuery {
    fn check(&self, view: &crate::db::StatementView<'_>) -> Option<crate::db::DbConclusion> {
        let stat = view.stat;
        let dominant = stat.mean_ms >= DOMINANT_MS && view.share_of_total >= DOMINANT_SHARE;
        if !(stat.mean_ms >= DB_SLOW_MEAN_MS || dominant) || stat.calls == 0 {
            return None;
        }
        let shape = &view.shape;
        let reasons = crate::db::plan_reasons(stat, view.plan, view.tables);
        // Slow only because it waits on a lock: that is lock-contention's finding.
        if reasons.is_empty() && view.lock_waited {
            return None;
        }
        let fix = match crate::db::proven_index(&view.index_checks) {
            Some((check, _)) => format!(
                "{} (see missing-index). Then `ANALYZE {};` and check the plan again.",
                crate::db::create_index(check),
                check.relation
            ),
            None if !reasons.is_empty() => format!("Address {}.", reasons.join("; ")),
            None => "Its generic plan shows no sequential scan, spill or mis-estimate: run `EXPLAIN (ANALYZE, BUFFERS)` \
                     on it with real values, and watch for lock waits (`chokepoint db --watch`)."
                .to_owned(),
        };
        let because = if reasons.is_empty() {
            String::new()
        } else {
            format!("; the plan shows {}", reasons.join("; "))
        };
        Some(crate::db::DbConclusion {
            title: format!(
                "`{}` takes {:.0} ms on average over {} calls ({:.1} s in all){because}",
                clip(&shape.normalized, 80),
                stat.mean_ms,
                stat.calls,
                stat.total_ms / 1e3
            ),
            fix,
            confidence: Confidence::Medium,
            assumptions: vec![format!(
                "a fixed plan answers in about {FIXED_MS:.0} ms; the saving is the rest"
            )],
            saved_share: (1.0 - FIXED_MS / stat.mean_ms).max(0.0),
            metrics: vec![],
        })
    }
}
