//! The database as a source: one read-only snapshot of PostgreSQL's statistics, watched over a
//! while when asked, with the plans of the statements the traces before it show (or, without
//! traces, of its busiest statements, for the index checks).

use std::time::Duration;

use anyhow::Context as _;
use chokepoint_evidence::{Evidence, Note, PgSnapshot, Severity};
use chokepoint_report::Input;

use crate::{Observer, Partial, Source, Stop};

/// A PostgreSQL database, read-only.
pub struct Database {
    /// Its URL.
    pub url: String,
    /// Whether statements keep their literals (never by default).
    pub show_literals: bool,
    /// Watch it for this long: statements differenced over the window, sessions sampled.
    pub watch: Option<Duration>,
    /// Once requested, the watch ends early and what it sampled is kept.
    pub stop: Stop,
    /// Beside other evidence (`traces --pg`, `diagnose` without a ramp), a database that cannot be
    /// read is a note — the findings stand without it — not a failure.
    pub beside: bool,
}

impl Source for Database {
    fn collect(self: Box<Self>, before: &Evidence, observer: &dyn Observer) -> anyhow::Result<Partial> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        match runtime.block_on(self.read(before, observer)) {
            Ok(snapshot) => Ok(Partial {
                notes: snapshot_notes(&snapshot),
                inputs: vec![database_input(&snapshot)],
                evidence: Evidence {
                    database: Some(snapshot),
                    ..Evidence::default()
                },
                ..Partial::default()
            }),
            Err(error) if self.beside => Ok(Partial {
                notes: vec![Note::new(
                    Severity::Error,
                    "--pg",
                    format!("{error:#}; the findings below stand without the database"),
                )],
                ..Partial::default()
            }),
            Err(error) => Err(error),
        }
    }
}

impl Database {
    async fn read(&self, before: &Evidence, observer: &dyn Observer) -> anyhow::Result<PgSnapshot> {
        let mut client = chokepoint_db::connect(&self.url).await?;
        let mut snapshot = chokepoint_db::snapshot(&client, self.show_literals).await?;
        if let Some(duration) = self.watch {
            observer.say(&format!(
                "chokepoint: watching {} for {}; Ctrl-C stops and reports what was sampled",
                snapshot.database,
                humantime::format_duration(duration)
            ));
            let flag = self.stop.flag();
            let started = std::time::Instant::now();
            {
                let watch = chokepoint_db::watch(&self.url, &mut client, &mut snapshot, duration, &flag);
                tokio::pin!(watch);
                loop {
                    tokio::select! {
                        () = &mut watch => break,
                        () = tokio::time::sleep(Duration::from_millis(250)) => observer.progress(
                            "watching",
                            started.elapsed().as_secs(),
                            Some(duration.as_secs().max(1)),
                            "s",
                        ),
                    }
                }
            }
            observer.done();
            for gap in snapshot.activity.iter().flat_map(|a| &a.gaps) {
                observer.say(&format!("chokepoint: {}", gap_text(gap)));
            }
        }
        match &before.traces {
            Some(traces) => {
                let queries = chokepoint_detect::statements_to_explain(traces, &snapshot);
                chokepoint_db::explain(&client, &mut snapshot, queries).await;
            }
            None => chokepoint_db::check_indexes(&client, &mut snapshot).await,
        }
        Ok(snapshot)
    }
}

/// The database as an input of the report.
pub fn database_input(snapshot: &PgSnapshot) -> Input {
    Input {
        source: format!("database {}", snapshot.database),
        format: None,
        spans: 0,
    }
}

/// The database watched while a ramp runs (`load --pg`, `diagnose --pg`).
pub struct DatabaseWatch {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<PgSnapshot>,
}

impl DatabaseWatch {
    /// Connects (read-only), takes the opening snapshot and starts sampling, for `bound` at most.
    pub async fn start(
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
    pub async fn finish(self) -> PgSnapshot {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.task.await.unwrap_or_default()
    }
}

/// What the inspector could not read: missing extensions, plans it could not get, sampling
/// gaps.
pub fn snapshot_notes(snapshot: &PgSnapshot) -> Vec<Note> {
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
