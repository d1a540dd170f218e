//! `chokepoint db`: one read-only snapshot of a PostgreSQL database's statistics, analysed.

use anyhow::Context as _;
use chokepoint_evidence::{Evidence, Note, PgSnapshot, Severity};
use chokepoint_report::Input;

use crate::args::{DbConfig, PgConfig};
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
            let mut signals = crate::signals::Stop::register().context("cannot watch for Ctrl-C")?;
            let interrupt = tokio::spawn({
                let stop = std::sync::Arc::clone(&stop);
                async move {
                    signals.requested().await;
                    stop.store(true, std::sync::atomic::Ordering::Relaxed);
                }
            });
            let progress = watch_progress(config.report.progress, duration);
            chokepoint_db::watch(&config.url, &mut client, &mut snapshot, duration, &stop).await;
            progress.abort();
            interrupt.abort();
            for gap in snapshot.activity.iter().flat_map(|a| &a.gaps) {
                eprintln!("chokepoint: {}", gap_text(gap));
            }
        }
        chokepoint_db::check_indexes(&client, &mut snapshot).await;
        let notes = snapshot_notes(&snapshot);
        let inputs = vec![database_input(&snapshot)];
        let evidence = Evidence {
            database: Some(snapshot),
            ..Evidence::default()
        };
        let (report, _) = crate::runs::report("db", evidence, inputs, notes, &config.report, &[]);
        Ok(output::finish(&report, &config.report))
    })
}

/// The database as an input of the report.
pub(crate) fn database_input(snapshot: &PgSnapshot) -> Input {
    Input {
        source: format!("database {}", snapshot.database),
        format: None,
        spans: 0,
    }
}

/// The database beside evidence read from files (`traces --pg`, `diagnose` without a ramp),
/// read-only: with traces, its statistics and the plans of the statements they show, so the
/// analysis can explain them and confirm them with the database's own counts; without, a
/// snapshot with its index checks (as `chokepoint db`). Added to `evidence` with its input and
/// notes, or an error note saying the findings stand without it.
pub(crate) fn add_database(
    evidence: &mut Evidence,
    pg: &PgConfig,
    inputs: &mut Vec<Input>,
    notes: &mut Vec<Note>,
) {
    match read_beside(evidence, pg) {
        Ok(snapshot) => {
            notes.extend(snapshot_notes(&snapshot));
            inputs.push(database_input(&snapshot));
            evidence.database = Some(snapshot);
        }
        Err(error) => notes.push(Note::new(
            Severity::Error,
            "--pg",
            format!("{error:#}; the findings below stand without the database"),
        )),
    }
}

fn read_beside(evidence: &Evidence, pg: &PgConfig) -> anyhow::Result<PgSnapshot> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let client = chokepoint_db::connect(&pg.url).await?;
        let mut snapshot = chokepoint_db::snapshot(&client, pg.show_literals).await?;
        match &evidence.traces {
            Some(traces) => {
                let queries = chokepoint_detect::statements_to_explain(traces, &snapshot);
                chokepoint_db::explain(&client, &mut snapshot, queries).await;
            }
            None => chokepoint_db::check_indexes(&client, &mut snapshot).await,
        }
        anyhow::Ok(snapshot)
    })
}

/// `chokepoint load --pg`: the database watched while the ramp runs.
pub(crate) struct DatabaseWatch {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<PgSnapshot>,
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

    /// Stops sampling; the snapshot with its watch over the ramp (empty if the watch failed).
    pub(crate) async fn finish(self) -> PgSnapshot {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.task.await.unwrap_or_default()
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
/// gaps.
pub(crate) fn snapshot_notes(snapshot: &PgSnapshot) -> Vec<Note> {
    let source = format!("PostgreSQL {}", snapshot.database);
    let missing = snapshot.missing.iter().map(|m| {
        Note::new(
            Severity::Warning,
            source.clone(),
            format!("extension {} missing — {}", m.extension, m.consequence),
        )
    });
    let plans = snapshot.plan_problems.iter().map(|p| {
        let what = if p.query.is_empty() {
            String::new()
        } else {
            format!(" of {}", p.query)
        };
        Note::new(
            Severity::Warning,
            source.clone(),
            format!("plan{what} not read: {}", p.reason),
        )
    });
    let gaps = snapshot
        .activity
        .iter()
        .flat_map(|a| &a.gaps)
        .map(|g| Note::new(Severity::Warning, source.clone(), gap_text(g)));
    missing.chain(plans).chain(gaps).collect()
}

/// A sampling gap in words.
fn gap_text(gap: &chokepoint_evidence::Gap) -> String {
    format!(
        "lost the database ({}); reconnected {:.1} s later",
        gap.reason,
        gap.reconnected_unix_s - gap.lost_unix_s
    )
}
