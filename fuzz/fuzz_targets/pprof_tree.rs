//! Structure-aware: pprof profiles built by `arbitrary` — a string table of Python functions and
//! files the profile detectors know (sorts, regexes, logging, JSON, database drivers, sleeps),
//! functions, locations and samples whose references may dangle, values of any sign, sample
//! types of every unit — encoded as `profile.proto` and taken the whole way: read, analysed by
//! every profile detector, rendered, the JSON report read back as the same report. Never a panic;
//! every stack's frames are interned.
#![no_main]

#[path = "report.rs"]
mod report;

use arbitrary::Arbitrary;
use chokepoint_evidence::Evidence;
use libfuzzer_sys::fuzz_target;
use prost::Message;

/// Strings a Python service's profile holds.
const STRINGS: &[&str] = &[
    "",
    "samples",
    "count",
    "cpu",
    "wall",
    "nanoseconds",
    "microseconds",
    "seconds",
    "handle (app/views.py)",
    "list_orders",
    "app/views.py",
    "sorted",
    "<built-in method sort>",
    "compile",
    "re/__init__.py",
    "search",
    "emit",
    "logging/__init__.py",
    "dumps",
    "json/encoder.py",
    "iterencode",
    "execute",
    "psycopg/cursor.py",
    "sleep",
    "time",
    "_run_once",
    "asyncio/base_events.py",
    "__get__",
    "sqlalchemy/orm/attributes.py",
];

// The fields of pprof's profile.proto that chokepoint reads, as the fuzzer writes them.
#[derive(Clone, PartialEq, Message)]
struct PprofOut {
    #[prost(message, repeated, tag = "1")]
    sample_type: Vec<ValueTypeOut>,
    #[prost(message, repeated, tag = "2")]
    sample: Vec<SampleOut>,
    #[prost(message, repeated, tag = "4")]
    location: Vec<LocationOut>,
    #[prost(message, repeated, tag = "5")]
    function: Vec<FunctionOut>,
    #[prost(string, repeated, tag = "6")]
    string_table: Vec<String>,
    #[prost(int64, tag = "10")]
    duration_nanos: i64,
    #[prost(message, optional, tag = "11")]
    period_type: Option<ValueTypeOut>,
    #[prost(int64, tag = "12")]
    period: i64,
}

#[derive(Clone, PartialEq, Message)]
struct ValueTypeOut {
    #[prost(int64, tag = "1")]
    r#type: i64,
    #[prost(int64, tag = "2")]
    unit: i64,
}

#[derive(Clone, PartialEq, Message)]
struct SampleOut {
    #[prost(uint64, repeated, tag = "1")]
    location_id: Vec<u64>,
    #[prost(int64, repeated, tag = "2")]
    value: Vec<i64>,
}

#[derive(Clone, PartialEq, Message)]
struct LocationOut {
    #[prost(uint64, tag = "1")]
    id: u64,
    #[prost(message, repeated, tag = "4")]
    line: Vec<LineOut>,
}

#[derive(Clone, PartialEq, Message)]
struct LineOut {
    #[prost(uint64, tag = "1")]
    function_id: u64,
    #[prost(int64, tag = "2")]
    line: i64,
}

#[derive(Clone, PartialEq, Message)]
struct FunctionOut {
    #[prost(uint64, tag = "1")]
    id: u64,
    #[prost(int64, tag = "2")]
    name: i64,
    #[prost(int64, tag = "4")]
    filename: i64,
}

#[derive(Arbitrary, Debug)]
struct ProfileIn {
    extra_strings: Vec<String>,
    sample_types: Vec<(u8, u8)>,
    /// Functions: a name and a file, as indices into the string table (may be past it).
    functions: Vec<(u8, u8)>,
    /// Locations: lines of (function id, line number); ids count from 1, 0 and past the end dangle.
    locations: Vec<Vec<(u8, i16)>>,
    /// Samples: location ids, leaf first, and their values.
    samples: Vec<(Vec<u8>, Vec<i64>)>,
    duration_nanos: i64,
    period: i64,
}

fn profile(input: &ProfileIn) -> PprofOut {
    let mut strings: Vec<String> = STRINGS.iter().map(|s| (*s).to_owned()).collect();
    strings.extend(input.extra_strings.iter().cloned());
    PprofOut {
        sample_type: input
            .sample_types
            .iter()
            .map(|&(kind, unit)| ValueTypeOut {
                r#type: i64::from(kind),
                unit: i64::from(unit),
            })
            .collect(),
        sample: input
            .samples
            .iter()
            .map(|(locations, values)| SampleOut {
                location_id: locations.iter().map(|&l| u64::from(l)).collect(),
                value: values.clone(),
            })
            .collect(),
        location: input
            .locations
            .iter()
            .enumerate()
            .map(|(i, lines)| LocationOut {
                id: i as u64 + 1,
                line: lines
                    .iter()
                    .map(|&(function, line)| LineOut {
                        function_id: u64::from(function),
                        line: i64::from(line),
                    })
                    .collect(),
            })
            .collect(),
        function: input
            .functions
            .iter()
            .enumerate()
            .map(|(i, &(name, file))| FunctionOut {
                id: i as u64 + 1,
                name: i64::from(name),
                filename: i64::from(file),
            })
            .collect(),
        string_table: strings,
        duration_nanos: input.duration_nanos,
        period_type: None,
        period: input.period,
    }
}

fuzz_target!(|input: ProfileIn| {
    let bytes = profile(&input).encode_to_vec();
    let read = chokepoint_profile::read(
        bytes.as_slice(),
        "fuzz.pb",
        &chokepoint_profile::ReadOptions::default(),
    );
    let Some(profile) = read.profile else {
        return;
    };
    for stack in &profile.stacks {
        assert!(
            stack.frames.iter().all(|&f| (f as usize) < profile.frames.len()),
            "frames interned"
        );
    }
    let evidence = Evidence {
        profile: Some(profile),
        ..Evidence::default()
    };
    report::analyse_and_render("profile", evidence);
});
