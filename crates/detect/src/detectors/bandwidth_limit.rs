//! `bandwidth-limit`: throughput capped by the bytes the link can carry.

use crate::detectors::percent;
use chokepoint_evidence::Resource;

use crate::finding::{Basis, Confidence, LimitInputs, LinkCost};
use crate::load::{Curve, TARGET_SAMPLED, offered, transfer_bound, usable_cores};
use crate::registry::{Conclusion, Detector, Estimate, Reads, detector};

detector! {
    /// # What it detects
    ///
    /// A load ramp whose throughput stops rising while the responses are large and the target's
    /// CPU idles: the bytes per second delivered have hit what the network between client and
    /// service can carry.
    ///
    /// # Why it limits throughput
    ///
    /// Every response has to cross the link; once its bytes per second are used up, more
    /// concurrency only shares it, and every request's latency grows by its transfer time.
    /// Compressing or shrinking the responses multiplies capacity directly.
    ///
    /// # Evidence used
    ///
    /// `chokepoint load`'s steps: throughput, response bytes per second and mean response size,
    /// the target's CPU, and a sampled response body compressed with gzip to show what
    /// compression would save. Flagged when responses average 64 KiB or more, throughput stops
    /// rising, and the target uses under half of the cores it can use — counting the time its
    /// threads waited for a core as use. Never on loopback: there is no link there, every byte is
    /// copied by the two processes' CPUs.
    ///
    /// # Known false positives
    ///
    /// A slow client or a generator host with a small link: the limit is real but may not be
    /// the production one. Run the generator where the users are.
    ///
    /// # Typical fix
    ///
    /// Compress (gzip or brotli middleware, or at the proxy) and send less — paginate, select
    /// only the fields used — or move the client closer or the link up.
    pub(crate) struct BandwidthLimit {
        id: BandwidthLimit,
        summary: "throughput capped by the bytes the link can carry",
        reads: [Reads::Load(TARGET_SAMPLED)],
        same_cause: [],
    }
}

impl Detector for BandwidthLimit {
    fn check_load(&self, curve: &Curve<'_>) -> Option<Conclusion> {
        let cores = curve.knee_cpu_cores()?;
        let wanted = curve.knee_cpu_wanted()?;
        if curve.run.on_loopback()
            || !transfer_bound(curve)
            || !curve.plateaus()
            || wanted >= 0.5 * usable_cores(wanted)
        {
            return None;
        }
        let link_mbit = curve.run.steps.iter().map(|s| s.bytes_per_s).fold(0.0, f64::max) * 8.0 / 1e6;
        let kb = curve.knee.response_bytes_mean / 1e3;
        let saving = curve.run.steps.iter().find_map(|s| s.gzip_saving);
        let gzip = match saving {
            Some(share) => format!("; gzip would cut {} of each response", percent(share)),
            None => String::new(),
        };
        let title = format!(
            "Throughput stops at {:.1} requests/s = {link_mbit:.1} Mbit/s of {kb:.0} kB responses from {} while the CPU idles ({cores:.2} cores): the link is full{gzip}",
            curve.capacity_rps,
            offered(curve.run, curve.knee.offered),
        );
        let fix = format!(
            "Send fewer bytes: compress responses (FastAPI `GZipMiddleware`, Django `GZipMiddleware`, nginx `gzip on`){} and \
             shrink them — paginate, return only the fields the client uses ({kb:.0} kB each now). Capacity grows by the same factor.",
            saving.map_or(String::new(), |s| format!(", which cuts them by {}", percent(s)))
        );
        Some(
            Conclusion::new(
                Resource::Link,
                Basis::Measured,
                Estimate::Limit {
                    demand_ms_per_request: Some(1e3 / curve.capacity_rps.max(1e-9)),
                },
                title,
                fix,
                if saving.is_some_and(|s| s > 0.5) {
                Confidence::High
            } else {
                Confidence::Medium
            },
            )
            .assume(vec![
                format!(
                    "the link between generator and target carries about {link_mbit:.1} Mbit/s (the best step's rate)"
                ),
                "the sampled response is typical of the step".into(),
            ])
            .metrics(vec![
                ("link_mbit_per_s", link_mbit),
                ("response_bytes_mean", curve.knee.response_bytes_mean),
                ("gzip_saving", saving.unwrap_or(0.0)),
                ("cpu_cores_at_knee", cores),
            ])
            .inputs(LimitInputs {
                link: Some(LinkCost {
                    bytes_per_response: curve.knee.response_bytes_mean,
                    bytes_per_s: link_mbit * 1e6 / 8.0,
                    compressible_share: saving,
                }),
                ..LimitInputs::default()
            }),
        )
    }
}
