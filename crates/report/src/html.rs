//! The HTML page: one self-contained file that opens offline — inline CSS and SVG, a few lines
//! of script to sort tables and copy code, no request of any kind. Everything from outside (span
//! and service names, SQL, URLs, frames, paths) goes through maud, which escapes it.
//!
//! The verdict first (the sentence, the fix, the predicted gain), then the pictures drawn from
//! the report's [`Series`](crate::Series), then every finding with its evidence.

use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::{
    ComparisonReport, Report, chart, evidence_line, impact_cell, impact_sentence, item_lines,
    per_second_cell, skipped_groups, summary_lines,
};

/// The largest page written, in bytes: past it, the page folds detail and says so.
pub const MAX_PAGE_BYTES: usize = 1_000_000;

/// How much a page shows: everything, or folded to fit [`MAX_PAGE_BYTES`].
#[derive(Clone, Copy)]
struct Detail {
    /// Findings shown with their evidence (the rest in the table only).
    findings: usize,
    /// Stacks drawn in the flame graph.
    stacks: usize,
}

const FULL: Detail = Detail {
    findings: usize::MAX,
    stacks: usize::MAX,
};
const FOLDED: Detail = Detail {
    findings: 40,
    stacks: 400,
};

/// The report as one self-contained HTML page, at most [`MAX_PAGE_BYTES`] long.
pub fn render_html(report: &Report) -> String {
    let whole = page(report, FULL, None);
    if whole.len() <= MAX_PAGE_BYTES {
        return whole;
    }
    let said = format!(
        "This page folds detail to stay under {} kB (the whole page would be {} kB): the flame graph keeps its {} \
         heaviest stacks and the first {} findings show their evidence. `report.json` holds everything.",
        MAX_PAGE_BYTES / 1000,
        whole.len() / 1000,
        FOLDED.stacks,
        FOLDED.findings
    );
    page(report, FOLDED, Some(&said))
}

fn page(report: &Report, detail: Detail, folded: Option<&str>) -> String {
    let title = match report.bottleneck() {
        Some(b) => format!("chokepoint {}: {} — {}", report.run.command, b.detector, b.title),
        None => format!("chokepoint {}", report.run.command),
    };
    document(
        &title,
        html! {
            header {
                h1 { "chokepoint " (report.run.command) }
                p.muted { (run_line(report)) }
            }
            main {
                @if let Some(said) = folded { p.note.warning role="note" { (said) } }
                (verdict(report))
                (pictures(report, detail))
                (findings(report, detail))
                (closing(report))
            }
        },
    )
}

/// A comparison of two runs as one page: what moved, the two ramps side by side, what changed.
pub fn render_comparison_html(report: &ComparisonReport) -> String {
    let text = crate::render_comparison(report, false);
    let c = &report.comparison;
    let mut lines = text.lines().skip(1).take_while(|l| !l.is_empty());
    let headline = lines.next().unwrap_or_default().to_owned();
    let rest: Vec<&str> = lines.collect();
    document(
        &format!("chokepoint compare: {headline}"),
        html! {
            header {
                h1 { "chokepoint compare" }
                p.muted { code { (report.before) } " (before) → " code { (report.after) } " (after)" }
            }
            main {
                section #verdict aria-labelledby="verdict-h" {
                    h2 #verdict-h { "What moved" }
                    p.sentence { (headline) }
                    @for line in &rest { p { (line) } }
                }
                @if report.before_ramp.is_some() || report.after_ramp.is_some() {
                    section #pictures aria-labelledby="pictures-h" {
                        h2 #pictures-h { "The two ramps" }
                        div.side-by-side {
                            @for (name, ramp) in [("Before", &report.before_ramp), ("After", &report.after_ramp)] {
                                figure.chart data-chart="ramp" {
                                    @match ramp {
                                        Some(ramp) => (PreEscaped(chart::ramp_svg(ramp))),
                                        None => p.muted { "No ramp in this run." },
                                    }
                                    figcaption { (name) }
                                }
                            }
                        }
                    }
                }
                @if !c.plans.is_empty() {
                    section aria-labelledby="plans-h" {
                        h2 #plans-h { "Plans that changed" }
                        table.sortable {
                            thead { tr { th { "statement" } th { "before" } th { "after" } } }
                            tbody { @for plan in &c.plans { tr {
                                td { code { (plan.query) } }
                                td.num { (format!("{:.0}", plan.before.cost)) " " span.muted { (plan.before.scans.join(", ")) } }
                                td.num { (format!("{:.0}", plan.after.cost)) " " span.muted { (plan.after.scans.join(", ")) } }
                            } } }
                        }
                    }
                }
                @if !c.equal_load.is_empty() {
                    section aria-labelledby="load-h" {
                        h2 #load-h { "At equal load" }
                        table.sortable {
                            thead { tr { th { "offered" } th { "throughput before" } th { "after" } th { "p99 before (ms)" } th { "after" } } }
                            tbody { @for step in &c.equal_load { tr {
                                td.num { (step.offered) }
                                td.num { (format!("{:.1}", step.throughput_rps.before)) }
                                td.num { (format!("{:.1}", step.throughput_rps.after)) }
                                td.num { (format!("{:.1}", step.p99_ms.before)) }
                                td.num { (format!("{:.1}", step.p99_ms.after)) }
                            } } }
                        }
                    }
                }
                @if !c.findings.is_empty() {
                    section #findings aria-labelledby="findings-h" {
                        h2 #findings-h { "Findings" }
                        table.sortable {
                            thead { tr { th { "status" } th { "id" } th { "detector" } th { "where" } th { "before" } th { "after" } } }
                            tbody { @for f in &c.findings { tr {
                                td { (crate::compare::status_word(f.status)) }
                                td { code.id { (f.id) } }
                                td { (f.detector) }
                                td { (f.location) }
                                td.num { (f.before.map_or("—".to_owned(), |v| format!("{v:.3}"))) }
                                td.num { (f.after.map_or("—".to_owned(), |v| format!("{v:.3}"))) }
                            } } }
                        }
                        p.muted { "before/after: recoverable service time per second for a consumer, capacity in requests/s for a limit." }
                    }
                }
            }
        },
    )
}

fn document(title: &str, body: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="generator" content=(format!("chokepoint {}", env!("CARGO_PKG_VERSION")));
                title { (title) }
                style { (PreEscaped(CSS)) }
            }
            body {
                (body)
                script { (PreEscaped(SCRIPT)) }
            }
        }
    }
    .into_string()
}

fn run_line(report: &Report) -> String {
    let inputs: Vec<String> = report
        .run
        .inputs
        .iter()
        .map(|i| match &i.format {
            Some(format) => format!("{} ({format})", i.source),
            None => i.source.clone(),
        })
        .collect();
    let mut line = format!("chokepoint {}", report.run.chokepoint_version);
    if !inputs.is_empty() {
        line.push_str(" · ");
        line.push_str(&inputs.join(", "));
    }
    if let Some(window) = &report.run.window {
        line.push_str(&format!(" · {:.1} s of evidence", window.duration_s()));
    }
    line
}

fn verdict(report: &Report) -> Markup {
    html! {
        section #verdict aria-labelledby="verdict-h" {
            h2 #verdict-h { "Verdict" }
            @match report.bottleneck() {
                Some(b) => {
                    p.sentence {
                        strong { "Bottleneck: " } code.detector { (b.detector) } " — " (b.title)
                    }
                    p { (impact_sentence(b)) }
                    @if let Some(limit) = report.limit() {
                        p { strong { "Explains the limit: " } code.detector { (limit.detector) } " — " (limit.title) (report.share_of_limit_words()) }
                    }
                    @if let Some(prediction) = report.prediction_sentence() {
                        p.prediction { strong { "Predicted: " } (prediction) }
                    }
                    div.fix {
                        h3 { "The fix" }
                        p { (prose(&b.fix)) }
                    }
                    p.muted { "Finding " a href=(format!("#f-{}", index_of(report, &b.id))) { code.id { (b.id) } } }
                }
                None if !report.findings.is_empty() => p.sentence { (crate::potential_sentence(report.findings.len())) },
                None => p.sentence { "No bottleneck found by the detectors that had evidence to look at." },
            }
        }
    }
}

fn index_of(report: &Report, id: &str) -> usize {
    report.findings.iter().position(|f| f.id == id).unwrap_or(0)
}

/// A sentence whose `backticked` parts are code.
fn prose(text: &str) -> Markup {
    html! {
        @for (i, part) in text.split('`').enumerate() {
            @if i % 2 == 1 { code { (part) } } @else { (part) }
        }
    }
}

/// Text in a block with a copy button.
fn copyable(text: &str) -> Markup {
    html! {
        div.copyable {
            pre { code { (text) } }
            button type="button" class="copy" aria-label="Copy to the clipboard" { "Copy" }
        }
    }
}

fn pictures(report: &Report, detail: Detail) -> Markup {
    let s = &report.series;
    if s.ramp.is_none() && s.endpoints.is_empty() && s.flame.is_none() && s.plans.is_empty() {
        return html! {};
    }
    html! {
        section #pictures aria-labelledby="pictures-h" {
            h2 #pictures-h { "Pictures" }
            @if let Some(ramp) = &s.ramp {
                figure.chart data-chart="ramp" {
                    (PreEscaped(chart::ramp_svg(ramp)))
                    figcaption { "Latency against throughput, step by step, on " code { (ramp.url) }
                        @if ramp.knee.is_some() { "; the knee is the last step before the ramp broke" }
                        "." }
                }
                @if ramp.points.len() >= 2 && ramp.offered_unit == "connections" {
                    figure.chart data-chart="scaling" {
                        (PreEscaped(chart::scaling_svg(ramp)))
                        figcaption { "Throughput against connections"
                            @if ramp.usl.is_some() { ", with the Universal Scalability Law fitted to it" } "." }
                    }
                }
            }
            @if let Some(example) = report.bottleneck().and_then(|b| s.examples.iter().find(|e| e.finding == b.id)) {
                figure.chart data-chart="trace" {
                    (waterfall(&example.trace))
                    figcaption { "An example request of the bottleneck, span by span (trace " code.id { (example.trace.trace_id.to_string()) } "): in red, the spans the finding is about"
                        @if example.trace.folded_spans > 0 { "; " (example.trace.folded_spans) " more spans not kept" } "." }
                }
            }
            @if !s.endpoints.is_empty() {
                figure.chart data-chart="endpoints" {
                    (PreEscaped(chart::endpoints_svg(&s.endpoints)))
                    figcaption { "Where each endpoint's time goes: mean per request, in the database, in its own process, and the rest (calls to other services, waits)." }
                }
            }
            @if let Some(flame) = &s.flame {
                figure.chart.flame data-chart="flame" {
                    @match crate::flamegraph::flame_svg(flame, detail.stacks, false) {
                        Ok(svg) => (PreEscaped(svg)),
                        Err(e) => p.note.warning { "The flame graph could not be drawn: " (e.to_string()) },
                    }
                    figcaption {
                        "The profile's flame graph: " (flame.samples) " samples"
                        @if flame.pruned_samples > 0 { ", " (flame.pruned_samples) " in stacks under 0.1 % pruned" }
                        ". Colours: orange serialization, purple logging, yellow regex compilation, blue sorting, green database, teal HTTP clients, grey sleep and file I/O, red the findings' frames."
                    }
                }
            }
            @if !s.plans.is_empty() {
                figure.chart data-chart="plans" {
                    table {
                        caption { "The plan's cost before and after each index (HypoPG)" }
                        thead { tr { th { "statement" } th { "cost before" } th { "after" } th { "index" } } }
                        tbody { @for plan in &s.plans { tr {
                            td { code { (plan.statement) } @if !plan.seq_scans.is_empty() { br; span.muted { "scans " (plan.seq_scans.join(", ")) " sequentially" } } }
                            td.num { (format!("{:.0}", plan.cost_before)) }
                            td.num { (plan.cost_after.map_or("not costed".to_owned(), |c| format!("{c:.0}"))) }
                            td { (copyable(&plan.create)) }
                        } } }
                    }
                }
            }
        }
    }
}

/// A request's spans as a waterfall: each span's name indented by its depth, a bar from its start
/// for its duration on the request's time, its duration; the finding's spans marked.
fn waterfall(trace: &chokepoint_evidence::ExampleTrace) -> Markup {
    let end = trace
        .spans
        .iter()
        .map(|s| s.start_ms + s.duration_ms)
        .fold(1e-6, f64::max);
    html! {
        table.waterfall {
            caption.visually-hidden { "The spans of trace " (trace.trace_id.to_string()) }
            thead { tr { th scope="col" { "span" } th scope="col" { "when (0 – " (crate::duration(end)) ")" } th scope="col" { "ms" } } }
            tbody {
                @for span in &trace.spans {
                    tr.marked[span.marked] {
                        td.span-name style=(format!("padding-left:{:.1}em", 0.3 + f64::from(span.depth.min(12)) * 0.9)) {
                            @if span.marked { span.visually-hidden { "marked: " } }
                            (span.name)
                        }
                        td.span-track {
                            span.span-bar title=(format!("{} — at +{:.1} ms, {:.1} ms", span.name, span.start_ms, span.duration_ms))
                                style=(format!("left:{:.2}%;width:{:.2}%", span.start_ms / end * 100.0, (span.duration_ms / end * 100.0).max(0.3))) {}
                        }
                        td.num { (format!("{:.1}", span.duration_ms)) }
                    }
                }
            }
        }
    }
}

fn findings(report: &Report, detail: Detail) -> Markup {
    if report.findings.is_empty() {
        return html! {};
    }
    html! {
        section #findings aria-labelledby="findings-h" {
            h2 #findings-h { "Findings" }
            table.sortable {
                thead { tr {
                    th scope="col" { "#" } th scope="col" { "detector" } th scope="col" { "scope" }
                    th scope="col" { "impact" } th scope="col" { "s/s" } th scope="col" { "confidence" }
                } }
                tbody {
                    @for (rank, f) in report.findings.iter().enumerate() {
                        tr {
                            td.num { a href=(format!("#f-{rank}")) { (rank + 1) } }
                            td { code.detector { (f.detector) } }
                            td { (f.scope.label()) }
                            td.num { (impact_cell(f)) }
                            td.num { (per_second_cell(f)) }
                            td { (f.confidence.as_str()) }
                        }
                    }
                }
            }
            @for (rank, f) in report.findings.iter().enumerate().take(detail.findings) {
                details.finding id=(format!("f-{rank}")) open[rank == 0] {
                    summary { span.rank { (rank + 1) ". " } code.detector { (f.detector) } " — " (f.title) }
                    dl {
                        dt { "Id" } dd { code.id { (f.id) } }
                        dt { "Where" } dd { code { (f.location) } " (" (f.scope.owner()) ")" }
                        dt { "Impact" } dd { (impact_sentence(f)) }
                        dt { "Fix" } dd { (prose(&f.fix)) }
                        dt { "Evidence" } dd { (evidence_line(f)) }
                        @for (name, line) in item_lines(f) {
                            dt { (name) } dd { (prose(&line)) }
                        }
                        @if !f.assumptions.is_empty() {
                            dt { "Assumes" } dd { ul { @for a in &f.assumptions { li { (a) } } } }
                        }
                        @if !f.evidence.example_trace_ids.is_empty() {
                            dt { "Example traces" } dd { @for id in &f.evidence.example_trace_ids { code.id { (id.to_string()) } " " } }
                        }
                        @if let Some(example) = report.series.examples.iter().find(|e| e.finding == f.id).filter(|_| rank > 0) {
                            dt { "Example request" } dd {
                                (waterfall(&example.trace))
                                @if example.trace.folded_spans > 0 { p.muted { (example.trace.folded_spans) " more spans not kept." } }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn closing(report: &Report) -> Markup {
    let skipped = skipped_groups(&report.skipped);
    html! {
        @if !skipped.is_empty() {
            section aria-labelledby="skipped-h" {
                h2 #skipped-h { "Skipped for lack of evidence" }
                ul { @for (reason, ids) in &skipped { li { (reason) ": " @for id in ids { code { (id) } " " } } } }
            }
        }
        section aria-labelledby="summary-h" {
            h2 #summary-h { "The evidence" }
            @for line in summary_lines(report) { @for part in line.split('\n') { p { (part) } } }
            @for note in &report.notes {
                p.note.(note.severity.as_str()) role="note" { strong { (note.severity.as_str()) ": " } (note.to_string()) }
            }
        }
    }
}

/// The page's style: light and dark (WCAG AA contrast in both), readable printed.
const CSS: &str = r##"
:root { --bg:#ffffff; --fg:#1b1b1b; --muted:#4f4f4f; --line:#d0d0d0; --accent:#a4161a; --link:#0b57d0; --code:#f3f3f3; --warn:#7a4a00; --warnbg:#fff4e0; }
@media (prefers-color-scheme: dark) {
  :root { --bg:#141414; --fg:#ececec; --muted:#b8b8b8; --line:#3a3a3a; --accent:#ff8f8a; --link:#8ab4f8; --code:#242424; --warn:#ffd08a; --warnbg:#2d2110; }
}
* { box-sizing: border-box; }
body { margin:0 auto; max-width:1200px; padding:1rem 1.5rem 3rem; background:var(--bg); color:var(--fg); font:15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; }
h1 { font-size:1.5rem; margin:.5rem 0 0; } h2 { font-size:1.2rem; border-bottom:1px solid var(--line); padding-bottom:.2rem; margin-top:2rem; } h3 { font-size:1rem; margin:.8rem 0 .3rem; }
a { color:var(--link); }
.muted { color:var(--muted); }
code, pre { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size:.9em; }
code { background:var(--code); padding:0 .25em; border-radius:3px; overflow-wrap:anywhere; }
pre { background:var(--code); padding:.6rem .8rem; border-radius:4px; overflow-x:auto; white-space:pre-wrap; margin:0; }
pre code { padding:0; background:none; }
.sentence { font-size:1.1rem; }
.sentence strong, .detector { color:var(--accent); }
.prediction { border-left:4px solid var(--accent); padding-left:.7rem; }
.copyable { position:relative; }
.copy { position:absolute; top:.3rem; right:.3rem; font:inherit; font-size:.8rem; padding:.1rem .5rem; background:var(--bg); color:var(--fg); border:1px solid var(--line); border-radius:3px; cursor:pointer; }
table { border-collapse:collapse; width:100%; margin:.5rem 0; }
th, td { border-bottom:1px solid var(--line); padding:.3rem .5rem; text-align:left; vertical-align:top; }
th { font-weight:600; }
table.sortable th { cursor:pointer; }
table.sortable th[aria-sort]::after { content:" ↕"; color:var(--muted); }
td.num { text-align:right; font-variant-numeric:tabular-nums; }
caption { text-align:left; font-weight:600; padding:.3rem 0; }
figure { margin:1rem 0 1.5rem; }
figcaption { color:var(--muted); font-size:.9rem; }
.chart svg { max-width:100%; height:auto; display:block; }
.chart text { fill:var(--fg); }
.chart .grid, .chart line[stroke="#000000"] { stroke:var(--fg); }
.flame svg { background:#ffffff; }
.flame svg text { fill:#000000; }
table.waterfall { table-layout:fixed; font-size:.85rem; }
table.waterfall th:first-child { width:40%; } table.waterfall th:last-child { width:5rem; }
table.waterfall td { padding:.1rem .4rem; border-bottom:1px solid var(--line); }
.span-name { white-space:nowrap; overflow:hidden; text-overflow:ellipsis; font-family: ui-monospace, Menlo, Consolas, monospace; }
.span-track { position:relative; }
.span-bar { position:absolute; top:25%; height:50%; min-width:2px; background:var(--link); border-radius:2px; }
tr.marked .span-bar { background:var(--accent); }
tr.marked .span-name { color:var(--accent); font-weight:600; }
table.waterfall tbody tr:hover { background:var(--code); }
.visually-hidden { position:absolute; width:1px; height:1px; overflow:hidden; clip:rect(0 0 0 0); white-space:nowrap; }
.side-by-side { display:grid; grid-template-columns:1fr 1fr; gap:1rem; }
details.finding { border:1px solid var(--line); border-radius:4px; padding:.4rem .8rem; margin:.6rem 0; }
details.finding summary { cursor:pointer; font-weight:600; }
dl { display:grid; grid-template-columns:9rem 1fr; gap:.3rem .8rem; margin:.6rem 0; }
dt { font-weight:600; color:var(--muted); } dd { margin:0; min-width:0; }
.note { padding:.4rem .7rem; border-radius:4px; background:var(--code); }
.note.warning, .note.error { background:var(--warnbg); color:var(--warn); }
@media print {
  body { max-width:none; color:#000; background:#fff; }
  .copy { display:none; }
  details.finding { break-inside:avoid; }
  a { color:#000; }
}
"##;

/// Sorting the tables by a column, opening a finding its link points to, copying code.
const SCRIPT: &str = r#"
document.querySelectorAll('table.sortable').forEach(function (table) {
  table.querySelectorAll('th').forEach(function (th, column) {
    th.setAttribute('aria-sort', 'none');
    th.tabIndex = 0;
    var sort = function () {
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      var up = th.getAttribute('aria-sort') !== 'ascending';
      var key = function (row) {
        var text = row.cells[column] ? row.cells[column].textContent.trim() : '';
        var n = parseFloat(text.replace(/[^0-9.\-]/g, ''));
        return isNaN(n) ? text.toLowerCase() : n;
      };
      rows.sort(function (a, b) { var x = key(a), y = key(b); return (x < y ? -1 : x > y ? 1 : 0) * (up ? 1 : -1); });
      table.querySelectorAll('th').forEach(function (other) { other.setAttribute('aria-sort', 'none'); });
      th.setAttribute('aria-sort', up ? 'ascending' : 'descending');
      rows.forEach(function (row) { body.appendChild(row); });
    };
    th.addEventListener('click', sort);
    th.addEventListener('keydown', function (e) { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); sort(); } });
  });
});
var openTarget = function () {
  var target = location.hash && document.getElementById(location.hash.slice(1));
  if (target && target.tagName === 'DETAILS') { target.open = true; }
};
window.addEventListener('hashchange', openTarget);
openTarget();
document.querySelectorAll('button.copy').forEach(function (button) {
  button.addEventListener('click', function () {
    var text = button.parentNode.querySelector('code').textContent;
    if (navigator.clipboard) {
      navigator.clipboard.writeText(text).then(function () { button.textContent = 'Copied'; }, function () {});
    }
  });
});
"#;
