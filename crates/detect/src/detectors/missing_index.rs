//! `missing-index`: a statement scans a table sequentially where an index would cut its cost.

use crate::db::{DbConclusion, PROVEN_COST_SHARE, StatementView};
use crate::detectors::{clip, percent};
use crate::finding::Confidence;
use crate::registry::{DbDetector, detector};

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
    /// no existing index leads with the same column.
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
        id: "missing-index",
        summary: "a statement scans a table where an index would halve its cost or better",
        requires: "pg_stat_statements and plans (chokepoint db)",
    }
}

/// The cost must fall to at most this share of the original for a proposal (Dexter's bar).
impl DbDetector for MissingIndex {
    fn check(&self, view: &StatementView<'_>) -> Option<DbConclusion> {
        let best = view.index_checks.iter().min_by(|a, b| {
            let ratio = |c: &&&chokepoint_evidence::IndexCheck| {
                c.cost_after.unwrap_or(c.cost_before) / c.cost_before.max(1e-9)
            };
            ratio(a).total_cmp(&ratio(b))
        })?;
        let create = crate::db::create_index(best);
        let statement = clip(&view.shape.normalized, 80);
        match best.cost_after {
            Some(after) if after <= PROVEN_COST_SHARE * best.cost_before => {
                let share = 1.0 - after / best.cost_before.max(1e-9);
                Some(DbConclusion {
                    title: format!(
                        "`{statement}` scans {} sequentially; an index on ({}) cuts its plan cost from {:.0} to {:.0} ({} less), proven with a hypothetical index",
                        best.relation,
                        best.columns.join(", "),
                        best.cost_before,
                        after,
                        percent(share)
                    ),
                    fix: format!("{create} Then `ANALYZE {};` and check the plan.", best.relation),
                    confidence: Confidence::High,
                    assumptions: vec![
                        "the statement's time falls with its plan cost (HypoPG's cost ratio)".into(),
                        "the generic plan is the one the application's calls get".into(),
                    ],
                    saved_share: share,
                    metrics: vec![("cost_before", best.cost_before), ("cost_after", after)],
                })
            }
            Some(_) => None,
            None => Some(DbConclusion {
                title: format!(
                    "`{statement}` scans {} sequentially; an index on ({}) is the candidate — unverified, HypoPG is not installed",
                    best.relation,
                    best.columns.join(", ")
                ),
                fix: format!(
                    "Install HypoPG (`CREATE EXTENSION hypopg`) to prove it, or test `{create}` on a copy of the data."
                ),
                confidence: Confidence::Low,
                assumptions: vec!["unverified: the plan's cost with the index was not computed".into()],
                saved_share: 0.5,
                metrics: vec![("cost_before", best.cost_before)],
            }),
        }
    }
}
