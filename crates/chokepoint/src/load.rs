//! `chokepoint load`: ramp load on a URL, show each step as it completes, and report what caps
//! the throughput.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use chokepoint_evidence::{Evidence, LoadModel, Note, Severity};
use chokepoint_load::{RampConfig, Sampling, Target, pid_listening_on};
use chokepoint_report::{Input, Report, step_header, step_row};

use crate::args::LoadConfig;
use crate::output;

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
    let request = &config.request;
    let tls = if https {
        Some(chokepoint_load::Tls::new(
            &host,
            request.cacert.as_deref(),
            request.http2,
        )?)
    } else {
        None
    };
    let addr = tokio::net::lookup_host((host.as_str(), port))
        .await
        .with_context(|| format!("cannot resolve {host}"))?
        .next()
        .with_context(|| format!("{host} has no address"))?;
    let local = addr.ip().is_loopback() || addr.ip().is_unspecified();
    let sampling = &config.sampling;
    let pid = match (sampling.pid, sampling.no_pid) {
        (_, true) => None,
        (Some(pid), false) => Some(pid),
        (None, false) => local.then(|| pid_listening_on(port)).flatten(),
    };
    let host_header = match config.url.port_u16() {
        Some(port) => format!("{host}:{port}"),
        None => host.clone(),
    };
    let shape = &config.ramp;
    let ramp = RampConfig {
        target: Target {
            addr,
            host: host_header,
            paths: request.paths.clone(),
            method: request.method.clone(),
            headers: request.headers.clone(),
            body: request.body.clone(),
            timeout: request.timeout,
            http2: request.http2,
            tls,
        },
        steps: shape.steps.clone(),
        step_duration: shape.step_duration,
        connections: shape.connections,
        stop: shape.stop,
        max_duration: shape.max_duration,
        sampling: Sampling {
            target_pid: pid,
            target_port: (local && !sampling.no_pid).then_some(port),
            metrics_url: sampling.metrics.clone(),
        },
    };
    let sampled = match (pid, &sampling.metrics) {
        (Some(pid), _) => format!("sampling target pid {pid}"),
        (None, Some(url)) => format!("reading the target's CPU from {url}"),
        (None, None) => "no target process to sample (pass --pid, or --metrics)".to_owned(),
    };
    eprintln!(
        "chokepoint: {} steps of {:?} load on {} ({sampled}); Ctrl-C stops and reports what was measured",
        shape.steps.len(),
        shape.stop.model,
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
    let total = shape.steps.len();
    let unit = match shape.stop.model {
        LoadModel::Closed => "connections",
        LoadModel::Open => "requests/s",
    };
    let describe = |i: usize| {
        format!(
            "step {}/{total}: {} {} for {:?}",
            i + 1,
            shape.steps[i],
            unit,
            shape.step_duration
        )
    };
    progress.set_message(describe(0));
    let database = match &config.pg {
        Some(pg) => {
            Some(crate::db::DatabaseWatch::start(&pg.url, shape.max_duration, pg.show_literals).await?)
        }
        None => None,
    };
    // `--profile`: py-spy records the top half of the steps, where the limit shows.
    let profile_from = total / 2;
    let mut recorder = None;
    let start_profile = || match (&config.profile, pid) {
        (Some(profile), Some(pid)) => {
            let left =
                shape.step_duration * (total - profile_from) as u32 + std::time::Duration::from_secs(5);
            let out = profile.out.clone().unwrap_or_else(|| {
                std::env::temp_dir().join(format!(
                    "chokepoint-load-profile-{pid}-{}.raw",
                    std::process::id()
                ))
            });
            Some((
                out.clone(),
                crate::profile::unix_now(),
                chokepoint_profile::start(
                    profile.py_spy.as_deref(),
                    pid,
                    left.min(shape.max_duration),
                    100,
                    &out,
                ),
            ))
        }
        _ => None,
    };
    if profile_from == 0 {
        recorder = start_profile();
    }
    let run = chokepoint_load::run(&ramp, interrupted, |i, step| {
        progress.suspend(|| show(step_row(step)));
        if i + 1 < total {
            progress.set_message(describe(i + 1));
        }
        if i + 1 == profile_from && recorder.is_none() {
            recorder = start_profile();
        }
    })
    .await;
    progress.finish_and_clear();
    show(String::new());
    let snapshot = match database {
        Some(watch) => Some(watch.finish().await),
        None => None,
    };
    let mut notes = Vec::new();
    let mut inputs = vec![Input {
        source: run.url.clone(),
        format: Some("load ramp".into()),
        spans: 0,
    }];
    if let Some(snapshot) = &snapshot {
        notes.extend(crate::db::snapshot_notes(snapshot));
        inputs.push(crate::db::database_input(snapshot));
    }
    if run.target_lost {
        notes.push(Note::new(
            Severity::Error,
            "load ramp",
            run.stopped_because.to_string(),
        ));
    }
    if let Some(path) = &config.chart {
        if let Err(e) = std::fs::write(path, chokepoint_report::render_chart_svg(&run)) {
            notes.push(Note::new(
                Severity::Error,
                "--chart",
                format!("cannot write the chart to {}: {e}", path.display()),
            ));
        }
    }
    let profile = match (&config.profile, recorder) {
        (None, _) => None,
        (Some(_), None) => {
            notes.push(Note::new(
                Severity::Error,
                "--profile",
                match pid {
                    None => "no target process to profile: pass --pid (a local Python process)".to_owned(),
                    Some(_) => "the ramp ended before its top steps: nothing was profiled".to_owned(),
                },
            ));
            None
        }
        (Some(settings), Some((out, started, recorder))) => {
            match recorder.and_then(chokepoint_profile::Recorder::stop) {
                Ok(recording) => {
                    let (profile, profile_inputs, profile_notes) =
                        crate::profile::read_profiles(&[recording.path], 100, &settings.sources);
                    inputs.extend(profile_inputs);
                    notes.extend(profile_notes);
                    notes.push(Note::new(
                        Severity::Info,
                        out.display().to_string(),
                        format!(
                            "the profile of the top {} step(s) is kept here: `chokepoint profile {}` analyses it again",
                            total - profile_from,
                            out.display()
                        ),
                    ));
                    profile.map(|mut p| {
                        p.pid = pid;
                        p.started_unix_s = started;
                        p
                    })
                }
                Err(error) => {
                    notes.push(Note::new(
                        Severity::Error,
                        "--profile",
                        format!("{error}; the ramp's findings stand without it"),
                    ));
                    None
                }
            }
        }
    };
    let evidence = Evidence {
        load: Some(run),
        database: snapshot,
        profile,
        ..Evidence::default()
    };
    let outcome = chokepoint_detect::analyse(&evidence);
    let report = Report::new("load", evidence, outcome, inputs, notes);
    Ok(output::finish(&report, &config.report))
}
