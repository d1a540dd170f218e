//! Notes: what a collector or the analysis has to say about the evidence itself — input it could
//! not read (with where), evidence it could not gather, measurements to read with care.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How much a note matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Evidence was lost: input that could not be read, a source that failed. The exit code is 2.
    Error,
    /// The evidence is incomplete or a measurement is suspect; the findings stand, with care.
    Warning,
    /// Worth knowing.
    Info,
}

impl Severity {
    /// The lowercase name used in output.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

/// Where in a source a note points.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Position {
    /// A byte offset (after gzip decompression, when the file is compressed).
    Byte {
        /// The offset.
        byte: u64,
    },
    /// A line and column, both counted from 1.
    Line {
        /// The line.
        line: u64,
        /// The column.
        column: u64,
    },
    /// A protobuf record, counted from 1, and the byte offset of its length prefix.
    Record {
        /// The record.
        index: u64,
        /// Its byte offset.
        byte: u64,
    },
    /// A step of a load ramp, counted from 1.
    Step {
        /// The step.
        step: u64,
    },
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Byte { byte } => write!(f, "byte {byte}"),
            Position::Line { line, column } => write!(f, "line {line}, column {column}"),
            Position::Record { index, byte } => write!(f, "record {index} at byte {byte}"),
            Position::Step { step } => write!(f, "step {step}"),
        }
    }
}

/// One note: its severity, its source (a file, `-`, `load ramp`, `PostgreSQL shop`), where in
/// the source, and what it says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Note {
    /// How much it matters.
    pub severity: Severity,
    /// What it is about: a file name, `-` for standard input, `load ramp`, `PostgreSQL shop`.
    pub source: String,
    /// Where in the source, when it is a place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<Position>,
    /// What it says.
    pub message: String,
}

impl Note {
    /// A note about a source as a whole.
    pub fn new(severity: Severity, source: impl Into<String>, message: impl Into<String>) -> Note {
        Note {
            severity,
            source: source.into(),
            position: None,
            message: message.into(),
        }
    }

    /// The same note, at a position.
    pub fn at(mut self, position: Position) -> Note {
        self.position = Some(position);
        self
    }
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.position {
            Some(position) => write!(f, "{}: {position}: {}", self.source, self.message),
            None => write!(f, "{}: {}", self.source, self.message),
        }
    }
}
