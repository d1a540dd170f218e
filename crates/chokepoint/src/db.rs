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
        let mut snapshot = chokepoint_db::snapshot(&client).await?;
        if let Some(duration) = config.watch {
            eprintln!("chokepoint: watching {} for {}", snapshot.database, humantime::format_duration(duration));
            chokepoint_db::watch(&config.url, &mut client, &mut snapshot, duration).await;
            if let Some(activity) = &snapshot.activity {
                report_gaps(&activity.gaps);
            }
        }
        // Candidate columns come from each statement's filters, read by chokepoint's SQL lexer.
        chokepoint_db::check_indexes(&client, &mut snapshot, |query| {
            chokepoint_detect::sql::normalize(query).filter_columns
        })
        .await;
        let mut report = Report::new(chokepoint_detect::analyse_db(&snapshot));
        report.warnings.extend(snapshot.missing.iter().map(|m| format!("extension missing — {m}")));
        report.warnings.extend(snapshot.plan_problems.iter().map(|p| format!("plan not read — {p}")));
        if snapshot.window_s > 0.0 && snapshot.window_s < 60.0 {
            report.warnings.push(format!(
                "the statistics cover only {:.0} s since pg_stat_statements was reset: too little traffic to judge",
                snapshot.window_s
            ));
        }
        if let Some(activity) = &snapshot.activity {
            report.warnings.extend(activity.gaps.iter().cloned());
        }
        report.database = Some(snapshot);
        Ok(output::finish(&report, &config.report))
    })
}

fn report_gaps(gaps: &[String]) {
    for gap in gaps {
        eprintln!("chokepoint: {gap}");
    }
}
