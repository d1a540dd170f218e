//! Evidence read from outside — a saved run, a shard from another machine — is untrusted: what
//! serde accepts may still name a frame the profile does not list or a thread that does not
//! exist. [`Evidence::validate`] checks what the types cannot say, so the detectors, which index
//! freely, never meet it.

use std::fmt;

use crate::{Evidence, LatencyHistogram};

/// What is wrong with evidence, and where (`profile.stacks[3].frames[2]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    /// Where, as a path into the evidence.
    pub at: String,
    /// What is wrong there.
    pub problem: String,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.problem)
    }
}

impl std::error::Error for Invalid {}

fn invalid(at: impl Into<String>, problem: impl Into<String>) -> Invalid {
    Invalid {
        at: at.into(),
        problem: problem.into(),
    }
}

/// A quantity: finite and not negative.
fn quantity(at: impl FnOnce() -> String, value: f64) -> Result<(), Invalid> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(invalid(
            at(),
            format!("{value}: a count, a time or a rate cannot be negative or infinite"),
        ))
    }
}

fn histogram(at: impl FnOnce() -> String, histogram: &LatencyHistogram) -> Result<(), Invalid> {
    if histogram.is_empty() || histogram.decode().is_some() {
        Ok(())
    } else {
        Err(invalid(at(), "not an HdrHistogram (V2, deflate, base64)"))
    }
}

impl Evidence {
    /// Checks what deserializing cannot: every interned index in range, every histogram
    /// readable, every quantity finite and not negative.
    pub fn validate(&self) -> Result<(), Invalid> {
        if let Some(profile) = &self.profile {
            quantity(|| "profile.rate_hz".into(), profile.rate_hz)?;
            quantity(|| "profile.duration_s".into(), profile.duration_s)?;
            quantity(|| "profile.started_unix_s".into(), profile.started_unix_s)?;
            for (s, stack) in profile.stacks.iter().enumerate() {
                if stack.thread as usize >= profile.threads.len() {
                    return Err(invalid(
                        format!("profile.stacks[{s}].thread"),
                        format!(
                            "thread {}, but the profile names {} thread(s)",
                            stack.thread,
                            profile.threads.len()
                        ),
                    ));
                }
                if let Some((f, frame)) = stack
                    .frames
                    .iter()
                    .enumerate()
                    .find(|(_, frame)| **frame as usize >= profile.frames.len())
                {
                    return Err(invalid(
                        format!("profile.stacks[{s}].frames[{f}]"),
                        format!(
                            "frame {frame}, but the profile lists {} frame(s)",
                            profile.frames.len()
                        ),
                    ));
                }
            }
        }
        if let Some(traces) = &self.traces {
            if let Some(window) = traces.summary.window {
                quantity(
                    || "traces.summary.window.start_unix_s".into(),
                    window.start_unix_s,
                )?;
                quantity(|| "traces.summary.window.end_unix_s".into(), window.end_unix_s)?;
            }
            for (e, endpoint) in traces.endpoints.iter().enumerate() {
                quantity(|| format!("traces.endpoints[{e}].time_ms"), endpoint.time_ms)?;
                histogram(
                    || format!("traces.endpoints[{e}].in_process"),
                    &endpoint.in_process,
                )?;
                for (s, statement) in endpoint.statements.iter().enumerate() {
                    quantity(
                        || format!("traces.endpoints[{e}].statements[{s}].time_ms"),
                        statement.time_ms,
                    )?;
                    quantity(
                        || format!("traces.endpoints[{e}].statements[{s}].offset_ms"),
                        statement.offset_ms.sum,
                    )?;
                }
                for (g, group) in endpoint.groups.iter().enumerate() {
                    let at = |field: &str| format!("traces.endpoints[{e}].groups[{g}].{field}");
                    quantity(|| at("saved_ms"), group.saved_ms)?;
                    quantity(|| at("latency_saved_ms"), group.latency_saved_ms)?;
                    for (name, stat) in &group.metrics {
                        quantity(|| at(&format!("metrics.{name}.sum")), stat.sum)?;
                        quantity(|| at(&format!("metrics.{name}.max")), stat.max)?;
                    }
                    for (i, span) in group.example.iter().flat_map(|x| x.spans.iter().enumerate()) {
                        quantity(|| at(&format!("example.spans[{i}].start_ms")), span.start_ms)?;
                        quantity(
                            || at(&format!("example.spans[{i}].duration_ms")),
                            span.duration_ms,
                        )?;
                    }
                    if group
                        .example
                        .as_ref()
                        .is_some_and(|x| x.spans.len() > crate::MAX_EXAMPLE_SPANS)
                    {
                        return Err(invalid(at("example.spans"), "more spans than an example keeps"));
                    }
                    if group.examples.is_empty() && group.requests > 0 {
                        return Err(invalid(
                            at("examples"),
                            "no example trace for requests that showed it",
                        ));
                    }
                }
            }
        }
        if let Some(load) = &self.load {
            for (s, step) in load.steps.iter().enumerate() {
                quantity(|| format!("load.steps[{s}].duration_s"), step.duration_s)?;
                quantity(|| format!("load.steps[{s}].started_unix_s"), step.started_unix_s)?;
                histogram(
                    || format!("load.steps[{s}].latency_histogram"),
                    &step.latency_histogram,
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Frame, Profile, Stack};

    fn profile(frames: usize, threads: usize, stack: Stack) -> Evidence {
        Evidence {
            profile: Some(Profile {
                format: "py-spy raw".into(),
                sampled: true,
                rate_hz: 100.0,
                duration_s: 1.0,
                started_unix_s: 0.0,
                pid: None,
                frames: vec![Frame::default(); frames],
                threads: vec!["MainThread".into(); threads],
                stacks: vec![stack],
            }),
            ..Evidence::default()
        }
    }

    #[test]
    fn a_stack_naming_a_frame_or_thread_the_profile_lacks_is_refused_with_where() {
        let ok = Stack {
            thread: 0,
            frames: vec![0, 1],
            count: 3,
        };
        assert_eq!(profile(2, 1, ok.clone()).validate(), Ok(()));
        let error = profile(1, 1, ok.clone()).validate().expect_err("frame 1 of 1");
        assert_eq!(error.at, "profile.stacks[0].frames[1]");
        assert!(error.problem.contains("lists 1 frame"), "{error}");
        let error = profile(2, 1, Stack { thread: 1, ..ok })
            .validate()
            .expect_err("thread 1 of 1");
        assert_eq!(error.at, "profile.stacks[0].thread");
    }

    #[test]
    fn a_negative_or_unreadable_quantity_is_refused() {
        let mut evidence = profile(
            1,
            1,
            Stack {
                thread: 0,
                frames: vec![0],
                count: 1,
            },
        );
        if let Some(p) = evidence.profile.as_mut() {
            p.duration_s = -1.0;
        }
        assert_eq!(
            evidence.validate().expect_err("negative").at,
            "profile.duration_s"
        );
        let traces = crate::TraceAggregates {
            endpoints: vec![crate::EndpointAggregate {
                service: "shop".into(),
                endpoint: "GET /".into(),
                requests: 1,
                time_ms: 1.0,
                in_process: LatencyHistogram("not base64!".into()),
                instrumentation: Vec::new(),
                statements: Vec::new(),
                groups: Vec::new(),
            }],
            ..Default::default()
        };
        let evidence = Evidence {
            traces: Some(traces),
            ..Evidence::default()
        };
        assert_eq!(
            evidence.validate().expect_err("histogram").at,
            "traces.endpoints[0].in_process"
        );
    }
}
