//! Proving missing indexes: the generic plan of each top statement (`EXPLAIN (GENERIC_PLAN)` from
//! PostgreSQL 16; before, `PREPARE` with `plan_cache_mode = force_generic_plan`, then `EXPLAIN
//! EXECUTE` with NULL parameters — it never runs the statement), the relations it scans sequentially, and each candidate index costed as
//! a HypoPG hypothetical index, which exists only in the session's memory. Nothing is written.

use chokepoint_evidence::{CandidateCost, IndexCheck, IndexMethod, PgSnapshot, PlanProblem, StatementPlan};
use tokio_postgres::Client;

/// Statements whose plans are read, most total time first.
pub const PLANNED_STATEMENTS: usize = 20;

/// What a plan tree shows: sequentially scanned relations, sorts, hash tables.
fn read_plan(node: &serde_json::Value, plan: &mut StatementPlan) {
    let kind = node["Node Type"].as_str().unwrap_or_default();
    if kind.ends_with("Scan") {
        let mut words = kind.to_owned();
        if let Some(index) = node["Index Name"].as_str() {
            words.push_str(&format!(" using {index}"));
        }
        if let Some(relation) = node["Relation Name"].as_str() {
            match node["Schema"].as_str() {
                Some(schema) => words.push_str(&format!(" on {schema}.{relation}")),
                None => words.push_str(&format!(" on {relation}")),
            }
        }
        plan.scans.push(words);
    }
    match node["Node Type"].as_str() {
        Some("Seq Scan") => {
            if let Some(relation) = node["Relation Name"].as_str() {
                let name = match node["Schema"].as_str() {
                    Some(schema) => format!("{schema}.{relation}"),
                    None => relation.to_owned(),
                };
                if !plan.seq_scans.contains(&name) {
                    plan.seq_scans.push(name);
                }
            }
        }
        Some("Sort" | "Incremental Sort") => plan.sorts = true,
        Some("Hash") => plan.hashes = true,
        Some("Aggregate") if node["Strategy"] == "Hashed" => plan.hashes = true,
        _ => {}
    }
    for child in node["Plans"].as_array().into_iter().flatten() {
        read_plan(child, plan);
    }
}

/// The highest `$n` in a statement: how many parameters to pass.
fn parameter_count(query: &str) -> usize {
    let bytes = query.as_bytes();
    let mut max = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'$' {
            let digits: String = bytes[i + 1..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .map(|&c| c as char)
                .collect();
            if let Ok(n) = digits.parse::<usize>() {
                max = max.max(n);
            }
        }
    }
    max
}

/// How a generic plan is asked for: `EXPLAIN (GENERIC_PLAN)` from PostgreSQL 16, `PREPARE`
/// with `plan_cache_mode = force_generic_plan` and `EXPLAIN EXECUTE` with NULLs before.
#[derive(Clone, Copy)]
enum Generic {
    Explain,
    Prepare,
}

impl Generic {
    fn for_version(server_version: &str) -> Generic {
        let major: u32 = server_version
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        if major >= 16 {
            Generic::Explain
        } else {
            Generic::Prepare
        }
    }
}

/// A statement as it is planned: its text (with its `LIMIT` parameter replaced by the page its
/// calls really ask for, when it has one) and, for such a rewritten text, its parameters' types.
struct Planned {
    /// The statement as `pg_stat_statements` wrote it: what plans and checks are filed under.
    query: String,
    /// The text planned.
    text: String,
    /// The types of the parameters, declared in the `PREPARE` of a rewritten text (the `LIMIT`'s
    /// parameter is no longer used in it, so PostgreSQL could not infer its type).
    types: Option<Vec<String>>,
    /// The page size the `LIMIT` was planned with.
    limit_rows: Option<u64>,
}

impl Planned {
    /// `query` planned as written.
    fn as_written(query: &str) -> Planned {
        Planned {
            query: query.to_owned(),
            text: query.to_owned(),
            types: None,
            limit_rows: None,
        }
    }

    /// `query` planned with its `LIMIT $n` replaced by `rows_per_call`, when it has such a limit
    /// and its parameters' types can be read; as written otherwise. A generic plan guesses that
    /// a parameter `LIMIT` keeps a tenth of the rows, which hides what an index in the sort's
    /// order saves a "latest N" statement.
    async fn with_page(client: &Client, query: &str, rows_per_call: Option<f64>) -> Planned {
        let written = Planned::as_written(query);
        let Some(rows) = rows_per_call.map(|r| r.ceil().max(1.0) as u64) else {
            return written;
        };
        let Some(limit) = chokepoint_sql::parse(query).ok().and_then(|p| p.limit) else {
            return written;
        };
        let Some(text) = chokepoint_sql::with_limit(query, limit, rows) else {
            return written;
        };
        let Ok(types) = parameter_types(client, query).await else {
            return written;
        };
        Planned {
            query: query.to_owned(),
            text,
            types: Some(types),
            limit_rows: Some(rows),
        }
    }
}

/// The types PostgreSQL infers for a statement's parameters.
async fn parameter_types(client: &Client, query: &str) -> Result<Vec<String>, tokio_postgres::Error> {
    client.batch_execute("DEALLOCATE ALL").await?;
    client
        .batch_execute(&format!("PREPARE chokepoint_types AS {query}"))
        .await?;
    let row = client
        .query_one(
            "SELECT parameter_types::text[] FROM pg_prepared_statements WHERE name = 'chokepoint_types'",
            &[],
        )
        .await;
    let _ = client.batch_execute("DEALLOCATE chokepoint_types").await;
    Ok(row?.get(0))
}

/// The statement's generic plan.
async fn generic_plan(client: &Client, planned: &Planned, how: Generic) -> Result<StatementPlan, String> {
    let describe = |e: tokio_postgres::Error| {
        e.as_db_error()
            .map_or_else(|| e.to_string(), |d| d.message().to_owned())
    };
    let text = &planned.text;
    if let (Generic::Explain, None) = (how, &planned.types) {
        let row = client
            .query_one(
                &format!("EXPLAIN (FORMAT JSON, VERBOSE, GENERIC_PLAN) {text}"),
                &[],
            )
            .await
            .map_err(describe)?;
        return Ok(read_root(&planned.query, row.get(0)));
    }
    client.batch_execute("DEALLOCATE ALL").await.map_err(describe)?;
    let (declared, count) = match &planned.types {
        Some(types) => (format!(" ({})", types.join(", ")), types.len()),
        None => (String::new(), parameter_count(text)),
    };
    client
        .batch_execute(&format!("PREPARE chokepoint_plan{declared} AS {text}"))
        .await
        .map_err(describe)?;
    let nulls = vec!["NULL"; count].join(", ");
    let execute = if nulls.is_empty() {
        "EXECUTE chokepoint_plan".to_owned()
    } else {
        format!("EXECUTE chokepoint_plan({nulls})")
    };
    let row = client
        .query_one(&format!("EXPLAIN (FORMAT JSON, VERBOSE) {execute}"), &[])
        .await
        .map_err(describe)?;
    let _ = client.batch_execute("DEALLOCATE chokepoint_plan").await;
    Ok(read_root(&planned.query, row.get(0)))
}

/// `EXPLAIN (FORMAT JSON)` output as text, read as the inspector reads a plan PostgreSQL
/// returned; `None` when it is not JSON. For the fuzz target.
#[doc(hidden)]
pub fn read_plan_json(text: &[u8]) -> Option<StatementPlan> {
    serde_json::from_slice(text).ok().map(|plan| read_root("", plan))
}

/// The plan `EXPLAIN (FORMAT JSON)` returned.
fn read_root(query: &str, plan: serde_json::Value) -> StatementPlan {
    let root = &plan[0]["Plan"];
    let mut read = StatementPlan {
        query: query.to_owned(),
        cost: root["Total Cost"].as_f64().unwrap_or(0.0),
        estimated_rows: root["Plan Rows"].as_f64().unwrap_or(0.0),
        ..StatementPlan::default()
    };
    read_plan(root, &mut read);
    read
}

/// Columns of `relation` that exist, in the order given.
async fn existing_columns(client: &Client, relation: &str, candidates: &[String]) -> Vec<String> {
    let rows = client
        .query("SELECT attname::text FROM pg_attribute WHERE attrelid = $1::text::regclass AND attnum > 0 AND NOT attisdropped", &[&relation])
        .await
        .unwrap_or_default();
    let names: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    // An expression (`upper(body)`) is kept when the column inside it is the relation's.
    let column = |candidate: &str| match candidate.split_once('(') {
        Some((_, inner)) => inner.trim_end_matches(')').to_owned(),
        None => candidate.to_owned(),
    };
    candidates
        .iter()
        .filter(|c| names.contains(&column(c)))
        .cloned()
        .collect()
}

/// Whether an existing index of `relation` already leads with `column`.
async fn covered(client: &Client, relation: &str, column: &str) -> bool {
    client
        .query_one(
            "SELECT count(*) FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
             WHERE i.indrelid = $1::text::regclass AND a.attname = $2",
            &[&relation, &column],
        )
        .await
        .map(|r| r.get::<_, i64>(0) > 0)
        .unwrap_or(false)
}

/// Reads the generic plans of the top statements and costs candidate indexes for the
/// relations they scan sequentially. Candidate columns come from PostgreSQL's own parse tree:
/// equality filters, join keys, then a range or the sort keys.
pub async fn check_indexes(client: &Client, snapshot: &mut PgSnapshot) {
    let queries: Vec<String> = snapshot
        .statements
        .iter()
        .filter(|s| {
            let verb = s.query.trim_start().to_ascii_uppercase();
            verb.starts_with("SELECT") || verb.starts_with("WITH")
        })
        .take(PLANNED_STATEMENTS)
        .map(|s| s.query.clone())
        .collect();
    explain(client, snapshot, queries).await;
}

/// Reads the generic plans of `queries` (as `pg_stat_statements` wrote them, with `$n`
/// parameters) into `snapshot.plans`, and costs candidate indexes for the relations they scan
/// sequentially into `snapshot.index_checks`: B-trees on the columns the statement filters,
/// joins and sorts on, costed with HypoPG, and trigram GIN indexes on the columns it matches
/// against patterns, which HypoPG cannot cost. A statement with a `LIMIT $n` is planned with
/// the page its calls really ask for.
pub async fn explain(client: &Client, snapshot: &mut PgSnapshot, queries: Vec<String>) {
    let hypopg = snapshot.extensions.iter().any(|e| e == "hypopg");
    let how = Generic::for_version(&snapshot.server_version);
    if client
        .batch_execute("SET plan_cache_mode = force_generic_plan")
        .await
        .is_err()
    {
        snapshot.plan_problems.push(PlanProblem {
            query: String::new(),
            reason: "plan_cache_mode cannot be set (PostgreSQL before 12): no plans read".into(),
        });
        return;
    }
    for query in queries {
        let problem = |reason: String| PlanProblem {
            query: query.chars().take(80).collect(),
            reason,
        };
        let rows_per_call = snapshot
            .statements
            .iter()
            .find(|s| s.query == query && s.calls > 0)
            .map(|s| s.rows as f64 / s.calls as f64);
        let planned = Planned::with_page(client, &query, rows_per_call).await;
        let plan = match generic_plan(client, &planned, how).await {
            Ok(plan) => plan,
            Err(reason) => {
                snapshot.plan_problems.push(problem(reason.to_string()));
                continue;
            }
        };
        let parsed = match chokepoint_sql::parse(&query) {
            Ok(parsed) => parsed,
            Err(reason) => {
                snapshot
                    .plan_problems
                    .push(problem(format!("not parsed: {reason}")));
                snapshot.plans.push(plan);
                continue;
            }
        };
        for relation in &plan.seq_scans {
            let base = IndexCheck {
                query: query.clone(),
                relation: relation.clone(),
                cost_before: plan.cost,
                limit_rows: planned.limit_rows,
                ..IndexCheck::default()
            };
            for pattern in parsed.patterns_of(relation) {
                let columns = existing_columns(client, relation, &[pattern.expression()]).await;
                if !columns.is_empty() {
                    snapshot.index_checks.push(IndexCheck {
                        columns,
                        method: IndexMethod::GinTrigram,
                        pattern: Some(pattern.kind.operator().to_owned()),
                        ..base.clone()
                    });
                }
            }
            let columns = existing_columns(client, relation, &parsed.index_columns(relation)).await;
            let Some(first) = columns.first() else { continue };
            if covered(client, relation, first).await {
                snapshot.index_checks.push(IndexCheck {
                    columns: vec![first.clone()],
                    existing: true,
                    ..base
                });
                continue;
            }
            let check = if hypopg {
                best_hypothetical(client, &planned, how, relation, &columns).await
            } else {
                IndexCheck {
                    columns,
                    ..IndexCheck::default()
                }
            };
            snapshot.index_checks.push(IndexCheck {
                columns: check.columns,
                cost_after: check.cost_after,
                candidates: check.candidates,
                ..base
            });
        }
        snapshot.plans.push(plan);
    }
}

/// The wider candidate is proposed over the leading column alone only when it at least halves
/// the statement's cost again: each column an index adds slows every write.
const WIDER_INDEX_SHARE: f64 = 0.5;

/// Costs the leading column alone and all the candidate columns together, and keeps the
/// leading column unless the wider index halves its cost again (for "the latest N of X", an
/// index in the sort's order reads N rows and stops, where one on the filter alone reads and
/// sorts every row of X).
async fn best_hypothetical(
    client: &Client,
    planned: &Planned,
    how: Generic,
    relation: &str,
    columns: &[String],
) -> IndexCheck {
    let leading = CandidateCost {
        columns: columns[..1].to_vec(),
        cost_after: hypothetical_cost(client, planned, how, relation, &columns[..1]).await,
    };
    let mut candidates = vec![leading.clone()];
    let mut best = leading;
    if columns.len() > 1 {
        let wider = CandidateCost {
            columns: columns.to_vec(),
            cost_after: hypothetical_cost(client, planned, how, relation, columns).await,
        };
        let halves = match (wider.cost_after, best.cost_after) {
            (Some(wide), Some(single)) => wide <= WIDER_INDEX_SHARE * single,
            (Some(_), None) => true,
            _ => false,
        };
        candidates.push(wider.clone());
        if halves {
            best = wider;
        }
    }
    IndexCheck {
        columns: best.columns,
        cost_after: best.cost_after,
        candidates,
        ..IndexCheck::default()
    }
}

/// The statement's cost with a hypothetical index on `relation (columns)`.
async fn hypothetical_cost(
    client: &Client,
    planned: &Planned,
    how: Generic,
    relation: &str,
    columns: &[String],
) -> Option<f64> {
    let definition = format!("CREATE INDEX ON {relation} ({})", columns.join(", "));
    client
        .query("SELECT * FROM hypopg_create_index($1)", &[&definition])
        .await
        .ok()?;
    let cost = generic_plan(client, planned, how)
        .await
        .ok()
        .map(|plan| plan.cost);
    let _ = client.batch_execute("SELECT hypopg_reset()").await;
    cost
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_are_read_from_the_text_postgresql_writes() {
        let read = |name: &str| {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/data")
                .join(name);
            read_plan_json(&std::fs::read(path).expect("plan file")).expect("a plan")
        };
        let seq = read("plan-seq-scan.json");
        assert_eq!(seq.seq_scans, ["public.users"]);
        assert_eq!(seq.cost, 15554.43);
        let join = read("plan-join-sort.json");
        assert!(join.sorts && join.hashes && join.seq_scans.is_empty());
        assert_eq!(
            join.scans[0],
            "Index Scan using items_order_id_idx on public.items"
        );
        let aggregate = read("plan-hash-aggregate.json");
        assert!(aggregate.hashes && !aggregate.sorts);
        assert_eq!(aggregate.seq_scans, ["events"]);
        assert!(read_plan_json(b"[{\"Plan\": ").is_none());
    }

    #[test]
    fn a_plan_reads_as_its_scans_in_words() {
        let plan = serde_json::json!([{"Plan": {
        "Node Type": "Nested Loop", "Total Cost": 20.5, "Plan Rows": 10,
        "Plans": [
            {"Node Type": "Index Scan", "Index Name": "users_email_idx", "Relation Name": "users", "Schema": "public"},
            {"Node Type": "Bitmap Heap Scan", "Relation Name": "orders", "Schema": "public",
             "Plans": [{"Node Type": "Bitmap Index Scan", "Index Name": "orders_user_id_idx"}]},
            {"Node Type": "Seq Scan", "Relation Name": "items", "Schema": "public"}
        ]}}]);
        let read = read_root("SELECT …", plan);
        assert_eq!(
            read.scans,
            [
                "Index Scan using users_email_idx on public.users",
                "Bitmap Heap Scan on public.orders",
                "Bitmap Index Scan using orders_user_id_idx",
                "Seq Scan on public.items"
            ]
        );
        assert_eq!(read.seq_scans, ["public.items"]);
        assert_eq!(read.cost, 20.5);
    }

    #[test]
    fn generic_plan_option_from_postgresql_16() {
        assert!(matches!(
            Generic::for_version("15.18 (Debian 15.18-0+deb12u1)"),
            Generic::Prepare
        ));
        assert!(matches!(Generic::for_version("16.4"), Generic::Explain));
        assert!(matches!(Generic::for_version("17beta1"), Generic::Explain));
    }
}
