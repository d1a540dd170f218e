//! The load ramp: an HTTP load generator (closed and open models, HDR histograms), a ramp
//! controller that steps load until the service breaks, and samplers that watch the target
//! process while it runs. What it measures is plain evidence ([`chokepoint_evidence::LoadRun`])
//! for the load detectors.

mod generator;
mod http1;
mod metrics;
mod ramp;
mod sampler;

pub use generator::{RequestError, SetupError, StepResult, Target, Tls, run_closed, run_open};
pub use metrics::{MetricsStep, SCRAPE_EVERY, Scraper};
pub use ramp::{RampConfig, Sampling, Slo, StopRules, run};
pub use sampler::{SAMPLE_EVERY, Sampler, pid_listening_on};
