//! `chokepoint load`: ramp load on a URL, show each step as it completes, and report what caps
//! the throughput.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use chokepoint_evidence::{LoadModel, LoadRun};
use chokepoint_load::{RampConfig, Target, pid_listening_on};
use chokepoint_report::{Report, step_header, step_row};

use crate::args::{LoadConfig, Model};
use crate::output;

/// How far throughput × latency may stray from the concurrency before the step is suspect.
const LITTLES_LAW_TOLERANCE: f64 = 0.2;

pub(crate) fn run(config: LoadConfig) -> anyhow::Result<u8> {
    // One worker thread per core this process may run on (taskset, cgroups): a thread more than
    // the cores only adds wake-ups between them.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let runtime = if cores == 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cores)
            .enable_all()
            .build()
    }
    .context("cannot start the async runtime")?;
    runtime.block_on(load(config))
}

async fn load(config: LoadConfig) -> anyhow::Result<u8> {
    let host = config.url.host().unwrap_or("localhost").to_owned();
    let https = config.url.scheme_str() == Some("https");
    let port = config.url.port_u16().unwrap_or(if https { 443 } else { 80 });
    let tls = if https {
        Some(
            chokepoint_load::Tls::new(&host, config.cacert.as_deref(), config.http2)
                .map_err(anyhow::Error::msg)?,
        )
    } else {
        None
    };
    let addr = tokio::net::lookup_host((host.as_str(), port))
        .await
        .with_context(|| format!("cannot resolve {host}"))?
        .next()
        .with_context(|| format!("{host} has no address"))?;
    let local = addr.ip().is_loopback() || addr.ip().is_unspecified();
    let pid = match (config.pid, config.no_pid) {
        (_, true) => None,
        (Some(pid), false) => Some(pid),
        (None, false) => local.then(|| pid_listening_on(port)).flatten(),
    };
    let host_header = match config.url.port_u16() {
        Some(port) => format!("{host}:{port}"),
        None => host.clone(),
    };
    let ramp = RampConfig {
        target: Target {
            addr,
            host: host_header,
            paths: config.paths.clone(),
            method: config.method.clone(),
            headers: config.headers.clone(),
            body: config.body.clone(),
            timeout: config.timeout,
            http2: config.http2,
            tls,
        },
        model: match config.model {
            Model::Closed => LoadModel::Closed,
            Model::Open => LoadModel::Open,
        },
        steps: config.steps.clone(),
        step_duration: config.step_duration,
        connections: config.connections,
        slo: config.slo,
        max_error_rate: config.max_error_rate,
        max_duration: config.max_duration,
        target_pid: pid,
        target_port: (local && !config.no_pid).then_some(port),
        metrics_url: config.metrics.clone(),
    };
    let sampled = match (pid, &config.metrics) {
        (Some(pid), _) => format!("sampling target pid {pid}"),
        (None, Some(url)) => format!("reading the target's CPU from {url}"),
        (None, None) => "no target process to sample (pass --pid, or --metrics)".to_owned(),
    };
    eprintln!(
        "chokepoint: {} steps of {:?} load on {} ({sampled}); Ctrl-C stops and reports what was measured",
        config.steps.len(),
        ramp.model,
        config.url
    );
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let interrupted = Arc::clone(&interrupted);
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                interrupted.store(true, Ordering::Relaxed);
            }
        });
    }
    // Steps are shown live on stderr as they complete; the report on stdout has them all.
    let show = |line: String| eprintln!("{line}");
    show(step_header());
    let progress = if config.report.progress {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let total = config.steps.len();
    let unit = match ramp.model {
        LoadModel::Closed => "connections",
        LoadModel::Open => "requests/s",
    };
    let describe = |i: usize| {
        format!(
            "step {}/{total}: {} {} for {:?}",
            i + 1,
            config.steps[i],
            unit,
            config.step_duration
        )
    };
    progress.set_message(describe(0));
    let database = match &config.pg {
        Some(url) => {
            Some(crate::db::DatabaseWatch::start(url, config.max_duration, config.show_literals).await?)
        }
        None => None,
    };
    let mut run = chokepoint_load::run(&ramp, interrupted, |i, step| {
        progress.suspend(|| show(step_row(step)));
        if i + 1 < total {
            progress.set_message(describe(i + 1));
        }
    })
    .await;
    progress.finish_and_clear();
    show(String::new());
    let mut outcome = chokepoint_detect::analyse_load(&run);
    let snapshot = match database {
        Some(watch) => Some(watch.finish(&mut run, &mut outcome).await),
        None => None,
    };
    let mut report = Report::new(outcome);
    if let Some(snapshot) = &snapshot {
        report
            .warnings
            .extend(crate::db::snapshot_warnings(snapshot, "--pg: "));
    }
    report.database = snapshot;
    report.warnings.extend(ramp_warnings(&run));
    if run.target_lost {
        report
            .problems
            .push(format!("load ramp: {}", run.stopped_because));
    }
    if let Some(path) = &config.chart {
        if let Err(e) = std::fs::write(path, chokepoint_report::render_chart_svg(&run)) {
            report
                .problems
                .push(format!("cannot write the chart to {}: {e}", path.display()));
        }
    }
    report.load = Some(run);
    Ok(output::finish(&report, &config.report))
}

/// What the step series says about the measurement itself.
fn ramp_warnings(run: &LoadRun) -> Vec<String> {
    let mut warnings = Vec::new();
    if let Some(step) = run.steps.iter().position(|s| s.generator_limited) {
        warnings.push(format!(
            "the generator was the limit from step {} (its CPU, or sending late): those steps measure it, not the \
             target; run it on another host",
            step + 1
        ));
    }
    if run.model == LoadModel::Closed {
        for (i, step) in run.steps.iter().enumerate() {
            let gap = (step.in_flight_by_littles_law - step.offered).abs() / step.offered.max(1.0);
            if step.requests > 0 && step.errors == 0 && gap > LITTLES_LAW_TOLERANCE {
                warnings.push(format!(
                    "step {}: Little's law gives {:.1} requests in flight for {} connections (throughput × latency); \
                     the connections were not kept busy",
                    i + 1,
                    step.in_flight_by_littles_law,
                    step.offered
                ));
            }
        }
    }
    warnings
}
