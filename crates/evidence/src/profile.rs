//! A profile of a process: where its threads were, sample by sample (py-spy, speedscope, pprof),
//! or function by function (cProfile), as stacks with counts.
//!
//! Stacks are stored once each, their frames interned in one table, so a profile of millions of
//! samples takes the memory of its distinct stacks. A frame is written `function (file:line)`,
//! as py-spy writes it; the collector adds the text of its source line when the file was at hand
//! (a sampler sees only Python frames, so `sorted(…)` or `time.sleep(…)` show as the line that
//! calls them).

use std::collections::HashMap;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A profile: frames, threads and the distinct stacks with their sample counts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Profile {
    /// What it was read from (`py-spy raw`, `speedscope`, `pprof`, `cProfile`).
    pub format: String,
    /// Whether counts are samples taken at `rate_hz`; false for measured time (cProfile's
    /// function totals, pyinstrument's events), whose counts are microseconds.
    pub sampled: bool,
    /// Samples per second per thread (py-spy's default is 100).
    pub rate_hz: f64,
    /// The wall-clock time it covers, in seconds (0 when unknown: then samples ÷ rate).
    pub duration_s: f64,
    /// When it began, in seconds since the Unix epoch (0 when unknown).
    pub started_unix_s: f64,
    /// The process profiled, when known.
    pub pid: Option<u32>,
    /// Every distinct frame.
    pub frames: Vec<Frame>,
    /// Thread names (`MainThread`, `thread 0x7f…`), by index.
    pub threads: Vec<String>,
    /// The distinct stacks.
    pub stacks: Vec<Stack>,
}

/// A frame: a function at a line of a file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct Frame {
    /// The function (`JSONEncoder.encode`, `<lambda>`, `<built-in method builtins.sorted>`).
    pub function: String,
    /// The file as the profile names it (may be relative to a package: `json/encoder.py`).
    pub file: String,
    /// The line, 0 when unknown.
    pub line: u32,
    /// The source text of that line, when the file could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// One distinct stack of one thread and how often it was seen.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Stack {
    /// Index into [`Profile::threads`].
    pub thread: u32,
    /// Indexes into [`Profile::frames`], root first.
    pub frames: Vec<u32>,
    /// Samples (or, unsampled, microseconds).
    pub count: u64,
}

impl Profile {
    /// Samples (or microseconds) in all.
    pub fn total(&self) -> u64 {
        self.stacks.iter().map(|s| s.count).sum()
    }

    /// Seconds one count stands for.
    pub fn seconds_per_count(&self) -> f64 {
        if self.sampled && self.rate_hz > 0.0 {
            1.0 / self.rate_hz
        } else {
            1e-6
        }
    }

    /// The wall-clock time it covers: as recorded, or the busiest thread's samples ÷ the rate.
    pub fn wall_s(&self) -> f64 {
        if self.duration_s > 0.0 {
            return self.duration_s;
        }
        let mut per_thread: HashMap<u32, u64> = HashMap::new();
        for stack in &self.stacks {
            *per_thread.entry(stack.thread).or_default() += stack.count;
        }
        per_thread.values().copied().max().unwrap_or(0) as f64 * self.seconds_per_count()
    }

    /// The frames of a stack, root first.
    pub fn frames_of<'a>(&'a self, stack: &'a Stack) -> impl DoubleEndedIterator<Item = &'a Frame> + 'a {
        stack.frames.iter().map(|&i| &self.frames[i as usize])
    }
}

impl Frame {
    /// Reads `function (file:line)`, `function (file)` or a bare `function`, as collapsed stacks
    /// write frames.
    pub fn parse(text: &str) -> Frame {
        let text = text.trim();
        if let Some(open) = text.rfind(" (")
            && let Some(inner) = text[open + 2..].strip_suffix(')')
        {
            let function = text[..open].to_owned();
            let (file, line) = match inner.rsplit_once(':') {
                Some((file, line)) if line.parse::<u32>().is_ok() => (file, line.parse().unwrap_or(0)),
                _ => (inner, 0),
            };
            return Frame {
                function,
                file: file.to_owned(),
                line,
                source: None,
            };
        }
        Frame {
            function: text.to_owned(),
            ..Frame::default()
        }
    }
}

impl fmt::Display for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.file.is_empty(), self.line) {
            (true, _) => f.write_str(&self.function),
            (false, 0) => write!(f, "{} ({})", self.function, self.file),
            (false, line) => write!(f, "{} ({}:{line})", self.function, self.file),
        }
    }
}

/// The most samples one stack may count: 2^40, over 300 years at 100 Hz, and few enough that
/// 2^23 stacks of it still sum in a `u64`.
pub(crate) const MAX_STACK_COUNT: u64 = 1 << 40;

/// Builds a [`Profile`], interning frames and threads and adding up equal stacks.
#[derive(Debug, Default)]
pub struct ProfileBuilder {
    profile: Profile,
    frames: HashMap<Frame, u32>,
    threads: HashMap<String, u32>,
    /// `[thread, frames…]` → index into the profile's stacks.
    stacks: HashMap<Vec<u32>, usize>,
    key: Vec<u32>,
}

impl ProfileBuilder {
    /// A builder for a profile read as `format`.
    pub fn new(format: &str, sampled: bool, rate_hz: f64) -> ProfileBuilder {
        ProfileBuilder {
            profile: Profile {
                format: format.to_owned(),
                sampled,
                rate_hz,
                ..Profile::default()
            },
            ..ProfileBuilder::default()
        }
    }

    /// The index of this frame, interned.
    pub fn frame(&mut self, frame: Frame) -> u32 {
        if let Some(&index) = self.frames.get(&frame) {
            return index;
        }
        let index = self.profile.frames.len() as u32;
        self.profile.frames.push(frame.clone());
        self.frames.insert(frame, index);
        index
    }

    /// The index of this thread, interned.
    pub fn thread(&mut self, name: &str) -> u32 {
        if let Some(&index) = self.threads.get(name) {
            return index;
        }
        let index = self.profile.threads.len() as u32;
        self.profile.threads.push(name.to_owned());
        self.threads.insert(name.to_owned(), index);
        index
    }

    /// Adds `count` samples of a stack (frame indexes, root first) of a thread. A stack's
    /// count is capped at `MAX_STACK_COUNT` (2^40), so sums over a profile's stacks cannot overflow
    /// whatever a file claims.
    pub fn add(&mut self, thread: u32, frames: Vec<u32>, count: u64) {
        if count == 0 {
            return;
        }
        let count = count.min(MAX_STACK_COUNT);
        self.key.clear();
        self.key.push(thread);
        self.key.extend_from_slice(&frames);
        match self.stacks.get(self.key.as_slice()) {
            Some(&at) => {
                let stack = &mut self.profile.stacks[at];
                stack.count = stack.count.saturating_add(count).min(MAX_STACK_COUNT);
            }
            None => {
                self.stacks.insert(self.key.clone(), self.profile.stacks.len());
                self.profile.stacks.push(Stack {
                    thread,
                    frames,
                    count,
                });
            }
        }
    }

    /// Distinct stacks so far.
    pub fn stacks(&self) -> usize {
        self.profile.stacks.len()
    }

    /// The profile, with its duration (0 when unknown) and start.
    pub fn finish(mut self, duration_s: f64, started_unix_s: f64) -> Profile {
        self.profile.duration_s = duration_s;
        self.profile.started_unix_s = started_unix_s;
        self.profile
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_read_as_py_spy_writes_them() {
        let frame = Frame::parse("JSONEncoder.encode (json/encoder.py:200)");
        assert_eq!(frame.function, "JSONEncoder.encode");
        assert_eq!(frame.file, "json/encoder.py");
        assert_eq!(frame.line, 200);
        assert_eq!(frame.to_string(), "JSONEncoder.encode (json/encoder.py:200)");
        let frozen = Frame::parse("_find_and_load (<frozen importlib._bootstrap>:1176)");
        assert_eq!(frozen.file, "<frozen importlib._bootstrap>");
        assert_eq!(Frame::parse("main").function, "main");
    }

    #[test]
    fn equal_stacks_add_up() {
        let mut builder = ProfileBuilder::new("test", true, 100.0);
        let thread = builder.thread("MainThread");
        let a = builder.frame(Frame::parse("a (app.py:1)"));
        let b = builder.frame(Frame::parse("b (app.py:2)"));
        builder.add(thread, vec![a, b], 3);
        builder.add(thread, vec![a, b], 2);
        builder.add(thread, vec![a], 1);
        let profile = builder.finish(0.0, 0.0);
        assert_eq!(profile.stacks.len(), 2);
        assert_eq!(profile.total(), 6);
        assert!((profile.wall_s() - 0.06).abs() < 1e-9);
    }
}
