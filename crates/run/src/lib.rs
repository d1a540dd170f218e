//! Saved runs: the unit of exchange. `--save` keeps a run's evidence and its report in a folder;
//! `chokepoint report RUN` analyses it again, `compare A B` compares two, and `merge RUN…` joins
//! the shards of one stream of traces that receivers on other machines saved.
//!
//! The folder is a contract, like the JSON schema (docs/saved-runs.md):
//!
//! ```text
//! .chokepoint/runs/20261130T153000Z-<label>/
//!   run.json       layout version, chokepoint version, command, label, time, inputs, the collectors'
//!                  notes, the shard it is (id, routing key, window) or the shards it merged
//!   evidence.json  the evidence bundle, as analysed (chokepoint_evidence::Evidence)
//!   report.json    the report as `--format json` printed it
//!   report.md      the report as `--format markdown` printed it
//!   <recording>    recordings chokepoint made (a py-spy profile), by their file name
//! ```
//!
//! A run read from disk is untrusted input — shards come from other machines: [`load`] refuses,
//! with the file and what is wrong, a layout it does not know, JSON that is not a run, a negative
//! or infinite quantity, an index out of range ([`Evidence::validate`]). Files are written whole
//! or not at all (a temporary file renamed over the old one), so a checkpoint interrupted by a
//! crash leaves the previous one.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use chokepoint_evidence::{Evidence, Note, Severity, Window};
use chokepoint_report::Input;
use serde::{Deserialize, Serialize};

/// The layout version of a run folder. Layout 3: `run.json` says which shard the run is (or
/// which it merged), example trace ids are the smallest that showed a problem. Layout 2 (with
/// anchors): the traces' endpoints keep the statements they run and the instrumentation scopes
/// that recorded them, a ramp the target's command line. Runs of layouts 1 and 2 read as they
/// are: what they lack is absent, and the report says so.
pub const LAYOUT: u32 = 3;

/// `run.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunMeta {
    /// The layout version it was written in.
    pub layout: u32,
    /// The chokepoint that wrote it.
    pub chokepoint_version: String,
    /// The command that gathered it (`listen`, `diagnose`, `merge`).
    pub command: String,
    /// The label given with `--label`, or the command.
    pub label: String,
    /// When it was saved, RFC 3339, UTC.
    pub created: String,
    /// What was read.
    pub inputs: Vec<Input>,
    /// What the collectors had to say (the analysis's own notes are made again on reading).
    pub notes: Vec<Note>,
    /// Recordings kept in the folder, by file name.
    pub attachments: Vec<String>,
    /// The shard of a stream this run saw, when a receiver was one of several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
    /// The shards a merged run was made of.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged: Vec<Shard>,
}

/// One receiver's part of a stream that a load-balancing exporter split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Shard {
    /// Its name among the shards (`--shard`), unique in one deployment.
    pub id: String,
    /// What the stream was split by (`traceID`: every span of a trace reaches one shard).
    pub routing_key: String,
    /// The time it covers, when it saw any span.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Window>,
}

impl RunMeta {
    /// A run's description, written now by this chokepoint.
    pub fn new(command: &str, label: Option<&str>, inputs: Vec<Input>, notes: Vec<Note>) -> RunMeta {
        RunMeta {
            layout: LAYOUT,
            chokepoint_version: env!("CARGO_PKG_VERSION").to_owned(),
            command: command.to_owned(),
            label: label.unwrap_or(command).to_owned(),
            created: rfc3339_now(),
            inputs,
            notes,
            attachments: Vec::new(),
            shard: None,
            merged: Vec::new(),
        }
    }
}

/// Why a run could not be written, read or merged.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The path is not a run folder.
    #[error("{0}: no such run folder (runs are saved with --save, under .chokepoint/runs/)")]
    NoFolder(PathBuf),
    /// A file of the run could not be read or written.
    #[error("{path}: {what}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The error.
        source: std::io::Error,
    },
    /// A file is not what a run holds.
    #[error("{path}: {problem}; the run is damaged")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where in it.
        problem: String,
    },
    /// Saved in a layout newer than this chokepoint reads.
    #[error(
        "{path}: saved by chokepoint {version} in run layout {layout}, newer than this chokepoint reads ({LAYOUT}): upgrade"
    )]
    Newer {
        /// The folder.
        path: PathBuf,
        /// The chokepoint that saved it.
        version: String,
        /// Its layout.
        layout: u32,
    },
    /// Runs that cannot be merged.
    #[error("cannot merge: {0}")]
    Merge(String),
}

/// A saved run, read back and checked.
#[derive(Clone, Debug)]
pub struct SavedRun {
    /// Its folder.
    pub dir: PathBuf,
    /// `run.json`.
    pub meta: RunMeta,
    /// `evidence.json`.
    pub evidence: Evidence,
}

impl SavedRun {
    /// What reading a run of an older layout leaves out, when it is one that lacks something.
    pub fn older_layout(&self) -> Option<Note> {
        (self.meta.layout < 2).then(|| {
            Note::new(
                Severity::Info,
                self.dir.display().to_string(),
                format!(
                    "saved in run layout {} (this chokepoint writes {LAYOUT}): its traces lack the statements each endpoint \
                     runs and the instrumentation that recorded them, so its database findings stay on the database and its \
                     fixes do not know the framework",
                    self.meta.layout
                ),
            )
        })
    }
}

/// Where a run is saved when no folder is named: `.chokepoint/runs/<time>-<label>`.
pub fn default_folder(label: &str, created: &str) -> PathBuf {
    let stamp: String = created.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    let safe: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    PathBuf::from(".chokepoint/runs").join(format!("{stamp}-{safe}"))
}

/// The time now, RFC 3339 to the second, UTC.
pub fn rfc3339_now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// Writes the run into `dir` (created when missing): the recordings copied, then
/// `evidence.json`, then `run.json`, each written whole or not at all.
pub fn save(
    dir: &Path,
    meta: &RunMeta,
    evidence: &Evidence,
    attachments: &[PathBuf],
) -> Result<(), RunError> {
    std::fs::create_dir_all(dir).map_err(|source| RunError::Io {
        path: dir.to_path_buf(),
        what: "cannot create the run folder",
        source,
    })?;
    let mut meta = meta.clone();
    for path in attachments {
        let Some(name) = path.file_name() else { continue };
        std::fs::copy(path, dir.join(name)).map_err(|source| RunError::Io {
            path: path.clone(),
            what: "cannot copy it into the run",
            source,
        })?;
        meta.attachments.push(name.to_string_lossy().into_owned());
    }
    write_json(&dir.join("evidence.json"), evidence)?;
    write_json(&dir.join("run.json"), &meta)
}

/// Writes `value` to a temporary file beside `path`, then renames it over `path`.
fn write_json(path: &Path, value: &impl Serialize) -> Result<(), RunError> {
    let io = |source| RunError::Io {
        path: path.to_path_buf(),
        what: "cannot write it",
        source,
    };
    let temporary = path.with_extension("json.partial");
    let file = std::fs::File::create(&temporary).map_err(io)?;
    let mut writer = std::io::BufWriter::new(file);
    // Flushed and synced here, not on drop, which would swallow a full disk's error.
    serde_json::to_writer(&mut writer, value)
        .map_err(std::io::Error::from)
        .and_then(|()| writer.flush())
        .and_then(|()| writer.get_ref().sync_all())
        .map_err(io)?;
    std::fs::rename(&temporary, path).map_err(io)
}

/// Reads a run folder (or its `run.json`) and checks it.
pub fn load(path: &Path) -> Result<SavedRun, RunError> {
    let dir = if path.file_name().is_some_and(|n| n == "run.json") {
        path.parent().unwrap_or(Path::new(".")).to_path_buf()
    } else {
        path.to_path_buf()
    };
    if !dir.is_dir() {
        return Err(RunError::NoFolder(dir));
    }
    let meta: RunMeta = read_json(&dir.join("run.json"))?;
    if meta.layout > LAYOUT {
        return Err(RunError::Newer {
            path: dir,
            version: meta.chokepoint_version,
            layout: meta.layout,
        });
    }
    if meta.layout == 0 {
        return Err(RunError::Damaged {
            path: dir.join("run.json"),
            problem: "layout 0 is no layout chokepoint wrote".into(),
        });
    }
    let file = dir.join("evidence.json");
    let evidence: Evidence = read_json(&file)?;
    evidence.validate().map_err(|invalid| RunError::Damaged {
        path: file.clone(),
        problem: invalid.to_string(),
    })?;
    Ok(SavedRun { dir, meta, evidence })
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, RunError> {
    let bytes = std::fs::read(path).map_err(|source| RunError::Io {
        path: path.to_path_buf(),
        what: "cannot read it — is its folder a chokepoint run?",
        source,
    })?;
    let damaged = |e: serde_json::Error| RunError::Damaged {
        path: path.to_path_buf(),
        problem: format!(
            "line {}, column {}: not what a chokepoint run holds ({e})",
            e.line(),
            e.column()
        ),
    };
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(damaged)?;
    if let Some(at) = negative_number(&value, &mut String::new()) {
        return Err(RunError::Damaged {
            path: path.to_path_buf(),
            problem: format!("{at}: a count, a time or a rate cannot be negative"),
        });
    }
    serde_json::from_slice(&bytes).map_err(damaged)
}

/// The path to the first negative number in `value`: nothing a run holds is below zero.
fn negative_number(value: &serde_json::Value, at: &mut String) -> Option<String> {
    match value {
        serde_json::Value::Number(n) if n.as_f64().is_some_and(|v| v < 0.0) => Some(format!("{at} = {n}")),
        serde_json::Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            let len = at.len();
            at.push_str(&format!("[{i}]"));
            let found = negative_number(item, at);
            at.truncate(len);
            found
        }),
        serde_json::Value::Object(fields) => fields.iter().find_map(|(name, item)| {
            let len = at.len();
            if !at.is_empty() {
                at.push('.');
            }
            at.push_str(name);
            let found = negative_number(item, at);
            at.truncate(len);
            found
        }),
        _ => None,
    }
}

/// The shards of one stream merged into one run's evidence and description: refused, with the
/// reason, for runs of different chokepoint versions (their detectors observe differently), of
/// different layouts, the same shard twice, or two of a kind taken once (two ramps).
pub fn merge(runs: &[SavedRun], label: Option<&str>) -> Result<(RunMeta, Evidence), RunError> {
    let Some(first) = runs.first() else {
        return Err(RunError::Merge("no run to merge".into()));
    };
    for run in &runs[1..] {
        if run.meta.chokepoint_version != first.meta.chokepoint_version
            || run.meta.layout != first.meta.layout
        {
            return Err(RunError::Merge(format!(
                "{} was saved by chokepoint {} (layout {}), {} by chokepoint {} (layout {}): their detectors observe differently \
                 — save every shard with one version",
                first.dir.display(),
                first.meta.chokepoint_version,
                first.meta.layout,
                run.dir.display(),
                run.meta.chokepoint_version,
                run.meta.layout
            )));
        }
    }
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut shards = Vec::new();
    for run in runs {
        // A run that names no shard is its own: the same run twice is the same shard twice.
        let parts: Vec<Shard> = match (&run.meta.shard, run.meta.merged.is_empty()) {
            (Some(shard), _) => vec![shard.clone()],
            (None, false) => run.meta.merged.clone(),
            (None, true) => vec![Shard {
                id: std::fs::canonicalize(&run.dir)
                    .unwrap_or_else(|_| run.dir.clone())
                    .display()
                    .to_string(),
                routing_key: String::new(),
                window: run.evidence.window(),
            }],
        };
        for shard in parts {
            if !seen.insert(shard.id.clone()) {
                return Err(RunError::Merge(format!(
                    "shard {:?} comes twice ({} is one of them): each shard's run is merged once",
                    shard.id,
                    run.dir.display()
                )));
            }
            shards.push(shard);
        }
    }
    // A run copied under another name is the same shard too.
    for (i, run) in runs.iter().enumerate() {
        if let Some(copy) = runs[..i].iter().find(|other| other.evidence == run.evidence) {
            return Err(RunError::Merge(format!(
                "{} and {} hold the same evidence: the same shard comes twice; each shard's run is merged once",
                copy.dir.display(),
                run.dir.display()
            )));
        }
    }
    let keys: BTreeSet<&str> = shards
        .iter()
        .map(|s| s.routing_key.as_str())
        .filter(|k| !k.is_empty())
        .collect();
    if keys.len() > 1 {
        return Err(RunError::Merge(format!(
            "the shards were split by different keys ({}): merge the shards of one split",
            keys.into_iter().collect::<Vec<_>>().join(", ")
        )));
    }
    let mut evidence = Evidence::default();
    let mut inputs = Vec::new();
    let mut notes = Vec::new();
    for run in runs {
        evidence = evidence
            .merge(run.evidence.clone())
            .map_err(|conflict| RunError::Merge(format!("{}: {conflict}", run.dir.display())))?;
        inputs.extend(run.meta.inputs.iter().cloned());
        for note in &run.meta.notes {
            if !notes.contains(note) {
                notes.push(note.clone());
            }
        }
    }
    let mut meta = RunMeta::new("merge", label, inputs, notes);
    meta.chokepoint_version.clone_from(&first.meta.chokepoint_version);
    meta.merged = shards;
    Ok((meta, evidence))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_path_to_a_negative_number_is_said() {
        let value: serde_json::Value =
            serde_json::from_str(r#"{"profile": {"stacks": [{"count": 1}, {"count": -3}]}}"#).expect("json");
        assert_eq!(
            negative_number(&value, &mut String::new()).as_deref(),
            Some("profile.stacks[1].count = -3")
        );
    }
}
