//! `[tool.chokepoint]` in the scanned tree's `pyproject.toml`, as Python linters read theirs:
//! paths excluded, detector ids disabled everywhere, and ids disabled under some paths.
//!
//! ```toml
//! [tool.chokepoint]
//! exclude = ["scripts/**"]
//! disable = ["sync-logging"]
//!
//! [tool.chokepoint.per-path]
//! "app/admin/**" = ["unbounded-result"]
//! ```

use std::path::{Path, PathBuf};

use chokepoint_evidence::{DetectorId, Note, Position, Severity};
use serde::Deserialize;

#[derive(Deserialize, Default)]
struct PyProject {
    #[serde(default)]
    tool: Tool,
}

#[derive(Deserialize, Default)]
struct Tool {
    #[serde(default)]
    chokepoint: Option<Section>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Section {
    #[serde(default)]
    exclude: Vec<String>,
    #[serde(default)]
    disable: Vec<String>,
    #[serde(default)]
    per_path: std::collections::BTreeMap<String, Vec<String>>,
}

/// The settings a `pyproject.toml` gives the files under its folder.
#[derive(Debug, Default)]
pub(crate) struct Config {
    /// The folder the file is in: globs are relative to it.
    pub(crate) dir: PathBuf,
    pub(crate) exclude: Vec<String>,
    pub(crate) disabled: Vec<DetectorId>,
    pub(crate) per_path: Vec<(globset::GlobMatcher, Vec<DetectorId>)>,
}

impl Config {
    /// The ids disabled for a file, by its path.
    pub(crate) fn disabled_for(&self, path: &Path) -> impl Iterator<Item = DetectorId> + '_ {
        let relative = path.strip_prefix(&self.dir).unwrap_or(path).to_path_buf();
        self.disabled.iter().copied().chain(
            self.per_path
                .iter()
                .filter(move |(glob, _)| glob.is_match(&relative))
                .flat_map(|(_, ids)| ids.iter().copied()),
        )
    }
}

/// The nearest `pyproject.toml` at or above `root` that has a `[tool.chokepoint]` section.
pub(crate) fn find(root: &Path, notes: &mut Vec<Note>) -> Option<Config> {
    let start = if root.is_dir() { root } else { root.parent()? };
    let start = std::fs::canonicalize(start).ok()?;
    for dir in start.ancestors() {
        let path = dir.join("pyproject.toml");
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let name = path.display().to_string();
        let parsed: PyProject = match toml::from_str(&text) {
            Ok(parsed) => parsed,
            Err(e) => {
                let position = e.span().map(|span| {
                    let before = &text[..span.start.min(text.len())];
                    Position::Line {
                        line: before.matches('\n').count() as u64 + 1,
                        column: before.rsplit('\n').next().map_or(0, |l| l.chars().count()) as u64 + 1,
                    }
                });
                notes.push(Note {
                    position,
                    ..Note::new(
                        Severity::Warning,
                        name,
                        format!("{}; its [tool.chokepoint] settings are not used", e.message()),
                    )
                });
                return None;
            }
        };
        let section = parsed.tool.chokepoint?;
        let ids = |list: &[String], notes: &mut Vec<Note>| -> Vec<DetectorId> {
            list.iter()
                .filter_map(|id| {
                    let parsed = DetectorId::parse(id);
                    if parsed.is_none() {
                        notes.push(Note::new(
                            Severity::Warning,
                            name.clone(),
                            format!("[tool.chokepoint]: {id:?} is not a detector id (`chokepoint detectors` lists them)"),
                        ));
                    }
                    parsed
                })
                .collect()
        };
        let disabled = ids(&section.disable, notes);
        let mut per_path = Vec::new();
        for (glob, list) in &section.per_path {
            match globset::Glob::new(glob) {
                Ok(g) => per_path.push((g.compile_matcher(), ids(list, notes))),
                Err(e) => notes.push(Note::new(
                    Severity::Warning,
                    name.clone(),
                    format!("[tool.chokepoint.per-path]: {e}"),
                )),
            }
        }
        return Some(Config {
            dir: dir.to_path_buf(),
            exclude: section.exclude,
            disabled,
            per_path,
        });
    }
    None
}
