//! chokepoint's detectors: pure functions from evidence to findings, the aggregation that keeps
//! only mergeable aggregates across traces, and the ranker that picks the bottleneck.
//!
//! Each detector lives in its own file under `detectors/`, with its documentation (what
//! `chokepoint explain <id>` prints) as the doc comment of its struct.
//!
//! ```
//! use chokepoint_detect::{detectors, Analysis};
//!
//! assert!(detectors().any(|d| d.id == "n-plus-one"));
//! let outcome = Analysis::default().finish();
//! assert_eq!(outcome.summary.traces, 0);
//! assert_eq!(outcome.skipped.len(), detectors().count());
//! ```

mod analysis;
mod detectors;
mod finding;
mod rank;
mod registry;
mod request;
pub mod sql;

pub use analysis::{Analysis, MIN_AFFECTED_REQUESTS, MIN_AFFECTED_SHARE, Outcome, Skipped, Summary};
pub use finding::{Confidence, Evidence, Finding, Impact};
pub use rank::rank;
pub use registry::{Meta, detectors, find_detector};
