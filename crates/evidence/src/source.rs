//! Source code as evidence: the shapes of bottlenecks a scan of the service's Python source found,
//! each at its line, with the handler it is reachable from and the fix in the framework's terms.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::DetectorId;

/// What a scan of the service's source found.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SourceScan {
    /// The paths scanned, as given.
    pub roots: Vec<String>,
    /// Python files read.
    pub files: u64,
    /// Their size, in bytes.
    pub bytes: u64,
    /// The shapes found, in file and line order.
    pub shapes: Vec<Shape>,
}

/// One shape of a bottleneck at one place in the source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Shape {
    /// The detector whose problem it has the shape of.
    pub detector: DetectorId,
    /// The file, relative to the root scanned when under it.
    pub file: String,
    /// The line, from 1.
    pub line: u32,
    /// The column, from 1, in characters.
    pub column: u32,
    /// The enclosing function, `Class.method` in a class.
    pub function: String,
    /// The line's text, trimmed.
    pub excerpt: String,
    /// What is there, in words: "`time.sleep` inside `async def`".
    pub what: String,
    /// The fix, written as code in the framework's terms.
    pub fix: String,
    /// How sure the rule is that the shape is the problem.
    pub certainty: Certainty,
    /// The request handler the line runs in or is reached from, when one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler: Option<Handler>,
    /// A statement whose text is written on the line (SQL literal), as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement: Option<String>,
}

/// How sure a rule is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Certainty {
    /// The shape may be harmless (a handler that flushes may be cheap).
    Low,
    /// The shape is the problem unless something the source does not show says otherwise.
    Medium,
    /// The shape is the problem wherever it runs.
    High,
}

/// A request handler, as the source declares it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Handler {
    /// `fastapi`, `flask`, `django`, `starlette`.
    pub framework: String,
    /// The handler's function, `Class.method` for a class-based view.
    pub function: String,
    /// The routes it serves, when the source declares them: `GET /orders/{id}`, or `/orders/` when
    /// the method is not declared.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<String>,
    /// Whether the line is in the handler itself, rather than in a function it calls.
    pub direct: bool,
}
