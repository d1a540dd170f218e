//! The source line of each frame, when the file is at hand: a sampler sees Python frames only,
//! so `sorted(…)`, `time.sleep(…)` or a C serializer show as the line that calls them, and the
//! line's text says what that is.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use chokepoint_evidence::Profile;

/// Source files larger than this are not read.
const MAX_SOURCE_BYTES: u64 = 4 << 20;

/// Adds the text of its line to every frame whose file can be found: as the profile names it, or
/// under one of `roots` (by its path, or by its last components when the profile was recorded
/// elsewhere, e.g. `/app/service/app.py` under `--source service`). Returns how many frames got
/// their line.
pub fn attach_sources(profile: &mut Profile, roots: &[PathBuf]) -> usize {
    let mut files: HashMap<String, Option<Vec<String>>> = HashMap::new();
    let mut attached = 0;
    for frame in &mut profile.frames {
        if frame.line == 0 || !frame.file.ends_with(".py") {
            continue;
        }
        let lines = files
            .entry(frame.file.clone())
            .or_insert_with(|| find(&frame.file, roots).and_then(|path| read_lines(&path)));
        if let Some(text) = lines.as_ref().and_then(|l| l.get(frame.line as usize - 1)) {
            frame.source = Some(text.trim().to_owned());
            attached += 1;
        }
    }
    attached
}

fn find(file: &str, roots: &[PathBuf]) -> Option<PathBuf> {
    let path = Path::new(file);
    if path.is_file() {
        return Some(path.to_path_buf());
    }
    let components: Vec<_> = path.components().collect();
    for root in roots {
        // The longest tail first: `service/app.py` before `app.py`.
        for start in 0..components.len() {
            let tail: PathBuf = components[start..]
                .iter()
                .filter(|c| matches!(c, std::path::Component::Normal(_)))
                .collect();
            let candidate = root.join(&tail);
            if !tail.as_os_str().is_empty() && candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

fn read_lines(path: &Path) -> Option<Vec<String>> {
    if std::fs::metadata(path).ok()?.len() > MAX_SOURCE_BYTES {
        return None;
    }
    let text = std::fs::read(path).ok()?;
    Some(
        String::from_utf8_lossy(&text)
            .lines()
            .map(str::to_owned)
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use chokepoint_evidence::{Frame, ProfileBuilder};

    use super::*;

    #[test]
    fn a_frame_recorded_elsewhere_finds_its_line_under_the_source_root() {
        let dir = std::env::temp_dir().join(format!("chokepoint-source-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("service")).expect("dir");
        std::fs::write(
            dir.join("service/app.py"),
            "import re\n\n    return sorted(rows)\n",
        )
        .expect("write");
        let mut builder = ProfileBuilder::new("t", true, 100.0);
        builder.frame(Frame::parse("top (/srv/elsewhere/service/app.py:3)"));
        builder.frame(Frame::parse("gone (/srv/elsewhere/service/other.py:1)"));
        let mut profile = builder.finish(0.0, 0.0);
        assert_eq!(attach_sources(&mut profile, std::slice::from_ref(&dir)), 1);
        assert_eq!(profile.frames[0].source.as_deref(), Some("return sorted(rows)"));
        assert_eq!(profile.frames[1].source, None);
        std::fs::remove_dir_all(dir).ok();
    }
}
