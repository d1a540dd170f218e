//! The pictures of a report drawn with plotters' SVG backend — the latency-versus-throughput
//! curve of a load ramp (the knee is where it turns up), throughput against connections with
//! the USL fit, each endpoint's time by cause — and the ramp as a compact terminal plot.

use std::fmt::Write as _;

use chokepoint_evidence::LoadRun;
use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use crate::{EndpointTime, RampSeries};

/// (throughput, p50, p99) of the steps with answers.
fn points(run: &LoadRun) -> Vec<(f64, f64, f64)> {
    run.steps
        .iter()
        .filter(|s| s.requests > 0)
        .map(|s| (s.throughput_rps, s.latency.p50_ms, s.latency.p99_ms))
        .collect()
}

/// The percentiles' colours (the Okabe–Ito palette, told apart by people with colour-blindness),
/// and the fit's.
const P50: RGBColor = RGBColor(0, 114, 178);
const P90: RGBColor = RGBColor(0, 158, 115);
const P99: RGBColor = RGBColor(213, 94, 0);
const FIT: RGBColor = RGBColor(204, 121, 167);
const DATABASE: RGBColor = RGBColor(0, 158, 115);
const IN_PROCESS: RGBColor = RGBColor(230, 159, 0);
const OTHER: RGBColor = RGBColor(86, 180, 233);

/// The latency-against-throughput curve of a ramp as a standalone SVG document (`--chart`, and
/// the page's first picture): p50, p90 and p99 per step, the knee, the objective.
pub fn render_chart_svg(ramp: &RampSeries) -> String {
    ramp_svg(ramp)
}

pub(crate) fn ramp_svg(ramp: &RampSeries) -> String {
    let mut svg = String::new();
    let drawn = draw_ramp(&mut svg, ramp);
    if let Err(e) = drawn {
        return failed(&e.to_string());
    }
    svg
}

fn failed(why: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"640\" height=\"40\"><text x=\"8\" y=\"24\">the chart could not be drawn: {}</text></svg>",
        escape(why)
    )
}

type Drawn = Result<(), Box<dyn std::error::Error>>;

/// A plane of numbers from 0 to each maximum, captioned, its axes described.
fn plane<'a, 'b>(
    root: &'a DrawingArea<SVGBackend<'b>, Shift>,
    caption: &str,
    (max_x, x_desc): (f64, &str),
    (max_y, y_desc): (f64, &str),
) -> Result<
    ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    Box<dyn std::error::Error>,
> {
    let mut chart = ChartBuilder::on(root)
        .caption(caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..max_x, 0.0..max_y)?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .x_desc(x_desc)
        .y_desc(y_desc)
        .label_style(("sans-serif", 13))
        .draw()?;
    Ok(chart)
}

/// The series' names and marks, where they hide nothing.
fn legend<'a, 'b: 'a, C: CoordTranslate>(
    chart: &mut ChartContext<'a, SVGBackend<'b>, C>,
    position: SeriesLabelPosition,
) -> Drawn {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(TRANSPARENT)
        .label_font(("sans-serif", 13))
        .draw()?;
    Ok(())
}

fn draw_ramp(svg: &mut String, ramp: &RampSeries) -> Drawn {
    let root = SVGBackend::with_string(svg, (720, 400)).into_drawing_area();
    let max_x = ramp.points.iter().map(|p| p.throughput_rps).fold(1.0, f64::max) * 1.08;
    let max_y = ramp
        .points
        .iter()
        .map(|p| p.p99_ms)
        .chain(ramp.slo.map(|(_, ms)| ms))
        .fold(1.0, f64::max)
        * 1.08;
    let mut chart = plane(
        &root,
        "Latency against throughput",
        (max_x, "throughput (requests/s)"),
        (max_y, "latency (ms)"),
    )?;
    for (name, colour, pick) in [("p50", P50, 0usize), ("p90", P90, 1), ("p99", P99, 2)] {
        let at = |p: &crate::RampPoint| (p.throughput_rps, [p.p50_ms, p.p90_ms, p.p99_ms][pick]);
        chart
            .draw_series(LineSeries::new(
                ramp.points.iter().map(at),
                colour.stroke_width(2),
            ))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2)));
        chart.draw_series(ramp.points.iter().map(|p| Circle::new(at(p), 3, colour.filled())))?;
    }
    if let Some(knee) = ramp.knee.and_then(|k| ramp.points.get(k)) {
        let x = knee.throughput_rps;
        chart.draw_series(DashedLineSeries::new(
            [(x, 0.0), (x, max_y)],
            5,
            4,
            BLACK.mix(0.6).stroke_width(1),
        ))?;
        chart.draw_series(std::iter::once(Text::new(
            format!("knee: {x:.0}/s"),
            (x, max_y * 0.97),
            ("sans-serif", 13),
        )))?;
    }
    if let Some((percentile, ms)) = ramp.slo {
        chart
            .draw_series(DashedLineSeries::new(
                [(0.0, ms), (max_x, ms)],
                8,
                4,
                P99.mix(0.8).stroke_width(1),
            ))?
            .label(format!("objective p{percentile:.0} < {ms:.0} ms"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], P99.mix(0.8)));
    }
    legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
    root.present()?;
    Ok(())
}

/// Throughput against connections, with the Universal Scalability Law's curve when it fitted.
pub(crate) fn scaling_svg(ramp: &RampSeries) -> String {
    let mut svg = String::new();
    if let Err(e) = draw_scaling(&mut svg, ramp) {
        return failed(&e.to_string());
    }
    svg
}

fn draw_scaling(svg: &mut String, ramp: &RampSeries) -> Drawn {
    let root = SVGBackend::with_string(svg, (720, 360)).into_drawing_area();
    let max_x = ramp.points.iter().map(|p| p.offered).fold(1.0, f64::max) * 1.05;
    let max_y = ramp.points.iter().map(|p| p.throughput_rps).fold(1.0, f64::max) * 1.15;
    let mut chart = plane(
        &root,
        "Throughput against connections",
        (max_x, "connections"),
        (max_y, "throughput (requests/s)"),
    )?;
    chart
        .draw_series(LineSeries::new(
            ramp.points.iter().map(|p| (p.offered, p.throughput_rps)),
            P50.stroke_width(2),
        ))?
        .label("measured")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], P50.stroke_width(2)));
    chart.draw_series(
        ramp.points
            .iter()
            .map(|p| Circle::new((p.offered, p.throughput_rps), 3, P50.filled())),
    )?;
    if let Some(fit) = ramp.usl {
        let curve = (0..=60).map(|i| {
            let n = 1.0 + (max_x - 1.0) * f64::from(i) / 60.0;
            let x = fit.lambda_rps * n / (1.0 + fit.sigma * (n - 1.0) + fit.kappa * n * (n - 1.0));
            (n, x.min(max_y))
        });
        chart
            .draw_series(DashedLineSeries::new(curve, 6, 4, FIT.stroke_width(2)))?
            .label(format!("USL fit: σ {:.3}, κ {:.4}", fit.sigma, fit.kappa))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], FIT.stroke_width(2)));
    }
    legend(&mut chart, SeriesLabelPosition::LowerRight)?;
    root.present()?;
    Ok(())
}

/// Each endpoint's mean time per request as a bar split by cause.
pub(crate) fn endpoints_svg(endpoints: &[EndpointTime]) -> String {
    let mut svg = String::new();
    if let Err(e) = draw_endpoints(&mut svg, endpoints) {
        return failed(&e.to_string());
    }
    svg
}

fn draw_endpoints(svg: &mut String, endpoints: &[EndpointTime]) -> Drawn {
    let rows = endpoints.len();
    let height = 90 + 30 * rows as u32;
    let root = SVGBackend::with_string(svg, (720, height)).into_drawing_area();
    let max_x = endpoints.iter().map(|e| e.mean_ms).fold(1.0, f64::max) * 1.05;
    let names: Vec<String> = endpoints
        .iter()
        .map(|e| {
            let name = format!("{} {}", e.endpoint, e.service);
            match name.char_indices().nth(34) {
                Some((at, _)) => format!("{}…", &name[..at]),
                None => name,
            }
        })
        .collect();
    let mut chart = ChartBuilder::on(&root)
        .caption("Mean time per request, by cause", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(250)
        .build_cartesian_2d(0.0..max_x, (0..rows).into_segmented())?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .light_line_style(TRANSPARENT)
        .x_desc("ms per request")
        .y_labels(rows.max(1))
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => names.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .label_style(("sans-serif", 13))
        .draw()?;
    for (name, colour, part) in [
        ("database", DATABASE, 0usize),
        ("own process", IN_PROCESS, 1),
        ("other", OTHER, 2),
    ] {
        chart
            .draw_series(endpoints.iter().enumerate().map(|(row, e)| {
                let before = [0.0, e.database_ms, e.database_ms + e.in_process_ms][part];
                let width = [e.database_ms, e.in_process_ms, e.other_ms][part];
                Rectangle::new(
                    [
                        (before, SegmentValue::Exact(row)),
                        (before + width, SegmentValue::Exact(row + 1)),
                    ],
                    colour.filled(),
                )
            }))?
            .label(name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled()));
    }
    legend(&mut chart, SeriesLabelPosition::LowerRight)?;
    root.present()?;
    Ok(())
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
