//! `unbounded-result`: statements that return very many rows with no `LIMIT`.

use chokepoint_evidence::Resource;

use crate::db::{STATEMENTS, StatementView};
use crate::detectors::{clip, ms, ns, percent};
use crate::finding::{Basis, Confidence};
use crate::registry::{Conclusion, Detector, Estimate, Reads, detector};
use crate::request::Request;
use crate::trace_analysis::{Observation, Observer};
use crate::traces::GroupView;

detector! {
    /// # What it detects
    ///
    /// `SELECT` statements without `LIMIT` (or `FETCH FIRST`, `TOP`) that return 1,000 rows or
    /// more per call: a whole table, or everything a user ever had, fetched to show one page.
    ///
    /// # Why it limits throughput
    ///
    /// Every row is read, sent, decoded into an object and usually serialized again. Cost grows
    /// with the data, not the page: an endpoint that was fast at launch slows down as tables
    /// grow, and memory per request grows with it.
    ///
    /// # Evidence used
    ///
    /// Database spans with a statement and a row count: `db.response.returned_rows` (current
    /// convention), or `db.rows_returned`, `db.row_count`, `db.sql.rows`. Without a row count on
    /// any span this detector is reported as skipped.
    ///
    /// In the source (`chokepoint scan`, `--source DIR`): in a request handler, `.all()` of a query
    /// with no filter, limit or slice, a Django queryset read whole where it stands, or a SQL literal
    /// with neither `WHERE` nor `LIMIT`.
    /// A shape read there is potential — not measured — until a runtime finding meets it on its
    /// line, statement or route.
    ///
    /// # Known false positives
    ///
    /// Exports and batch jobs that really need every row (stream them with a server-side cursor
    /// instead). Statements bounded by a `WHERE` that happens to match many rows today.
    /// Statements filtered by a list of keys (`WHERE order_id IN (…)`, `= ANY(…)`, as an eager
    /// load of a page's children runs) are bounded by that list and not flagged.
    ///
    /// # Typical fix
    ///
    /// Paginate with a key (`WHERE id > :last_id ORDER BY id LIMIT 100`), or let the database
    /// aggregate (`COUNT`, `SUM`, `GROUP BY`) when the handler only summarizes the rows.
    pub(crate) struct UnboundedResult {
        id: UnboundedResult,
        summary: "statements returning very many rows per call without a LIMIT",
        reads: [
            Reads::Traces("database span carrying a row count (db.response.returned_rows)"),
            Reads::Database(STATEMENTS),
            Reads::Source("a query with no filter or limit returned to a request"),
        ],
        same_cause: [],
    }
}

/// Row-count attributes, current convention first.
const ROW_COUNT_KEYS: &[&str] = &[
    "db.response.returned_rows",
    "db.rows_returned",
    "db.row_count",
    "db.sql.rows",
];
/// Rows per call that make a result unbounded.
const MIN_ROWS: f64 = 1_000.0;
/// The page size assumed for the fix.
const PAGE_ROWS: f64 = 100.0;

impl Detector for UnboundedResult {
    fn observe(&self, request: &Request<'_>, out: &mut Observer<'_>) {
        for &i in &request.local {
            let Some(statement) = request.statement(i) else {
                continue;
            };
            let span = request.span(i);
            let Some(rows) = span.attr_f64_any(ROW_COUNT_KEYS) else {
                continue;
            };
            out.evaluated();
            let reads = statement.verb == "SELECT" || statement.verb == "WITH";
            // `WHERE key IN (…)` / `= ANY(…)` is bounded by the caller's list of keys (an eager
            // load of a page's children), not by the table.
            let key_list = statement.normalized.contains(" IN (?") || statement.normalized.contains(" ANY (");
            if !reads || statement.has_limit || key_list || rows < MIN_ROWS {
                continue;
            }
            // The untraced time right after the statement is the handler turning its rows into
            // objects and JSON: it shrinks with the page too.
            let next_start = request.parent(i).map_or(request.root_span().end_unix_nano, |p| {
                let siblings = request.children(p);
                siblings
                    .iter()
                    .map(|&c| request.span(c).start_unix_nano)
                    .filter(|&start| start >= span.end_unix_nano)
                    .min()
                    .unwrap_or(request.span(p).end_unix_nano)
            });
            let processing_ms = ms(next_start.saturating_sub(span.end_unix_nano));
            let saved_ns = ns((span.duration_ms() + processing_ms) * (1.0 - PAGE_ROWS / rows));
            out.push(Observation {
                subject: statement.subject(),
                location: None,
                related: None,
                code: request.code_near(i),
                saved_ns,
                latency_saved_ns: saved_ns,
                occurrences: 1,
                metrics: vec![
                    ("rows_per_call", rows),
                    ("statement_ms", span.duration_ms()),
                    ("processing_ms", processing_ms),
                ],
            });
        }
    }

    fn conclude(&self, group: &GroupView<'_>) -> Option<Conclusion> {
        let rows = group.mean("rows_per_call");
        let title = format!(
            "{} fetches {rows:.0} rows per call (max {:.0}) with `{}`, which has no LIMIT; the statement and handling its rows take {:.0} ms",
            group.endpoint,
            group.max("rows_per_call"),
            clip(group.location, 80),
            group.mean("statement_ms") + group.mean("processing_ms"),
        );
        let fix = format!(
            "Bound `{}`: paginate with a key — `… WHERE id > :last_id ORDER BY id LIMIT {PAGE_ROWS:.0}` — and return \
             a cursor, or compute the summary in SQL (`COUNT`/`SUM`/`GROUP BY`) if the handler only aggregates. \
             SQLAlchemy: `.order_by(Model.id).where(Model.id > last_id).limit({PAGE_ROWS:.0})`; Django: slice the queryset.",
            clip(group.location, 160)
        );
        Some(
            Conclusion::new(
                Resource::Database,
                Basis::Assumed,
                Estimate::Observed,
                title,
                fix,
                Confidence::from_share(group.affected_share()),
            )
            .assume(vec![
                format!(
                    "statement time scales with rows, so a page of {PAGE_ROWS:.0} rows takes {PAGE_ROWS:.0}/{rows:.0} of it"
                ),
                "the untraced time right after the statement is the handler processing its rows, and shrinks with the page too".into(),
                format!(
                    "seen in {} of the endpoint's requests",
                    percent(group.affected_share())
                ),
            ]),
        )
    }

    fn check_statement(&self, view: &StatementView<'_>) -> Option<Conclusion> {
        let shape = &view.shape;
        let rows = view.rows_per_call();
        let reads = shape.verb == "SELECT" || shape.verb == "WITH";
        let key_list = shape.normalized.contains(" IN (?") || shape.normalized.contains(" ANY (");
        if !reads || shape.has_limit || key_list || rows < MIN_ROWS {
            return None;
        }
        Some(
            Conclusion::new(
                Resource::Database,
                Basis::Assumed,
                Estimate::StatementShare(1.0 - PAGE_ROWS / rows),
                format!(
                    "`{}` returns {rows:.0} rows per call over {} calls, with no LIMIT",
                    clip(&shape.normalized, 80),
                    view.stat.calls
                ),
                format!(
                    "Bound it: paginate with a key — `… WHERE id > $1 ORDER BY id LIMIT {PAGE_ROWS:.0}` — or aggregate in SQL \
                     (`COUNT`/`SUM`/`GROUP BY`) when the caller only summarizes."
                ),
                Confidence::Medium,
            )
            .assume(vec![format!(
                "statement time scales with rows: a page of {PAGE_ROWS:.0} takes {PAGE_ROWS:.0}/{rows:.0} of it"
            )]),
        )
    }
}
