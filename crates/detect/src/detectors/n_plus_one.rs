//! `n-plus-one`: one request repeats the same statement or HTTP call once per item.

use chokepoint_evidence::{Fingerprint, Resource, Subject};
use hashbrown::HashMap;

use crate::db::{STATEMENTS, StatementView};
use crate::detectors::{clip, ms, percent, union_ns};
use crate::finding::{Basis, Confidence};
use crate::profile::{Category, ProfileView};
use crate::registry::{Conclusion, Detector, Estimate, Reads, detector};
use crate::request::Request;
use crate::stack::{Orm, ServiceStack};
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
    /// In the source (`chokepoint scan`, `--source DIR`): in a loop over a query, a relation the
    /// models declare lazily (Django fields and their reverse names, SQLAlchemy `relationship`) read
    /// on each row without `select_related`/`prefetch_related`/`selectinload`/`joinedload` naming it;
    /// a statement (a cursor's `execute`, `session.get`, a Django queryset that runs) or an HTTP call
    /// per item.
    /// A shape read there is potential — not measured — until a runtime finding meets it on its
    /// line, statement or route.
    ///
    /// # Known false positives
    ///
    /// Deliberate per-item work that cannot be batched (a per-row `UPDATE` with distinct values
    /// might still be one `UPDATE … FROM (VALUES …)`). Cursor pagination (`WHERE id > ? … LIMIT`,
    /// `?cursor=`, `?page_token=`) is dependent by nature and is not counted; numbered pages
    /// (`?page=`, `?offset=`) are known in advance and are. Transaction control and pool
    /// pings (`BEGIN`, `SELECT 1`) are ignored.
    ///
    /// With a profile of the same process, the lines that run the repeated statement (a SQL
    /// literal on the line, the span's `code.*` attributes, or — the profile covering a ramp of
    /// this endpoint — the lines whose frames make the ORM's lazy loads) put the CPU it costs the
    /// service on the finding: what a CPU limit is attributed to.
    ///
    /// # Typical fix
    ///
    /// Load the related rows in one query, said in the service's own terms: the ORM its spans'
    /// instrumentation (or its profile's frames) name, and the relation read from the statement
    /// that loaded the parent rows — its foreign-key column (`author_id` → `author`), not the
    /// table's name. Django `select_related("author")` for a to-one relation,
    /// `prefetch_related("review_set")` for a to-many one; SQLAlchemy `joinedload(Book.author)` or
    /// `selectinload(Order.items)`; Hibernate `JOIN FETCH`; Active Record `.includes(:author)`;
    /// a driver called with SQL, one `WHERE order_id = ANY(%s)` or a JOIN. For HTTP, call a batch
    /// endpoint with all ids, or at least issue the calls concurrently.
    pub(crate) struct NPlusOne {
        id: NPlusOne,
        summary: "the same statement or HTTP call repeated once per item in one request",
        reads: [
            Reads::Traces("database statement or HTTP client spans"),
            Reads::Database(STATEMENTS),
            Reads::Profile("ORM lazy-load frames"),
            Reads::Source("a statement, a lazily loaded relation or an HTTP call per item of a loop"),
        ],
        same_cause: [],
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

/// The statement that loaded the parent rows of a loop: the last one under the same owner
/// before the loop's first repeat, not housekeeping. Its foreign-key columns name the relation
/// the loop loads one row at a time.
fn parent_query(request: &Request<'_>, owner: usize, first: usize) -> Option<Subject> {
    let before = request.span(first).start_unix_nano;
    request
        .local
        .iter()
        .copied()
        .filter(|&i| i != first && request.span(i).start_unix_nano < before)
        .filter(|&i| request.owner(i) == Some(owner))
        .filter_map(|i| Some((request.span(i).start_unix_nano, request.statement(i)?)))
        .filter(|(_, statement)| {
            !is_housekeeping_statement(&statement.normalized)
                && request
                    .statement(first)
                    .is_none_or(|f| f.fingerprint != statement.fingerprint)
        })
        .max_by_key(|(start, _)| *start)
        .map(|(_, statement)| statement.subject())
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
        for ((owner, key), mut calls) in groups {
            if calls.len() < MIN_REPEATS {
                continue;
            }
            calls.sort_by_key(|&i| request.span(i).start_unix_nano);
            let related = parent_query(request, owner, calls[0]);
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
                related,
                code: request.code_near(calls[0]),
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
            batch_query_fix(group.location, group.group.related.as_ref(), group.stack)
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

/// The relation an N+1 loads one row at a time, as its statement and the parent query before it
/// show it.
#[derive(Debug, PartialEq)]
struct Relation {
    /// The table the repeats read.
    table: String,
    /// The column they look it up by.
    column: Option<String>,
    /// The parent rows' table, when known.
    parent: Option<String>,
    /// The relation's name on the parent: its foreign key without `_id` (`author_id` → `author`)
    /// for a to-one relation, the child's name for a to-many one.
    name: String,
    /// Whether each parent row has one of these (it holds the foreign key) or many (they hold it).
    to_one: bool,
}

/// Reads the relation: a lookup by `id` is to-one — the parent query's foreign-key column that
/// names this table says which relation; a lookup by `<parent>_id` is to-many. PostgreSQL's own
/// parse of the statements (aliases resolved); the SQL lexer's reading is the fallback.
fn relation_of(normalized: &str, related: Option<&Subject>) -> Option<Relation> {
    let (table, column) = match chokepoint_sql::parse_normalized(normalized) {
        Ok(parsed) => {
            let table = parsed.tables.first().cloned()?;
            let column = parsed
                .columns
                .iter()
                .filter(|c| c.role == chokepoint_sql::Role::Equality)
                .find(|c| {
                    c.table
                        .as_ref()
                        .is_none_or(|q| *q == table || table.ends_with(&format!(".{q}")))
                })
                .map(|c| c.column.clone());
            (table, column)
        }
        Err(_) => {
            let statement = crate::sql::normalize(normalized);
            (
                statement.tables.first().cloned()?,
                statement.filter_columns.first().cloned(),
            )
        }
    };
    let parent_query = match related {
        Some(Subject::Statement { text, .. }) => chokepoint_sql::parse_normalized(text).ok(),
        _ => None,
    };
    let bare = |name: &str| {
        name.rsplit('.')
            .next()
            .unwrap_or(name)
            .trim_matches('"')
            .to_owned()
    };
    match column.as_deref() {
        Some(key) if key.ends_with("_id") => Some(Relation {
            name: bare(&table),
            parent: parent_query
                .as_ref()
                .and_then(|p| p.tables.first().cloned())
                .or_else(|| Some(key.trim_end_matches("_id").to_owned())),
            table,
            column,
            to_one: false,
        }),
        _ => {
            // A lookup by the key: the parent rows hold the foreign key. Which one: the parent
            // query's `*_id` column whose name ends this table's (`author_id` for `dj_author`),
            // else its only one.
            let foreign_keys: Vec<String> = parent_query
                .as_ref()
                .map(|p| {
                    p.selected
                        .iter()
                        .filter(|(_, c)| c.ends_with("_id"))
                        .map(|(_, c)| c.trim_end_matches("_id").to_owned())
                        .collect()
                })
                .unwrap_or_default();
            let own = bare(&table);
            let singular = singular(&own);
            let name = foreign_keys
                .iter()
                .find(|fk| {
                    own.ends_with(fk.as_str()) || singular.ends_with(fk.as_str()) || fk.ends_with(&singular)
                })
                .or_else(|| (foreign_keys.len() == 1).then(|| &foreign_keys[0]))
                .cloned()
                .unwrap_or(singular);
            Some(Relation {
                parent: parent_query.and_then(|p| p.tables.first().cloned()),
                table,
                column,
                name,
                to_one: true,
            })
        }
    }
}

/// A naive singular: `items` → `item`, `categories` → `category`.
fn singular(name: &str) -> String {
    if let Some(stem) = name.strip_suffix("ies") {
        format!("{stem}y")
    } else if name.ends_with("ss") {
        name.to_owned()
    } else {
        name.strip_suffix('s').unwrap_or(name).to_owned()
    }
}

/// `dj_book` → `Book`, `order_items` → `OrderItem`: the class an ORM would map a table to, for
/// an example. Django's tables carry their app's label first (`app_model`), which is dropped.
fn class_name(table: &str, django: bool) -> String {
    let bare = table.rsplit('.').next().unwrap_or(table).trim_matches('"');
    let bare = match bare.split_once('_') {
        Some((_, model)) if django && !model.is_empty() => model,
        _ => bare,
    };
    singular(bare)
        .split('_')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|first| first.to_uppercase().chain(chars).collect::<String>())
                .unwrap_or_default()
        })
        .collect()
}

/// The concrete fix for a repeated statement, in the service's terms: the ORM its spans'
/// instrumentation names (Django, SQLAlchemy, Hibernate, Active Record) and the relation its
/// statement and the parent query show — or, for a driver called with SQL, the batched statement.
/// Without a known ORM, each common one's call, named with the relation.
fn batch_query_fix(normalized: &str, related: Option<&Subject>, stack: ServiceStack) -> String {
    let Some(relation) = relation_of(normalized, related) else {
        return format!(
            "Run `{}` once per request instead of once per item: hoist it out of the loop, or load what it reads together \
             with the parent rows.",
            clip(normalized, 60)
        );
    };
    let table = &relation.table;
    let django_tables = stack.orm == Some(Orm::Django);
    let parent_class = relation
        .parent
        .as_deref()
        .map(|p| class_name(p, django_tables))
        .unwrap_or_else(|| "Parent".to_owned());
    let name = if django_tables && !relation.to_one {
        // Django's reverse accessor of a foreign key: `<model>_set`, unless a related_name says
        // otherwise.
        format!("{}_set", class_name(table, true).to_ascii_lowercase())
    } else {
        relation.name.clone()
    };

    // The driver's own placeholder when it is one the spans name (psycopg's `%s`).
    let ids = if stack.orm == Some(Orm::Driver) {
        "%s"
    } else {
        ":ids"
    };
    let batched = match &relation.column {
        Some(column) => {
            format!("`… FROM {table} WHERE {column} = ANY({ids})` with the ids of all the parent rows")
        }
        None => format!("one `… FROM {table} WHERE … IN (…)` for all the parent rows"),
    };
    let parents = relation
        .parent
        .as_deref()
        .map_or_else(|| "the parent rows".to_owned(), |p| format!("the `{p}` rows"));
    match stack.orm {
        Some(Orm::Django) => {
            let call = if relation.to_one {
                format!("select_related(\"{name}\")")
            } else {
                format!("prefetch_related(\"{name}\")")
            };
            format!(
                "Load the related rows with {parents} in {}: `.{call}` on the queryset that loads them \
                 (`{parent_class}.objects.{call}`){} — instead of one `{}` per row.",
                if relation.to_one {
                    "one query (a JOIN)"
                } else {
                    "one more query"
                },
                if relation.to_one {
                    ""
                } else {
                    "; with a related_name, use that"
                },
                clip(normalized, 60)
            )
        }
        Some(Orm::SqlAlchemy) => {
            let loader = if relation.to_one {
                "joinedload"
            } else {
                "selectinload"
            };
            format!(
                "Load `{parent_class}.{name}` with {parents}: `.options({loader}({parent_class}.{name}))` on the query that \
                 loads them (or `lazy=\"selectin\"` on the relationship) — instead of one `{}` per row.",
                clip(normalized, 60)
            )
        }
        Some(Orm::Hibernate) => format!(
            "Fetch `{name}` with {parents}: `JOIN FETCH` in the query (or an `@EntityGraph`, or `@BatchSize` on the \
             association) — instead of one `{}` per row.",
            clip(normalized, 60)
        ),
        Some(Orm::ActiveRecord) => format!(
            "Preload `{name}` with {parents}: `.includes(:{name})` — instead of one `{}` per row.",
            clip(normalized, 60)
        ),
        Some(Orm::Driver) => format!(
            "The service runs this SQL itself: fetch {} for all {parents} in one statement — {batched}, or a JOIN in the \
             query that loads them — instead of one `{}` per row.",
            if relation.to_one {
                "the related row"
            } else {
                "the related rows"
            },
            clip(normalized, 60)
        ),
        None => format!(
            "Load the `{table}` rows for all {parents} in one query — {batched} — instead of one `{}` per row. \
             SQLAlchemy: `.options({}({parent_class}.{name}))`; Django: `.{}(\"{name}\")`.",
            clip(normalized, 60),
            if relation.to_one {
                "joinedload"
            } else {
                "selectinload"
            },
            if relation.to_one {
                "select_related"
            } else {
                "prefetch_related"
            },
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::Framework;

    fn django() -> ServiceStack {
        ServiceStack::from_scopes([
            "opentelemetry.instrumentation.django",
            "opentelemetry.instrumentation.psycopg2",
        ])
    }

    fn statement(text: &str) -> Subject {
        crate::sql::normalize(text).subject()
    }

    #[test]
    fn a_django_to_one_lookup_is_fixed_with_select_related_named_by_the_foreign_key() {
        let parent = statement(
            r#"SELECT "dj_book"."id", "dj_book"."title", "dj_book"."author_id" FROM "dj_book" ORDER BY "dj_book"."id" ASC LIMIT 50"#,
        );
        let repeat = crate::sql::normalize(
            r#"SELECT "dj_author"."id", "dj_author"."name" FROM "dj_author" WHERE "dj_author"."id" = %s LIMIT 21"#,
        )
        .normalized;
        assert_eq!(django().framework, Some(Framework::Django));
        let fix = batch_query_fix(&repeat, Some(&parent), django());
        assert!(fix.contains(r#"select_related("author")"#), "{fix}");
        assert!(fix.contains("Book.objects"), "{fix}");
        assert!(
            !fix.contains("selectinload") && !fix.contains("dj_author\")"),
            "{fix}"
        );
    }

    #[test]
    fn a_to_many_lookup_speaks_the_orm_the_spans_name() {
        let repeat = crate::sql::normalize("SELECT sku, qty FROM items WHERE order_id = %s").normalized;
        let parent = statement("SELECT id, total FROM orders WHERE id BETWEEN %s AND %s ORDER BY id");
        let sqlalchemy = ServiceStack::from_scopes(["opentelemetry.instrumentation.sqlalchemy"]);
        let fix = batch_query_fix(&repeat, Some(&parent), sqlalchemy);
        assert!(fix.contains("selectinload(Order.items)"), "{fix}");
        assert!(!fix.contains("prefetch_related"), "{fix}");
        let flask = ServiceStack::from_scopes([
            "opentelemetry.instrumentation.flask",
            "opentelemetry.instrumentation.psycopg2",
        ]);
        let fix = batch_query_fix(&repeat, Some(&parent), flask);
        assert!(
            fix.contains("order_id = ANY(%s)") && fix.contains("JOIN"),
            "{fix}"
        );
        assert!(
            !fix.contains("selectinload") && !fix.contains("prefetch_related"),
            "{fix}"
        );
        let fix = batch_query_fix(&repeat, Some(&parent), django());
        assert!(fix.contains(r#"prefetch_related("item_set")"#), "{fix}");
        // Nothing names the ORM: each common one's call, with the relation's name.
        let fix = batch_query_fix(&repeat, None, ServiceStack::default());
        assert!(
            fix.contains("selectinload(") && fix.contains("prefetch_related(\"items\")"),
            "{fix}"
        );
    }
}
