//! `missing-index`: a statement scans a table sequentially where an index would cut its cost.

use chokepoint_evidence::{IndexCheck, Resource};

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
        id: MissingIndex,
        summary: "a statement scans a table where an index would halve its cost or better",
        reads: [Reads::Database(STATEMENTS)],
    }
}

/// The share of an unverified candidate's statement time assumed saved: Dexter's bar, half.
const UNVERIFIED_SAVING: f64 = 0.5;

impl Detector for MissingIndex {
    fn check_statement(&self, view: &StatementView<'_>) -> Option<Conclusion> {
        let best = view.index_checks.iter().min_by(|a, b| {
            let ratio = |c: &&&IndexCheck| c.cost_after.unwrap_or(c.cost_before) / c.cost_before.max(1e-9);
            ratio(a).total_cmp(&ratio(b))
        })?;
        let create = crate::db::create_index(best);
        let statement = clip(&view.shape.normalized, 80);
        match best.cost_after {
            Some(after) if after <= PROVEN_COST_SHARE * best.cost_before => {
                let share = 1.0 - after / best.cost_before.max(1e-9);
                let mut conclusion = Conclusion::new(
                    Resource::Database,
                    Basis::Proven,
                    Estimate::StatementShare(share),
                    format!(
                        "`{statement}` scans {} sequentially; an index on ({}) cuts its plan cost from {:.0} to {:.0} ({} less), proven with a hypothetical index",
                        best.relation,
                        best.columns.join(", "),
                        best.cost_before,
                        after,
                        percent(share)
                    ),
                    format!("{create} Then `ANALYZE {};` and check the plan.", best.relation),
                    Confidence::High,
                )
                .assume(vec![
                    "the statement's time falls with its plan cost (HypoPG's cost ratio)".into(),
                    "the generic plan is the one the application's calls get".into(),
                ])
                .metrics(vec![("cost_before", best.cost_before), ("cost_after", after)]);
                conclusion.items = vec![index_item(best)];
                Some(conclusion)
            }
            Some(_) => None,
            None => {
                let mut conclusion = Conclusion::new(
                    Resource::Database,
                    Basis::Assumed,
                    Estimate::StatementShare(UNVERIFIED_SAVING),
                    format!(
                        "`{statement}` scans {} sequentially; an index on ({}) is the candidate — unverified, HypoPG is not installed",
                        best.relation,
                        best.columns.join(", ")
                    ),
                    format!(
                        "Install HypoPG (`CREATE EXTENSION hypopg`) to prove it, or test `{create}` on a copy of the data."
                    ),
                    Confidence::Low,
                )
                .assume(vec![
                    "unverified: the plan's cost with the index was not computed; assumed to halve the statement's time".into(),
                ])
                .metrics(vec![("cost_before", best.cost_before)]);
                conclusion.items = vec![index_item(best)];
                Some(conclusion)
            }
        }
    }
}
