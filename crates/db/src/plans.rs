//! Proving missing indexes: the generic plan of each top statement (`PREPARE` with
//! `plan_cache_mode = force_generic_plan`, then `EXPLAIN EXECUTE` with NULL parameters — it never
//! runs the statement), the relations it scans sequentially, and each candidate index costed as
//! a HypoPG hypothetical index, which exists only in the session's memory. Nothing is written.

use chokepoint_evidence::{IndexCheck, PgSnapshot};
use tokio_postgres::Client;

/// Statements whose plans are read, most total time first.
pub const PLANNED_STATEMENTS: usize = 20;

/// A sequential scan in a plan: the relation.
fn seq_scans(plan: &serde_json::Value, out: &mut Vec<String>) {
    if plan["Node Type"] == "Seq Scan" {
        if let (Some(schema), Some(relation)) = (plan["Schema"].as_str(), plan["Relation Name"].as_str()) {
            out.push(format!("{schema}.{relation}"));
        } else if let Some(relation) = plan["Relation Name"].as_str() {
            out.push(relation.to_owned());
        }
    }
    if let Some(children) = plan["Plans"].as_array() {
        for child in children {
            seq_scans(child, out);
        }
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

/// The generic plan's total cost and its sequentially scanned relations.
async fn generic_plan(client: &Client, query: &str) -> Result<(f64, Vec<String>), String> {
    let describe = |e: tokio_postgres::Error| {
        e.as_db_error()
            .map_or_else(|| e.to_string(), |d| d.message().to_owned())
    };
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
    let plan: serde_json::Value = row.get(0);
    let root = &plan[0]["Plan"];
    let mut scans = Vec::new();
    seq_scans(root, &mut scans);
    Ok((root["Total Cost"].as_f64().unwrap_or(0.0), scans))
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

/// Reads plans and costs candidate indexes for the top statements.
pub async fn check_indexes(
    client: &Client,
    snapshot: &mut PgSnapshot,
    candidates: impl Fn(&str) -> Vec<String>,
) {
    let hypopg = snapshot.extensions.iter().any(|e| e == "hypopg");
    if client
        .batch_execute("SET plan_cache_mode = force_generic_plan")
        .await
        .is_err()
    {
        snapshot
            .plan_problems
            .push("plan_cache_mode cannot be set (PostgreSQL before 12): no plans read".into());
        return;
    }
    let queries: Vec<String> = snapshot
        .statements
        .iter()
        .filter(|s| s.query.trim_start().to_ascii_uppercase().starts_with("SELECT"))
        .take(PLANNED_STATEMENTS)
        .map(|s| s.query.clone())
        .collect();
    for query in queries {
        let (cost_before, scans) = match generic_plan(client, &query).await {
            Ok(plan) => plan,
            Err(reason) => {
                snapshot.plan_problems.push(format!(
                    "{}: {reason}",
                    query.chars().take(80).collect::<String>()
                ));
                continue;
            }
        };
        let wanted = candidates(&query);
        for relation in scans {
            let columns = existing_columns(client, &relation, &wanted).await;
            let Some(first) = columns.first() else { continue };
            if covered(client, &relation, first).await {
                continue;
            }
            let cost_after = if hypopg {
                hypothetical_cost(client, &query, &relation, &columns).await
            } else {
                None
            };
            snapshot.index_checks.push(IndexCheck {
                query: query.clone(),
                relation,
                columns,
                cost_before,
                cost_after,
            });
        }
    }
}

/// The statement's cost with a hypothetical index on `relation (columns)`.
async fn hypothetical_cost(client: &Client, query: &str, relation: &str, columns: &[String]) -> Option<f64> {
    let definition = format!("CREATE INDEX ON {relation} ({})", columns.join(", "));
    client
        .query("SELECT * FROM hypopg_create_index($1)", &[&definition])
        .await
        .ok()?;
    let cost = generic_plan(client, query).await.ok().map(|(cost, _)| cost);
    let _ = client.batch_execute("SELECT hypopg_reset()").await;
    cost
}
