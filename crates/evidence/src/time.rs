//! One time base for every kind of evidence: seconds since the Unix epoch, so spans, load steps
//! and database samples taken by different collectors line up.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A span of wall-clock time, in seconds since the Unix epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Window {
    /// When it began.
    pub start_unix_s: f64,
    /// When it ended.
    pub end_unix_s: f64,
}

impl Window {
    /// The window between two instants given in nanoseconds since the epoch (as spans carry them).
    pub fn from_unix_nanos(start: u64, end: u64) -> Window {
        Window {
            start_unix_s: start as f64 / 1e9,
            end_unix_s: end.max(start) as f64 / 1e9,
        }
    }

    /// Its length in seconds.
    pub fn duration_s(&self) -> f64 {
        (self.end_unix_s - self.start_unix_s).max(0.0)
    }

    /// The smallest window holding both.
    pub fn union(self, other: Window) -> Window {
        Window {
            start_unix_s: self.start_unix_s.min(other.start_unix_s),
            end_unix_s: self.end_unix_s.max(other.end_unix_s),
        }
    }

    /// Whether `unix_s` falls inside (start included, end excluded).
    pub fn contains(&self, unix_s: f64) -> bool {
        unix_s >= self.start_unix_s && unix_s < self.end_unix_s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `otlp_tree` fuzz target: a span's start, written to JSON and read back,
    /// came back one unit in the last place off (serde_json's fast float parsing), so a saved
    /// report was not the report that was written.
    #[test]
    fn a_window_reads_back_from_json_to_the_last_bit() {
        let window = Window::from_unix_nanos(1_700_000_000_011_258_000, 1_700_000_000_011_258_000);
        let json = serde_json::to_string(&window).expect("writes");
        let back: Window = serde_json::from_str(&json).expect("reads");
        assert_eq!(back, window, "{json}");
    }
}
