//! Database detectors' shared analysis of a PostgreSQL snapshot: each normalized statement's
//! totals become findings whose saving is part of the statement's total time in the window.

use std::collections::BTreeMap;

use chokepoint_evidence::{IndexCheck, PgSnapshot, StatementStat};

use crate::analysis::{Outcome, Skipped, Summary};
use crate::finding::{Confidence, Evidence, Finding, Impact};
use crate::registry::DB_DETECTORS;
use crate::sql::{self, Statement};

/// What a database detector concluded about one statement.
pub(crate) struct DbConclusion {
    pub title: String,
    pub fix: String,
    pub confidence: Confidence,
    pub assumptions: Vec<String>,
    /// Share of the statement's total time the fix removes (0–1).
    pub saved_share: f64,
    pub metrics: Vec<(&'static str, f64)>,
}

/// What a database detector concluded about the database as a whole.
pub(crate) struct DatabaseConclusion {
    pub title: String,
    pub fix: String,
    pub confidence: Confidence,
    pub assumptions: Vec<String>,
    /// What exactly: the blocker, the sessions.
    pub location: String,
    /// Time the fix recovers over the window, in ms.
    pub saved_ms_total: f64,
    /// Occurrences behind it (samples, sessions).
    pub occurrences: u64,
    /// The share of the database's session time it costs (0–1).
    pub share: f64,
    pub metrics: Vec<(&'static str, f64)>,
}

/// A statement with its normalized shape.
pub(crate) struct StatementView<'a> {
    /// The statistics.
    pub stat: &'a StatementStat,
    /// Its shape (tables, filters, LIMIT) from the SQL lexer.
    pub shape: Statement,
    /// Candidate indexes costed for it.
    pub index_checks: Vec<&'a IndexCheck>,
}

impl StatementView<'_> {
    /// Rows per call.
    pub(crate) fn rows_per_call(&self) -> f64 {
        self.stat.rows as f64 / self.stat.calls.max(1) as f64
    }
}

/// Runs every database detector over a snapshot.
pub fn analyse_db(snapshot: &PgSnapshot) -> Outcome {
    let mut findings = Vec::new();
    let mut skipped = Vec::new();
    let total_ms: f64 = snapshot.statements.iter().map(|s| s.total_ms).sum();
    let views: Vec<StatementView<'_>> = snapshot
        .statements
        .iter()
        .map(|stat| StatementView {
            stat,
            shape: sql::normalize(&stat.query),
            index_checks: snapshot
                .index_checks
                .iter()
                .filter(|c| c.query == stat.query)
                .collect(),
        })
        .collect();
    for detector in DB_DETECTORS {
        let meta = detector.meta();
        if let Some(conclusion) = detector.check_database(snapshot) {
            findings.push(database_finding(meta.id, snapshot, conclusion));
        }
        if !snapshot.extensions.iter().any(|e| e == "pg_stat_statements") {
            skipped.push(Skipped {
                detector: meta.id.into(),
                reason: "no pg_stat_statements in this database".into(),
            });
            continue;
        }
        for view in &views {
            if let Some(conclusion) = detector.check(view) {
                findings.push(finding(meta.id, snapshot, view, total_ms, conclusion));
            }
        }
    }
    crate::rank(&mut findings);
    Outcome {
        findings,
        skipped,
        usl: None,
        summary: Summary {
            requests: snapshot.statements.iter().map(|s| s.calls).sum(),
            endpoints: snapshot.statements.len() as u64,
            window_s: snapshot.window_s,
            ..Summary::default()
        },
    }
}

fn finding(
    detector: &str,
    snapshot: &PgSnapshot,
    view: &StatementView<'_>,
    total_ms: f64,
    c: DbConclusion,
) -> Finding {
    let stat = view.stat;
    let saved_ms_total = stat.total_ms * c.saved_share;
    let mut metrics = BTreeMap::from([
        ("calls".to_owned(), stat.calls as f64),
        ("mean_ms".to_owned(), round(stat.mean_ms)),
        ("total_ms".to_owned(), round(stat.total_ms)),
        ("rows_per_call".to_owned(), round(view.rows_per_call())),
    ]);
    for (name, value) in c.metrics {
        metrics.insert(name.to_owned(), round(value));
    }
    Finding {
        detector: detector.to_owned(),
        title: c.title,
        service: format!("postgresql {}", snapshot.database),
        endpoint: format!("database {}", snapshot.database),
        location: view.shape.normalized.clone(),
        impact: Impact {
            saved_ms_per_request: round(stat.mean_ms * c.saved_share),
            latency_saved_ms_per_request: round(stat.mean_ms * c.saved_share),
            saved_ms_total: round(saved_ms_total),
            share_of_endpoint_time: round(saved_ms_total / total_ms.max(1e-9)),
            recoverable_s_per_s: if snapshot.window_s > 0.0 {
                round(saved_ms_total / 1e3 / snapshot.window_s)
            } else {
                0.0
            },
        },
        evidence: Evidence {
            affected_requests: stat.calls,
            endpoint_requests: stat.calls,
            occurrences: stat.calls,
            example_trace_ids: Vec::new(),
            metrics,
        },
        confidence: c.confidence,
        fix: c.fix,
        assumptions: c.assumptions,
    }
}

fn database_finding(detector: &str, snapshot: &PgSnapshot, c: DatabaseConclusion) -> Finding {
    let window_s = snapshot
        .activity
        .as_ref()
        .map_or(snapshot.window_s, |a| a.duration_s);
    let metrics = c
        .metrics
        .into_iter()
        .map(|(name, value)| (name.to_owned(), round(value)))
        .collect();
    Finding {
        detector: detector.to_owned(),
        title: c.title,
        service: format!("postgresql {}", snapshot.database),
        endpoint: format!("database {}", snapshot.database),
        location: c.location,
        impact: Impact {
            // Per occurrence: per new session, or per sampled wait.
            saved_ms_per_request: round(c.saved_ms_total / c.occurrences.max(1) as f64),
            latency_saved_ms_per_request: round(c.saved_ms_total / c.occurrences.max(1) as f64),
            saved_ms_total: round(c.saved_ms_total),
            share_of_endpoint_time: round(c.share.clamp(0.0, 1.0)),
            recoverable_s_per_s: if window_s > 0.0 {
                round(c.saved_ms_total / 1e3 / window_s)
            } else {
                0.0
            },
        },
        evidence: Evidence {
            affected_requests: c.occurrences,
            endpoint_requests: c.occurrences,
            occurrences: c.occurrences,
            example_trace_ids: Vec::new(),
            metrics,
        },
        confidence: c.confidence,
        fix: c.fix,
        assumptions: c.assumptions,
    }
}

fn round(value: f64) -> f64 {
    (value * 1e3).round() / 1e3
}
