//! `missing-index`: a statement scans a table sequentially where an index would cut its cost.

use chokepoint_evidence::{IndexCheck, IndexMethod, Resource};

use crate::db::{PROVEN_COST_SHARE, STATEMENTS, StatementView, index_item};
use crate::detectors::{clip, percent};
use crate::finding::{Basis, Confidence};
use crate::registry::{Conclusion, Detector, Estimate, Reads, detector};

detector! {
    /// # What it detects
    ///
    /// A frequent or costly statement whose plan scans a table sequentially to filter it, where
    /// an index on the filtered columns would cut the plan's cost by at least half — proven with
    /// a hypothetical index (HypoPG) when the extension is there, proposed unverified otherwise.
    ///
    /// # Why it limits throughput
    ///
    /// A sequential scan reads the whole table on every call: its cost grows with the table, it
    /// burns CPU and I/O the database shares with every other statement, and it holds a
    /// connection (and a worker upstream) for all of it.
    ///
    /// # Evidence used
    ///
    /// `chokepoint db`: the top statements of `pg_stat_statements`, their generic plans
    /// (`PREPARE` + `plan_cache_mode = force_generic_plan` + `EXPLAIN EXECUTE`, never executed),
    /// the filter columns of each sequentially scanned table, and each candidate costed as a
    /// HypoPG hypothetical index. Proposed when the cost falls by 50 % or more (Dexter's bar) and
    /// no existing index leads with the same column. A statement with a parameter `LIMIT` is
    /// costed with the page its calls really return (`pg_stat_statements`' rows per call): a
    /// generic plan guesses a tenth of the rows, which hides what an index in the sort's order
    /// saves "the latest N of X" — it reads N rows and stops, where one on the filter alone reads
    /// and sorts every row of X. The wider candidate (filter and sort columns) is proposed when it
    /// halves the leading column's cost again; both costs are in the evidence.
    ///
    /// Columns matched against patterns (`~`, `~*`, `ILIKE`, `LIKE '%…'`) get a trigram GIN index
    /// (`pg_trgm`) instead: no B-tree serves them. HypoPG cannot cost a GIN index, so that
    /// proposal is unproven (impact assumed), and says how to check it.
    ///
    /// # Known false positives
    ///
    /// Small tables, where a scan is cheaper than the index's upkeep; columns with few distinct
    /// values; write-heavy tables, where each index slows every write. The plan cost is the
    /// planner's estimate, not a measurement.
    ///
    /// # Typical fix
    ///
    /// `CREATE INDEX CONCURRENTLY` on the columns named (it does not block writes), then
    /// `ANALYZE` the table and check the plan again.
    pub(crate) struct MissingIndex {
        id: MissingIndex,
        summary: "a statement scans a table where an index would halve its cost or better",
        reads: [Reads::Database(STATEMENTS)],
        same_cause: [SlowQuery],
    }
}

/// The share of an unverified candidate's statement time assumed saved: Dexter's bar, half.
const UNVERIFIED_SAVING: f64 = 0.5;

impl Detector for MissingIndex {
    fn check_statement(&self, view: &StatementView<'_>) -> Option<Conclusion> {
        let statement = clip(&view.shape.normalized, 80);
        let btrees: Vec<&&IndexCheck> = view
            .index_checks
            .iter()
            .filter(|c| c.method == IndexMethod::Btree)
            .collect();
        let trigrams: Vec<&&IndexCheck> = view
            .index_checks
            .iter()
            .filter(|c| c.method == IndexMethod::GinTrigram)
            .collect();
        // Every proposal goes into the fix: the proven ones first.
        let proposals = || -> Vec<String> {
            let mut ordered: Vec<&&IndexCheck> = btrees.iter().chain(&trigrams).copied().collect();
            ordered.sort_by_key(|c| (c.method != IndexMethod::Btree, c.cost_after.is_none()));
            ordered
                .iter()
                .filter(|c| {
                    c.method != IndexMethod::Btree
                        || c.cost_after
                            .is_none_or(|a| a <= PROVEN_COST_SHARE * c.cost_before)
                })
                .map(|c| crate::db::index_fix(c))
                .collect()
        };
        let items = || {
            view.index_checks
                .iter()
                .map(|c| index_item(c))
                .collect::<Vec<_>>()
        };
        if let Some((best, share)) = crate::db::proven_index(&view.index_checks) {
            let after = best.cost_after.unwrap_or(best.cost_before);
            let page = best
                .limit_rows
                .map(|rows| format!(" with the page its calls return (LIMIT {rows})"))
                .unwrap_or_default();
            let alternatives: Vec<String> = best
                .candidates
                .iter()
                .filter(|c| c.columns != best.columns)
                .filter_map(|c| {
                    Some(format!(
                        "on ({}) it would cost {:.0}",
                        c.columns.join(", "),
                        c.cost_after?
                    ))
                })
                .collect();
            let against = if alternatives.is_empty() {
                String::new()
            } else {
                format!("; {}", alternatives.join(", "))
            };
            let mut conclusion = Conclusion::new(
                Resource::Database,
                Basis::Proven,
                Estimate::StatementShare(share),
                format!(
                    "`{statement}` scans {} sequentially; an index on ({}) cuts its plan cost from {:.0} to {after:.0} ({} less), proven with a hypothetical index{page}{against}",
                    best.relation,
                    best.columns.join(", "),
                    best.cost_before,
                    percent(share)
                ),
                format!(
                    "{} Then `ANALYZE {};` and check the plan.{}",
                    crate::db::create_index(best),
                    best.relation,
                    others(&proposals(), &crate::db::index_fix(best))
                ),
                Confidence::High,
            )
            .assume(vec![
                "the statement's time falls with its plan cost (HypoPG's cost ratio)".into(),
                "the generic plan is the one the application's calls get".into(),
            ])
            .metrics(vec![("cost_before", best.cost_before), ("cost_after", after)]);
            conclusion.items = items();
            return Some(conclusion);
        }
        if let Some(trigram) = trigrams.first() {
            let mut conclusion = Conclusion::new(
                Resource::Database,
                Basis::Assumed,
                Estimate::StatementShare(UNVERIFIED_SAVING),
                format!(
                    "`{statement}` scans {} sequentially to match {} against a pattern (`{}`), which no B-tree index serves: a trigram index does — unproven, HypoPG cannot cost a GIN index",
                    trigram.relation,
                    trigram.columns.join(", "),
                    trigram.pattern.as_deref().unwrap_or("pattern")
                ),
                format!("{}.", proposals().join("; ")),
                Confidence::Medium,
            )
            .assume(vec![
                "unproven: assumed to halve the statement's time, as a B-tree must to be proposed".into(),
            ])
            .metrics(vec![("cost_before", trigram.cost_before)]);
            conclusion.items = items();
            return Some(conclusion);
        }
        let best = btrees.iter().find(|c| c.cost_after.is_none())?;
        let create = crate::db::create_index(best);
        let mut conclusion = Conclusion::new(
            Resource::Database,
            Basis::Assumed,
            Estimate::StatementShare(UNVERIFIED_SAVING),
            format!(
                "`{statement}` scans {} sequentially; an index on ({}) is the candidate — unverified, HypoPG is not installed",
                best.relation,
                best.columns.join(", ")
            ),
            format!("Install HypoPG (`CREATE EXTENSION hypopg`) to prove it, or test `{create}` on a copy of the data."),
            Confidence::Low,
        )
        .assume(vec![
            "unverified: the plan's cost with the index was not computed; assumed to halve the statement's time".into(),
        ])
        .metrics(vec![("cost_before", best.cost_before)]);
        conclusion.items = items();
        Some(conclusion)
    }
}

/// The proposals besides the main one, as a sentence to append to a fix.
fn others(proposals: &[String], main: &str) -> String {
    let rest: Vec<&String> = proposals.iter().filter(|p| p.as_str() != main).collect();
    if rest.is_empty() {
        String::new()
    } else {
        let listed: Vec<&str> = rest.iter().map(|p| p.as_str()).collect();
        format!(" Also: {}.", listed.join("; "))
    }
}
