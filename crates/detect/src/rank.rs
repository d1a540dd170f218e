//! The ranker: orders findings by how much service time fixing each would recover. It reads
//! nothing but the findings.

use std::cmp::Ordering;

use crate::Finding;

/// Orders `findings` so the first is the bottleneck: most recoverable service time per second
/// of traffic first; ties broken by total saving, then by name, so the order is stable.
pub fn rank(findings: &mut [Finding]) {
    findings.sort_by(|a, b| {
        b.impact
            .recoverable_s_per_s
            .partial_cmp(&a.impact.recoverable_s_per_s)
            .unwrap_or(Ordering::Equal)
            .then_with(|| {
                b.impact
                    .saved_ms_total
                    .partial_cmp(&a.impact.saved_ms_total)
                    .unwrap_or(Ordering::Equal)
            })
            .then_with(|| {
                (&a.detector, &a.endpoint, &a.location).cmp(&(&b.detector, &b.endpoint, &b.location))
            })
    });
}
