//! The flame graph of a profile (`chokepoint profile --flamegraph FILE.svg`), drawn by inferno
//! (the Rust port of Brendan Gregg's FlameGraph): frames coloured by the category the detectors
//! gave them, the findings' own frames in red.

use chokepoint_detect::{EvidenceItem, FlameInput};
use chokepoint_evidence::Subject;
use inferno::flamegraph::color::{Color, PaletteMap};
use inferno::flamegraph::{self, Options};

use crate::Report;

/// The colour of each category, and of what is in none.
fn color(category: Option<&str>) -> Color {
    let (r, g, b) = match category {
        Some("serialization") => (255, 160, 60),
        Some("logging") => (200, 140, 255),
        Some("regex compilation") => (255, 220, 60),
        Some("sorting") => (120, 200, 255),
        Some("ORM lazy loading" | "the database driver") => (90, 170, 90),
        Some("HTTP client calls") => (80, 200, 200),
        Some("sleeping" | "file I/O") => (170, 170, 170),
        _ => (225, 225, 200),
    };
    Color { r, g, b }
}

/// The findings' frames: hot frames and code subjects, written `function (file:line)`.
fn highlighted(report: &Report) -> Vec<String> {
    let mut frames = Vec::new();
    for finding in &report.findings {
        if let Subject::Code { file, line, function } = &finding.subject {
            frames.push(match line {
                Some(line) => format!("{function} ({file}:{line})"),
                None => format!("{function} ({file})"),
            });
        }
        for item in &finding.evidence.items {
            if let EvidenceItem::HotFrame {
                function, file, line, ..
            } = item
            {
                frames.push(format!("{function} ({file}:{line})"));
            }
        }
    }
    frames
}

/// The SVG of a profile's flame graph.
pub fn render_flamegraph(input: &FlameInput, report: &Report) -> std::io::Result<String> {
    let mut palette = PaletteMap::default();
    for line in &input.lines {
        let stack = line.rsplit_once(' ').map_or(line.as_str(), |(stack, _)| stack);
        for frame in stack.split(';') {
            if palette.get(frame).is_none() {
                palette.insert(frame, color(input.categories.get(frame).copied()));
            }
        }
    }
    for frame in highlighted(report) {
        palette.insert(frame, Color { r: 230, g: 50, b: 40 });
    }
    let mut options = Options::default();
    options.title = "chokepoint profile".to_owned();
    options.subtitle = Some(
        "orange serialization · purple logging · yellow regex compilation · blue sorting · green database · \
         teal HTTP clients · grey sleep and file I/O · red the findings' frames"
            .to_owned(),
    );
    options.count_name = "samples".to_owned();
    options.palette_map = Some(&mut palette);
    let mut svg = Vec::new();
    flamegraph::from_lines(&mut options, input.lines.iter().map(String::as_str), &mut svg)
        .map_err(std::io::Error::other)?;
    Ok(String::from_utf8_lossy(&svg).into_owned())
}
