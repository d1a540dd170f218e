//! Collapsed ("folded") stacks: one line per distinct stack, `frame;frame;… count`, root first.
//! py-spy `--format raw` writes frames as `function (file:line)` and, with `--threads`, a first
//! frame `thread (id)` (later `thread (id): name`); Pyroscope writes `file:line - function`. A
//! line with only a count is an empty stack.

use std::io::BufRead;

use chokepoint_evidence::{Frame, Note, Position, Profile, ProfileBuilder};

use crate::problem;

/// Problems reported one by one; past these, counted.
const MAX_PROBLEMS: usize = 10;

/// What a line that never found its count is.
const NO_COUNT: &str = "expected `frame;frame;… count`: the line does not end with a sample count";

/// Physical lines one stack may span (a frame name with line breaks in it).
const MAX_CONTINUATION_LINES: u64 = 4;

/// The thread of stacks that name none.
const ALL_THREADS: &str = "all threads";

pub(crate) fn read(mut input: impl BufRead, source: &str, rate_hz: f64) -> (Option<Profile>, Vec<Note>) {
    let mut builder = ProfileBuilder::new("collapsed stacks", true, rate_hz);
    let mut problems = Vec::new();
    let mut more_problems = 0u64;
    let mut line = Vec::new();
    let mut number = 0u64;
    let mut byte = 0u64;
    let mut stacks = 0u64;
    // A line still waiting for its count, and since which line, how many lines.
    let mut pending: Option<(u64, String)> = None;
    let mut pending_from: Option<(u64, u64)> = None;
    let mut continued = 0u64;
    loop {
        line.clear();
        match input.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(n) => {
                number += 1;
                byte += n as u64;
            }
            Err(e) => {
                problems.push(problem(
                    source,
                    Some(Position::Byte { byte }),
                    format!("cannot read further: {e}; the stacks before it are analysed"),
                ));
                break;
            }
        }
        let text = match std::str::from_utf8(&line) {
            Ok(text) => text.trim_end_matches(['\n', '\r']),
            Err(_) => {
                report(
                    &mut problems,
                    &mut more_problems,
                    source,
                    number,
                    "not UTF-8 text",
                );
                continue;
            }
        };
        // Only an indented line continues the one before; any other starts a stack of its own.
        if pending.is_some() && !text.starts_with([' ', '\t']) {
            pending = None;
            if let Some((first, _)) = pending_from.take() {
                report(&mut problems, &mut more_problems, source, first, NO_COUNT);
            }
        }
        if text.trim().is_empty() && pending.is_none() {
            continue;
        }
        // A line without its count may continue on the next: py-spy's non-blocking sampling
        // reads a running process's memory, and a torn read can put a line break in a frame name.
        let joined;
        let text = match pending.take() {
            Some((_, before)) => {
                joined = format!("{before} {}", text.trim_start());
                joined.as_str()
            }
            None => text,
        };
        let (stack, count) = match text.rsplit_once(' ') {
            Some((stack, count)) => (stack, count),
            None => ("", text),
        };
        let Ok(count) = count.trim().parse::<u64>() else {
            let (first, lines) = pending_from.map_or((number, 1), |(first, lines)| (first, lines + 1));
            if lines < MAX_CONTINUATION_LINES {
                pending = Some((first, text.to_owned()));
                pending_from = Some((first, lines));
            } else {
                pending_from = None;
                report(&mut problems, &mut more_problems, source, first, NO_COUNT);
            }
            continue;
        };
        if pending_from.take().is_some() {
            continued += 1;
        }
        add(&mut builder, stack, count);
        stacks += 1;
    }
    if let Some((first, _)) = pending_from {
        report(&mut problems, &mut more_problems, source, first, NO_COUNT);
    }
    if continued > 0 {
        problems.push(chokepoint_evidence::Note::new(
            chokepoint_evidence::Severity::Warning,
            source,
            format!(
                "{continued} stack(s) had a line break inside a frame name (a torn read of the running process by \
                 py-spy's non-blocking sampling) and were read across lines"
            ),
        ));
    }
    if more_problems > 0 {
        problems.push(problem(
            source,
            None,
            format!("{more_problems} more line(s) could not be read"),
        ));
    }
    ((stacks > 0).then(|| builder.finish(0.0, 0.0)), problems)
}

fn report(problems: &mut Vec<Note>, more: &mut u64, source: &str, line: u64, message: &str) {
    if problems.len() < MAX_PROBLEMS {
        problems.push(problem(source, Some(Position::Line { line, column: 1 }), message));
    } else {
        *more += 1;
    }
}

/// Adds one line's stack.
fn add(builder: &mut ProfileBuilder, stack: &str, count: u64) {
    let mut thread = None;
    let mut frames = Vec::new();
    for text in stack.split(';') {
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        if frames.is_empty() {
            if let Some(id) = thread_id(text) {
                thread = Some(format!("thread {id}"));
                continue;
            }
            if text.starts_with("process ") {
                continue;
            }
        }
        frames.push(builder.frame(frame(text)));
    }
    let thread = builder.thread(thread.as_deref().unwrap_or(ALL_THREADS));
    builder.add(thread, frames, count);
}

/// `thread (477)` or `thread (0x7f3a…): MainThread` → `477`.
fn thread_id(text: &str) -> Option<&str> {
    let rest = text.strip_prefix("thread (")?;
    let (id, _) = rest.split_once(')')?;
    Some(id)
}

/// A frame as py-spy (`function (file:line)`) or Pyroscope (`file:line - function`) writes it.
fn frame(text: &str) -> Frame {
    if !text.ends_with(')')
        && let Some((place, function)) = text.split_once(" - ")
        && let Some((file, line)) = place.rsplit_once(':')
        && let Ok(line) = line.parse()
    {
        return Frame {
            function: function.to_owned(),
            file: file.to_owned(),
            line,
            source: None,
        };
    }
    Frame::parse(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_text(text: &str) -> (Option<Profile>, Vec<Note>) {
        read(text.as_bytes(), "test", 100.0)
    }

    #[test]
    fn py_spy_raw_lines_become_stacks_of_their_threads() {
        let (profile, problems) = read_text(
            "thread (477);<module> (busy.py:7);work (busy.py:6) 32\n\
             thread (477): MainThread;<module> (busy.py:7);work (busy.py:6) 85\n\
             thread (478);run (worker.py:3) 5\n\
             7\n",
        );
        assert!(problems.is_empty(), "{problems:?}");
        let profile = profile.expect("a profile");
        assert_eq!(profile.total(), 129);
        assert_eq!(profile.threads, ["thread 477", "thread 478", ALL_THREADS]);
        let work = &profile.stacks[0];
        assert_eq!(work.count, 117, "the two spellings of one thread are one thread");
        let leaf = profile.frames_of(work).last().expect("frames");
        assert_eq!(
            (leaf.function.as_str(), leaf.file.as_str(), leaf.line),
            ("work", "busy.py", 6)
        );
        assert!(
            profile.stacks[2].frames.is_empty(),
            "a lone count is an empty stack"
        );
    }

    #[test]
    fn a_torn_frame_name_with_a_line_break_is_read_across_lines() {
        // As py-spy --nonblocking wrote it during the testbed's run: a garbage frame ` (,\n "t14")`.
        let (profile, problems) = read_text(
            "thread (1): MainThread;sleep (asyncio/tasks.py:640); (,\n      \"t14\") 1\nthread (1): MainThread;main (a.py:1) 3\n",
        );
        let profile = profile.expect("a profile");
        assert_eq!(profile.total(), 4);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].severity, chokepoint_evidence::Severity::Warning);
        // A line that never finds its count is still an error, at its first line.
        let (_, problems) = read_text("main (a.py:1) 3\nbroken;\n  still\n  broken\n  no\n  end\n");
        assert_eq!(
            problems[0].position,
            Some(Position::Line { line: 2, column: 1 }),
            "{problems:?}"
        );
    }

    #[test]
    fn pyroscope_frames_are_read_too() {
        let (profile, _) = read_text("app.py:3 - main;app.py:12 - handler 4\n");
        let profile = profile.expect("a profile");
        assert_eq!(profile.frames[1].function, "handler");
        assert_eq!(profile.frames[1].line, 12);
    }

    #[test]
    fn bad_lines_are_reported_with_their_line_and_the_rest_is_kept() {
        let (profile, problems) = read_text("main (a.py:1) 3\nmain (a.py:1) many\nmain (a.py:2) 1\n");
        assert_eq!(profile.expect("a profile").total(), 4);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].position, Some(Position::Line { line: 2, column: 1 }));
    }
}
