//! The latency-versus-throughput curve of a load ramp, as an SVG file and as a compact
//! terminal plot: the knee is where the curve turns up.

use std::fmt::Write as _;

use chokepoint_evidence::LoadRun;

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 400.0;
const MARGIN: f64 = 56.0;

/// (throughput, p50, p99) of the steps with answers.
fn points(run: &LoadRun) -> Vec<(f64, f64, f64)> {
    run.steps
        .iter()
        .filter(|s| s.requests > 0)
        .map(|s| (s.throughput_rps, s.latency.p50_ms, s.latency.p99_ms))
        .collect()
}

/// The curve as a standalone SVG document.
pub fn render_chart_svg(run: &LoadRun) -> String {
    let points = points(run);
    let max_x = points.iter().map(|p| p.0).fold(1.0, f64::max) * 1.05;
    let max_y = points.iter().map(|p| p.2).fold(1.0, f64::max) * 1.05;
    let sx = |x: f64| MARGIN + x / max_x * (WIDTH - 2.0 * MARGIN);
    let sy = |y: f64| HEIGHT - MARGIN - y / max_y * (HEIGHT - 2.0 * MARGIN);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"20\" text-anchor=\"middle\" font-size=\"14\">Latency vs throughput — {}</text>\n",
        WIDTH / 2.0,
        escape(&run.url)
    );
    let (x0, y0, x1, y1) = (MARGIN, HEIGHT - MARGIN, WIDTH - MARGIN, MARGIN);
    let _ = writeln!(
        svg,
        "<line x1=\"{x0}\" y1=\"{y0}\" x2=\"{x1}\" y2=\"{y0}\" stroke=\"black\"/>"
    );
    let _ = writeln!(
        svg,
        "<line x1=\"{x0}\" y1=\"{y0}\" x2=\"{x0}\" y2=\"{y1}\" stroke=\"black\"/>"
    );
    for i in 0..=4 {
        let (x, y) = (max_x * f64::from(i) / 4.0, max_y * f64::from(i) / 4.0);
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{x:.0}</text>",
            sx(x),
            y0 + 18.0
        );
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{y:.0}</text>",
            x0 - 6.0,
            sy(y) + 4.0
        );
    }
    let _ = writeln!(
        svg,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">throughput (requests/s)</text>",
        WIDTH / 2.0,
        HEIGHT - 12.0
    );
    let _ = writeln!(
        svg,
        "<text x=\"14\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 14 {})\">latency (ms)</text>",
        HEIGHT / 2.0,
        HEIGHT / 2.0
    );
    for (label, color, pick) in [("p50", "#1f77b4", 1usize), ("p99", "#d62728", 2usize)] {
        let path: Vec<String> = points
            .iter()
            .map(|p| {
                let y = if pick == 1 { p.1 } else { p.2 };
                format!("{:.1},{:.1}", sx(p.0), sy(y))
            })
            .collect();
        let _ = writeln!(
            svg,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>",
            path.join(" ")
        );
        for point in &path {
            let (x, y) = point.split_once(',').unwrap_or(("0", "0"));
            let _ = writeln!(svg, "<circle cx=\"{x}\" cy=\"{y}\" r=\"3\" fill=\"{color}\"/>");
        }
        let legend_y = if pick == 1 { 40.0 } else { 56.0 };
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{legend_y}\" fill=\"{color}\">{label}</text>",
            WIDTH - MARGIN - 30.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// The curve as a small text plot: throughput across, p99 latency up, one digit per step.
pub fn render_chart_text(run: &LoadRun) -> String {
    const COLUMNS: usize = 48;
    const ROWS: usize = 10;
    let points = points(run);
    if points.len() < 2 {
        return String::new();
    }
    let max_x = points.iter().map(|p| p.0).fold(1e-9, f64::max);
    let max_y = points.iter().map(|p| p.2).fold(1e-9, f64::max);
    let mut grid = vec![vec![' '; COLUMNS]; ROWS];
    for (i, p) in points.iter().enumerate() {
        let col = ((p.0 / max_x) * (COLUMNS - 1) as f64).round() as usize;
        let row = ROWS - 1 - ((p.2 / max_y) * (ROWS - 1) as f64).round() as usize;
        grid[row][col] = char::from_digit(((i + 1) % 10) as u32, 10).unwrap_or('*');
    }
    let mut out = format!(
        "p99 latency (max {max_y:.0} ms) against throughput (max {max_x:.0} requests/s); digits are steps\n"
    );
    for row in grid {
        let line: String = row.into_iter().collect();
        let _ = writeln!(out, "  │{}", line.trim_end());
    }
    let _ = writeln!(out, "  └{}", "─".repeat(COLUMNS));
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
