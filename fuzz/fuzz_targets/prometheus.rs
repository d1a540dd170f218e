//! Any bytes as a target's Prometheus text exposition (`load --metrics`). Never a panic; the
//! gauges kept stay bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| chokepoint_load::fuzzing::prometheus(data));
