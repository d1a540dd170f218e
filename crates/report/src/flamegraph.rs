//! The flame graph of a profile (`chokepoint profile --flamegraph FILE.svg`), drawn by inferno
//! (the Rust port of Brendan Gregg's FlameGraph): frames coloured by the category the detectors
//! gave them, the findings' own frames in red.

use inferno::flamegraph::color::{Color, PaletteMap};
use inferno::flamegraph::{self, Options};

use crate::FlameSeries;

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

/// The SVG of a profile's flame graph, standalone (`chokepoint profile --flamegraph FILE.svg`,
/// with inferno's search and zoom).
pub fn render_flamegraph(flame: &FlameSeries) -> std::io::Result<String> {
    flame_svg(flame, usize::MAX, true)
}

/// The flame graph of at most `stacks` stacks (the heaviest); without script, it is the
/// `<svg>` element alone, its style scoped to it, to inline in a page.
pub(crate) fn flame_svg(flame: &FlameSeries, stacks: usize, javascript: bool) -> std::io::Result<String> {
    let lines: Vec<&str> = flame.stacks.iter().take(stacks).map(String::as_str).collect();
    let mut palette = PaletteMap::default();
    for line in &lines {
        let stack = line.rsplit_once(' ').map_or(*line, |(stack, _)| stack);
        for frame in stack.split(';') {
            if palette.get(frame).is_none() {
                palette.insert(frame, color(flame.categories.get(frame).map(String::as_str)));
            }
        }
    }
    for frame in &flame.highlighted {
        palette.insert(frame, Color { r: 230, g: 50, b: 40 });
    }
    // The root is no finding: grey, not the default palette's red.
    palette.insert(
        "all",
        Color {
            r: 200,
            g: 200,
            b: 200,
        },
    );
    let mut options = Options::default();
    options.title = "chokepoint profile".to_owned();
    options.subtitle = Some(
        "orange serialization · purple logging · yellow regex compilation · blue sorting · green database · \
         teal HTTP clients · grey sleep and file I/O · red the findings' frames"
            .to_owned(),
    );
    options.count_name = "samples".to_owned();
    options.palette_map = Some(&mut palette);
    options.no_javascript = !javascript;
    if !javascript {
        // The page's caption says the colours.
        options.subtitle = None;
        options.image_width = Some(1160);
    }
    let mut svg = Vec::new();
    flamegraph::from_lines(&mut options, lines.iter().copied(), &mut svg).map_err(std::io::Error::other)?;
    let svg = String::from_utf8_lossy(&svg).into_owned();
    if javascript {
        return Ok(svg);
    }
    // Inline: the element alone, without inferno's script (the page has its own), its rules
    // kept to it.
    let element = svg.find("<svg").map_or(svg.as_str(), |at| &svg[at..]);
    let element = match (element.find("<script"), element.find("</script>")) {
        (Some(start), Some(end)) if start < end => {
            format!("{}{}", &element[..start], &element[end + "</script>".len()..])
        }
        _ => element.to_owned(),
    };
    Ok(element
        .replace(" onload=\"init(evt)\"", "")
        .replace("\ntext {", "\n.flame text {")
        .replace("\n#", "\n.flame #")
        .replace("\n.hide", "\n.flame .hide")
        .replace("\n.parent", "\n.flame .parent"))
}
