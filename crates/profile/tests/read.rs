//! The readers against profiles recorded with the real tools (tests/data/record.sh): py-spy raw
//! and speedscope, pyinstrument's speedscope, cProfile statistics, a gzip-compressed raw file.

use std::path::{Path, PathBuf};

use chokepoint_evidence::{Position, Profile};
use chokepoint_profile::{ProfileFormat, ReadOptions, read, read_path};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn profile(name: &str, format: ProfileFormat) -> Profile {
    let read = read_path(&data(name), &ReadOptions::default());
    assert!(read.problems.is_empty(), "{name}: {:?}", read.problems);
    assert_eq!(read.format, Some(format), "{name}");
    read.profile.unwrap_or_else(|| panic!("{name}: no profile"))
}

/// The share of the profile under frames of `function` in a file ending with `file`.
fn share_under(profile: &Profile, function: &str, file: &str) -> f64 {
    let hit: u64 = profile
        .stacks
        .iter()
        .filter(|s| {
            profile
                .frames_of(s)
                .any(|f| f.function == function && f.file.ends_with(file))
        })
        .map(|s| s.count)
        .sum();
    hit as f64 / profile.total() as f64
}

#[test]
fn py_spy_raw_shows_the_workload_functions() {
    let profile = profile("workload.raw", ProfileFormat::Collapsed);
    assert!(profile.sampled);
    // 3 s at 100 Hz, idle included.
    assert!((250..=320).contains(&profile.total()), "{}", profile.total());
    for function in ["serialize", "log_lines", "compile_patterns", "sort_rows"] {
        let share = share_under(&profile, function, "workload.py");
        assert!(share > 0.02, "{function}: {share}");
    }
    assert!(
        profile.threads.iter().all(|t| t.starts_with("thread ")),
        "{:?}",
        profile.threads
    );
}

#[test]
fn gzip_compressed_raw_reads_the_same() {
    let plain = profile("workload.raw", ProfileFormat::Collapsed);
    let gzipped = profile("workload.raw.gz", ProfileFormat::Collapsed);
    assert_eq!(plain.total(), gzipped.total());
    assert_eq!(plain.stacks.len(), gzipped.stacks.len());
}

#[test]
fn py_spy_speedscope_is_sampled_at_its_rate_and_without_thread_frames() {
    let profile = profile("workload.speedscope.json", ProfileFormat::Speedscope);
    assert!(profile.sampled);
    assert!((profile.rate_hz - 100.0).abs() < 1e-6, "{}", profile.rate_hz);
    assert!(
        profile
            .frames_of(&profile.stacks[0])
            .next()
            .is_some_and(|f| !f.function.starts_with("thread ("))
    );
    assert!(share_under(&profile, "serialize", "workload.py") > 0.02);
    assert!((2.5..3.5).contains(&profile.wall_s()), "{}", profile.wall_s());
}

#[test]
fn pyinstrument_speedscope_is_measured_time() {
    let profile = profile("workload.pyinstrument.json", ProfileFormat::Speedscope);
    assert!(!profile.sampled);
    assert!((2.5..4.0).contains(&profile.wall_s()), "{}", profile.wall_s());
    assert!(share_under(&profile, "compile_patterns", "workload.py") > 0.02);
    assert!(share_under(&profile, "_compile", "re/__init__.py") > 0.02);
}

#[test]
fn cprofile_statistics_give_functions_and_their_callers() {
    let profile = profile("workload.prof", ProfileFormat::CProfile);
    assert!(!profile.sampled);
    // cProfile sees C functions: the sort is there by name, called from its Python caller.
    let sorted = profile
        .stacks
        .iter()
        .find(|s| {
            let frames: Vec<_> = profile.frames_of(s).collect();
            let n = frames.len();
            n >= 2 && frames[n - 1].function.contains("sorted") && frames[n - 2].function == "sort_rows"
        })
        .expect("sorted() called from sort_rows");
    // Above the caller, its own callers: the stack reaches the module.
    let stack: Vec<_> = profile.frames_of(sorted).map(|f| f.function.as_str()).collect();
    assert_eq!(stack[..stack.len() - 1].last(), Some(&"sort_rows"));
    assert!(stack.contains(&"main"), "{stack:?}");
    assert!(sorted.count > 0);
    assert!(profile.wall_s() > 0.5, "{}", profile.wall_s());
}

#[test]
fn truncated_input_is_a_problem_with_its_position() {
    let bytes = std::fs::read(data("workload.prof")).expect("fixture");
    let read = read(&bytes[..bytes.len() / 2], "half.prof", &ReadOptions::default());
    assert!(read.profile.is_none());
    assert!(
        matches!(read.problems[0].position, Some(Position::Byte { .. })),
        "{:?}",
        read.problems
    );
    let text = std::fs::read(data("workload.speedscope.json")).expect("fixture");
    let read = chokepoint_profile::read(&text[..text.len() / 2], "half.json", &ReadOptions::default());
    assert!(
        matches!(read.problems[0].position, Some(Position::Line { .. })),
        "{:?}",
        read.problems
    );
}

/// Found by `scripts/fuzz.sh profile`: a speedscope sample weighing 10^30-odd seconds made a
/// count that overflowed when added to the same stack again. Counts are capped instead, and the
/// profile's total still adds up.
#[test]
fn an_absurd_sample_weight_is_capped_not_an_overflow() {
    let read = read_path(&data("fuzz-speedscope-huge-weight.json"), &ReadOptions::default());
    let profile = read.profile.expect("read");
    let total: u64 = profile.stacks.iter().map(|s| s.count).sum();
    assert!(profile.stacks.iter().all(|s| s.count <= 1 << 40), "{total}");
}
