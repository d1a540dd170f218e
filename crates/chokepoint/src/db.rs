//! `chokepoint db`: one read-only snapshot of a PostgreSQL database's statistics, analysed.

use anyhow::Context as _;
use chokepoint_report::Report;

use crate::args::DbConfig;
use crate::output;

pub(crate) fn run(config: DbConfig) -> anyhow::Result<u8> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let mut client = chokepoint_db::connect(&config.url).await?;
        let mut snapshot = chokepoint_db::snapshot(&client, config.show_literals).await?;
        if let Some(duration) = config.watch {
            eprintln!(
                "chokepoint: watching {} for {}; Ctrl-C stops and reports what was sampled",
                snapshot.database,
                humantime::format_duration(duration)
            );
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let interrupt = tokio::spawn({
                let stop = std::sync::Arc::clone(&stop);
                async move {
                    if tokio::signal::ctrl_c().await.is_ok() {
                        stop.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
            let progress = watch_progress(config.report.progress, duration);
            chokepoint_db::watch(&config.url, &mut client, &mut snapshot, duration, &stop).await;
            progress.abort();
            interrupt.abort();
            if let Some(activity) = &snapshot.activity {
                report_gaps(&activity.gaps);
            }
        }
        chokepoint_db::check_indexes(&client, &mut snapshot).await;
        let mut report = Report::new(chokepoint_detect::analyse_db(&snapshot));
        report.warnings.extend(snapshot_warnings(&snapshot, ""));
        if snapshot.window_s > 0.0 && snapshot.window_s < 60.0 {
            let covered = if snapshot.activity.is_some() {
                "the watch covered"
            } else {
                "the statistics cover, since pg_stat_statements was reset,"
            };
            report.warnings.push(format!(
                "{covered} only {:.0} s: too little traffic to judge",
                snapshot.window_s
            ));
        }
        report.database = Some(snapshot);
        Ok(output::finish(&report, &config.report))
    })
}

/// Explains the `slow-query` findings of a trace analysis with the plans of the database at
/// `url`, and confirms its `n-plus-one` findings with the database's counts (`chokepoint
/// traces --pg`). A database that cannot be read is a problem in the report;
/// the trace findings stay.
pub(crate) fn explain_traces(report: &mut Report, url: &str, show_literals: bool) {
    let slow: Vec<String> = report
        .findings
        .iter()
        .filter(|f| f.detector == "slow-query")
        .map(|f| f.location.clone())
        .collect();
    if slow.is_empty() && !report.findings.iter().any(|f| f.detector == "n-plus-one") {
        return;
    }
    let explained = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))
        .and_then(|runtime| {
            runtime.block_on(async {
                let client = chokepoint_db::connect(url).await?;
                let mut snapshot = chokepoint_db::snapshot(&client, show_literals).await?;
                // The database's own texts of the statements the traces show as slow.
                let queries = snapshot
                    .statements
                    .iter()
                    .filter(|s| slow.contains(&chokepoint_detect::sql::normalize(&s.query).normalized))
                    .map(|s| s.query.clone())
                    .collect();
                chokepoint_db::explain(&client, &mut snapshot, queries).await;
                anyhow::Ok(snapshot)
            })
        });
    match explained {
        Ok(snapshot) => {
            report.warnings.extend(chokepoint_detect::explain_with_plans(
                &mut report.findings,
                &snapshot,
            ));
            report.warnings.extend(snapshot_warnings(&snapshot, "--pg: "));
            report.bottleneck = report.findings.first().cloned();
        }
        Err(error) => report.problems.push(format!(
            "--pg: {error:#}; the trace findings below are not explained by plans"
        )),
    }
}

/// `chokepoint load --pg`: the database watched while the ramp runs.
pub(crate) struct DatabaseWatch {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<chokepoint_evidence::PgSnapshot>,
}

impl DatabaseWatch {
    /// Connects (read-only), takes the opening snapshot and starts sampling, for `bound` at most.
    pub(crate) async fn start(
        url: &str,
        bound: std::time::Duration,
        show_literals: bool,
    ) -> anyhow::Result<DatabaseWatch> {
        let mut client = chokepoint_db::connect(url).await.context("--pg")?;
        let mut snapshot = chokepoint_db::snapshot(&client, show_literals)
            .await
            .context("--pg")?;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (url, flag) = (url.to_owned(), std::sync::Arc::clone(&stop));
        let task = tokio::spawn(async move {
            chokepoint_db::watch(&url, &mut client, &mut snapshot, bound, &flag).await;
            chokepoint_db::check_indexes(&client, &mut snapshot).await;
            snapshot
        });
        Ok(DatabaseWatch { stop, task })
    }

    /// Stops sampling; puts each step's active and waiting sessions into `run`, and the
    /// database's findings over the ramp among the load findings, ranked together.
    pub(crate) async fn finish(
        self,
        run: &mut chokepoint_evidence::LoadRun,
        outcome: &mut chokepoint_detect::Outcome,
    ) -> chokepoint_evidence::PgSnapshot {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let snapshot = match self.task.await {
            Ok(snapshot) => snapshot,
            Err(_) => return chokepoint_evidence::PgSnapshot::default(),
        };
        if let Some(activity) = &snapshot.activity {
            for step in &mut run.steps {
                let during: Vec<&[f64; 3]> = activity
                    .timeline
                    .iter()
                    .filter(|[t, ..]| *t >= step.started_s.floor() && *t < step.started_s + step.duration_s)
                    .collect();
                if !during.is_empty() {
                    let n = during.len() as f64;
                    step.pg_active = Some(during.iter().map(|s| s[1]).sum::<f64>() / n);
                    step.pg_lock_waiting = Some(during.iter().map(|s| s[2]).sum::<f64>() / n);
                }
            }
        }
        let database = chokepoint_detect::analyse_db(&snapshot);
        outcome.findings.extend(database.findings);
        chokepoint_detect::rank(&mut outcome.findings);
        snapshot
    }
}

/// A progress bar over the watch's length, on a terminal; the task that moves it.
fn watch_progress(enabled: bool, duration: std::time::Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if !enabled {
            return;
        }
        let bar = indicatif::ProgressBar::new(duration.as_secs().max(1));
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} watching: {pos}/{len} s {wide_bar}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let started = std::time::Instant::now();
        let _clear = ClearOnDrop(bar.clone());
        while started.elapsed() < duration {
            bar.set_position(started.elapsed().as_secs());
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
    })
}

/// Clears the bar when its task ends or is aborted.
struct ClearOnDrop(indicatif::ProgressBar);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

/// What the inspector could not read: missing extensions, plans it could not get, sampling
/// gaps; each line starts with `prefix`.
pub(crate) fn snapshot_warnings(snapshot: &chokepoint_evidence::PgSnapshot, prefix: &str) -> Vec<String> {
    let missing = snapshot
        .missing
        .iter()
        .map(|m| format!("{prefix}extension missing — {m}"));
    let plans = snapshot
        .plan_problems
        .iter()
        .map(|p| format!("{prefix}plan not read — {p}"));
    let gaps = snapshot
        .activity
        .iter()
        .flat_map(|a| &a.gaps)
        .map(|g| format!("{prefix}{g}"));
    missing.chain(plans).chain(gaps).collect()
}

fn report_gaps(gaps: &[String]) {
    for gap in gaps {
        eprintln!("chokepoint: {gap}");
    }
}
