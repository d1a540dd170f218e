//! The service's source as a source of evidence: its Python files read and their shapes found
//! (`chokepoint scan`, and `--source` beside every other kind).

use std::path::PathBuf;

use chokepoint_evidence::{Evidence, Note, Severity};
use chokepoint_report::Input;

use crate::{Observer, Partial, Source};

/// The folders (or files) of the service's code.
pub struct SourceTree {
    /// Where the code is.
    pub paths: Vec<PathBuf>,
    /// What to skip, and the rules' settings.
    pub options: chokepoint_scan::Options,
}

impl Source for SourceTree {
    fn collect(self: Box<Self>, _before: &Evidence, _observer: &dyn Observer) -> anyhow::Result<Partial> {
        Ok(scan(&self))
    }
}

/// Scans the service's source: its Python files read, the notes on what could not be, an input
/// per path. Nothing read at all is an error; a path missing beside others that were read is
/// said and the rest scanned.
pub fn scan(tree: &SourceTree) -> Partial {
    let paths = &tree.paths;
    let (mut inputs, mut notes) = (Vec::new(), Vec::new());
    let scanned = chokepoint_scan::scan(paths, &tree.options);
    for path in paths {
        inputs.push(Input {
            source: path.display().to_string(),
            format: Some("Python source".to_owned()),
            spans: 0,
        });
    }
    let read = scanned.scan.files > 0;
    notes.extend(scanned.notes.into_iter().map(|mut note| {
        if read && note.severity == Severity::Error {
            note.severity = Severity::Warning;
        }
        note
    }));
    if !read {
        notes.push(Note::new(
            Severity::Error,
            "source",
            format!(
                "no Python file could be read under {}: give the folder of the service's code",
                paths
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    if scanned.suppressed > 0 {
        notes.push(Note::new(
            Severity::Info,
            "source",
            format!(
                "{} shape(s) silenced by `# chokepoint: ignore` comments",
                scanned.suppressed
            ),
        ));
    }
    Partial {
        evidence: Evidence {
            source: Some(scanned.scan),
            ..Evidence::default()
        },
        inputs,
        notes,
        ..Partial::default()
    }
}
