//! `regex-per-request`: patterns compiled on every request.

use chokepoint_evidence::Resource;

use crate::detectors::percent;
use crate::finding::Basis;
use crate::profile::{Category, ProfileView};
use crate::registry::{Conclusion, Detector, Reads, detector};

detector! {
    /// # What it detects
    ///
    /// A profile in which compiling regular expressions — `re._compiler`, `re._parser`
    /// (`sre_compile`, `sre_parse` before Python 3.11), `re._compile` past its cache — takes at
    /// least 10 % of the busy time, on at least 20 samples, called from application code (the
    /// caller is named). Matching is not counted: a compiled pattern costs a dictionary lookup.
    ///
    /// # Why it limits throughput
    ///
    /// `re` caches 512 compiled patterns; patterns built per request (an f-string with an id, a
    /// user's input) miss the cache and are parsed and compiled each time, often costing more
    /// than the match itself, on the CPU and under the GIL.
    ///
    /// # Evidence used
    ///
    /// A profile (`chokepoint profile`). Compilation runs in Python code (`re/_parser.py`,
    /// `re/_compiler.py`), so a sampler sees it directly.
    ///
    /// In the source (`chokepoint scan`, `--source DIR`): `re.compile`/`re.match`/… of a pattern
    /// built when the request runs (an f-string, `+`, `%`, `.format`); a literal pattern hits `re`'s
    /// cache and is not flagged.
    /// A shape read there is potential — not measured — until a runtime finding meets it on its
    /// line, statement or route.
    ///
    /// # Known false positives
    ///
    /// Start-up: patterns compiled once while modules load. Profile under steady traffic.
    ///
    /// # Typical fix
    ///
    /// Compile once at module level (`PATTERN = re.compile(r"…")`) and pass the variable part as
    /// a group to match, not into the pattern; for truly dynamic patterns, cache them with
    /// `functools.lru_cache`.
    pub(crate) struct RegexPerRequest {
        id: RegexPerRequest,
        summary: "patterns compiled on every request",
        reads: [Reads::Profile("regex compilation frames"), Reads::Source("a pattern built and compiled per call")],
        same_cause: [],
    }
}

/// Share of the busy time that is flagged.
const MIN_SHARE: f64 = 0.1;

impl Detector for RegexPerRequest {
    fn check_profile(&self, profile: &ProfileView<'_>) -> Option<Conclusion> {
        let hot = profile.hot(Category::RegexCompile, MIN_SHARE)?;
        let caller = hot.caller?;
        let title = format!(
            "Compiling regular expressions takes {} of the busy time ({:.2} s), from {caller}",
            percent(hot.share),
            hot.seconds,
        );
        let fix = format!(
            "Compile the pattern once, at module level — `PATTERN = re.compile(r\"…\")` — and use `PATTERN.match(…)` at {}; \
             put what varies per request in a capture group rather than in the pattern (re's cache holds 512 patterns).",
            hot.place_text()
        );
        Some(
            hot.conclude(Resource::Cpu, Basis::Measured, 1.0, title, fix)
                .assume_more("a pattern compiled once costs a dictionary lookup per use: all compilation time leaves the request"),
        )
    }
}
