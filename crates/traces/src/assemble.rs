//! Groups a stream of spans into whole traces with bounded memory.
//!
//! Spans of one trace arrive spread over batches and files. A trace is handed on once its root
//! has arrived and the input has moved on — [`SETTLE_SPANS`] more spans, or [`SETTLE_TICKS`]
//! ticks of a live receiver — so late children still join it. When more than
//! [`Limits::max_pending_spans`] spans wait, the oldest traces are handed on as they are: memory
//! stays bounded whatever the input's size. Spans of a trace already handed on with its root
//! make a later part of it ([`Trace::continued`]), said apart from traces missing their root.

use std::collections::VecDeque;

use hashbrown::HashMap;

use chokepoint_evidence::{Span, Trace, TraceId};

/// Spans that must arrive after a trace's root before the trace is taken as complete.
pub const SETTLE_SPANS: u64 = 20_000;

/// Receiver ticks (one a second) after a trace's root before it is taken as complete.
pub const SETTLE_TICKS: u64 = 3;

/// Released ids the queues may hold beyond twice the traces waiting before they are swept.
const QUEUE_SLACK: usize = 1024;

/// Memory bounds of the assembler.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Spans held while waiting for their traces to complete; past this the oldest traces are
    /// analysed as they are.
    pub max_pending_spans: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_pending_spans: 100_000,
        }
    }
}

/// What the assembler saw, for the run summary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AssemblyStats {
    /// Spans received.
    pub spans: u64,
    /// Traces handed on (a trace split by eviction counts once per part).
    pub traces: u64,
    /// Traces handed on before their root arrived, because memory was needed.
    pub evicted_incomplete: u64,
    /// Later parts of traces already handed on with their root: more spans arrived than one
    /// trace may hold waiting, so the trace was analysed in parts.
    pub continued_parts: u64,
    /// The spans in those later parts.
    pub continued_spans: u64,
}

/// Traces handed on with their root that are remembered, so that later spans of theirs are
/// known for a continuation rather than a trace without a root.
const REMEMBERED_TRACES: usize = 4096;

struct Pending {
    spans: Vec<Span>,
    /// When the root arrived: spans seen, ticks seen.
    root_at: Option<(u64, u64)>,
    /// Whether an earlier part of this trace was handed on with its root.
    continued: bool,
}

/// Groups spans into traces; see the module documentation for when a trace is complete.
pub struct Assembler {
    limits: Limits,
    pending: HashMap<TraceId, Pending>,
    /// Traces in the order they first appeared, for eviction (may name traces already gone).
    arrival: VecDeque<TraceId>,
    /// Traces in the order their roots arrived, for completion (may name traces already gone).
    rooted: VecDeque<TraceId>,
    pending_spans: usize,
    ticks: u64,
    stats: AssemblyStats,
    /// Traces handed on with their root, the most recent [`REMEMBERED_TRACES`].
    handed_on: hashbrown::HashSet<TraceId>,
    handed_on_order: VecDeque<TraceId>,
}

impl Assembler {
    /// An empty assembler.
    pub fn new(limits: Limits) -> Self {
        Assembler {
            limits,
            pending: HashMap::new(),
            arrival: VecDeque::new(),
            rooted: VecDeque::new(),
            pending_spans: 0,
            ticks: 0,
            stats: AssemblyStats::default(),
            handed_on: hashbrown::HashSet::new(),
            handed_on_order: VecDeque::new(),
        }
    }

    /// Adds one span; hands any traces that are now complete to `out`.
    pub fn push(&mut self, trace_id: TraceId, span: Span, out: &mut impl FnMut(Trace)) {
        self.stats.spans += 1;
        let is_root = span.parent_span_id.is_none();
        let handed_on = &self.handed_on;
        let pending = self.pending.entry(trace_id).or_insert_with(|| {
            self.arrival.push_back(trace_id);
            Pending {
                spans: Vec::new(),
                root_at: None,
                continued: handed_on.contains(&trace_id),
            }
        });
        pending.spans.push(span);
        if is_root && pending.root_at.is_none() {
            pending.root_at = Some((self.stats.spans, self.ticks));
            self.rooted.push_back(trace_id);
        }
        self.pending_spans += 1;
        self.release_settled(out);
        while self.pending_spans > self.limits.max_pending_spans {
            let Some(oldest) = self.arrival.pop_front() else {
                break;
            };
            self.release(oldest, out);
        }
    }

    /// Marks the passing of time in a live receiver (call about once a second); traces whose
    /// root arrived [`SETTLE_TICKS`] ticks ago are handed on.
    pub fn tick(&mut self, out: &mut impl FnMut(Trace)) {
        self.ticks += 1;
        self.release_settled(out);
    }

    /// Hands on every trace still waiting, complete or not; returns the statistics.
    pub fn finish(mut self, out: &mut impl FnMut(Trace)) -> AssemblyStats {
        while let Some(trace_id) = self.arrival.pop_front() {
            self.release(trace_id, out);
        }
        self.stats
    }

    /// The statistics so far.
    pub fn stats(&self) -> &AssemblyStats {
        &self.stats
    }

    /// Drops the ids of traces already handed on from the two queues, so they hold no more than
    /// a constant factor of the traces waiting: from their fronts at once (the usual order), and
    /// by a sweep when released ids pile up behind a trace that waits long.
    fn forget_released(&mut self) {
        let pending = &self.pending;
        while self.arrival.front().is_some_and(|id| !pending.contains_key(id)) {
            self.arrival.pop_front();
        }
        let bound = 2 * pending.len() + QUEUE_SLACK;
        if self.arrival.len() > bound {
            self.arrival.retain(|id| pending.contains_key(id));
        }
        if self.rooted.len() > bound {
            self.rooted.retain(|id| pending.contains_key(id));
        }
    }

    fn release_settled(&mut self, out: &mut impl FnMut(Trace)) {
        while let Some(&trace_id) = self.rooted.front() {
            let settled = match self.pending.get(&trace_id).and_then(|p| p.root_at) {
                None => true, // already released
                Some((spans_at, ticks_at)) => {
                    self.stats.spans - spans_at >= SETTLE_SPANS || self.ticks - ticks_at >= SETTLE_TICKS
                }
            };
            if !settled {
                break;
            }
            self.rooted.pop_front();
            self.release(trace_id, out);
        }
    }

    fn release(&mut self, trace_id: TraceId, out: &mut impl FnMut(Trace)) {
        let Some(pending) = self.pending.remove(&trace_id) else {
            return;
        };
        self.forget_released();
        self.pending_spans -= pending.spans.len();
        self.stats.traces += 1;
        if pending.continued {
            self.stats.continued_parts += 1;
            self.stats.continued_spans += pending.spans.len() as u64;
        } else if pending.root_at.is_none() {
            self.stats.evicted_incomplete += 1;
        } else if self.handed_on.insert(trace_id) {
            self.handed_on_order.push_back(trace_id);
            if self.handed_on_order.len() > REMEMBERED_TRACES
                && let Some(oldest) = self.handed_on_order.pop_front()
            {
                self.handed_on.remove(&oldest);
            }
        }
        out(Trace {
            trace_id,
            spans: pending.spans,
            continued: pending.continued,
        });
    }
}

#[cfg(test)]
mod tests {
    use chokepoint_evidence::{SpanId, SpanKind};

    use super::*;

    fn span(id: u64, parent: Option<u64>) -> Span {
        Span {
            span_id: SpanId(id),
            parent_span_id: parent.map(SpanId),
            name: format!("s{id}"),
            kind: SpanKind::Internal,
            service: "svc".into(),
            start_unix_nano: 0,
            end_unix_nano: 1,
            attributes: Vec::new(),
            status_error: false,
            scope: None,
        }
    }

    #[test]
    fn children_arriving_before_and_after_the_root_join_one_trace() {
        let mut assembler = Assembler::new(Limits::default());
        let mut traces = Vec::new();
        let mut out = |t: Trace| traces.push(t);
        assembler.push(TraceId(1), span(2, Some(1)), &mut out);
        assembler.push(TraceId(1), span(1, None), &mut out);
        assembler.push(TraceId(1), span(3, Some(1)), &mut out);
        assembler.finish(&mut out);
        assert_eq!(traces.len(), 1);
        assert_eq!(traces[0].spans.len(), 3);
    }

    #[test]
    fn a_trace_too_wide_to_hold_is_handed_on_in_parts_said_as_such() {
        let mut assembler = Assembler::new(Limits {
            max_pending_spans: 100,
        });
        let mut parts = Vec::new();
        let trace = TraceId(7);
        assembler.push(trace, span(1, None), &mut |t| parts.push(t));
        // Far more children than the settle window and the pending limit: the trace is handed
        // on with its root, and its later spans in parts.
        for child in 2..(SETTLE_SPANS + 500) {
            assembler.push(trace, span(child, Some(1)), &mut |t| parts.push(t));
            assert!(assembler.pending_spans <= 100);
        }
        let stats = assembler.finish(&mut |t| parts.push(t));
        assert!(!parts[0].continued && parts[0].spans[0].parent_span_id.is_none());
        assert!(
            parts[1..].iter().all(|p| p.continued),
            "later parts are continuations"
        );
        assert_eq!(stats.continued_parts, parts.len() as u64 - 1);
        assert_eq!(
            stats.continued_spans + parts[0].spans.len() as u64,
            SETTLE_SPANS + 499
        );
        assert_eq!(stats.evicted_incomplete, 0, "no part is a trace without its root");
    }

    #[test]
    fn holds_no_more_than_the_pending_limit() {
        let mut assembler = Assembler::new(Limits {
            max_pending_spans: 100,
        });
        let mut released = 0u64;
        for trace in 0..1_000u128 {
            // No roots: nothing completes, only the memory bound releases traces.
            assembler.push(TraceId(trace), span(2, Some(1)), &mut |_| released += 1);
            assert!(assembler.pending_spans <= 100);
        }
        assert_eq!(released, 900);
        let stats = assembler.finish(&mut |_| released += 1);
        assert_eq!(released, 1_000);
        assert_eq!(stats.evicted_incomplete, 1_000);
    }

    #[test]
    fn a_rooted_trace_is_released_after_the_settle_window() {
        let mut assembler = Assembler::new(Limits::default());
        let mut released = Vec::new();
        assembler.push(TraceId(1), span(1, None), &mut |t| released.push(t.trace_id));
        for i in 0..SETTLE_SPANS {
            assembler.push(TraceId(2 + u128::from(i)), span(1, None), &mut |t| {
                released.push(t.trace_id)
            });
        }
        assert_eq!(released.first(), Some(&TraceId(1)));
    }

    #[test]
    fn queues_do_not_keep_the_ids_of_traces_handed_on() {
        let mut assembler = Assembler::new(Limits::default());
        let mut released = 0u64;
        // A live receiver: every trace complete, released by ticks, never by the memory bound.
        for batch in 0..200u128 {
            for i in 0..1_000u128 {
                assembler.push(TraceId(batch * 1_000 + i), span(1, None), &mut |_| released += 1);
            }
            for _ in 0..SETTLE_TICKS {
                assembler.tick(&mut |_| released += 1);
            }
            assert!(
                assembler.arrival.len() <= 2 * assembler.pending.len() + QUEUE_SLACK,
                "arrival queue holds {} ids for {} pending traces",
                assembler.arrival.len(),
                assembler.pending.len()
            );
            assert!(assembler.rooted.len() <= 2 * assembler.pending.len() + QUEUE_SLACK);
        }
        assert_eq!(released, 200_000);
    }

    #[test]
    fn ticks_release_live_traces() {
        let mut assembler = Assembler::new(Limits::default());
        let mut released = 0;
        assembler.push(TraceId(1), span(1, None), &mut |_| released += 1);
        for _ in 0..SETTLE_TICKS {
            assembler.tick(&mut |_| released += 1);
        }
        assert_eq!(released, 1);
    }
}
