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
pub use sampler::{SAMPLE_EVERY, Sampler, command_line, pid_listening_on};

/// Entry points for the fuzz targets (`fuzz/`, built with `--cfg fuzzing`): the readers of what
/// a server sends, without a socket.
#[cfg(fuzzing)]
#[doc(hidden)]
#[allow(missing_docs, unreachable_pub)]
pub mod fuzzing {
    /// `bytes` as everything a server answers on one keep-alive connection, read as the
    /// answers to a few requests (one a HEAD), each body sampled.
    pub fn http1_responses(bytes: &[u8]) {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread().build() else {
            return;
        };
        runtime.block_on(async {
            let mut connection = crate::http1::Http1::new(tokio::io::join(bytes, tokio::io::sink()));
            let mut sample = Vec::new();
            for turn in 0..4 {
                let head = turn == 1;
                let request: &[u8] = if head {
                    b"HEAD / HTTP/1.1\r\nhost: f\r\n\r\n"
                } else {
                    b"GET / HTTP/1.1\r\nhost: f\r\n\r\n"
                };
                if connection
                    .exchange(request, head, Some(&mut sample), 64)
                    .await
                    .is_err()
                    || connection.is_closed()
                {
                    break;
                }
                assert!(sample.len() <= 64 * (turn + 1), "the sample keeps what was asked");
            }
        });
    }

    /// `bytes` as a Prometheus text exposition.
    pub fn prometheus(bytes: &[u8]) {
        if let Ok(read) = crate::metrics::read_text(bytes) {
            assert!(read.gauges.len() <= crate::metrics::MAX_GAUGES);
        }
    }
}
