//! One file per detector; shared arithmetic below.

pub(crate) mod bandwidth_limit;
pub(crate) mod blocking_call;
pub(crate) mod connection_churn;
pub(crate) mod cpu_saturation;
pub(crate) mod in_memory_sort;
pub(crate) mod large_payload;
pub(crate) mod lock_contention;
pub(crate) mod missing_index;
pub(crate) mod n_plus_one;
pub(crate) mod network_latency;
pub(crate) mod regex_per_request;
pub(crate) mod sequential_calls;
pub(crate) mod slow_query;
pub(crate) mod slow_serialization;
pub(crate) mod sync_logging;
pub(crate) mod unbounded_result;
pub(crate) mod worker_exhaustion;

use chokepoint_evidence::Span;

/// Nanoseconds to milliseconds.
pub(crate) fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// Milliseconds to nanoseconds, never negative.
pub(crate) fn ns(ms: f64) -> u64 {
    (ms.max(0.0) * 1e6) as u64
}

/// The wall-clock time covered by the spans together (overlaps counted once), in ns.
pub(crate) fn union_ns<'a>(spans: impl IntoIterator<Item = &'a Span>) -> u64 {
    let mut intervals: Vec<(u64, u64)> = spans
        .into_iter()
        .map(|s| (s.start_unix_nano, s.end_unix_nano.max(s.start_unix_nano)))
        .collect();
    intervals.sort_unstable();
    let mut total = 0;
    let mut current: Option<(u64, u64)> = None;
    for (start, end) in intervals {
        current = match current {
            Some((s, e)) if start <= e => Some((s, e.max(end))),
            Some((s, e)) => {
                total += e - s;
                Some((start, end))
            }
            None => Some((start, end)),
        };
    }
    total + current.map_or(0, |(s, e)| e - s)
}

/// Shortens text for a title, on a character boundary.
pub(crate) fn clip(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_owned();
    }
    let mut clipped: String = text.chars().take(max_chars.saturating_sub(1)).collect();
    clipped.push('…');
    clipped
}

/// "47 %" from a share.
pub(crate) fn percent(share: f64) -> String {
    format!("{:.0} %", share * 100.0)
}
