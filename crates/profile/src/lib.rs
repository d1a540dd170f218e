//! The profile collector family: reading profiles other tools wrote — py-spy's raw output and
//! other collapsed ("folded") stacks, speedscope JSON, pprof, cProfile statistics — into one
//! [`Profile`], adding the source line of each frame when the file is at hand, and recording one
//! with py-spy.
//!
//! Formats are recognised by content, as trace files are. Input that cannot be read becomes a
//! [`Note`] naming the file and the position; what was read before it is kept.

mod collapsed;
mod pprof;
mod pstats;
mod record;
mod source;
mod speedscope;

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use chokepoint_evidence::{Note, Position, Profile, Severity};
use flate2::read::MultiGzDecoder;

pub use record::{RecordError, Recorder, Recording, find_py_spy, py_spy_command, record, start};
pub use source::attach_sources;

/// py-spy's default sampling rate, in samples per second.
pub const DEFAULT_RATE_HZ: f64 = 100.0;

/// The largest profile read whole (speedscope, pprof, cProfile), after decompression.
pub const MAX_DOCUMENT_BYTES: u64 = 2 << 30;

/// A profile format chokepoint reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProfileFormat {
    /// Collapsed stacks, one `frame;frame;… count` per line: py-spy `--format raw`, Pyroscope's
    /// and Brendan Gregg's folded stacks.
    Collapsed,
    /// speedscope's JSON (py-spy `--format speedscope`, pyinstrument).
    Speedscope,
    /// pprof's `profile.proto` (Pyroscope, Parca, Datadog exports).
    Pprof,
    /// Python's `cProfile`/`profile` statistics (`pstats.dump_stats`), in marshal format.
    CProfile,
}

impl fmt::Display for ProfileFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProfileFormat::Collapsed => "collapsed stacks",
            ProfileFormat::Speedscope => "speedscope",
            ProfileFormat::Pprof => "pprof",
            ProfileFormat::CProfile => "cProfile",
        })
    }
}

/// How to read.
#[derive(Clone, Debug)]
pub struct ReadOptions {
    /// Samples per second, for formats that do not record it (collapsed stacks).
    pub rate_hz: f64,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            rate_hz: DEFAULT_RATE_HZ,
        }
    }
}

/// What reading one source gave: the profile (what could be read), its format, its problems.
#[derive(Debug)]
pub struct ProfileRead {
    /// The file name, or `-`.
    pub source: String,
    /// The format it was read as.
    pub format: Option<ProfileFormat>,
    /// What could be read; `None` when nothing could.
    pub profile: Option<Profile>,
    /// What could not be read, with where.
    pub problems: Vec<Note>,
}

impl ProfileRead {
    fn failed(source: &str, format: Option<ProfileFormat>, problem: Note) -> ProfileRead {
        ProfileRead {
            source: source.to_owned(),
            format,
            profile: None,
            problems: vec![problem],
        }
    }
}

/// A problem of `source`, an error of the input.
pub(crate) fn problem(source: &str, position: Option<Position>, message: impl Into<String>) -> Note {
    let note = Note::new(Severity::Error, source, message);
    match position {
        Some(position) => note.at(position),
        None => note,
    }
}

/// Reads a profile file (`-` for standard input), gzip-compressed or not.
pub fn read_path(path: &Path, options: &ReadOptions) -> ProfileRead {
    let source = path.display().to_string();
    if source == "-" {
        return read(io::stdin().lock(), &source, options);
    }
    match File::open(path) {
        Ok(file) => read(file, &source, options),
        Err(e) => ProfileRead::failed(&source, None, problem(&source, None, format!("cannot open: {e}"))),
    }
}

/// Reads a profile from `input`, named `source` in problems.
pub fn read(input: impl Read, source: &str, options: &ReadOptions) -> ProfileRead {
    let mut input = BufReader::with_capacity(1 << 16, input);
    let gzip = match input.fill_buf() {
        Ok(head) => head.starts_with(&[0x1f, 0x8b]),
        Err(e) => {
            return ProfileRead::failed(source, None, problem(source, None, format!("cannot read: {e}")));
        }
    };
    if gzip {
        read_plain(
            BufReader::with_capacity(1 << 16, MultiGzDecoder::new(input)),
            source,
            options,
        )
    } else {
        read_plain(input, source, options)
    }
}

fn read_plain(mut input: impl BufRead, source: &str, options: &ReadOptions) -> ProfileRead {
    let head = match input.fill_buf() {
        Ok(head) => head.to_vec(),
        Err(e) => {
            return ProfileRead::failed(source, None, problem(source, None, format!("cannot read: {e}")));
        }
    };
    let Some(format) = sniff(&head) else {
        return ProfileRead::failed(
            source,
            None,
            problem(
                source,
                None,
                "not a profile chokepoint reads: expected collapsed stacks (py-spy --format raw), speedscope JSON, \
                 pprof or cProfile statistics",
            ),
        );
    };
    if format == ProfileFormat::Collapsed {
        let (profile, problems) = collapsed::read(input, source, options.rate_hz);
        return ProfileRead {
            source: source.to_owned(),
            format: Some(format),
            profile,
            problems,
        };
    }
    let mut bytes = Vec::new();
    if let Err(e) = input.take(MAX_DOCUMENT_BYTES + 1).read_to_end(&mut bytes) {
        let at = Position::Byte {
            byte: bytes.len() as u64,
        };
        return ProfileRead::failed(
            source,
            Some(format),
            problem(source, Some(at), format!("cannot read: {e}")),
        );
    }
    if bytes.len() as u64 > MAX_DOCUMENT_BYTES {
        return ProfileRead::failed(
            source,
            Some(format),
            problem(
                source,
                None,
                format!("larger than {} GiB: not read", MAX_DOCUMENT_BYTES >> 30),
            ),
        );
    }
    let result = match format {
        ProfileFormat::Speedscope => speedscope::read(&bytes, source),
        ProfileFormat::Pprof => pprof::read(&bytes, source),
        ProfileFormat::CProfile => pstats::read(&bytes, source),
        ProfileFormat::Collapsed => unreachable!("read as it streams"),
    };
    match result {
        Ok(profile) => ProfileRead {
            source: source.to_owned(),
            format: Some(format),
            profile: Some(profile),
            problems: Vec::new(),
        },
        Err(problem) => ProfileRead::failed(source, Some(format), problem),
    }
}

/// The format of a (decompressed) profile, from its first bytes.
fn sniff(head: &[u8]) -> Option<ProfileFormat> {
    let first = *head.first()?;
    let trimmed = head.trim_ascii_start();
    // A marshalled dict: `{` (or with marshal's reference flag) followed by a tuple key.
    if (first == b'{' || first == b'{' | 0x80)
        && head
            .get(1)
            .is_some_and(|&b| matches!(b & 0x7f, b'(' | b')' | b'0'))
    {
        return Some(ProfileFormat::CProfile);
    }
    if trimmed.first() == Some(&b'{') {
        return Some(ProfileFormat::Speedscope);
    }
    // pprof's first field is `sample_type` (field 1), `sample` (2) or another length-delimited
    // or varint field of `Profile`; collapsed stacks are text.
    if std::str::from_utf8(&head[..head.len().min(4096)]).is_err_and(|e| e.error_len().is_some())
        || head.iter().take(64).any(|&b| b < 0x09)
    {
        return Some(ProfileFormat::Pprof);
    }
    Some(ProfileFormat::Collapsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_told_apart_by_their_first_bytes() {
        assert_eq!(
            sniff(b"thread (1);main (a.py:1) 3\n"),
            Some(ProfileFormat::Collapsed)
        );
        assert_eq!(sniff(b"  {\"$schema\": \"x\"}"), Some(ProfileFormat::Speedscope));
        assert_eq!(sniff(&[0xfb, 0xa9, 0x03]), Some(ProfileFormat::CProfile));
        assert_eq!(
            sniff(&[0x0a, 0x04, 0x08, 0x01, 0x10, 0x02]),
            Some(ProfileFormat::Pprof)
        );
        assert_eq!(sniff(b""), None);
    }
}
