//! `chokepoint profile`: read profiles (or record one with py-spy), find the code that burns the
//! time, report.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use chokepoint_evidence::{Evidence, Note, Profile, ProfileBuilder, Severity};
use chokepoint_profile::{ReadOptions, read_path};
use chokepoint_report::{Input, Report};
use indicatif::{ProgressBar, ProgressStyle};

use crate::args::{ProfileConfig, RecordConfig};
use crate::output;

pub(crate) fn run(config: ProfileConfig) -> anyhow::Result<u8> {
    let mut notes = Vec::new();
    let mut paths = config.paths.clone();
    let mut recorded = None;
    if let Some(record) = &config.record {
        let (path, started, stopped) = record_with_progress(record, config.rate_hz, config.report.progress)?;
        if let Some(after) = stopped {
            notes.push(Note::new(
                Severity::Warning,
                "profile",
                format!(
                    "stopped by a signal after {:.1} s of the {} s asked: the profile covers what was recorded",
                    after.as_secs_f64(),
                    record.duration.as_secs()
                ),
            ));
        }
        notes.push(Note::new(
            Severity::Info,
            path.display().to_string(),
            format!(
                "the recording is kept here: `chokepoint profile {}` analyses it again",
                path.display()
            ),
        ));
        paths = vec![path];
        recorded = Some((record.pid, started));
    }
    let (profile, inputs, read_notes) = read_profiles(&paths, config.rate_hz, &config.sources);
    notes.extend(read_notes);
    let profile = profile.map(|mut profile| {
        if let Some((pid, started)) = recorded {
            profile.pid = Some(pid);
            profile.started_unix_s = started;
        }
        profile
    });
    let flame = profile
        .as_ref()
        .filter(|_| config.flamegraph.is_some())
        .map(chokepoint_detect::flame_input);
    let evidence = Evidence {
        profile,
        ..Evidence::default()
    };
    let recordings: Vec<PathBuf> = config.record.as_ref().map(|_| paths.clone()).unwrap_or_default();
    let (report, _) = crate::runs::report("profile", evidence, inputs, notes, &config.report, &recordings);
    if let (Some(path), Some(flame)) = (&config.flamegraph, &flame) {
        write_flamegraph(path, flame, &report)?;
    }
    Ok(output::finish(&report, &config.report))
}

/// Records with py-spy, showing the time left; returns the file, when it began (Unix s), and
/// how long it ran when Ctrl-C or SIGTERM stopped it early (py-spy then writes what it has).
pub(crate) fn record_with_progress(
    record: &RecordConfig,
    rate_hz: u32,
    progress: bool,
) -> anyhow::Result<(PathBuf, f64, Option<Duration>)> {
    let out = record.out.clone().unwrap_or_else(|| default_out(record.pid));
    let started = unix_now();
    let bar = if progress {
        let bar = ProgressBar::new(record.duration.as_secs());
        bar.set_style(
            ProgressStyle::with_template("{spinner} recording pid {msg} with py-spy: {pos}/{len} s")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_message(record.pid.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    } else {
        ProgressBar::hidden()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the signal watch")?;
    let mut signals = runtime
        .block_on(async { crate::signals::Stop::register() })
        .context("cannot watch for Ctrl-C")?;
    let begun = std::time::Instant::now();
    let mut recorder = chokepoint_profile::start(
        record.py_spy.as_deref(),
        record.pid,
        record.duration,
        rate_hz,
        &out,
    )?;
    let ticker = {
        let bar = bar.clone();
        std::thread::spawn(move || {
            while !bar.is_finished() && bar.position() < bar.length().unwrap_or(0) {
                std::thread::sleep(Duration::from_secs(1));
                bar.inc(1);
            }
        })
    };
    let stopped = runtime.block_on(async {
        while recorder.running() {
            tokio::select! {
                () = signals.requested() => return true,
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
        false
    });
    let result = if stopped { recorder.stop() } else { recorder.wait() };
    bar.finish_and_clear();
    let _ = ticker.join();
    let recording = result?;
    Ok((recording.path, started, stopped.then(|| begun.elapsed())))
}

fn default_out(pid: u32) -> PathBuf {
    std::env::temp_dir().join(format!("chokepoint-profile-{pid}-{}.raw", unix_now() as u64))
}

pub(crate) fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Reads every file into one profile (several files — one per worker process, say — add up),
/// with the source lines of its frames where the files are found.
pub(crate) fn read_profiles(
    paths: &[PathBuf],
    rate_hz: u32,
    sources: &[PathBuf],
) -> (Option<Profile>, Vec<Input>, Vec<Note>) {
    let options = ReadOptions {
        rate_hz: f64::from(rate_hz),
    };
    let mut inputs = Vec::new();
    let mut notes = Vec::new();
    let mut profiles = Vec::new();
    for path in paths {
        let read = read_path(path, &options);
        inputs.push(Input {
            source: read.source.clone(),
            format: read.format.map(|f| f.to_string()),
            spans: 0,
        });
        notes.extend(read.problems);
        match read.profile {
            Some(profile) => profiles.push((read.source, profile)),
            None if notes.iter().all(|n| n.source != read.source) => {
                notes.push(Note::new(Severity::Error, read.source, "held no samples"))
            }
            None => {}
        }
    }
    let mut profile = merge(profiles, &mut notes);
    if let Some(profile) = &mut profile {
        chokepoint_profile::attach_sources(profile, sources);
    }
    (profile, inputs, notes)
}

/// One profile from several; profiles that count differently (samples and measured time)
/// cannot be added: the first kind is kept, the others are noted.
fn merge(mut profiles: Vec<(String, Profile)>, notes: &mut Vec<Note>) -> Option<Profile> {
    if profiles.len() <= 1 {
        return profiles.pop().map(|(_, p)| p);
    }
    let first = &profiles[0].1;
    let mut builder = ProfileBuilder::new(&first.format, first.sampled, first.rate_hz);
    let (sampled, rate_hz) = (first.sampled, first.rate_hz);
    let mut duration_s: f64 = 0.0;
    for (source, profile) in &profiles {
        if profile.sampled != sampled || (sampled && (profile.rate_hz - rate_hz).abs() > 1e-9) {
            notes.push(Note::new(
                Severity::Warning,
                source.clone(),
                "counts differently from the first profile (samples at another rate, or measured time): not added",
            ));
            continue;
        }
        duration_s = duration_s.max(profile.wall_s());
        let frames: Vec<u32> = profile.frames.iter().map(|f| builder.frame(f.clone())).collect();
        for stack in &profile.stacks {
            let thread = builder.thread(&format!(
                "{source}: {}",
                profile
                    .threads
                    .get(stack.thread as usize)
                    .map_or("", String::as_str)
            ));
            builder.add(
                thread,
                stack.frames.iter().map(|&f| frames[f as usize]).collect(),
                stack.count,
            );
        }
    }
    Some(builder.finish(duration_s, 0.0))
}

pub(crate) fn write_flamegraph(
    path: &Path,
    flame: &chokepoint_detect::FlameInput,
    report: &Report,
) -> anyhow::Result<()> {
    let svg = chokepoint_report::render_flamegraph(flame, report).context("cannot draw the flame graph")?;
    std::fs::write(path, svg).with_context(|| format!("cannot write {}", path.display()))
}
