//! `n-plus-one`: one request repeats the same statement or HTTP call once per item.

use chokepoint_evidence::{Fingerprint, Resource, Subject};
use hashbrown::HashMap;

use crate::db::{STATEMENTS, StatementView};
use crate::detectors::{clip, ms, percent, union_ns};
use crate::finding::{Basis, Confidence};
use crate::profile::{Category, ProfileView};
use crate::registry::{Conclusion, Detector, Estimate, Reads, detector};
use crate::request::Request;
use crate::trace_analysis::{Observation, Observer};
use crate::traces::GroupView;

detector! {
    /// # What it detects
    ///
    /// One request that runs the same normalized SQL statement — or calls the same HTTP endpoint
    /// of another service — again and again under one parent: typically an ORM loading a
    /// relation lazily, once per row of a list (`for order in orders: order.items`).
    ///
    /// # Why it limits throughput
    ///
    /// Each repeat pays a round trip, a parse and a plan, and holds a pooled connection. Time
    /// grows with the number of items, and the database does N small units of work where one
    /// would do. Under load the repeats crowd the connection pool and the database's CPU.
    ///
    /// # Evidence used
    ///
    /// Database client spans (`db.query.text` or `db.statement`) and HTTP client spans
    /// (`url.full` or `http.url`, ids in the path folded to `{id}`), grouped by their owning
    /// span; connection-pool and connect spans between a handler and its queries are skipped
    /// over. Flagged at 5 or more repeats costing 50 ms or more together (Sentry's thresholds),
    /// or — however fast each repeat — half of their request or more: dozens of primary-key
    /// lookups of a tenth of a millisecond each, on a laptop or a staging database next to the
    /// service, make most of a request of a few milliseconds and stay under 50 ms, yet in
    /// production every repeat pays a network round trip (0.3–1 ms) and the database does N
    /// units of work; the finding states what the repeats will cost at a 0.5 ms round trip.
    /// The cost counts the time between consecutive repeats when nothing else was traced in it:
    /// on a fast database most of an N+1 is per-item ORM work between the queries (200 lazy
    /// loads of 0.15 ms each made a 115 ms loop in the testbed), which span durations alone miss.
    /// Repeats that ran concurrently are caught too; batching then saves database and wire
    /// time more than latency.
    ///
    /// A profile corroborates it from the code side: ORM lazy loading (SQLAlchemy's lazy
    /// loader, Django's related descriptors) taking at least 10 % of the busy time, on at least
    /// 20 samples, names the line that touches the relationship inside a loop.
    ///
    /// # Known false positives
    ///
    /// Deliberate per-item work that cannot be batched (a per-row `UPDATE` with distinct values
    /// might still be one `UPDATE … FROM (VALUES …)`). Cursor pagination (`WHERE id > ? … LIMIT`,
    /// `?cursor=`, `?page_token=`) is dependent by nature and is not counted; numbered pages
    /// (`?page=`, `?offset=`) are known in advance and are. Transaction control and pool
    /// pings (`BEGIN`, `SELECT 1`) are ignored.
    ///
    /// # Typical fix
    ///
    /// Load the related rows in one query: SQLAlchemy `selectinload(Parent.children)` or
    /// `joinedload`, Django `prefetch_related` / `select_related`, or a hand-written
    /// `WHERE parent_id = ANY(:ids)`. For HTTP, call a batch endpoint with all ids, or at least
    /// issue the calls concurrently.
    pub(crate) struct NPlusOne {
        id: NPlusOne,
        summary: "the same statement or HTTP call repeated once per item in one request",
        reads: [
            Reads::Traces("database statement or HTTP client spans"),
            Reads::Database(STATEMENTS),
            Reads::Profile("ORM lazy-load frames"),
        ],
    }
}

/// Repeats under one parent that make an N+1 (Sentry's default).
pub(crate) const MIN_REPEATS: usize = 5;
/// Total time of the repeats that makes them worth fixing, in ms (Sentry's default).
const MIN_TOTAL_MS: f64 = 50.0;
/// …or the share of their request that makes them worth fixing however fast they are.
const MIN_SHARE_OF_REQUEST: f64 = 0.5;
/// A network round trip between a service and its database or downstream in production, in
/// ms: what each repeat costs beyond what a database next to the service shows.
const PRODUCTION_RTT_MS: f64 = 0.5;

/// Statements that repeat for reasons other than N+1: transaction control, pool pings.
pub(crate) fn is_housekeeping_statement(normalized: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "BEGIN",
        "COMMIT",
        "ROLLBACK",
        "SAVEPOINT",
        "RELEASE",
        "SET ",
        "SHOW ",
        "DISCARD",
    ];
    normalized == "SELECT ?" || PREFIXES.iter().any(|p| normalized.starts_with(p))
}

/// Time between consecutive repeats in which nothing else was traced: the per-item work of the
/// loop (building the query, decoding the row into an object), which batching removes along with
/// the round trips. A gap in which another span starts is other work and is not counted.
fn loop_overhead_ns(repeats: &[&chokepoint_evidence::Span], local_starts: &[u64]) -> u64 {
    repeats
        .windows(2)
        .filter(|pair| pair[1].start_unix_nano > pair[0].end_unix_nano)
        .filter(|pair| {
            let (from, to) = (pair[0].end_unix_nano, pair[1].start_unix_nano);
            let first_after = local_starts.partition_point(|&start| start < from);
            local_starts.get(first_after).is_none_or(|&start| start >= to)
        })
        .map(|pair| pair[1].start_unix_nano - pair[0].end_unix_nano)
        .sum()
}

/// What a repeated call is: a statement fingerprint or an HTTP target.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum CallKey<'a> {
    Statement(Fingerprint),
    Http(&'a str, &'a str),
}

/// The repeatable calls of a request, grouped by owner span and key; `seen` counts every
/// statement and HTTP call looked at, excluded ones (transaction control, pagination) included.
pub(crate) fn repeated_calls<'a>(
    request: &Request<'a>,
    seen: &mut u64,
) -> HashMap<(usize, CallKey<'a>), Vec<usize>> {
    let mut groups: HashMap<(usize, CallKey<'a>), Vec<usize>> = HashMap::new();
    for &i in &request.local {
        if request.statement(i).is_some() || request.http_call(i).is_some() {
            *seen += 1;
        }
        let key = if let Some(statement) = request.statement(i) {
            if is_housekeeping_statement(&statement.normalized) || statement.keyset_pagination {
                continue;
            }
            CallKey::Statement(statement.fingerprint)
        } else if let Some(call) = request.http_call(i) {
            if call.paginated {
                continue;
            }
            CallKey::Http(&call.method, &call.target)
        } else {
            continue;
        };
        let Some(owner) = request.owner(i) else { continue };
        groups.entry((owner, key)).or_default().push(i);
    }
    groups
}

/// Share of a profile's busy time in ORM lazy loading that is flagged.
const MIN_LAZY_LOAD_SHARE: f64 = 0.1;

impl Detector for NPlusOne {
    fn check_profile(&self, profile: &ProfileView<'_>) -> Option<Conclusion> {
        let hot = profile.hot(Category::LazyLoad, MIN_LAZY_LOAD_SHARE)?;
        let title = format!(
            "ORM lazy loading takes {} of the busy time ({:.2} s), triggered at {}",
            percent(hot.share),
            hot.seconds,
            hot.place()
        );
        let fix = format!(
            "Load the relationship with its parents in one query — SQLAlchemy `selectinload(Parent.children)` \
             (or `lazy=\"selectin\"`), Django `prefetch_related`/`select_related` — so {} no longer queries per item.",
            hot.place_text()
        );
        Some(
            hot.conclude(Resource::Database, Basis::Assumed, 0.9, title, fix)
                .assume_more(
                    "one batched query replaces the per-item loads: 90 % of their time is given back",
                ),
        )
    }

    fn observe(&self, request: &Request<'_>, out: &mut Observer<'_>) {
        let mut local_starts: Option<Vec<u64>> = None;
        let mut seen = 0;
        let groups = repeated_calls(request, &mut seen);
        out.evaluated_many(seen);
        for ((_, key), mut calls) in groups {
            if calls.len() < MIN_REPEATS {
                continue;
            }
            calls.sort_by_key(|&i| request.span(i).start_unix_nano);
            let spans: Vec<_> = calls.iter().map(|&i| request.span(i)).collect();
            let calls_ns: u64 = spans.iter().map(|s| s.duration_nano()).sum();
            let starts = local_starts.get_or_insert_with(|| {
                let mut starts: Vec<u64> = request
                    .local
                    .iter()
                    .map(|&i| request.span(i).start_unix_nano)
                    .collect();
                starts.sort_unstable();
                starts
            });
            let overhead_ns = loop_overhead_ns(&spans, starts);
            let cost_ns = calls_ns + overhead_ns;
            let request_ns = request.root_span().duration_nano().max(1);
            let share = cost_ns as f64 / request_ns as f64;
            if ms(cost_ns) < MIN_TOTAL_MS && share < MIN_SHARE_OF_REQUEST {
                continue;
            }
            // One batched call costs about what a typical repeat does: their mean (the longest is
            // often the first, paying for a checkout or a cold cache, and would leave too much).
            let batched_ns = calls_ns / calls.len() as u64;
            let wall_ns = union_ns(spans.iter().copied()) + overhead_ns;
            let subject = match key {
                CallKey::Statement(_) => match request.statement(calls[0]) {
                    Some(statement) => statement.subject(),
                    None => continue,
                },
                CallKey::Http(..) => match request.http_call(calls[0]) {
                    Some(call) => Subject::HttpCall(call.target()),
                    None => continue,
                },
            };
            out.push(Observation {
                subject,
                location: None,
                saved_ns: cost_ns - batched_ns,
                latency_saved_ns: wall_ns.saturating_sub(batched_ns),
                occurrences: calls.len() as u64,
                metrics: vec![
                    ("repeats_per_request", calls.len() as f64),
                    ("call_ms", ms(calls_ns) / calls.len() as f64),
                    ("loop_ms", ms(cost_ns)),
                    ("share_of_request", share.min(1.0)),
                    (
                        "concurrency",
                        calls_ns as f64 / union_ns(spans.iter().copied()).max(1) as f64,
                    ),
                ],
            });
        }
    }

    fn conclude(&self, group: &GroupView<'_>) -> Option<Conclusion> {
        let repeats = group.mean("repeats_per_request");
        let call_ms = group.mean("call_ms");
        let loop_ms = group.mean("loop_ms");
        let concurrent = group.mean("concurrency") >= 1.5;
        let is_http = matches!(group.subject(), Subject::HttpCall(_));
        let what = if is_http { "HTTP call" } else { "statement" };
        let title = format!(
            "{} repeats the {what} `{}` {repeats:.0}× per request ({call_ms:.1} ms each, {loop_ms:.0} ms with the work between them){}; one batched call would save {:.0} ms per request",
            group.endpoint,
            clip(group.location, 80),
            if concurrent { ", concurrently" } else { "" },
            group.saved_ms_per_request,
        );
        let fix = if is_http {
            format!(
                "Fetch the {repeats:.0} `{}` calls in one request to a batch endpoint that takes all the ids \
                 (e.g. `GET …?ids=1,2,3`); if the downstream has none, issue them concurrently with \
                 `asyncio.gather` over one shared `httpx.AsyncClient`.",
                group.location
            )
        } else {
            batch_query_fix(group.location)
        };
        let mut assumptions = vec![
            format!(
                "one batched call costs about as much as a typical (mean) repeat, so {repeats:.0} calls become 1"
            ),
            "untraced time between consecutive repeats is per-item overhead that batching removes too"
                .to_owned(),
        ];
        if concurrent {
            assumptions.push(
                "the repeats overlap, so latency gains are smaller than the database and wire time saved"
                    .into(),
            );
        }
        assumptions.push(format!(
            "at a {PRODUCTION_RTT_MS} ms network round trip per call — a database or service in another host, not next \
             to this one — the {repeats:.0} repeats cost about {:.0} ms more per request than measured here",
            (repeats - 1.0).max(0.0) * PRODUCTION_RTT_MS
        ));
        assumptions.push(format!(
            "seen in {} of the endpoint's requests",
            percent(group.affected_share())
        ));
        let mut items = Vec::new();
        let mut metrics = Vec::new();
        // The database's own count of the statement confirms its scale beyond the traces.
        if let Some(statement) = group.db_statement() {
            let stat = statement.stat;
            metrics.extend([
                ("db_calls", stat.calls as f64),
                ("db_mean_ms", stat.mean_ms),
                ("db_rows_per_call", statement.rows_per_call()),
            ]);
            assumptions.push(format!(
                "confirmed in {}: pg_stat_statements counts {} calls of it at {:.3} ms, {:.1} rows each, over {:.0} s",
                statement.database,
                stat.calls,
                stat.mean_ms,
                statement.rows_per_call(),
                statement.window_s
            ));
            items.push(statement.stats_item());
        }
        let resource = if is_http {
            Resource::Downstream
        } else {
            Resource::Database
        };
        let mut conclusion = Conclusion::new(
            resource,
            Basis::Measured,
            Estimate::Observed,
            title,
            fix,
            Confidence::from_share(group.affected_share()),
        )
        .assume(assumptions)
        .metrics(metrics);
        conclusion.items = items;
        Some(conclusion)
    }

    fn check_statement(&self, view: &StatementView<'_>) -> Option<Conclusion> {
        let (stat, shape) = (view.stat, &view.shape);
        let foreign_key = shape.filter_columns.iter().find(|c| c.ends_with("_id"))?;
        let select = shape.verb == "SELECT";
        if !select
            || stat.calls < DB_MIN_CALLS
            || view.rows_per_call() > DB_MAX_ROWS_PER_CALL
            || stat.mean_ms >= DB_MAX_MEAN_MS
        {
            return None;
        }
        let table = shape.tables.first().map_or("the table", String::as_str);
        Some(
            Conclusion::new(
                Resource::Database,
                Basis::Assumed,
                Estimate::StatementShare(DB_BATCHED_SAVING),
                format!(
                    "`{}` ran {} times at {:.2} ms, {:.1} rows each — the shape of an N+1 (one lookup by {foreign_key} per parent row)",
                    clip(&shape.normalized, 80),
                    stat.calls,
                    stat.mean_ms,
                    view.rows_per_call()
                ),
                format!(
                    "Find the loop that issues it (traces show the endpoint: `chokepoint traces`) and load the `{table}` rows for \
                     all parents in one query — `WHERE {foreign_key} = ANY($1)` — e.g. SQLAlchemy `selectinload`, Django \
                     `prefetch_related`."
                ),
                Confidence::Low,
            )
            .assume(vec![
                "a suspicion from the statement's shape and counts alone; traces confirm it".into(),
                "batching ten or more lookups per query removes nine tenths of the time".into(),
            ]),
        )
    }
}

/// The concrete fix for a repeated statement: the batched query and the ORM calls that emit it.
/// The table and the column it looks up by come from PostgreSQL's own parse of the statement
/// (aliases resolved); the SQL lexer's reading is the fallback.
fn batch_query_fix(normalized: &str) -> String {
    let (table, column) = match chokepoint_sql::parse_normalized(normalized) {
        Ok(parsed) => {
            let table = parsed.tables.first().cloned();
            let column = table.as_ref().and_then(|t| {
                parsed
                    .columns
                    .iter()
                    .filter(|c| c.role == chokepoint_sql::Role::Equality)
                    .find(|c| {
                        c.table
                            .as_ref()
                            .is_none_or(|q| q == t || t.ends_with(&format!(".{q}")))
                    })
                    .map(|c| c.column.clone())
            });
            (table, column)
        }
        Err(_) => {
            let statement = crate::sql::normalize(normalized);
            (
                statement.tables.first().cloned(),
                statement.filter_columns.first().cloned(),
            )
        }
    };
    let table = table.unwrap_or_else(|| "the related table".to_owned());
    match column {
        Some(column) => format!(
            "Load all the `{table}` rows in one query — `… FROM {table} WHERE {column} IN (…)` or `= ANY(:ids)` — \
             instead of one `{}` per parent row. SQLAlchemy: `.options(selectinload(Parent.{table}))` on the \
             parent query; Django: `.prefetch_related(\"{table}\")` (or `select_related` for a to-one relation).",
            clip(normalized, 60)
        ),
        None => format!(
            "Run `{}` once per request instead of once per item: hoist it out of the loop, or load what it \
             reads together with the parent rows (SQLAlchemy `selectinload`/`joinedload`, Django \
             `prefetch_related`).",
            clip(normalized, 60)
        ),
    }
}

/// Calls of one statement that, with the shape below, suggest a loop (database evidence).
const DB_MIN_CALLS: u64 = 1_000;
/// At most this many rows per call: one row per parent.
const DB_MAX_ROWS_PER_CALL: f64 = 1.5;
/// Under this mean the calls are cheap lookups, in ms.
const DB_MAX_MEAN_MS: f64 = 1.0;
/// The share of the lookups' time batching removes: ten or more per query, nine tenths.
const DB_BATCHED_SAVING: f64 = 0.9;
