//! pprof's `profile.proto` (gzip-compressed, as Pyroscope, Parca and Datadog export it): samples
//! of locations (leaf first), each location one or more lines of functions (inlined first).
//! The messages below are the fields of
//! <https://github.com/google/pprof/blob/main/proto/profile.proto> that chokepoint reads.

use chokepoint_evidence::{Frame, Note, Profile, ProfileBuilder};
use prost::Message;

use crate::problem;

#[derive(Clone, PartialEq, Message)]
struct PprofProfile {
    #[prost(message, repeated, tag = "1")]
    sample_type: Vec<ValueType>,
    #[prost(message, repeated, tag = "2")]
    sample: Vec<Sample>,
    #[prost(message, repeated, tag = "4")]
    location: Vec<Location>,
    #[prost(message, repeated, tag = "5")]
    function: Vec<Function>,
    #[prost(string, repeated, tag = "6")]
    string_table: Vec<String>,
    #[prost(int64, tag = "9")]
    time_nanos: i64,
    #[prost(int64, tag = "10")]
    duration_nanos: i64,
    #[prost(message, optional, tag = "11")]
    period_type: Option<ValueType>,
    #[prost(int64, tag = "12")]
    period: i64,
}

#[derive(Clone, PartialEq, Message)]
struct ValueType {
    #[prost(int64, tag = "1")]
    r#type: i64,
    #[prost(int64, tag = "2")]
    unit: i64,
}

#[derive(Clone, PartialEq, Message)]
struct Sample {
    #[prost(uint64, repeated, tag = "1")]
    location_id: Vec<u64>,
    #[prost(int64, repeated, tag = "2")]
    value: Vec<i64>,
    #[prost(message, repeated, tag = "3")]
    label: Vec<Label>,
}

#[derive(Clone, PartialEq, Message)]
struct Label {
    #[prost(int64, tag = "1")]
    key: i64,
    #[prost(int64, tag = "2")]
    str: i64,
    #[prost(int64, tag = "3")]
    num: i64,
}

#[derive(Clone, PartialEq, Message)]
struct Location {
    #[prost(uint64, tag = "1")]
    id: u64,
    #[prost(message, repeated, tag = "4")]
    line: Vec<Line>,
}

#[derive(Clone, PartialEq, Message)]
struct Line {
    #[prost(uint64, tag = "1")]
    function_id: u64,
    #[prost(int64, tag = "2")]
    line: i64,
}

#[derive(Clone, PartialEq, Message)]
struct Function {
    #[prost(uint64, tag = "1")]
    id: u64,
    #[prost(int64, tag = "2")]
    name: i64,
    #[prost(int64, tag = "4")]
    filename: i64,
}

pub(crate) fn read(bytes: &[u8], source: &str) -> Result<Profile, Note> {
    let pprof = PprofProfile::decode(bytes)
        .map_err(|e| problem(source, None, format!("not a pprof profile (profile.proto): {e}")))?;
    let string = |index: i64| -> &str {
        usize::try_from(index)
            .ok()
            .and_then(|i| pprof.string_table.get(i))
            .map_or("", String::as_str)
    };
    // Which value to read: sample counts when there are, else the first time (cpu or wall).
    let types: Vec<(&str, &str)> = pprof
        .sample_type
        .iter()
        .map(|t| (string(t.r#type), string(t.unit)))
        .collect();
    let counted = types
        .iter()
        .position(|(kind, unit)| matches!(*kind, "samples" | "sample") || *unit == "count");
    let timed = types
        .iter()
        .position(|(_, unit)| matches!(*unit, "nanoseconds" | "microseconds" | "milliseconds" | "seconds"));
    let (value_index, ns_per_unit) = match (counted, timed) {
        (Some(i), _) => (i, None),
        (None, Some(i)) => (
            i,
            Some(match types[i].1 {
                "nanoseconds" => 1.0,
                "microseconds" => 1e3,
                "milliseconds" => 1e6,
                _ => 1e9,
            }),
        ),
        (None, None) => {
            return Err(problem(
                source,
                None,
                format!("no sample count or time among its values ({types:?})"),
            ));
        }
    };
    // Samples are taken every `period` (ns of CPU or wall time) when the period is a time.
    let period_is_time = pprof
        .period_type
        .as_ref()
        .is_some_and(|t| string(t.unit) == "nanoseconds");
    let rate_hz = if period_is_time && pprof.period > 0 {
        1e9 / pprof.period as f64
    } else {
        crate::DEFAULT_RATE_HZ
    };
    let sampled = ns_per_unit.is_none();
    let mut builder = ProfileBuilder::new("pprof", sampled, rate_hz);
    let functions: std::collections::HashMap<u64, &Function> =
        pprof.function.iter().map(|f| (f.id, f)).collect();
    let mut locations: std::collections::HashMap<u64, Vec<u32>> = std::collections::HashMap::new();
    for location in &pprof.location {
        // Lines are innermost first; a stack is root first.
        let frames = location
            .line
            .iter()
            .rev()
            .map(|line| {
                let function = functions.get(&line.function_id);
                builder.frame(Frame {
                    function: function.map_or("?", |f| string(f.name)).to_owned(),
                    file: function.map_or("", |f| string(f.filename)).to_owned(),
                    line: u32::try_from(line.line).unwrap_or(0),
                    source: None,
                })
            })
            .collect();
        locations.insert(location.id, frames);
    }
    for sample in &pprof.sample {
        let value = sample.value.get(value_index).copied().unwrap_or(0).max(0);
        let count = match ns_per_unit {
            Some(ns) => (value as f64 * ns / 1e3).round() as u64,
            None => value as u64,
        };
        let thread_name = sample
            .label
            .iter()
            .find(|l| matches!(string(l.key), "thread_name" | "thread" | "thread_id"))
            .map(|l| match string(l.str) {
                "" => format!("thread {}", l.num),
                name => name.to_owned(),
            })
            .unwrap_or_else(|| "all threads".to_owned());
        let thread = builder.thread(&thread_name);
        let mut stack = Vec::new();
        for id in sample.location_id.iter().rev() {
            let frames = locations.get(id).ok_or_else(|| {
                problem(
                    source,
                    None,
                    format!("a sample names location {id}, which the profile does not define"),
                )
            })?;
            stack.extend_from_slice(frames);
        }
        builder.add(thread, stack, count);
    }
    let duration_s = pprof.duration_nanos.max(0) as f64 / 1e9;
    let started_unix_s = pprof.time_nanos.max(0) as f64 / 1e9;
    Ok(builder.finish(duration_s, started_unix_s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(table: &[&str]) -> Vec<String> {
        table.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn samples_become_root_first_stacks_with_their_counts() {
        let pprof = PprofProfile {
            sample_type: vec![ValueType { r#type: 1, unit: 2 }, ValueType { r#type: 3, unit: 4 }],
            sample: vec![Sample {
                location_id: vec![2, 1],
                value: vec![7, 70_000_000],
                label: vec![Label {
                    key: 7,
                    str: 8,
                    num: 0,
                }],
            }],
            location: vec![
                Location {
                    id: 1,
                    line: vec![Line {
                        function_id: 1,
                        line: 3,
                    }],
                },
                Location {
                    id: 2,
                    line: vec![Line {
                        function_id: 2,
                        line: 12,
                    }],
                },
            ],
            function: vec![
                Function {
                    id: 1,
                    name: 5,
                    filename: 9,
                },
                Function {
                    id: 2,
                    name: 6,
                    filename: 9,
                },
            ],
            string_table: strings(&[
                "",
                "samples",
                "count",
                "cpu",
                "nanoseconds",
                "main",
                "handler",
                "thread_name",
                "MainThread",
                "app.py",
            ]),
            time_nanos: 1_700_000_000_000_000_000,
            duration_nanos: 10_000_000_000,
            period_type: Some(ValueType { r#type: 3, unit: 4 }),
            period: 10_000_000,
        };
        let profile = read(&pprof.encode_to_vec(), "t").expect("reads");
        assert!(profile.sampled);
        assert_eq!(profile.rate_hz, 100.0);
        assert_eq!(profile.threads, ["MainThread"]);
        let stack: Vec<String> = profile
            .frames_of(&profile.stacks[0])
            .map(|f| f.to_string())
            .collect();
        assert_eq!(stack, ["main (app.py:3)", "handler (app.py:12)"]);
        assert_eq!(profile.stacks[0].count, 7);
        assert_eq!(profile.duration_s, 10.0);
    }

    #[test]
    fn garbage_is_a_problem_not_a_panic() {
        assert!(read(&[0xff, 0xff, 0xff], "t").is_err());
    }
}
