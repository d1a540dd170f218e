//! speedscope's JSON format (<https://www.speedscope.app/file-format-schema.json>): shared frames
//! and one profile per thread, either sampled (stacks, root first, with weights) or evented
//! (open and close events, as pyinstrument writes them).

use std::collections::HashMap;

use chokepoint_evidence::{Frame, Note, Position, Profile, ProfileBuilder};
use serde::Deserialize;

use crate::problem;

#[derive(Deserialize)]
struct File {
    shared: Shared,
    profiles: Vec<Thread>,
}

#[derive(Deserialize)]
struct Shared {
    frames: Vec<SharedFrame>,
}

#[derive(Deserialize)]
struct SharedFrame {
    name: String,
    #[serde(default)]
    file: Option<String>,
    #[serde(default)]
    line: Option<u32>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Thread {
    Sampled {
        #[serde(default)]
        name: String,
        #[serde(default)]
        unit: String,
        samples: Vec<Vec<usize>>,
        weights: Vec<f64>,
    },
    Evented {
        #[serde(default)]
        name: String,
        #[serde(default)]
        unit: String,
        events: Vec<Event>,
    },
}

#[derive(Deserialize)]
struct Event {
    #[serde(rename = "type")]
    kind: String,
    at: f64,
    frame: usize,
}

/// Seconds per unit of a speedscope time unit; `None` for counts.
fn unit_seconds(unit: &str) -> Option<f64> {
    match unit {
        "seconds" => Some(1.0),
        "milliseconds" => Some(1e-3),
        "microseconds" => Some(1e-6),
        "nanoseconds" => Some(1e-9),
        _ => None,
    }
}

pub(crate) fn read(bytes: &[u8], source: &str) -> Result<Profile, Note> {
    let file: File = serde_json::from_slice(bytes).map_err(|e| {
        problem(
            source,
            Some(Position::Line {
                line: e.line() as u64,
                column: e.column() as u64,
            }),
            format!("not a speedscope profile: {e}"),
        )
    })?;
    let frame_count = file.shared.frames.len();
    let bad_frame = |index: usize| {
        problem(
            source,
            None,
            format!("a stack names frame {index}, but the file has {frame_count} frames"),
        )
    };
    // A sampled profile's weights are time per sample: the smallest is one sample.
    let sample_s = file
        .profiles
        .iter()
        .filter_map(|p| match p {
            Thread::Sampled { unit, weights, .. } => {
                let seconds = unit_seconds(unit)?;
                weights
                    .iter()
                    .copied()
                    .filter(|w| *w > 0.0)
                    .reduce(f64::min)
                    .map(|w| w * seconds)
            }
            Thread::Evented { .. } => None,
        })
        .reduce(f64::min);
    let sampled = file.profiles.iter().all(|p| matches!(p, Thread::Sampled { .. }));
    let rate_hz = sample_s.map_or(crate::DEFAULT_RATE_HZ, |s| 1.0 / s);
    let mut builder = ProfileBuilder::new("speedscope", sampled, rate_hz);
    // py-spy `--threads` puts a `thread (id)` frame at the root: the profile names the thread.
    let markers: Vec<bool> = file
        .shared
        .frames
        .iter()
        .map(|f| {
            f.file.as_deref().unwrap_or("").is_empty()
                && (f.name.starts_with("thread (") || f.name.starts_with("process ("))
        })
        .collect();
    let frames: Vec<u32> = file
        .shared
        .frames
        .into_iter()
        .map(|f| {
            builder.frame(Frame {
                function: f.name,
                file: f.file.unwrap_or_default(),
                line: f.line.unwrap_or(0),
                source: None,
            })
        })
        .collect();
    let mut duration_s: f64 = 0.0;
    for (number, profile) in file.profiles.into_iter().enumerate() {
        match profile {
            Thread::Sampled {
                name,
                unit,
                samples,
                weights,
            } => {
                let thread = builder.thread(&thread_name(&name, number));
                let seconds = unit_seconds(&unit);
                let mut thread_s = 0.0;
                for (i, stack) in samples.into_iter().enumerate() {
                    let weight = weights.get(i).copied().unwrap_or(1.0);
                    let count = match (seconds, sample_s) {
                        (Some(seconds), Some(sample_s)) => (weight * seconds / sample_s).round() as u64,
                        _ => weight.round() as u64,
                    };
                    thread_s += count as f64 / rate_hz;
                    let stack = stack
                        .into_iter()
                        .filter(|&f| !markers.get(f).copied().unwrap_or(false))
                        .map(|f| frames.get(f).copied().ok_or_else(|| bad_frame(f)))
                        .collect::<Result<Vec<_>, _>>()?;
                    builder.add(thread, stack, count);
                }
                duration_s = duration_s.max(thread_s);
            }
            Thread::Evented { name, unit, events } => {
                let thread = builder.thread(&thread_name(&name, number));
                let seconds = unit_seconds(&unit).unwrap_or(1.0);
                let mut open: Vec<u32> = Vec::new();
                let mut last_at = events.first().map_or(0.0, |e| e.at);
                let mut self_us: HashMap<Vec<u32>, f64> = HashMap::new();
                for event in &events {
                    let elapsed_us = (event.at - last_at).max(0.0) * seconds * 1e6;
                    if !open.is_empty() {
                        *self_us.entry(open.clone()).or_default() += elapsed_us;
                    }
                    last_at = event.at;
                    let frame = frames
                        .get(event.frame)
                        .copied()
                        .ok_or_else(|| bad_frame(event.frame))?;
                    match event.kind.as_str() {
                        "O" => open.push(frame),
                        "C" => {
                            // Close the frame (and anything left open above it).
                            if let Some(at) = open.iter().rposition(|&f| f == frame) {
                                open.truncate(at);
                            }
                        }
                        other => {
                            return Err(problem(
                                source,
                                None,
                                format!("an event of type {other:?}: speedscope events are \"O\" or \"C\""),
                            ));
                        }
                    }
                }
                let span_s = match (events.first(), events.last()) {
                    (Some(first), Some(last)) => (last.at - first.at) * seconds,
                    _ => 0.0,
                };
                duration_s = duration_s.max(span_s);
                let mut stacks: Vec<_> = self_us.into_iter().collect();
                stacks.sort_by(|a, b| a.0.cmp(&b.0));
                for (stack, us) in stacks {
                    builder.add(thread, stack, us.round() as u64);
                }
            }
        }
    }
    Ok(builder.finish(duration_s, 0.0))
}

/// py-spy names threads `Thread 3562 "name"`; others name the profile.
fn thread_name(name: &str, number: usize) -> String {
    if name.is_empty() {
        format!("thread {}", number + 1)
    } else {
        name.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evented_profiles_give_each_stack_its_self_time() {
        let json = r#"{"shared": {"frames": [{"name": "main", "file": "a.py", "line": 1},
            {"name": "work", "file": "a.py", "line": 5}]},
          "profiles": [{"type": "evented", "name": "main", "unit": "milliseconds", "startValue": 0,
            "endValue": 10, "events": [{"type": "O", "at": 0, "frame": 0}, {"type": "O", "at": 2, "frame": 1},
            {"type": "C", "at": 9, "frame": 1}, {"type": "C", "at": 10, "frame": 0}]}]}"#;
        let profile = read(json.as_bytes(), "t").expect("reads");
        assert!(!profile.sampled);
        let work = profile.stacks.iter().find(|s| s.frames.len() == 2).expect("work");
        assert_eq!(work.count, 7_000);
        assert_eq!(profile.total(), 10_000);
    }

    #[test]
    fn a_stack_naming_a_missing_frame_is_a_problem() {
        let json = r#"{"shared": {"frames": []}, "profiles": [{"type": "sampled", "unit": "none",
            "samples": [[3]], "weights": [1]}]}"#;
        let error = read(json.as_bytes(), "t").expect_err("fails");
        assert!(error.message.contains("frame 3"), "{}", error.message);
    }
}
