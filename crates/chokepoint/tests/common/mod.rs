//! Helpers shared by the binary's integration tests.

use std::path::{Path, PathBuf};

/// The workspace root.
pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The report's findings as sorted `"<detector> <endpoint>"` lines.
pub(crate) fn findings_by_endpoint(report: &serde_json::Value) -> Vec<String> {
    let mut found: Vec<String> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            format!(
                "{} {}",
                f["detector"].as_str().expect("id"),
                f["endpoint"].as_str().expect("endpoint")
            )
        })
        .collect();
    found.sort();
    found
}
