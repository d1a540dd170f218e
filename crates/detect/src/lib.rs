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
//! // With no evidence, no detector is taken for a clean bill of health.
//! assert!(outcome.skipped.iter().any(|s| s.detector == "n-plus-one"));
//! ```

mod analysis;
mod db;
mod detectors;
mod finding;
mod load;
mod rank;
mod registry;
mod request;
pub mod sql;
mod usl;

pub use analysis::{Analysis, MIN_AFFECTED_REQUESTS, MIN_AFFECTED_SHARE, Outcome, Skipped, Summary};
pub use db::{analyse_db, explain_with_plans};
pub use finding::{Confidence, Evidence, Finding, Impact};
pub use load::analyse_load;
pub use rank::rank;
pub use registry::{Meta, detectors, find_detector};
pub use usl::UslFit;
