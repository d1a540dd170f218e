//! What the report's tests share.

use std::path::{Path, PathBuf};

/// Every detector's positive fixtures, sorted.
pub(crate) fn positive_fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../detect/tests/fixtures");
    let mut paths = Vec::new();
    for detector in std::fs::read_dir(&dir).expect("fixture dir") {
        for file in std::fs::read_dir(detector.expect("entry").path()).expect("detector dir") {
            let file = file.expect("entry").path();
            if file
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("positive"))
            {
                paths.push(file);
            }
        }
    }
    paths.sort();
    paths
}
