//! Any bytes as a trace file: format sniffing, gzip, OTLP/JSON and protobuf, Jaeger, Zipkin.
//! Never a panic; every span handed on has an id.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let options = chokepoint_traces::ReadOptions {
        max_record_bytes: 1 << 20,
    };
    let mut spans = 0u64;
    let report = chokepoint_traces::read_source("fuzz", data, &options, &mut |_, _| spans += 1);
    assert_eq!(report.spans, spans);
});
