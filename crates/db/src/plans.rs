//! Proving missing indexes: the generic plan of each top statement (`EXPLAIN (GENERIC_PLAN)` from
//! PostgreSQL 16; before, `PREPARE` with `plan_cache_mode = force_generic_plan`, then `EXPLAIN
//! EXECUTE` with NULL parameters — it never runs the statement), the relations it scans sequentially, and each candidate index costed as
//! a HypoPG hypothetical index, which exists only in the session's memory. Nothing is written.

use chokepoint_evidence::{IndexCheck, PgSnapshot, PlanProblem, StatementPlan};
use tokio_postgres::Client;

/// Statements whose plans are read, most total time first.
pub const PLANNED_STATEMENTS: usize = 20;

/// What a plan tree shows: sequentially scanned relations, sorts, hash tables.
fn read_plan(node: &serde_json::Value, plan: &mut StatementPlan) {
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

/// The statement's generic plan.
async fn generic_plan(client: &Client, query: &str, how: Generic) -> Result<StatementPlan, String> {
    let describe = |e: tokio_postgres::Error| {
        e.as_db_error()
            .map_or_else(|| e.to_string(), |d| d.message().to_owned())
    };
    if let Generic::Explain = how {
        let row = client
            .query_one(
                &format!("EXPLAIN (FORMAT JSON, VERBOSE, GENERIC_PLAN) {query}"),
                &[],
            )
            .await
            .map_err(describe)?;
        return Ok(read_root(query, row.get(0)));
    }
    client.batch_execute("DEALLOCATE ALL").await.map_err(describe)?;
    client
        .batch_execute(&format!("PREPARE chokepoint_plan AS {query}"))
        .await
        .map_err(describe)?;
    let nulls = vec!["NULL"; parameter_count(query)].join(", ");
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
    Ok(read_root(query, row.get(0)))
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
    candidates.iter().filter(|c| names.contains(c)).cloned().collect()
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
/// sequentially into `snapshot.index_checks`.
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
        let plan = match generic_plan(client, &query, how).await {
            Ok(plan) => plan,
            Err(reason) => {
                snapshot.plan_problems.push(problem(reason.to_string()));
                continue;
            }
        };
        let parsed = match crate::parse::parse(&query) {
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
            let columns = existing_columns(client, relation, &parsed.index_columns(relation)).await;
            let Some(first) = columns.first() else { continue };
            if covered(client, relation, first).await {
                continue;
            }
            let check = if hypopg {
                best_hypothetical(client, &query, how, relation, &columns, plan.cost).await
            } else {
                IndexCheck {
                    columns,
                    ..IndexCheck::default()
                }
            };
            snapshot.index_checks.push(IndexCheck {
                query: query.clone(),
                relation: relation.clone(),
                cost_before: plan.cost,
                ..check
            });
        }
        snapshot.plans.push(plan);
    }
}

/// Costs the leading column alone and all the candidate columns together, and keeps the
/// cheaper; the shorter index wins unless the longer one cuts the cost by a further tenth.
async fn best_hypothetical(
    client: &Client,
    query: &str,
    how: Generic,
    relation: &str,
    columns: &[String],
    cost_before: f64,
) -> IndexCheck {
    let mut best = IndexCheck {
        columns: columns[..1].to_vec(),
        cost_after: hypothetical_cost(client, query, how, relation, &columns[..1]).await,
        ..IndexCheck::default()
    };
    if columns.len() > 1
        && let Some(wider) = hypothetical_cost(client, query, how, relation, columns).await
        && best
            .cost_after
            .is_none_or(|single| single - wider > 0.1 * cost_before)
    {
        best = IndexCheck {
            columns: columns.to_vec(),
            cost_after: Some(wider),
            ..IndexCheck::default()
        };
    }
    best
}

/// The statement's cost with a hypothetical index on `relation (columns)`.
async fn hypothetical_cost(
    client: &Client,
    query: &str,
    how: Generic,
    relation: &str,
    columns: &[String],
) -> Option<f64> {
    let definition = format!("CREATE INDEX ON {relation} ({})", columns.join(", "));
    client
        .query("SELECT * FROM hypopg_create_index($1)", &[&definition])
        .await
        .ok()?;
    let cost = generic_plan(client, query, how).await.ok().map(|plan| plan.cost);
    let _ = client.batch_execute("SELECT hypopg_reset()").await;
    cost
}

#[cfg(test)]
mod tests {
    use super::*;

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
