//! Any bytes as a profile: sniffing, gzip, collapsed stacks (py-spy raw, Pyroscope),
//! speedscope, pprof, cProfile's marshal format. Never a panic; a profile read has counts that
//! add up.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let read = chokepoint_profile::read(data, "fuzz", &chokepoint_profile::ReadOptions::default());
    if let Some(profile) = read.profile {
        for stack in &profile.stacks {
            assert!(
                stack.frames.iter().all(|&f| (f as usize) < profile.frames.len()),
                "frames interned"
            );
        }
    }
});
