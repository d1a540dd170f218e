//! Profile sources: files recorded before (py-spy, collapsed stacks, pprof, …) and a recording
//! made now with py-spy.

use std::path::PathBuf;
use std::time::Duration;

use chokepoint_evidence::{Evidence, Note, Profile, ProfileBuilder, Severity};
use chokepoint_profile::{ReadOptions, read_path};
use chokepoint_report::Input;

use crate::{Observer, Partial, Source, Stop};

/// Profiles recorded before: several files (one per worker process, say) add up to one.
pub struct ProfileFiles {
    /// The files.
    pub paths: Vec<PathBuf>,
    /// The sample rate of collapsed stacks that do not say it, per second.
    pub rate_hz: u32,
    /// Where the profiled code lives, for the source lines of its frames.
    pub sources: Vec<PathBuf>,
    /// Whether the files are kept in a saved run.
    pub keep: bool,
}

impl Source for ProfileFiles {
    fn collect(self: Box<Self>, _before: &Evidence, _observer: &dyn Observer) -> anyhow::Result<Partial> {
        let (profile, inputs, notes) = read_profiles(&self.paths, self.rate_hz, &self.sources);
        let recordings = crate::files_kept(&self.paths, self.keep);
        Ok(Partial {
            evidence: Evidence {
                profile,
                ..Evidence::default()
            },
            inputs,
            notes,
            recordings,
            scratch: Vec::new(),
        })
    }
}

/// A profile recorded now: py-spy attached to a running process for a while.
pub struct Recording {
    /// The process.
    pub pid: u32,
    /// How long to record.
    pub duration: Duration,
    /// Where the recording is written (a temporary file when not given).
    pub out: Option<PathBuf>,
    /// py-spy, when it is not on the PATH.
    pub py_spy: Option<PathBuf>,
    /// Samples per second.
    pub rate_hz: u32,
    /// Where the profiled code lives.
    pub sources: Vec<PathBuf>,
    /// Once requested, the recording ends early (py-spy writes what it has).
    pub stop: Stop,
}

impl Source for Recording {
    fn collect(self: Box<Self>, _before: &Evidence, observer: &dyn Observer) -> anyhow::Result<Partial> {
        let out = self.out.clone().unwrap_or_else(|| {
            std::env::temp_dir().join(format!(
                "chokepoint-profile-{}-{}.raw",
                self.pid,
                crate::unix_now() as u64
            ))
        });
        let started = crate::unix_now();
        let begun = std::time::Instant::now();
        let mut recorder = chokepoint_profile::start(
            self.py_spy.as_deref(),
            self.pid,
            self.duration,
            self.rate_hz,
            &out,
        )?;
        let what = format!("recording pid {} with py-spy", self.pid);
        let mut stopped = false;
        while recorder.running() {
            if self.stop.requested() {
                stopped = true;
                break;
            }
            observer.progress(
                &what,
                begun.elapsed().as_secs(),
                Some(self.duration.as_secs()),
                "s",
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let result = if stopped { recorder.stop() } else { recorder.wait() };
        observer.done();
        let path = result?.path;
        let mut notes = Vec::new();
        if stopped {
            notes.push(Note::new(
                Severity::Warning,
                "profile",
                format!(
                    "stopped by a signal after {:.1} s of the {} s asked: the profile covers what was recorded",
                    begun.elapsed().as_secs_f64(),
                    self.duration.as_secs()
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
        let (profile, inputs, read) = read_profiles(std::slice::from_ref(&path), self.rate_hz, &self.sources);
        notes.extend(read);
        let profile = profile.map(|mut profile| {
            profile.pid = Some(self.pid);
            profile.started_unix_s = started;
            profile
        });
        Ok(Partial {
            evidence: Evidence {
                profile,
                ..Evidence::default()
            },
            inputs,
            notes,
            recordings: vec![path],
            scratch: Vec::new(),
        })
    }
}

/// Reads every file into one profile (several files — one per worker process, say — add up),
/// with the source lines of its frames where the files are found.
pub fn read_profiles(
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

/// The notes on a recording of our own. py-spy's non-blocking sampling reads a running process's
/// memory, so a torn read can leave a line no reader can split; when the rest was read, those
/// lines are one warning, not an error that fails the run.
pub(crate) fn own_recording_notes(notes: Vec<Note>, read: bool) -> Vec<Note> {
    if !read {
        return notes;
    }
    let (torn, mut kept): (Vec<Note>, Vec<Note>) =
        notes.into_iter().partition(|n| n.severity == Severity::Error);
    if let Some(first) = torn.first() {
        kept.push(Note::new(
            Severity::Warning,
            first.source.clone(),
            format!(
                "parts of py-spy's recording could not be read and were skipped (torn reads of the running process \
                 by non-blocking sampling; the first, {}: {}); the other stacks are analysed",
                first.position.as_ref().map_or_else(String::new, |p| p.to_string()),
                first.message
            ),
        ));
    }
    kept
}

#[cfg(test)]
mod tests {
    use chokepoint_evidence::Position;

    use super::*;

    #[test]
    fn torn_lines_of_our_own_recording_warn_when_the_rest_was_read() {
        let torn = |line| Note {
            position: Some(Position::Line { line, column: 1 }),
            ..Note::new(Severity::Error, "/tmp/p.raw", "expected `frame;frame;… count`")
        };
        let notes = vec![
            torn(152),
            torn(154),
            Note::new(Severity::Info, "/tmp/p.raw", "read"),
        ];
        let read = own_recording_notes(notes.clone(), true);
        assert!(read.iter().all(|n| n.severity != Severity::Error), "{read:?}");
        let warning = read
            .iter()
            .find(|n| n.severity == Severity::Warning)
            .expect("a warning");
        assert!(warning.message.contains("line 152"), "{}", warning.message);
        // Nothing read at all stays an error.
        let unread = own_recording_notes(notes, false);
        assert_eq!(unread.iter().filter(|n| n.severity == Severity::Error).count(), 2);
    }
}
