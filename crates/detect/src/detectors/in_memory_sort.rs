//! `in-memory-sort`: large sets sorted in Python when the database could sort them.

use chokepoint_evidence::Resource;

use crate::detectors::percent;
use crate::finding::Basis;
use crate::profile::{Category, Hot, ProfileView};
use crate::registry::{Conclusion, Detector, Reads, detector};

detector! {
    /// # What it detects
    ///
    /// A profile in which sorting — `sorted`, `list.sort`, `heapq`, and their key functions —
    /// together with the database fetch that feeds it (the driver's and the ORM's frames under
    /// the same function as the sort: fetching every row to sort them in Python) takes at least
    /// 15 % of the busy time, on at least 20 samples, 5 of them sorting; the caller is named. Python
    /// profilers that see C functions (cProfile) show `sorted` by name; a sampler shows the line
    /// that calls it (and a key's `<lambda>`), and the category is read from that line.
    ///
    /// # Why it limits throughput
    ///
    /// Sorting n rows costs n log n comparisons, each a Python call when there is a key function
    /// — on the CPU, under the GIL — and usually follows fetching every row, when the page
    /// shown needs twenty. The database can return them in order from an index, and only those.
    ///
    /// # Evidence used
    ///
    /// A profile (`chokepoint profile`), with the source at hand to read the calling line
    /// (`--source DIR`, or the paths in the profile). Without the source, a `<lambda>` called on
    /// its caller's own line is told for a sort (or min/max) key — the builtin that calls it is
    /// invisible to a sampler — and the finding says it was inferred.
    ///
    /// In the source (`chokepoint scan`, `--source DIR`): `sorted(rows)` or `rows.sort()` over a
    /// query's rows that no `limit` bounds, the fix written from the `key=` and the slice.
    /// A shape read there is potential — not measured — until a runtime finding meets it on its
    /// line, statement or route.
    ///
    /// # Known false positives
    ///
    /// Sorting data that is not in a database (computed results) — then the fix is
    /// `heapq.nlargest` for a top N, or sorting once and caching.
    ///
    /// # Typical fix
    ///
    /// `ORDER BY <key> DESC LIMIT <n>` in the query (SQLAlchemy:
    /// `.order_by(Model.key.desc()).limit(n)`), with an index on the key column so the database
    /// reads only the top rows; `heapq.nlargest(n, …)` when the data is not in the database.
    pub(crate) struct InMemorySort {
        id: InMemorySort,
        summary: "large sets sorted in Python instead of by the database",
        reads: [Reads::Profile("sorting frames"), Reads::Source("a query's rows sorted in Python")],
        same_cause: [],
    }
}

/// Share of the busy time that is flagged.
const MIN_SHARE: f64 = 0.15;

/// The sort key's column when the line says: `key=lambda e: e.score`, `lambda r: r["score"]`,
/// `attrgetter("score")`, `itemgetter("score")`.
fn sort_key(source: &str) -> Option<&str> {
    fn identifier(text: &str) -> Option<&str> {
        let end = text
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(text.len());
        (end > 0).then(|| &text[..end])
    }
    for getter in ["attrgetter(", "itemgetter("] {
        if let Some(at) = source.find(getter) {
            return identifier(source[at + getter.len()..].trim_start_matches(['"', '\'']));
        }
    }
    let after = &source[source.find("lambda")? + "lambda".len()..];
    let body = after.split_once(':')?.1.trim_start();
    let (_, rest) = body.split_once(['.', '['])?;
    identifier(rest.trim_start_matches(['"', '\'']))
}

/// The page size in `…)[:20]`, when the line says.
fn top_n(source: &str) -> Option<&str> {
    let after = &source[source.rfind("[:")? + 2..];
    let end = after.find(']')?;
    let n = after[..end].trim();
    (!n.is_empty() && n.chars().all(|c| c.is_ascii_digit())).then_some(n)
}

/// Samples of the sort itself below which it is not a sort worth naming.
const MIN_SORT_SAMPLES: u64 = 5;

/// The function that sorts the most, counting the rows it fetched from the database to sort.
fn sort_with_its_fetch<'a>(profile: &'a ProfileView<'a>) -> Option<Hot<'a>> {
    let same_function = |a: Option<u32>, b: Option<u32>| match (a, b) {
        (Some(a), Some(b)) => {
            let (a, b) = (profile.frame(a), profile.frame(b));
            a.file == b.file && a.function == b.function
        }
        _ => false,
    };
    let sorts = profile.callers_of(Category::Sorting);
    let (caller, sort, fetch) = sorts
        .iter()
        .map(|&(caller, tally)| {
            let fetch: u64 = profile
                .callers
                .iter()
                .filter(|((category, other), _)| {
                    matches!(category, Category::Database | Category::LazyLoad)
                        && same_function(caller, *other)
                })
                .map(|(_, t)| t.count)
                .sum();
            (caller, tally, fetch)
        })
        .max_by(|a, b| (a.1.count + a.2).cmp(&(b.1.count + b.2)))?;
    let count = sort.count + fetch;
    let share = count as f64 / profile.busy.max(1) as f64;
    let sort_samples = if profile.profile.sampled {
        sort.count
    } else {
        (sort.count as f64 * profile.seconds_per_count() * 1e3) as u64
    };
    if share < MIN_SHARE || sort_samples < MIN_SORT_SAMPLES || !profile.enough(count) {
        return None;
    }
    let (frame, _) = *profile.frames_of(Category::Sorting).first()?;
    Some(Hot {
        view: profile,
        category: Category::Sorting,
        count,
        share,
        seconds: count as f64 * profile.seconds_per_count(),
        caller: caller.map(|c| profile.frame(c)),
        frame: profile.frame(frame),
        inferred: sort.inferred * 2 > sort.count,
        fetch_share: fetch as f64 / profile.busy.max(1) as f64,
    })
}

impl Detector for InMemorySort {
    fn check_profile(&self, profile: &ProfileView<'_>) -> Option<Conclusion> {
        let hot = sort_with_its_fetch(profile)?;
        let source = [hot.frame, hot.place()]
            .iter()
            .find_map(|f| f.source.as_deref().filter(|s| s.contains("sort")))
            .unwrap_or("");
        let key = sort_key(source).unwrap_or("<key>");
        let limit = top_n(source).unwrap_or("<n>");
        let descending = source.contains("reverse=True");
        let title = if hot.fetch_share > 0.0 {
            format!(
                "Fetching every row to sort it in Python takes {} of the busy time ({:.2} s; the fetch {}), at {}",
                percent(hot.share),
                hot.seconds,
                percent(hot.fetch_share),
                hot.place()
            )
        } else {
            format!(
                "Sorting in Python takes {} of the busy time ({:.2} s), at {}",
                percent(hot.share),
                hot.seconds,
                hot.place()
            )
        };
        let order_by = format!(
            "`ORDER BY {key}{} LIMIT {limit}` (SQLAlchemy: `.order_by(Model.{key}{}).limit({limit})`) with an index on `{key}`",
            if descending { " DESC" } else { "" },
            if descending { ".desc()" } else { "" },
        );
        let nlargest = format!(
            "`heapq.{}({limit}, rows, key=…)`",
            if descending { "nlargest" } else { "nsmallest" }
        );
        // Rows fetched to be sorted: the database should sort them. Rows computed here: keep the
        // top without sorting them all.
        let (fix, assumption) = if hot.fetch_share > 0.0 {
            (
                format!(
                    "Let the database sort and cut: {order_by}, instead of {}; for data not in the database, {nlargest}.",
                    hot.place_text()
                ),
                "the database returns the rows in index order: the sort leaves the request (and so does fetching the rows not shown)",
            )
        } else {
            (
                format!(
                    "Keep the top without sorting everything: {nlargest} at {}; if the rows come from a database, {order_by}.",
                    hot.place_text()
                ),
                "a top-n selection or the database's index order removes the sort",
            )
        };
        Some(
            hot.conclude(Resource::Cpu, Basis::Measured, 1.0, title, fix)
                .assume_more(assumption),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_and_the_page_are_read_from_the_line() {
        let line = "top = sorted(events, key=lambda e: e.score, reverse=True)[:20]";
        assert_eq!(sort_key(line), Some("score"));
        assert_eq!(top_n(line), Some("20"));
        assert_eq!(sort_key("rows.sort()"), None);
        assert_eq!(
            sort_key(r#"top = sorted(rows, key=lambda r: r["score"], reverse=True)[:10]"#),
            Some("score")
        );
        assert_eq!(
            sort_key("rows.sort(key=attrgetter('created_at'))"),
            Some("created_at")
        );
    }
}
