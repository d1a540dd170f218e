//! A latency distribution kept whole: an HdrHistogram in its standard V2 serialization
//! (deflate-compressed, then base64), so any percentile can be read back later — by `compare`,
//! by an SLO of any percentile — and other HdrHistogram tools can read it too.

use base64::Engine as _;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2DeflateSerializer};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Latencies in microseconds, as a serialized HdrHistogram (V2, deflate, base64).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct LatencyHistogram(pub String);

impl LatencyHistogram {
    /// Serializes `histogram` (values in µs).
    pub fn from_hdr(histogram: &Histogram<u64>) -> LatencyHistogram {
        let mut bytes = Vec::new();
        match V2DeflateSerializer::new().serialize(histogram, &mut bytes) {
            Ok(_) => LatencyHistogram(base64::engine::general_purpose::STANDARD.encode(bytes)),
            // Only an I/O error on a Vec or a histogram too large for the format can fail.
            Err(_) => LatencyHistogram::default(),
        }
    }

    /// Whether no histogram was kept.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The histogram, when one was kept and it decodes.
    pub fn decode(&self) -> Option<Histogram<u64>> {
        if self.0.is_empty() {
            return None;
        }
        let bytes = base64::engine::general_purpose::STANDARD.decode(&self.0).ok()?;
        Deserializer::new().deserialize(&mut bytes.as_slice()).ok()
    }

    /// The latency at quantile `q` (0–1), in ms.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let histogram = self.decode()?;
        (!histogram.is_empty()).then(|| histogram.value_at_quantile(q.clamp(0.0, 1.0)) as f64 / 1e3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_percentile_survives_the_round_trip() {
        let mut histogram = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("bounds");
        for us in 1..=10_000u64 {
            histogram.record(us * 100).expect("in range");
        }
        let kept = LatencyHistogram::from_hdr(&histogram);
        let json = serde_json::to_string(&kept).expect("serializes");
        let back: LatencyHistogram = serde_json::from_str(&json).expect("reads back");
        let p999 = back.quantile_ms(0.999).expect("a percentile");
        assert!((p999 - 999.0).abs() < 1.0, "{p999}");
        assert!((back.quantile_ms(0.5).expect("median") - 500.0).abs() < 0.5);
        assert_eq!(LatencyHistogram::default().quantile_ms(0.5), None);
        assert_eq!(LatencyHistogram("not base64!".into()).quantile_ms(0.5), None);
    }
}
