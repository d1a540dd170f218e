//! The detector registry: every detector, its id, summary and documentation.

use crate::analysis::{Conclusion, GroupView, Observer};
use crate::request::Request;

/// What a detector says about itself.
#[derive(Debug)]
pub struct Meta {
    /// The stable id from DESIGN.md's taxonomy.
    pub id: &'static str,
    /// One line for `chokepoint detectors`.
    pub summary: &'static str,
    /// The evidence it needs, as the end of "skipped: no …".
    pub requires: &'static str,
    /// The lines of its doc comment, as written (each with its leading space).
    pub doc: &'static [&'static str],
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
}

/// What every detector says about itself; implemented by [`detector!`].
pub(crate) trait Described {
    /// Its id, summary and documentation.
    fn meta(&self) -> &'static Meta;
}

/// A detector over traces: it looks at one request at a time, and concludes once per group of
/// observations with the same endpoint and key.
pub(crate) trait Detector: Described + Sync {
    /// Records what it sees in one request.
    fn observe(&self, request: &Request<'_>, out: &mut Observer<'_>);
    /// Turns the aggregate of one (endpoint, key) into a conclusion, or drops it.
    fn conclude(&self, group: &GroupView<'_>) -> Option<Conclusion>;
}

/// A detector over a load ramp: it reads the throughput–latency curve and the target's
/// resources at the knee.
pub(crate) trait LoadDetector: Described + Sync {
    /// The conclusion, if the curve shows this limit.
    fn check(&self, curve: &crate::load::Curve<'_>) -> Option<crate::load::LoadConclusion>;

    /// Whether it needs the target process sampled (CPU, threads) to judge.
    fn needs_target(&self) -> bool {
        true
    }
}

/// A detector over a database snapshot: it judges one normalized statement's totals.
pub(crate) trait DbDetector: Described + Sync {
    /// The conclusion, if the statement shows this problem.
    fn check(&self, _statement: &crate::db::StatementView<'_>) -> Option<crate::db::DbConclusion> {
        None
    }

    /// A conclusion about the database as a whole (sessions, locks), if it shows this problem.
    fn check_database(
        &self,
        _snapshot: &chokepoint_evidence::PgSnapshot,
    ) -> Option<crate::db::DatabaseConclusion> {
        None
    }
}

/// Declares a detector: its doc comment (which `chokepoint explain` prints), its unit struct, its
/// [`Meta`] and its [`Described`] implementation.
macro_rules! detector {
    (
        $(#[doc = $doc:literal])*
        pub(crate) struct $name:ident {
            id: $id:literal,
            summary: $summary:literal,
            requires: $requires:literal $(,)?
        }
    ) => {
        $(#[doc = $doc])*
        pub(crate) struct $name;

        impl $name {
            pub(crate) const META: $crate::registry::Meta = $crate::registry::Meta {
                id: $id,
                summary: $summary,
                requires: $requires,
                doc: &[$($doc),*],
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

/// Every trace detector, in the order `chokepoint detectors` lists them.
pub(crate) static TRACE_DETECTORS: &[&dyn Detector] = &[
    &crate::detectors::n_plus_one::NPlusOne,
    &crate::detectors::sequential_calls::SequentialCalls,
    &crate::detectors::slow_query::SlowQuery,
    &crate::detectors::unbounded_result::UnboundedResult,
    &crate::detectors::large_payload::LargePayload,
    &crate::detectors::connection_churn::ConnectionChurn,
    &crate::detectors::network_latency::NetworkLatency,
];

/// Every load detector.
pub(crate) static LOAD_DETECTORS: &[&dyn LoadDetector] = &[
    &crate::detectors::cpu_saturation::CpuSaturation,
    &crate::detectors::worker_exhaustion::WorkerExhaustion,
    &crate::detectors::blocking_call::BlockingCall,
    &crate::detectors::bandwidth_limit::BandwidthLimit,
    &crate::detectors::connection_churn::ConnectionChurn,
];

/// Every database detector.
pub(crate) static DB_DETECTORS: &[&dyn DbDetector] = &[
    &crate::detectors::lock_contention::LockContention,
    &crate::detectors::connection_churn::ConnectionChurn,
    &crate::detectors::missing_index::MissingIndex,
    &crate::detectors::n_plus_one::NPlusOne,
    &crate::detectors::slow_query::SlowQuery,
    &crate::detectors::unbounded_result::UnboundedResult,
];

/// Every detector's metadata, once each (a detector may read more than one kind of evidence).
pub fn detectors() -> impl Iterator<Item = &'static Meta> {
    let mut seen: Vec<&'static str> = Vec::new();
    TRACE_DETECTORS
        .iter()
        .map(|d| d.meta())
        .chain(LOAD_DETECTORS.iter().map(|d| d.meta()))
        .chain(DB_DETECTORS.iter().map(|d| d.meta()))
        .filter(move |meta| {
            let new = !seen.contains(&meta.id);
            seen.push(meta.id);
            new
        })
}

/// The metadata of the detector with this id.
pub fn find_detector(id: &str) -> Option<&'static Meta> {
    detectors().find(|meta| meta.id == id)
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

    /// The ids DESIGN.md defines; a detector must use one of them.
    const TAXONOMY: &[&str] = &[
        "cpu-saturation",
        "worker-exhaustion",
        "blocking-call",
        "slow-serialization",
        "sync-logging",
        "slow-query",
        "missing-index",
        "lock-contention",
        "n-plus-one",
        "connection-churn",
        "bandwidth-limit",
        "large-payload",
        "network-latency",
        "sequential-calls",
        "unbounded-result",
        "in-memory-sort",
        "regex-per-request",
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
    fn ids_are_unique_and_from_the_taxonomy() {
        let ids: Vec<_> = detectors().map(|m| m.id).collect();
        for (i, id) in ids.iter().enumerate() {
            assert!(TAXONOMY.contains(id), "{id} is not a DESIGN.md taxonomy id");
            assert!(!ids[i + 1..].contains(id), "{id} is registered twice");
        }
    }
}
