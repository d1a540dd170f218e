//! `chokepoint load`: ramp load on a URL, show each step as it completes, and report what caps
//! the throughput (and `diagnose` with a URL: the same ramp with what watches it, and the
//! evidence recorded before joined to it).

use chokepoint_collect::ramp::Ramp;
use chokepoint_collect::{Source, Stop};
use chokepoint_evidence::{Note, Severity};

use crate::args::LoadConfig;
use crate::output;

pub(crate) fn run(config: LoadConfig) -> anyhow::Result<u8> {
    let stop: Stop = crate::signals::watch()?;
    let ramp = Ramp {
        url: config.url,
        request: config.request,
        shape: config.ramp,
        sampling: config.sampling,
        profile: config.profile,
        profile_asked: config.command == "load",
        saved: config.report.save.is_some(),
        pg: config.pg,
        receiver: config.receiver,
        record_spans: config.record_spans,
        notes: config.notes,
        stop: stop.clone(),
    };
    let mut sources: Vec<Box<dyn Source>> = vec![Box::new(ramp)];
    sources.extend(config.recorded.sources(&stop));
    let part = output::collect(sources, config.report.progress)?;
    let (mut report, saved) = crate::runs::report(
        config.command,
        part.evidence,
        part.inputs,
        part.notes,
        &config.report,
        &part.recordings,
    );
    // Recordings made for this run alone live on in the saved run only.
    if saved.is_some() {
        for path in &part.scratch {
            let _ = std::fs::remove_file(path);
        }
    }
    if let (Some(path), Some(ramp)) = (&config.chart, &report.series.ramp)
        && let Err(e) = std::fs::write(path, chokepoint_report::render_chart_svg(ramp))
    {
        report.notes.push(Note::new(
            Severity::Error,
            "--chart",
            format!("cannot write the chart to {}: {e}", path.display()),
        ));
    }
    let code = output::finish(&report, &config.report);
    if let (Some(baseline), Some(run)) = (&config.baseline, saved) {
        crate::runs::compare_with_baseline(baseline, &run, config.report.format)?;
    }
    Ok(code)
}
