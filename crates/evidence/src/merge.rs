//! Evidence gathered apart, merged into one bundle: the shards of one stream of traces that a
//! load-balancing OpenTelemetry Collector split by trace id, receivers on several hosts, files
//! read one by one.
//!
//! The traces' aggregates merge exactly: sums, counts and maxima add up, histograms add, the
//! example trace ids are the smallest ones, and what a group "first observed" comes from its
//! smallest example. So the merge is commutative and associative, and shards split by trace id,
//! analysed apart and merged in any order, give what analysing the whole stream gives — while
//! the input stays under the caps ([`MAX_ENDPOINTS`], [`MAX_SUBJECTS`],
//! [`MAX_STATEMENTS_PER_ENDPOINT`], [`MAX_INSTRUMENTATION_SCOPES`]). Past a cap, a shard has
//! already dropped its lightest entries, which the whole stream might have kept: a merge then
//! keeps the heaviest of what the shards kept, and counts what it drops
//! (`summary.folded_endpoints`, `summary.dropped_subjects`).
//!
//! The other kinds are one per run: a ramp, a database snapshot, a profile or a scan is taken
//! once, not sharded; a merge keeps the one there is and refuses two that differ.

use std::collections::BTreeMap;
use std::fmt;

use crate::traces::{
    EndpointAggregate, MAX_ENDPOINTS, MAX_INSTRUMENTATION_SCOPES, MAX_STATEMENTS_PER_ENDPOINT, MAX_SUBJECTS,
    OTHER_ENDPOINTS, ObservedGroup, StatementUse, TraceAggregates,
};
use crate::{DetectorId, Evidence, EvidenceKind, LatencyHistogram, Subject};

/// Two bundles that cannot be merged: both carry a kind that is taken once, and they differ.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MergeConflict {
    /// The kind both carry.
    pub kind: EvidenceKind,
}

impl fmt::Display for MergeConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "both carry {0}, and they differ: a merge joins shards of traces; {0} is taken once per run — \
             keep it in one of the runs",
            self.kind.noun()
        )
    }
}

impl std::error::Error for MergeConflict {}

impl Evidence {
    /// This bundle and `other` as one: the traces' aggregates merged, every other kind kept from
    /// the side that has it. Commutative and associative.
    ///
    /// ```
    /// use chokepoint_evidence::{Evidence, TraceAggregates};
    ///
    /// let shard = |traces| Evidence { traces: Some(TraceAggregates { summary: chokepoint_evidence::TracesSummary { traces, ..Default::default() }, ..Default::default() }), ..Default::default() };
    /// let merged = shard(2).merge(shard(3)).expect("traces merge");
    /// assert_eq!(merged.traces.expect("traces").summary.traces, 5);
    /// ```
    pub fn merge(self, other: Evidence) -> Result<Evidence, MergeConflict> {
        Ok(Evidence {
            traces: match (self.traces, other.traces) {
                (Some(mut ours), Some(theirs)) => {
                    ours.merge(theirs);
                    Some(ours)
                }
                (ours, theirs) => ours.or(theirs),
            },
            load: once(self.load, other.load, EvidenceKind::Load)?,
            database: once(self.database, other.database, EvidenceKind::Database)?,
            profile: once(self.profile, other.profile, EvidenceKind::Profile)?,
            source: once(self.source, other.source, EvidenceKind::Source)?,
        })
    }
}

/// A kind taken once per run: the side that has it, or both when they are the same.
fn once<T: PartialEq>(
    ours: Option<T>,
    theirs: Option<T>,
    kind: EvidenceKind,
) -> Result<Option<T>, MergeConflict> {
    match (ours, theirs) {
        (Some(a), Some(b)) if a != b => Err(MergeConflict { kind }),
        (a, b) => Ok(a.or(b)),
    }
}

impl TraceAggregates {
    /// Adds another shard's aggregates. Under the caps the result does not depend on the order
    /// shards are merged in, nor on how the traces were split among them (by trace id).
    pub fn merge(&mut self, other: TraceAggregates) {
        let summary = &mut self.summary;
        summary.traces += other.summary.traces;
        summary.spans += other.summary.spans;
        summary.requests += other.summary.requests;
        summary.orphan_spans += other.summary.orphan_spans;
        summary.folded_endpoints += other.summary.folded_endpoints;
        summary.dropped_subjects += other.summary.dropped_subjects;
        summary.window = match (summary.window, other.summary.window) {
            (Some(a), Some(b)) => Some(a.union(b)),
            (a, b) => a.or(b),
        };
        summary.example_orphan_trace =
            match (summary.example_orphan_trace, other.summary.example_orphan_trace) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        for (detector, spans) in other.evaluated {
            *self.evaluated.entry(detector).or_default() += spans;
        }
        let mut by_endpoint: BTreeMap<(String, String), EndpointAggregate> =
            std::mem::take(&mut self.endpoints)
                .into_iter()
                .map(|e| ((e.service.clone(), e.endpoint.clone()), e))
                .collect();
        for theirs in other.endpoints {
            match by_endpoint.entry((theirs.service.clone(), theirs.endpoint.clone())) {
                std::collections::btree_map::Entry::Occupied(mut ours) => {
                    self.summary.dropped_subjects += ours.get_mut().merge(theirs);
                }
                std::collections::btree_map::Entry::Vacant(slot) => {
                    slot.insert(theirs);
                }
            }
        }
        self.summary.folded_endpoints +=
            fold_past_the_cap(&mut by_endpoint, &mut self.summary.dropped_subjects);
        self.endpoints = by_endpoint.into_values().collect();
        self.summary.endpoints = self.endpoints.len() as u64;
    }
}

/// Folds the lightest endpoints (by time) into their service's [`OTHER_ENDPOINTS`] while more
/// than [`MAX_ENDPOINTS`] are kept; returns how many were folded.
fn fold_past_the_cap(
    endpoints: &mut BTreeMap<(String, String), EndpointAggregate>,
    dropped: &mut u64,
) -> u64 {
    let named = endpoints.keys().filter(|(_, e)| e != OTHER_ENDPOINTS).count();
    if named <= MAX_ENDPOINTS {
        return 0;
    }
    let mut light: Vec<(f64, (String, String))> = endpoints
        .iter()
        .filter(|((_, e), _)| e != OTHER_ENDPOINTS)
        .map(|(key, e)| (e.time_ms, key.clone()))
        .collect();
    light.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    let excess = named - MAX_ENDPOINTS;
    for (_, key) in light.into_iter().take(excess) {
        let Some(mut entry) = endpoints.remove(&key) else {
            continue;
        };
        let other_key = (key.0.clone(), OTHER_ENDPOINTS.to_owned());
        match endpoints.get_mut(&other_key) {
            Some(other) => *dropped += other.merge(entry),
            None => {
                entry.endpoint = OTHER_ENDPOINTS.to_owned();
                endpoints.insert(other_key, entry);
            }
        }
    }
    excess as u64
}

impl EndpointAggregate {
    /// Adds another shard's requests of the same endpoint; returns the subjects and statements
    /// dropped to keep the caps.
    pub fn merge(&mut self, other: EndpointAggregate) -> u64 {
        self.requests += other.requests;
        self.time_ms += other.time_ms;
        self.in_process = add_histograms(&self.in_process, &other.in_process);
        self.instrumentation.extend(other.instrumentation);
        self.instrumentation.sort();
        self.instrumentation.dedup();
        self.instrumentation.truncate(MAX_INSTRUMENTATION_SCOPES);

        let mut statements: BTreeMap<crate::Fingerprint, StatementUse> = std::mem::take(&mut self.statements)
            .into_iter()
            .map(|s| (s.fingerprint, s))
            .collect();
        for used in other.statements {
            match statements.get_mut(&used.fingerprint) {
                Some(ours) => ours.merge(&used),
                None => {
                    statements.insert(used.fingerprint, used);
                }
            }
        }
        let mut statements: Vec<StatementUse> = statements.into_values().collect();
        let mut dropped = keep_heaviest(&mut statements, MAX_STATEMENTS_PER_ENDPOINT, |s| s.time_ms);
        statements.sort_by(|a, b| {
            a.offset_ms
                .mean()
                .total_cmp(&b.offset_ms.mean())
                .then(a.fingerprint.cmp(&b.fingerprint))
        });
        self.statements = statements;

        let mut groups: BTreeMap<(DetectorId, Subject), ObservedGroup> = std::mem::take(&mut self.groups)
            .into_iter()
            .map(|g| ((g.detector, g.subject.clone()), g))
            .collect();
        for group in other.groups {
            match groups.get_mut(&(group.detector, group.subject.clone())) {
                Some(ours) => ours.merge(group),
                None => {
                    groups.insert((group.detector, group.subject.clone()), group);
                }
            }
        }
        let mut per_detector: BTreeMap<DetectorId, Vec<ObservedGroup>> = BTreeMap::new();
        for ((detector, _), group) in groups {
            per_detector.entry(detector).or_default().push(group);
        }
        self.groups = Vec::new();
        for (_, mut kept) in per_detector {
            dropped += keep_heaviest(&mut kept, MAX_SUBJECTS, |g| g.saved_ms);
            kept.sort_by(|a, b| a.subject.cmp(&b.subject));
            self.groups.extend(kept);
        }
        dropped
    }
}

/// Keeps the `cap` heaviest by `weight` (ties broken by position, the items arriving sorted);
/// returns how many were dropped.
fn keep_heaviest<T>(items: &mut Vec<T>, cap: usize, weight: impl Fn(&T) -> f64) -> u64 {
    if items.len() <= cap {
        return 0;
    }
    let dropped = items.len() - cap;
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|&a, &b| weight(&items[b]).total_cmp(&weight(&items[a])).then(a.cmp(&b)));
    let keep: std::collections::BTreeSet<usize> = order.into_iter().take(cap).collect();
    let mut index = 0;
    items.retain(|_| {
        let kept = keep.contains(&index);
        index += 1;
        kept
    });
    dropped as u64
}

/// Two serialized histograms added; one side alone when the other is empty or does not decode.
fn add_histograms(ours: &LatencyHistogram, theirs: &LatencyHistogram) -> LatencyHistogram {
    match (ours.decode(), theirs.decode()) {
        (Some(mut a), Some(b)) => match a.add(&b) {
            Ok(()) => LatencyHistogram::from_hdr(&a),
            Err(_) => ours.clone(),
        },
        (Some(_), None) => ours.clone(),
        (None, _) => theirs.clone(),
    }
}
