//! The source collector: the service's Python source, read with Ruff's parser, and the shapes of
//! bottlenecks in it — each an existing detector id at a line, with the handler it runs in and
//! the fix in the framework's terms.
//!
//! The walk respects `.gitignore`, skips virtual environments, migrations and tests unless told
//! otherwise, and reads and parses files in parallel. A file that cannot be read (an encoding
//! it does not know, over the size limit, a symlink loop) is said and skipped; a syntax error is
//! said with its line and column and the rest of the file is still scanned.
//!
//! ```
//! let (shapes, notes) = chokepoint_scan::scan_text(
//!     "app.py",
//!     "import time\nfrom fastapi import FastAPI\napp = FastAPI()\n\n@app.get(\"/slow\")\nasync def slow():\n    time.sleep(1)\n",
//! );
//! assert!(notes.is_empty());
//! assert_eq!(shapes[0].detector.as_str(), "blocking-call");
//! assert_eq!((shapes[0].line, shapes[0].column), (7, 5));
//! assert_eq!(shapes[0].handler.as_ref().expect("present").routes, ["GET /slow"]);
//! ```

mod config;
mod facts;
mod python;
mod rules;

use std::path::{Path, PathBuf};

use chokepoint_evidence::{DetectorId, Handler, Note, Position, Severity, Shape, SourceScan};
use rayon::prelude::*;

use crate::facts::{ModuleFacts, Tree};

/// Files larger than this are taken for generated code and skipped, in bytes (default).
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// Directories skipped unless `--no-default-excludes`: virtual environments, dependencies,
/// migrations, tests, build output.
const SKIPPED_DIRS: &[&str] = &[
    ".venv",
    "venv",
    "site-packages",
    "node_modules",
    "__pycache__",
    "migrations",
    "tests",
    "test",
    ".tox",
    ".nox",
    "build",
    "dist",
    ".git",
    ".mypy_cache",
    ".ruff_cache",
];

/// How to scan.
#[derive(Clone, Debug)]
pub struct Options {
    /// Glob patterns of paths not to scan (gitignore syntax).
    pub exclude: Vec<String>,
    /// Skip virtual environments, migrations and tests.
    pub default_excludes: bool,
    /// Files over this size are skipped, in bytes.
    pub max_file_bytes: u64,
    /// Detector ids not to report.
    pub disabled: Vec<DetectorId>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            exclude: Vec::new(),
            default_excludes: true,
            max_file_bytes: MAX_FILE_BYTES,
            disabled: Vec::new(),
        }
    }
}

/// What a scan found, and what it has to say about what it read.
#[derive(Debug, Default)]
pub struct Scanned {
    /// The evidence.
    pub scan: SourceScan,
    /// Files skipped, syntax errors, unreadable files.
    pub notes: Vec<Note>,
    /// Shapes silenced by a `# chokepoint: ignore[…]` comment.
    pub suppressed: u64,
}

/// A file read and parsed.
struct Parsed {
    /// As reported: the path as the root given names it.
    name: String,
    text: String,
    module: python::Module,
    facts: ModuleFacts,
    /// Ids `pyproject.toml` disables for this file.
    disabled: Vec<DetectorId>,
}

/// Scans the Python files under `paths` (files or directories).
pub fn scan(paths: &[PathBuf], options: &Options) -> Scanned {
    let mut notes = Vec::new();
    let files = files(paths, options, &mut notes);
    let read: Vec<Result<Parsed, Note>> = files
        .par_iter()
        .map(|(path, name, config)| {
            let mut parsed = read(path, name, options.max_file_bytes)?;
            if let Some(config) = config {
                let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
                parsed.disabled = config.disabled_for(&path).collect();
            }
            Ok(parsed)
        })
        .collect();
    let mut parsed = Vec::with_capacity(read.len());
    for result in read {
        match result {
            Ok(file) => parsed.push(file),
            Err(note) => notes.push(note),
        }
    }
    let mut scanned = analyse(parsed, options, &mut notes);
    scanned.scan.roots = paths.iter().map(|p| p.display().to_string()).collect();
    scanned.notes = notes;
    scanned
}

/// Scans one module's text: its shapes and its syntax errors (for tests and fuzzing).
pub fn scan_text(name: &str, text: &str) -> (Vec<Shape>, Vec<Note>) {
    let mut notes = Vec::new();
    let file = parse(name.to_owned(), text.to_owned());
    let scanned = analyse(vec![file], &Options::default(), &mut notes);
    (scanned.scan.shapes, notes)
}

fn parse(name: String, text: String) -> Parsed {
    let module = python::parse(&text);
    let facts = ModuleFacts::of(&module.body, &name);
    Parsed {
        name,
        text,
        module,
        facts,
        disabled: Vec::new(),
    }
}

fn analyse(parsed: Vec<Parsed>, options: &Options, notes: &mut Vec<Note>) -> Scanned {
    let mut tree = Tree::default();
    for file in &parsed {
        tree.learn(&file.facts, &file.module.body);
    }
    let found: Vec<(Vec<Shape>, Vec<Note>, u64)> = parsed
        .par_iter()
        .map(|file| shapes_of(file, &tree, options))
        .collect();
    let mut scanned = Scanned::default();
    scanned.scan.files = parsed.len() as u64;
    scanned.scan.bytes = parsed.iter().map(|f| f.text.len() as u64).sum();
    for (shapes, file_notes, suppressed) in found {
        scanned.scan.shapes.extend(shapes);
        notes.extend(file_notes);
        scanned.suppressed += suppressed;
    }
    scanned
        .scan
        .shapes
        .sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    scanned
}

fn shapes_of(file: &Parsed, tree: &Tree, options: &Options) -> (Vec<Shape>, Vec<Note>, u64) {
    let lines = python::Lines::new(&file.text);
    let mut notes = Vec::new();
    for (offset, message) in file.module.errors.iter().take(10) {
        let (line, column) = lines.position(*offset, &file.text);
        notes.push(Note {
            position: Some(Position::Line {
                line: u64::from(line),
                column: u64::from(column),
            }),
            ..Note::new(
                Severity::Warning,
                file.name.clone(),
                format!("syntax error: {message}; the rest of the file is scanned"),
            )
        });
    }
    let mut shapes = Vec::new();
    let mut suppressed = 0;
    for found in rules::check(&file.module, &file.facts, tree, &file.text) {
        if options.disabled.contains(&found.detector) || file.disabled.contains(&found.detector) {
            continue;
        }
        let (line, column) = lines.position(found.at, &file.text);
        let excerpt = lines.text(line, &file.text);
        if ignored(excerpt, found.detector) {
            suppressed += 1;
            continue;
        }
        shapes.push(Shape {
            detector: found.detector,
            file: file.name.clone(),
            line,
            column,
            handler: handler(&file.facts, tree, &found.function),
            function: found.function,
            excerpt: excerpt.trim().chars().take(200).collect(),
            what: found.what,
            fix: found.fix,
            certainty: found.certainty,
            statement: found.statement,
        });
    }
    (shapes, notes, suppressed)
}

/// Whether a line says to ignore a detector: `# chokepoint: ignore` or `# chokepoint: ignore[n-plus-one, …]`.
fn ignored(line: &str, detector: DetectorId) -> bool {
    let Some((_, comment)) = line.split_once("# chokepoint: ignore") else {
        return false;
    };
    match comment.strip_prefix('[').and_then(|c| c.split_once(']')) {
        Some((ids, _)) => ids.split(',').any(|id| id.trim() == detector.as_str()),
        None => true,
    }
}

/// The handler a function is, or is reached from.
fn handler(facts: &ModuleFacts, tree: &Tree, function: &str) -> Option<Handler> {
    // A function nested in a handler runs in it.
    let outer = function.split('.').take(2).collect::<Vec<_>>();
    let candidates = [function.to_owned(), outer.join("."), outer[0].to_owned()];
    let (name, direct) = candidates.iter().find_map(|f| {
        if facts.handlers.contains_key(f) {
            Some((f.clone(), true))
        } else {
            facts.reached.get(f).map(|h| (h.clone(), false))
        }
    })?;
    let decl = &facts.handlers[&name];
    let mut routes: Vec<String> = decl
        .routes
        .iter()
        .map(|r| match &r.method {
            Some(method) => format!("{method} {}", r.path),
            None => r.path.clone(),
        })
        .collect();
    if routes.is_empty() {
        let view = name.split('.').next().unwrap_or_default();
        routes.extend(tree.django_routes.get(view).into_iter().flatten().cloned());
    }
    Some(Handler {
        framework: decl.framework.to_owned(),
        function: name,
        routes,
        direct,
    })
}

/// The Python files under the paths, each with the name it is reported by and the
/// `[tool.chokepoint]` settings that apply to it.
fn files(
    paths: &[PathBuf],
    options: &Options,
    notes: &mut Vec<Note>,
) -> Vec<(PathBuf, String, Option<std::sync::Arc<config::Config>>)> {
    let mut files = Vec::new();
    for root in paths {
        let config = config::find(root, notes).map(std::sync::Arc::new);
        if root.is_file() {
            files.push((root.clone(), root.display().to_string(), config));
            continue;
        }
        if !root.is_dir() {
            notes.push(Note::new(
                Severity::Error,
                root.display().to_string(),
                "no such file or directory",
            ));
            continue;
        }
        let mut overrides = ignore::overrides::OverrideBuilder::new(root);
        let configured = config.iter().flat_map(|c| c.exclude.iter());
        for pattern in options.exclude.iter().chain(configured) {
            if let Err(e) = overrides.add(&format!("!{pattern}")) {
                notes.push(Note::new(Severity::Error, "--exclude", format!("{pattern}: {e}")));
            }
        }
        let mut walk = ignore::WalkBuilder::new(root);
        walk.require_git(false).follow_links(true).hidden(true);
        match overrides.build() {
            Ok(overrides) => {
                walk.overrides(overrides);
            }
            Err(e) => notes.push(Note::new(Severity::Error, "--exclude", e.to_string())),
        }
        let default_excludes = options.default_excludes;
        walk.filter_entry(move |entry| {
            let name = entry.file_name().to_string_lossy();
            let dir = entry.file_type().is_some_and(|t| t.is_dir());
            !default_excludes
                || if dir {
                    !SKIPPED_DIRS.contains(&name.as_ref()) && !entry.path().join("pyvenv.cfg").exists()
                } else {
                    !(name.starts_with("test_") || name.ends_with("_test.py") || name == "conftest.py")
                }
        });
        for entry in walk.build() {
            match entry {
                Ok(entry) => {
                    let path = entry.path();
                    if entry.file_type().is_some_and(|t| t.is_file())
                        && path.extension().is_some_and(|e| e == "py")
                    {
                        let name = path.strip_prefix("./").unwrap_or(path).display().to_string();
                        files.push((path.to_path_buf(), name, config.clone()));
                    }
                }
                Err(e) => notes.push(Note::new(
                    Severity::Warning,
                    root.display().to_string(),
                    format!("skipped: {e}"),
                )),
            }
        }
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    files.dedup_by(|a, b| a.0 == b.0);
    files
}

fn read(path: &Path, name: &str, max_bytes: u64) -> Result<Parsed, Note> {
    let note = |severity, message: String| Note::new(severity, name.to_owned(), message);
    let size = std::fs::metadata(path)
        .map_err(|e| note(Severity::Warning, format!("cannot read: {e}; skipped")))?
        .len();
    if size > max_bytes {
        return Err(note(
            Severity::Info,
            format!(
                "{size} bytes, over the {max_bytes}-byte limit (generated code?): skipped; --max-file-size raises it"
            ),
        ));
    }
    let bytes =
        std::fs::read(path).map_err(|e| note(Severity::Warning, format!("cannot read: {e}; skipped")))?;
    let text = decode(bytes).map_err(|m| note(Severity::Warning, m))?;
    Ok(parse(name.to_owned(), text))
}

/// Python source as text: UTF-8 (with or without its byte-order mark) unless the file declares
/// Latin-1 (PEP 263).
fn decode(bytes: Vec<u8>) -> Result<String, String> {
    let bytes = match bytes.strip_prefix(b"\xef\xbb\xbf") {
        Some(rest) => rest.to_vec(),
        None => bytes,
    };
    let declared = bytes
        .split(|b| *b == b'\n')
        .take(2)
        .filter_map(|line| {
            let line = String::from_utf8_lossy(line);
            let line = line.trim_start();
            if !line.starts_with('#') {
                return None;
            }
            let at = line.find("coding")?;
            let rest = line[at + 6..].strip_prefix([':', '='])?;
            let name: String = rest
                .trim_start()
                .chars()
                .take_while(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.'))
                .collect();
            Some(name.to_lowercase().replace('_', "-"))
        })
        .next();
    match declared.as_deref() {
        None | Some("utf-8" | "utf8" | "ascii" | "us-ascii") => String::from_utf8(bytes)
            .map_err(|e| format!("not UTF-8 text (byte {}): skipped", e.utf8_error().valid_up_to())),
        Some("latin-1" | "latin1" | "iso-8859-1" | "iso8859-1" | "l1") => {
            Ok(bytes.iter().map(|&b| char::from(b)).collect())
        }
        Some(other) => Err(format!(
            "declares the encoding {other}, which the scan does not read: skipped"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_latin_1_declaration_is_read() {
        let text = decode(b"# -*- coding: latin-1 -*-\nname = '\xe9'\n".to_vec()).expect("present");
        assert!(text.contains('é'));
        assert!(
            decode(b"# coding: shift_jis\n".to_vec())
                .expect_err("refused")
                .contains("shift-jis")
        );
        assert!(
            decode(b"x = '\xff'\n".to_vec())
                .expect_err("refused")
                .contains("byte 5")
        );
    }

    #[test]
    fn a_lone_carriage_return_ends_a_line_as_python_reads_it() {
        let (shapes, _) = scan_text("a.py", "import time\rasync def f():\r    time.sleep(1)\r");
        assert_eq!((shapes[0].line, shapes[0].excerpt.as_str()), (3, "time.sleep(1)"));
    }

    #[test]
    fn ignore_comments_name_their_ids() {
        assert!(ignored("x = 1  # chokepoint: ignore", DetectorId::NPlusOne));
        assert!(ignored(
            "x = 1  # chokepoint: ignore[n-plus-one, blocking-call]",
            DetectorId::BlockingCall
        ));
        assert!(!ignored(
            "x = 1  # chokepoint: ignore[n-plus-one]",
            DetectorId::BlockingCall
        ));
        assert!(!ignored("x = 1", DetectorId::BlockingCall));
    }
}
