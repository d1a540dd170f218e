//! The detector contract and the registry: every detector, its id, summary, documentation and
//! the evidence it reads.
//!
//! One trait for every detector, whatever it reads. A detector declares, in its [`Meta`], the
//! kinds of evidence it reads and what it needs of each ([`Reads`]); the analysis calls its hook
//! for each kind only when that is there, and reports it skipped — with what was missing — when
//! none of them was.

use chokepoint_evidence::{DetectorId, EvidenceKind, Resource, Subject};

use crate::db::{DbNeed, DbView, StatementView};
use crate::finding::{Basis, Confidence, EvidenceItem, Sample};
use crate::load::{Curve, LoadNeed};
use crate::profile::ProfileView;
use crate::request::Request;
use crate::trace_analysis::Observer;
use crate::traces::GroupView;

/// What a detector says about itself.
#[derive(Debug)]
pub struct Meta {
    /// The stable id from DESIGN.md's taxonomy.
    pub id: DetectorId,
    /// One line for `chokepoint detectors`.
    pub summary: &'static str,
    /// The lines of its doc comment, as written (each with its leading space).
    pub doc: &'static [&'static str],
    /// The evidence it reads.
    pub(crate) reads: &'static [Reads],
    /// The other detectors whose findings name the same problem as its own when they share an
    /// anchor (a statement slow because an index is missing; the profiled line that runs an
    /// N+1's statement): the ranker folds them into one finding, the strongest proof kept.
    pub same_cause: &'static [DetectorId],
}

impl Meta {
    /// The doc comment as Markdown: what `chokepoint explain <id>` prints.
    pub fn doc_markdown(&self) -> String {
        let mut text = String::new();
        for line in self.doc {
            text.push_str(line.strip_prefix(' ').unwrap_or(line));
            text.push('\n');
        }
        text
    }

    /// The kinds of evidence it reads, each with what it needs of it.
    pub fn reads(&self) -> Vec<(EvidenceKind, &'static str)> {
        self.reads.iter().map(|r| (r.kind(), r.what())).collect()
    }
}

/// Whether `a` declares `b`'s findings the same cause as its own ([`Meta::same_cause`]).
pub(crate) fn declares(a: DetectorId, b: DetectorId) -> bool {
    detectors()
        .find(|meta| meta.id == a)
        .is_some_and(|meta| meta.same_cause.contains(&b))
}

/// Whether two detectors name the same problem: the same id, or one declares the other.
pub(crate) fn same_problem(a: DetectorId, b: DetectorId) -> bool {
    a == b || declares(a, b) || declares(b, a)
}

/// One kind of evidence a detector reads, and what it needs of it to judge.
#[derive(Debug)]
pub(crate) enum Reads {
    /// Traces: the detector judges when its `observe` found spans it could judge (it calls
    /// `Observer::evaluated`); the text names those spans.
    Traces(&'static str),
    /// A load ramp, and what the detector needs of it.
    Load(LoadNeed),
    /// A PostgreSQL snapshot, and what the detector needs of it.
    Database(DbNeed),
    /// A profile; the text names what the detector looks for in it.
    Profile(&'static str),
    /// The service's source, scanned; the text names the shape it looks for.
    Source(&'static str),
}

impl Reads {
    pub(crate) fn kind(&self) -> EvidenceKind {
        match self {
            Reads::Traces(_) => EvidenceKind::Traces,
            Reads::Load(_) => EvidenceKind::Load,
            Reads::Database(_) => EvidenceKind::Database,
            Reads::Profile(_) => EvidenceKind::Profile,
            Reads::Source(_) => EvidenceKind::Source,
        }
    }

    fn what(&self) -> &'static str {
        match self {
            Reads::Traces(what) => what,
            Reads::Load(need) => need.what,
            Reads::Database(need) => need.what,
            Reads::Profile(what) | Reads::Source(what) => what,
        }
    }
}

/// What a detector concluded: the words, the resource it is about and how its impact is to be
/// estimated; the analysis turns it into a [`crate::Finding`] (scope, subject, impact numbers).
pub(crate) struct Conclusion {
    pub(crate) title: String,
    pub(crate) fix: String,
    pub(crate) confidence: Confidence,
    pub(crate) resource: Resource,
    pub(crate) basis: Basis,
    pub(crate) estimate: Estimate,
    pub(crate) assumptions: Vec<String>,
    /// Numbers beyond those the analysis adds, units in their names: for the reader, never read
    /// by a prediction.
    pub(crate) metrics: Vec<(&'static str, f64)>,
    /// What a prediction reads of a limit, beside what the ramp's curve gives every limit.
    pub(crate) inputs: crate::finding::LimitInputs,
    pub(crate) items: Vec<EvidenceItem>,
    /// What it is about, when the hook's input does not say (database-wide and load hooks).
    pub(crate) subject: Option<Subject>,
    /// The subject in words, when it should not be derived from the subject.
    pub(crate) location: Option<String>,
}

/// How a conclusion's impact is estimated; [`crate::impact`] does the arithmetic.
pub(crate) enum Estimate {
    /// Traces: the saving observed request by request (the group's sums).
    Observed,
    /// A statement: this share (0–1) of its time in the window is what the fix removes.
    StatementShare(f64),
    /// The database as a whole: time recovered over the window.
    Recovered {
        /// Time recovered over the window, in ms.
        saved_ms_total: f64,
        /// The share of the database's session time it is (0–1).
        share: f64,
        /// What it was counted from.
        sample: Sample,
        /// Occurrences behind it.
        occurrences: u64,
    },
    /// A load ramp: a limit on throughput, with the service demand per request at the resource
    /// when known (ms).
    Limit { demand_ms_per_request: Option<f64> },
    /// A load ramp: time each request of the knee step spends that the fix removes, in ms.
    PerRequest { saved_ms: f64 },
    /// The source: not measured.
    Potential,
    /// A profile: busy time the fix removes.
    Profile {
        /// Seconds removed over the profile.
        saved_s: f64,
        /// Their share of the busy time (0–1).
        share: f64,
        /// Busy samples (or µs) of the problem.
        affected: u64,
        /// Busy samples (or µs) in all.
        busy: u64,
    },
}

impl Conclusion {
    /// A conclusion with no assumptions, metrics or items yet.
    pub(crate) fn new(
        resource: Resource,
        basis: Basis,
        estimate: Estimate,
        title: String,
        fix: String,
        confidence: Confidence,
    ) -> Conclusion {
        Conclusion {
            title,
            fix,
            confidence,
            resource,
            basis,
            estimate,
            assumptions: Vec::new(),
            metrics: Vec::new(),
            inputs: Default::default(),
            items: Vec::new(),
            subject: None,
            location: None,
        }
    }

    /// With these assumptions.
    pub(crate) fn assume(mut self, assumptions: Vec<String>) -> Conclusion {
        self.assumptions = assumptions;
        self
    }

    /// With these numbers.
    pub(crate) fn metrics(mut self, metrics: Vec<(&'static str, f64)>) -> Conclusion {
        self.metrics = metrics;
        self
    }

    /// With what a prediction reads of the limit.
    pub(crate) fn inputs(mut self, inputs: crate::finding::LimitInputs) -> Conclusion {
        self.inputs = inputs;
        self
    }

    /// With one more assumption.
    pub(crate) fn assume_more(mut self, assumption: &str) -> Conclusion {
        self.assumptions.push(assumption.to_owned());
        self
    }

    /// About this subject, named this way.
    pub(crate) fn about(mut self, subject: Subject, location: String) -> Conclusion {
        self.subject = Some(subject);
        self.location = Some(location);
        self
    }
}

/// What every detector says about itself; implemented by [`detector!`].
pub(crate) trait Described {
    /// Its id, summary, documentation and the evidence it reads.
    fn meta(&self) -> &'static Meta;
}

/// A detector. Its hooks default to reading nothing; it implements the ones for the evidence
/// its [`Meta::reads`] declares.
pub(crate) trait Detector: Described + Sync {
    /// Traces, one request at a time (streaming): records what it sees.
    fn observe(&self, _request: &Request<'_>, _out: &mut Observer<'_>) {}

    /// Traces, once per (endpoint, subject) aggregate of its observations.
    fn conclude(&self, _group: &GroupView<'_>) -> Option<Conclusion> {
        None
    }

    /// A load ramp, read as a curve.
    fn check_load(&self, _curve: &Curve<'_>) -> Option<Conclusion> {
        None
    }

    /// A database snapshot, one normalized statement at a time.
    fn check_statement(&self, _statement: &StatementView<'_>) -> Option<Conclusion> {
        None
    }

    /// A database snapshot as a whole (sessions, locks).
    fn check_database(&self, _database: &DbView<'_>) -> Option<Conclusion> {
        None
    }

    /// A profile.
    fn check_profile(&self, _profile: &ProfileView<'_>) -> Option<Conclusion> {
        None
    }

    /// A shape the source scan found: the scan names the detector, so every detector that reads
    /// source takes its own shapes alike (`crate::source`).
    fn check_source(&self, shape: &chokepoint_evidence::Shape) -> Option<Conclusion> {
        (shape.detector == self.meta().id).then(|| crate::source::conclusion(shape))
    }
}

/// Declares a detector: its doc comment (which `chokepoint explain` prints), its unit struct and
/// its [`Meta`].
macro_rules! detector {
    (
        $(#[doc = $doc:literal])*
        pub(crate) struct $name:ident {
            id: $id:ident,
            summary: $summary:literal,
            reads: [$($reads:expr),* $(,)?],
            same_cause: [$($same:ident),* $(,)?] $(,)?
        }
    ) => {
        $(#[doc = $doc])*
        pub(crate) struct $name;

        impl $name {
            pub(crate) const META: $crate::registry::Meta = $crate::registry::Meta {
                id: chokepoint_evidence::DetectorId::$id,
                summary: $summary,
                doc: &[$($doc),*],
                reads: &[$($reads),*],
                same_cause: &[$(chokepoint_evidence::DetectorId::$same),*],
            };
        }

        impl $crate::registry::Described for $name {
            fn meta(&self) -> &'static $crate::registry::Meta {
                &Self::META
            }
        }
    };
}
pub(crate) use detector;

/// Every detector, in the order `chokepoint detectors` lists them.
pub(crate) static DETECTORS: &[&dyn Detector] = &[
    &crate::detectors::n_plus_one::NPlusOne,
    &crate::detectors::sequential_calls::SequentialCalls,
    &crate::detectors::slow_query::SlowQuery,
    &crate::detectors::unbounded_result::UnboundedResult,
    &crate::detectors::large_payload::LargePayload,
    &crate::detectors::connection_churn::ConnectionChurn,
    &crate::detectors::network_latency::NetworkLatency,
    &crate::detectors::cpu_saturation::CpuSaturation,
    &crate::detectors::worker_exhaustion::WorkerExhaustion,
    &crate::detectors::blocking_call::BlockingCall,
    &crate::detectors::bandwidth_limit::BandwidthLimit,
    &crate::detectors::lock_contention::LockContention,
    &crate::detectors::missing_index::MissingIndex,
    &crate::detectors::slow_serialization::SlowSerialization,
    &crate::detectors::sync_logging::SyncLogging,
    &crate::detectors::regex_per_request::RegexPerRequest,
    &crate::detectors::in_memory_sort::InMemorySort,
];

/// The detectors that read traces, and their positions in [`DETECTORS`].
pub(crate) fn trace_detectors() -> impl Iterator<Item = (usize, &'static dyn Detector)> {
    DETECTORS
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, d)| d.meta().reads.iter().any(|r| matches!(r, Reads::Traces(_))))
}

/// Every detector's metadata.
pub fn detectors() -> impl Iterator<Item = &'static Meta> {
    DETECTORS.iter().map(|d| d.meta())
}

/// The metadata of the detector with this id.
pub fn find_detector(id: &str) -> Option<&'static Meta> {
    detectors().find(|meta| meta.id.as_str() == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The headings every detector's documentation must have, in this order.
    const HEADINGS: &[&str] = &[
        "# What it detects",
        "# Why it limits throughput",
        "# Evidence used",
        "# Known false positives",
        "# Typical fix",
    ];

    #[test]
    fn every_detector_is_documented_with_the_fixed_headings() {
        for meta in detectors() {
            let doc = meta.doc_markdown();
            let mut from = 0;
            for heading in HEADINGS {
                let at = doc[from..]
                    .find(heading)
                    .unwrap_or_else(|| panic!("{}: doc lacks {heading:?} (or it is out of order)", meta.id));
                from += at + heading.len();
            }
            assert!(
                !meta.summary.is_empty() && !meta.summary.ends_with('.'),
                "{}: summary",
                meta.id
            );
        }
    }

    #[test]
    fn same_cause_declarations_name_other_detectors_once() {
        for meta in detectors() {
            for (i, other) in meta.same_cause.iter().enumerate() {
                assert_ne!(*other, meta.id, "{}: declares itself", meta.id);
                assert!(
                    !meta.same_cause[i + 1..].contains(other),
                    "{}: declares {other} twice",
                    meta.id
                );
                assert!(
                    detectors().any(|m| m.id == *other),
                    "{}: declares {other}, which is not registered",
                    meta.id
                );
            }
        }
        assert!(same_problem(DetectorId::SlowQuery, DetectorId::MissingIndex));
        assert!(same_problem(DetectorId::MissingIndex, DetectorId::SlowQuery));
        assert!(!same_problem(DetectorId::NPlusOne, DetectorId::LargePayload));
    }

    #[test]
    fn ids_are_registered_once_and_read_some_evidence() {
        let ids: Vec<_> = detectors().map(|m| m.id).collect();
        for (i, id) in ids.iter().enumerate() {
            assert!(!ids[i + 1..].contains(id), "{id} is registered twice");
        }
        for meta in detectors() {
            assert!(!meta.reads.is_empty(), "{}: reads no evidence", meta.id);
            let kinds: Vec<_> = meta.reads.iter().map(Reads::kind).collect();
            for (i, kind) in kinds.iter().enumerate() {
                assert!(
                    !kinds[i + 1..].contains(kind),
                    "{}: reads {kind:?} twice",
                    meta.id
                );
            }
        }
    }
}
