//! The analysis: every detector over one [`Evidence`] bundle, what each could not judge and why,
//! one cause reported once, and the verdict.

use std::collections::BTreeMap;

use chokepoint_evidence::{Evidence, Note, Scope, Severity};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::db::DbView;
use crate::finding::{
    Confidence, Finding, FindingEvidence, Impact, Sample, SampleUnit, Skipped, subject_text,
};
use crate::impact;
use crate::load::{Curve, StepSessions};
use crate::profile::{ProfileSummary, ProfileView};
use crate::registry::{Conclusion, DETECTORS, Detector, Estimate, Reads};
use crate::stack::ServiceStack;
use crate::usl::UslFit;
use crate::verdict::{self, Verdict};

/// A database window shorter than this is too little traffic to judge, in seconds (unless it
/// watched a whole load ramp, whose traffic is the point).
const MIN_DATABASE_WINDOW_S: f64 = 60.0;
/// A sampled profile with fewer busy samples than this is too little to judge (half a second of
/// one busy thread at py-spy's 100 Hz); a measured one, with less busy time than this many ms.
const MIN_PROFILE_BUSY: u64 = 50;

/// What the analysis concluded from the evidence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Outcome {
    /// The bottleneck, the limit it explains and what consumes that limit.
    pub verdict: Verdict,
    /// Findings, the bottleneck first; one per cause.
    pub findings: Vec<Finding>,
    /// Detectors that could not judge for lack of evidence.
    pub skipped: Vec<Skipped>,
    /// What the analysis has to say about the evidence itself (suspect steps, too little
    /// traffic, spans without their parent).
    pub notes: Vec<Note>,
    /// Trace candidates seen in too few requests to report.
    pub below_noise_gate: u64,
    /// A closed-model ramp's Universal Scalability Law fit (three steps or more).
    pub usl: Option<UslFit>,
    /// The database's sessions during each load step, when a watch ran beside the ramp.
    pub step_sessions: Vec<StepSessions>,
    /// What a profile shows per category and per hot frame, when there was one.
    pub profile: Option<ProfileSummary>,
}

/// Runs every detector over `evidence`: each reads the kinds it declares, where they are there;
/// findings about the same cause are merged; the verdict is decided.
///
/// ```
/// use chokepoint_detect::analyse;
/// use chokepoint_evidence::Evidence;
///
/// let outcome = analyse(&Evidence::default());
/// assert!(outcome.findings.is_empty());
/// // With no evidence, no detector is taken for a clean bill of health.
/// assert!(outcome.skipped.iter().any(|s| s.detector.as_str() == "n-plus-one"));
/// ```
pub fn analyse(evidence: &Evidence) -> Outcome {
    let stack = stack_of(evidence);
    let database = evidence
        .database
        .as_ref()
        .map(|snapshot| DbView::new(snapshot, evidence.traces.as_ref()));
    let curve = evidence.load.as_ref().map(|run| {
        Curve::of(run).map(|curve| {
            curve.beside(
                evidence.database.as_ref().and_then(|d| d.activity.as_ref()),
                stack,
            )
        })
    });
    let profile = evidence
        .profile
        .as_ref()
        .map(|p| ProfileView::new(p, crate::joins::profiled_cpu_cores(evidence)));
    let profile_too_small = profile.as_ref().and_then(too_small);
    let mut findings = Vec::new();
    let mut skipped = Vec::new();
    let mut below_noise_gate = 0;
    for &detector in DETECTORS {
        let meta = detector.meta();
        let mut judged = false;
        let mut missing: Vec<String> = Vec::new();
        for reads in meta.reads {
            let kind = reads.kind();
            if !evidence.has(kind) {
                missing.push(kind.absent().to_owned());
                continue;
            }
            match reads {
                Reads::Traces(what) => {
                    let Some(traces) = &evidence.traces else { continue };
                    if traces.evaluated.get(&meta.id).copied().unwrap_or(0) == 0 {
                        missing.push(format!("no {what}"));
                        continue;
                    }
                    judged = true;
                    conclude_traces(
                        detector,
                        traces,
                        database.as_ref(),
                        stack,
                        &mut findings,
                        &mut below_noise_gate,
                    );
                }
                Reads::Load(need) => match &curve {
                    Some(Err(reason)) => missing.push(reason.clone()),
                    Some(Ok(curve)) if !(need.met)(curve) => missing.push(format!("no {}", need.what)),
                    Some(Ok(curve)) => {
                        judged = true;
                        if let Some(conclusion) = detector.check_load(curve) {
                            findings.push(load_finding(detector, curve, conclusion));
                        }
                    }
                    None => {}
                },
                Reads::Database(need) => {
                    let Some(database) = &database else { continue };
                    if !(need.met)(database.snapshot) {
                        missing.push(format!("no {}", need.what));
                        continue;
                    }
                    judged = true;
                    for statement in &database.statements {
                        if let Some(conclusion) = detector.check_statement(statement) {
                            findings.push(statement_finding(detector, database, statement, conclusion));
                        }
                    }
                    if let Some(conclusion) = detector.check_database(database) {
                        findings.push(database_finding(detector, database, conclusion));
                    }
                }
                Reads::Profile(_) => {
                    let Some(profile) = &profile else { continue };
                    if let Some(reason) = &profile_too_small {
                        missing.push(reason.clone());
                        continue;
                    }
                    judged = true;
                    if let Some(conclusion) = detector.check_profile(profile) {
                        findings.push(profile_finding(detector, profile, conclusion));
                    }
                }
                Reads::Source(_) => {
                    let Some(scan) = &evidence.source else { continue };
                    judged = true;
                    for shape in &scan.shapes {
                        if let Some(conclusion) = detector.check_source(shape) {
                            findings.push(source_finding(detector, shape, conclusion));
                        }
                    }
                }
            }
        }
        if !judged {
            skipped.push(Skipped {
                detector: meta.id,
                reason: missing.join("; "),
            });
        }
    }
    if let Some(traces) = &evidence.traces {
        crate::joins::place_on_endpoints(&mut findings, traces);
        if let Some(run) = &evidence.load {
            crate::joins::anchor_loaded_endpoint(&mut findings, traces, run);
            crate::joins::in_process_time(&mut findings, traces, run);
        }
    }
    if let Some(view) = profile.as_ref().filter(|_| profile_too_small.is_none()) {
        let endpoint = crate::joins::profiled_endpoint(evidence);
        if let Some(endpoint) = &endpoint {
            for finding in findings
                .iter_mut()
                .filter(|f| matches!(f.scope, Scope::Process { .. }))
            {
                finding.anchors.push(endpoint.clone());
            }
        }
        crate::joins::profile_costs(&mut findings, view, endpoint.as_ref());
    }
    let mut findings = crate::rank::merge(findings);
    crate::joins::assign_ids(&mut findings);
    let verdict = verdict::decide(&mut findings);
    let mut notes = Vec::new();
    if let Some(run) = &evidence.load {
        notes.extend(crate::load::notes(run));
    }
    if let Some(traces) = &evidence.traces {
        notes.extend(orphan_note(&traces.summary));
        notes.extend(bounded_note(&traces.summary));
    }
    if let Some(db) = &evidence.database {
        notes.extend(database_window_note(db, evidence.load.as_ref()));
    }
    if let Some(reason) = &profile_too_small {
        notes.push(Note::new(
            Severity::Warning,
            "profile",
            format!("{reason}: its detectors did not judge it — profile longer, or while the service is under load"),
        ));
    } else if let Some(view) = &profile {
        notes.extend(waiting_note(view));
    }
    let usl = evidence.load.as_ref().and_then(crate::usl::fit_ramp);
    let step_sessions = match (
        &evidence.load,
        evidence.database.as_ref().and_then(|d| d.activity.as_ref()),
    ) {
        (Some(run), Some(activity)) => crate::load::step_sessions(run, activity),
        _ => Vec::new(),
    };
    Outcome {
        verdict,
        findings,
        skipped,
        notes,
        below_noise_gate,
        usl,
        step_sessions,
        profile: profile.as_ref().map(crate::profile::summary),
    }
}

/// The stack of the service the evidence is about: its profile's frames, its process's
/// command line, and the scopes of the endpoint a ramp loaded (or, without a ramp, of every
/// endpoint when the traces hold one service).
fn stack_of(evidence: &Evidence) -> ServiceStack {
    let from_profile = evidence
        .profile
        .as_ref()
        .map(crate::profile::stack_of)
        .unwrap_or_default();
    let from_command = evidence
        .load
        .as_ref()
        .and_then(|run| run.target_command.as_deref())
        .map(ServiceStack::from_command)
        .unwrap_or_default();
    let from_traces = evidence
        .traces
        .as_ref()
        .map_or_else(ServiceStack::default, |traces| {
            let loaded = evidence
                .load
                .as_ref()
                .and_then(|run| crate::traces::endpoint_of_url(traces, &run.url));
            match loaded {
                Some(endpoint) => {
                    ServiceStack::from_scopes(endpoint.instrumentation.iter().map(String::as_str))
                }
                None => {
                    let first = traces.endpoints.first().map(|e| &e.service);
                    if traces.endpoints.iter().all(|e| Some(&e.service) == first) {
                        ServiceStack::from_scopes(
                            traces
                                .endpoints
                                .iter()
                                .flat_map(|e| e.instrumentation.iter().map(String::as_str)),
                        )
                    } else {
                        ServiceStack::default()
                    }
                }
            }
        });
    from_traces.or(from_profile).or(from_command)
}

/// The trace detector's conclusions, one per (endpoint, subject) past the noise gate.
fn conclude_traces(
    detector: &dyn Detector,
    traces: &chokepoint_evidence::TraceAggregates,
    database: Option<&DbView<'_>>,
    stack: crate::stack::ServiceStack,
    findings: &mut Vec<Finding>,
    below_gate: &mut u64,
) {
    let window_s = traces.summary.window_s();
    for (endpoint, view) in crate::traces::groups(detector, traces, database, stack, below_gate) {
        let Some(mut conclusion) = detector.conclude(&view) else {
            continue;
        };
        if view.requests < crate::traces::SMALL_SAMPLE {
            conclusion.confidence = conclusion.confidence.min(Confidence::Medium);
            conclusion.assumptions.push(format!(
                "seen in {} of the endpoint's {} request(s) in the evidence: more traces of it would show how typical it is",
                view.requests, view.endpoint_requests
            ));
        }
        let group = view.group;
        let consumption = impact::observed(
            conclusion.resource,
            conclusion.basis,
            group,
            endpoint.time_ms,
            window_s,
        );
        let mut metrics = BTreeMap::new();
        for (name, stat) in &group.metrics {
            metrics.insert(format!("{name}_mean"), impact::round(stat.mean()));
            metrics.insert(format!("{name}_max"), impact::round(stat.max));
        }
        let scope = Scope::Endpoint {
            service: endpoint.service.clone(),
            endpoint: endpoint.endpoint.clone(),
        };
        let mut found = finding(
            detector,
            scope,
            group.subject.clone(),
            group.location.clone(),
            Impact::Consumer(consumption),
            FindingEvidence {
                sample: Sample {
                    affected: group.requests,
                    total: endpoint.requests,
                    unit: SampleUnit::Requests,
                },
                occurrences: group.occurrences,
                example_trace_ids: group.examples.clone(),
                metrics,
                items: Vec::new(),
            },
            conclusion,
        );
        // The code that ran it, when its spans said.
        if let Some(code) = &group.code
            && !found.anchors.contains(code)
        {
            found.anchors.push(code.clone());
        }
        findings.push(found);
    }
}

/// What a prediction reads of a load limit: the detector's own, and the target's CPU against its
/// rate and the cores it can use, from the curve.
fn limit_inputs(curve: &Curve<'_>, conclusion: &Conclusion) -> crate::finding::LimitInputs {
    let mut inputs = conclusion.inputs.clone();
    inputs.cpu = inputs.cpu.or_else(|| curve.cpu_cost());
    inputs.usable_cores = inputs
        .usable_cores
        .or_else(|| curve.plateau_cpu_cores().map(crate::load::usable_cores));
    inputs
}

fn load_finding(detector: &dyn Detector, curve: &Curve<'_>, conclusion: Conclusion) -> Finding {
    let run = curve.run;
    let impact = match conclusion.estimate {
        Estimate::PerRequest { saved_ms } => Impact::Consumer(impact::per_request(
            conclusion.resource,
            conclusion.basis,
            curve,
            saved_ms,
        )),
        Estimate::Limit {
            demand_ms_per_request,
        } => Impact::Limit(impact::limit(
            conclusion.resource,
            conclusion.basis,
            curve,
            demand_ms_per_request,
            limit_inputs(curve, &conclusion),
        )),
        _ => Impact::Limit(impact::limit(
            conclusion.resource,
            conclusion.basis,
            curve,
            None,
            limit_inputs(curve, &conclusion),
        )),
    };
    let mut metrics = BTreeMap::new();
    metrics.insert("capacity_rps".to_owned(), impact::round(curve.capacity_rps));
    metrics.insert("knee_offered".to_owned(), curve.knee.offered);
    metrics.insert(
        "p50_ms_low_load".to_owned(),
        impact::round(curve.low.latency.p50_ms),
    );
    metrics.insert(
        "p50_ms_at_knee".to_owned(),
        impact::round(curve.knee.latency.p50_ms),
    );
    let top = curve.top();
    let subject = conclusion
        .subject
        .clone()
        .unwrap_or(chokepoint_evidence::Subject::Resource {
            resource: conclusion.resource,
        });
    let location = conclusion
        .location
        .clone()
        .unwrap_or_else(|| format!("at {}", crate::load::offered(run, curve.knee.offered)));
    finding(
        detector,
        Scope::Target {
            url: run.url.clone(),
            pid: run.target_pid,
        },
        subject,
        location,
        impact,
        FindingEvidence {
            sample: Sample {
                affected: top.requests,
                total: run.steps.iter().map(|s| s.requests).sum(),
                unit: SampleUnit::Requests,
            },
            // Steps at or past the knee: where the limit held.
            occurrences: run.steps.len().saturating_sub(curve.knee_index) as u64,
            example_trace_ids: Vec::new(),
            metrics,
            items: Vec::new(),
        },
        conclusion,
    )
}

fn statement_finding(
    detector: &dyn Detector,
    database: &DbView<'_>,
    statement: &crate::db::StatementView<'_>,
    conclusion: Conclusion,
) -> Finding {
    let stat = statement.stat;
    let share = match conclusion.estimate {
        Estimate::StatementShare(share) => share,
        _ => 0.0,
    };
    let consumption = impact::statement_share(
        conclusion.resource,
        conclusion.basis,
        stat,
        share,
        database.total_ms,
        database.snapshot.window_s,
    );
    let metrics = BTreeMap::from([
        ("calls".to_owned(), stat.calls as f64),
        ("mean_ms".to_owned(), impact::round(stat.mean_ms)),
        ("total_ms".to_owned(), impact::round(stat.total_ms)),
        (
            "rows_per_call".to_owned(),
            impact::round(statement.rows_per_call()),
        ),
    ]);
    finding(
        detector,
        Scope::Database {
            database: database.snapshot.database.clone(),
        },
        statement.subject(),
        statement.shape.normalized.clone(),
        Impact::Consumer(consumption),
        FindingEvidence {
            sample: Sample {
                affected: stat.calls,
                total: stat.calls,
                unit: SampleUnit::Calls,
            },
            occurrences: stat.calls,
            example_trace_ids: Vec::new(),
            metrics,
            items: Vec::new(),
        },
        conclusion,
    )
}

fn database_finding(detector: &dyn Detector, database: &DbView<'_>, conclusion: Conclusion) -> Finding {
    let snapshot = database.snapshot;
    let window_s = snapshot
        .activity
        .as_ref()
        .map_or(snapshot.window_s, |a| a.duration_s);
    let (consumption, sample, occurrences) = match conclusion.estimate {
        Estimate::Recovered {
            saved_ms_total,
            share,
            sample,
            occurrences,
        } => (
            impact::recovered(
                conclusion.resource,
                conclusion.basis,
                saved_ms_total,
                occurrences,
                share,
                window_s,
            ),
            sample,
            occurrences,
        ),
        _ => (
            impact::recovered(conclusion.resource, conclusion.basis, 0.0, 0, 0.0, window_s),
            Sample {
                affected: 0,
                total: 0,
                unit: SampleUnit::Samples,
            },
            0,
        ),
    };
    let subject = conclusion
        .subject
        .clone()
        .unwrap_or(chokepoint_evidence::Subject::Sessions {
            database: snapshot.database.clone(),
        });
    let location = conclusion
        .location
        .clone()
        .unwrap_or_else(|| subject_text(&subject));
    finding(
        detector,
        Scope::Database {
            database: snapshot.database.clone(),
        },
        subject,
        location,
        Impact::Consumer(consumption),
        FindingEvidence {
            sample,
            occurrences,
            example_trace_ids: Vec::new(),
            metrics: BTreeMap::new(),
            items: Vec::new(),
        },
        conclusion,
    )
}

fn profile_finding(detector: &dyn Detector, view: &ProfileView<'_>, conclusion: Conclusion) -> Finding {
    let wall_s = view.wall_s();
    let (saved_s, share, affected, busy) = match conclusion.estimate {
        Estimate::Profile {
            saved_s,
            share,
            affected,
            busy,
        } => (saved_s, share, affected, busy),
        _ => (0.0, 0.0, 0, view.busy),
    };
    let consumption = impact::profiled(conclusion.resource, conclusion.basis, saved_s, share, wall_s);
    let sample = if view.profile.sampled {
        Sample {
            affected,
            total: busy,
            unit: SampleUnit::ProfileSamples,
        }
    } else {
        let ms = |us: u64| (us as f64 * view.seconds_per_count() * 1e3).round() as u64;
        Sample {
            affected: ms(affected),
            total: ms(busy),
            unit: SampleUnit::ProfileMs,
        }
    };
    // Profile conclusions name their code (`Conclusion::about`); the resource otherwise.
    let subject = chokepoint_evidence::Subject::Resource {
        resource: conclusion.resource,
    };
    let location = subject_text(&subject);
    finding(
        detector,
        Scope::Process {
            pid: view.profile.pid,
        },
        subject,
        location,
        Impact::Consumer(consumption),
        FindingEvidence {
            sample,
            occurrences: sample.affected,
            example_trace_ids: Vec::new(),
            metrics: BTreeMap::new(),
            items: Vec::new(),
        },
        conclusion,
    )
}

fn source_finding(
    detector: &dyn Detector,
    shape: &chokepoint_evidence::Shape,
    conclusion: Conclusion,
) -> Finding {
    let sample = Sample {
        affected: 1,
        total: 1,
        unit: SampleUnit::Lines,
    };
    let mut finding = finding(
        detector,
        Scope::Source {
            file: shape.file.clone(),
        },
        chokepoint_evidence::Subject::Code {
            file: shape.file.clone(),
            line: Some(shape.line),
            function: shape.function.clone(),
        },
        String::new(),
        Impact::Potential(crate::finding::Potential {
            resource: conclusion.resource,
            per_request: shape.handler.is_some(),
        }),
        FindingEvidence {
            sample,
            occurrences: 1,
            example_trace_ids: Vec::new(),
            metrics: BTreeMap::new(),
            items: Vec::new(),
        },
        conclusion,
    );
    for anchor in crate::source::anchors(shape) {
        if !finding.anchors.contains(&anchor) {
            finding.anchors.push(anchor);
        }
    }
    finding
}

/// Puts a conclusion's words, numbers and items into a finding.
fn finding(
    detector: &dyn Detector,
    scope: Scope,
    subject: chokepoint_evidence::Subject,
    location: String,
    impact: Impact,
    mut evidence: FindingEvidence,
    conclusion: Conclusion,
) -> Finding {
    for (name, value) in conclusion.metrics {
        evidence.metrics.insert(name.to_owned(), impact::round(value));
    }
    evidence.items.extend(conclusion.items);
    let subject = conclusion.subject.unwrap_or(subject);
    let anchors = crate::joins::anchors(&scope, &subject, &evidence.items);
    Finding {
        // Given once the findings are merged (`joins::assign_ids`).
        id: String::new(),
        detector: detector.meta().id,
        title: conclusion.title,
        subject,
        location: conclusion.location.unwrap_or(location),
        anchors,
        scope,
        impact,
        costs: Vec::new(),
        evidence,
        confidence: conclusion.confidence,
        fix: conclusion.fix,
        assumptions: conclusion.assumptions,
    }
}

/// The note for spans whose parent is missing, if any.
fn orphan_note(summary: &chokepoint_evidence::TracesSummary) -> Option<Note> {
    (summary.orphan_spans > 0).then(|| {
        Note::new(
            Severity::Warning,
            "traces",
            format!(
                "{} span(s) have a parent that is not in the input (e.g. in trace {}); each was analysed as the root of \
                 what lies below it. Export whole traces (all services, no sampling mid-trace) for complete findings.",
                summary.orphan_spans,
                summary
                    .example_orphan_trace
                    .map_or("?".to_owned(), |t| t.to_string())
            ),
        )
    })
}

/// The note for what was folded or dropped to bound memory, if anything.
fn bounded_note(summary: &chokepoint_evidence::TracesSummary) -> Option<Note> {
    let mut parts = Vec::new();
    if summary.folded_endpoints > 0 {
        parts.push(format!(
            "{} endpoint(s) beyond the {} that took the most time were folded into \"{}\"",
            summary.folded_endpoints,
            chokepoint_evidence::MAX_ENDPOINTS,
            chokepoint_evidence::OTHER_ENDPOINTS
        ));
    }
    if summary.dropped_subjects > 0 {
        parts.push(format!(
            "{} of the lightest statements, calls or peers were not kept (beyond {} per detector and endpoint)",
            summary.dropped_subjects,
            chokepoint_evidence::MAX_SUBJECTS
        ));
    }
    (!parts.is_empty()).then(|| {
        Note::new(
            Severity::Warning,
            "traces",
            format!(
                "to bound memory, {}: the heaviest are all here. So many distinct names usually mean raw URLs or \
                 statements with literals where a route template or parameters belong.",
                parts.join("; ")
            ),
        )
    })
}

/// Why a profile is too small to judge, when it is: its busy samples and the count needed.
fn too_small(view: &ProfileView<'_>) -> Option<String> {
    if view.profile.sampled {
        (view.busy < MIN_PROFILE_BUSY).then(|| {
            format!(
                "a profile of {} busy sample(s) ({} in all): at least {MIN_PROFILE_BUSY} are needed to judge",
                view.busy, view.total
            )
        })
    } else {
        let busy_ms = view.busy as f64 * view.seconds_per_count() * 1e3;
        (busy_ms < MIN_PROFILE_BUSY as f64).then(|| {
            format!("a profile of {busy_ms:.1} ms of measured busy time: at least {MIN_PROFILE_BUSY} ms are needed to judge")
        })
    }
}

/// Busy samples on the CPU below this share are said: the rest waited.
const ON_CPU_SHARE_TO_SAY: f64 = 0.7;

/// The note for a profile whose busy threads the measured CPU does not bear out: most of what
/// the sampler saw as busy waited in calls it cannot see into, or for the GIL.
fn waiting_note(view: &ProfileView<'_>) -> Option<Note> {
    let on_cpu = view.on_cpu_share().filter(|s| *s < ON_CPU_SHARE_TO_SAY)?;
    let busy_threads = view.busy as f64 * view.seconds_per_count() / view.wall_s().max(1e-9);
    let waiting = view.waiting_in_calls as f64 / view.busy.max(1) as f64;
    let inside = if waiting >= 0.01 {
        format!(
            " ({:.0} % of the busy samples stand in calls the sampler cannot see into: a database driver's socket, a sleep, \
             a file)",
            waiting * 100.0
        )
    } else {
        String::new()
    };
    Some(Note::new(
        Severity::Info,
        "profile",
        format!(
            "the profiled threads were busy {busy_threads:.1} per second while the process used {:.2} cores: about {:.0} % of \
             the busy samples waited — in C calls or for the GIL{inside} — so the profile's shares are of threads' time, not \
             CPU{}",
            view.cpu_cores.unwrap_or(0.0),
            (1.0 - on_cpu) * 100.0,
            if view.waited() {
                ", and no CPU finding rests on them"
            } else {
                ": a line's share of the CPU is read from them as an estimate"
            },
        ),
    ))
}

/// The note for a database window too short to judge: not when it watched a whole ramp beside
/// it, whose traffic is what it was for.
fn database_window_note(
    db: &chokepoint_evidence::PgSnapshot,
    run: Option<&chokepoint_evidence::LoadRun>,
) -> Option<Note> {
    if db.window_s <= 0.0 || db.window_s >= MIN_DATABASE_WINDOW_S {
        return None;
    }
    if let (Some(run), Some(activity)) = (run, db.activity.as_ref()) {
        let ramp = run
            .steps
            .first()
            .zip(run.steps.last())
            .map(|(first, last)| (first.started_unix_s, last.started_unix_s + last.duration_s));
        let watched = (
            activity.started_unix_s,
            activity.started_unix_s + activity.duration_s,
        );
        if ramp.is_some_and(|(from, to)| watched.0 <= from + 1.0 && watched.1 >= to - 1.0) {
            return None;
        }
    }
    let covered = if db.activity.is_some() {
        "the watch covered"
    } else {
        "the statistics cover, since pg_stat_statements was reset,"
    };
    Some(Note::new(
        Severity::Warning,
        format!("PostgreSQL {}", db.database),
        format!("{covered} only {:.0} s: too little traffic to judge", db.window_s),
    ))
}

#[cfg(test)]
mod tests {
    use chokepoint_evidence::EvidenceKind;

    use super::*;

    #[test]
    fn every_detector_is_skipped_with_what_it_reads_when_there_is_no_evidence() {
        let outcome = analyse(&Evidence::default());
        assert_eq!(outcome.skipped.len(), DETECTORS.len());
        let churn = outcome
            .skipped
            .iter()
            .find(|s| s.detector == chokepoint_evidence::DetectorId::ConnectionChurn)
            .expect("skipped");
        assert!(
            churn.reason.contains(EvidenceKind::Traces.absent()),
            "{}",
            churn.reason
        );
        assert!(
            churn.reason.contains(EvidenceKind::Load.absent()),
            "{}",
            churn.reason
        );
        assert!(
            churn.reason.contains(EvidenceKind::Database.absent()),
            "{}",
            churn.reason
        );
    }

    #[test]
    fn the_ramps_limit_learns_the_in_process_time_of_the_loaded_endpoint() {
        let load = include_str!("../tests/fixtures/cpu-saturation/positive-gil-bound-handler.json");
        let load = &load[load.find("\"load\"").expect("a ramp")..load.rfind('}').expect("its end")];
        // 25 requests of GET /compute: 20 ms, 5 of them in a statement; one other endpoint.
        let trace = |route: &str, i: usize| {
            format!(
                r#"{{"spans": [
                  {{"id": "r{i}", "kind": "server", "name": "GET", "end_ms": 20, "attrs": {{"http.route": "{route}", "http.request.method": "GET"}}}},
                  {{"id": "q{i}", "parent": "r{i}", "kind": "client", "start_ms": 2, "end_ms": 7, "attrs": {{"db.system": "postgresql", "db.statement": "SELECT 1"}}}}
                ]}}"#
            )
        };
        let traces: Vec<String> = (0..25)
            .map(|i| trace("/compute", i))
            .chain((25..50).map(|i| trace("/other", i)))
            .collect();
        let fixture = format!(r#"{{{load}, "traces": [{}]}}"#, traces.join(","));
        let outcome = analyse(&crate::evidence_from_fixture(&fixture).expect("fixture"));
        let limit = outcome
            .findings
            .iter()
            .find(|f| matches!(f.impact, Impact::Limit(_)))
            .expect("the CPU caps the ramp");
        let quartile = limit.evidence.metrics.get("in_process_ms_p25").copied();
        assert!(quartile.is_some_and(|ms| (ms - 15.0).abs() < 0.1), "{quartile:?}");
        // A ramp whose endpoint the traces do not have learns nothing.
        let elsewhere = fixture.replace("8000/compute", "8000/elsewhere");
        let outcome = analyse(&crate::evidence_from_fixture(&elsewhere).expect("fixture"));
        assert!(
            outcome
                .findings
                .iter()
                .all(|f| !f.evidence.metrics.contains_key("in_process_ms_p25"))
        );
    }
}

#[cfg(test)]
mod joins_tests {
    use chokepoint_evidence::{Anchor, DetectorId, Resource};

    use super::*;

    /// Ten requests of `GET /orders`, each loading 20 orders' items one at a time, the handler's
    /// span carrying `code` attributes; and a profile of the process whose hottest line, in that
    /// handler, is the ORM's lazy load.
    fn orders(code: &str) -> String {
        format!(
            r#"{{"traces": [{{"repeat": 10, "spans": [
              {{"id": "root", "kind": "server", "name": "GET /orders", "end_ms": 140,
                "attrs": {{"http.route": "/orders", "http.request.method": "GET"}}}},
              {{"id": "handler", "parent": "root", "kind": "internal", "name": "list_orders", "start_ms": 1, "end_ms": 139,
                "attrs": {{{code}}}}},
              {{"id": "q", "parent": "handler", "kind": "client", "start_ms": 10, "end_ms": 14, "times": 20, "every_ms": 5,
                "attrs": {{"db.system": "postgresql", "db.statement": "SELECT items.id FROM items WHERE items.order_id = 7"}}}}
            ]}}],
            "profile": {{"rate_hz": 100, "duration_s": 10, "stacks": [
              {{"stack": "run (app.py:3);list_orders (/srv/shop/views.py:42);LazyLoader._load_for_state (sqlalchemy/orm/strategies.py:900);execute (psycopg/cursor.py:700)", "count": 300}},
              {{"stack": "run (app.py:3);list_orders (/srv/shop/views.py:44);dumps (json/__init__.py:231)", "count": 100}},
              {{"stack": "run (app.py:3);other (/srv/shop/other.py:9)", "count": 100}}
            ]}}}}"#
        )
    }

    #[test]
    fn a_spans_code_attributes_join_the_traced_n_plus_one_to_its_profiled_line() {
        for code in [
            r#""code.filepath": "shop/views.py", "code.lineno": 42, "code.function": "list_orders""#,
            r#""code.file.path": "/app/shop/views.py", "code.line.number": 42, "code.function.name": "shop.views.list_orders""#,
        ] {
            let outcome = analyse(&crate::evidence_from_fixture(&orders(code)).expect("fixture"));
            let n_plus_one: Vec<&Finding> = outcome
                .findings
                .iter()
                .filter(|f| f.detector == DetectorId::NPlusOne)
                .collect();
            assert_eq!(
                n_plus_one.len(),
                1,
                "one cause, one finding: {:#?}",
                outcome.findings
            );
            let found = n_plus_one[0];
            assert!(
                matches!(found.scope, Scope::Endpoint { .. }) && !found.evidence.sample.unit.is_profile(),
                "the traced finding carries it: {found:#?}"
            );
            assert!(
                found
                    .anchors
                    .iter()
                    .any(|a| matches!(a, Anchor::Code { line: Some(42), .. })),
                "{:?}",
                found.anchors
            );
            // The profile's lazy loads are its CPU: 300 of 500 busy samples.
            let cpu = found
                .costs
                .iter()
                .find(|c| c.resource == Resource::Cpu)
                .expect("a CPU cost");
            assert!((cpu.share - 0.6).abs() < 1e-6, "{cpu:?}");
            assert!(
                found.evidence.items.iter().any(|i| matches!(
                    i,
                    crate::finding::EvidenceItem::Corroboration {
                        detector: DetectorId::NPlusOne,
                        ..
                    }
                )),
                "the profile's view of it is folded in"
            );
        }
    }

    #[test]
    fn a_profiled_line_elsewhere_does_not_join_the_traced_n_plus_one() {
        let outcome = analyse(
            &crate::evidence_from_fixture(&orders(
                r#""code.filepath": "shop/views.py", "code.lineno": 80, "code.function": "list_orders""#,
            ))
            .expect("fixture"),
        );
        let n_plus_one: Vec<&Finding> = outcome
            .findings
            .iter()
            .filter(|f| f.detector == DetectorId::NPlusOne)
            .collect();
        assert_eq!(n_plus_one.len(), 2, "two angles, no anchor in common");
        assert!(n_plus_one.iter().all(|f| f.costs.is_empty()));
    }
}
