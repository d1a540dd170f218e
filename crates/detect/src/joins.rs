//! Joins across kinds of evidence, on anchors and the shared Unix time base: what makes the same
//! cause, seen by traces, a profile, the database and a ramp, one finding with every kind's
//! evidence inside it.
//!
//! - Every finding gets the anchors its scope, subject and evidence name ([`anchors`]).
//! - A database finding about a statement is placed on the endpoint whose traces run it
//!   ([`place_on_endpoints`]); a ramp's finding on the endpoint its URL reaches.
//! - A profile's busy samples are put on the findings whose statement or code the profiled
//!   lines run ([`profile_costs`]): a SQL literal on the line, or — when the profile covered a
//!   ramp of one endpoint and the line holds none — the driver or ORM calls a handler's frames
//!   make while the endpoint's traces show the statement. That is the CPU the cause burns.
//! - The loaded endpoint's in-process time reaches the ramp's limits ([`in_process_time`]).
//! - Last, each finding gets its stable id ([`assign_ids`]).

use std::collections::HashSet;

use chokepoint_evidence::{
    Anchor, Evidence, EvidenceKind, Fingerprint, LoadRun, Scope, Subject, TraceAggregates,
};

use crate::finding::{Basis, Cost, CpuCost, CpuCostBasis, EvidenceItem, Finding, Impact};
use crate::profile::{Category, ProfileView, Tally};

/// The anchors a finding carries by where it was seen and what it is about: its endpoint, its
/// statement (and a lock's blocking statement), its call, relation, lock or code place, the
/// statements its lock waits name, the statements a SQL literal on its profiled line holds.
pub(crate) fn anchors(scope: &Scope, subject: &Subject, items: &[EvidenceItem]) -> Vec<Anchor> {
    let mut anchors = Vec::new();
    if let Scope::Endpoint { service, endpoint } = scope {
        anchors.push(Anchor::endpoint(service, endpoint));
    }
    subject_anchors(subject, &mut anchors);
    for item in items {
        match item {
            EvidenceItem::LockWait {
                waiting,
                blocker,
                relation,
                ..
            } => {
                for statement in [waiting, blocker] {
                    if !statement.trim().is_empty() {
                        push(
                            &mut anchors,
                            Anchor::Statement {
                                fingerprint: crate::sql::normalize(statement).fingerprint,
                            },
                        );
                    }
                }
                if !relation.is_empty() {
                    push(
                        &mut anchors,
                        Anchor::Lock {
                            relation: relation.clone(),
                        },
                    );
                }
            }
            EvidenceItem::HotFrame {
                file, line, source, ..
            } if matches!(subject, Subject::Code { file: f, line: l, .. } if f == file && *l == Some(*line)) => {
                for fingerprint in source.as_deref().map(sql_literals).unwrap_or_default() {
                    push(&mut anchors, Anchor::Statement { fingerprint });
                }
            }
            _ => {}
        }
    }
    anchors
}

fn subject_anchors(subject: &Subject, anchors: &mut Vec<Anchor>) {
    match subject {
        Subject::Statement { fingerprint, .. } => push(
            anchors,
            Anchor::Statement {
                fingerprint: *fingerprint,
            },
        ),
        Subject::HttpCall(call) => push(anchors, Anchor::HttpCall(call.clone())),
        Subject::CallSequence { calls } => {
            for call in calls {
                subject_anchors(call, anchors);
            }
        }
        Subject::Relation { name } => push(anchors, Anchor::Relation { name: name.clone() }),
        Subject::Lock { relation, blocker } => {
            if !relation.is_empty() {
                push(
                    anchors,
                    Anchor::Lock {
                        relation: relation.clone(),
                    },
                );
            }
            if !blocker.trim().is_empty() {
                push(
                    anchors,
                    Anchor::Statement {
                        fingerprint: crate::sql::normalize(blocker).fingerprint,
                    },
                );
            }
        }
        Subject::Code { file, line, function } => push(
            anchors,
            Anchor::Code {
                file: file.clone(),
                line: *line,
                function: function.clone(),
            },
        ),
        Subject::Peer { .. }
        | Subject::Downstream { .. }
        | Subject::ResponseBody { .. }
        | Subject::Sessions { .. }
        | Subject::Resource { .. }
        | Subject::Process { .. } => {}
    }
}

fn push(anchors: &mut Vec<Anchor>, anchor: Anchor) {
    if !anchors.contains(&anchor) {
        anchors.push(anchor);
    }
}

/// The statements written as SQL literals in a line of Python: each string (adjacent ones
/// joined, as Python joins them) that starts with `SELECT`, `INSERT`, `UPDATE`, `DELETE` or
/// `WITH`, normalized as the traces' and the database's statements are, so its fingerprint meets
/// theirs (`%s` and `$1` alike).
pub(crate) fn sql_literals(source: &str) -> Vec<Fingerprint> {
    let mut literals: Vec<String> = Vec::new();
    let mut joining = false;
    let bytes = source.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'#' {
            break;
        }
        if c == b'\'' || c == b'"' {
            let triple = bytes.len() >= i + 3 && bytes[i + 1] == c && bytes[i + 2] == c;
            let quote_len = if triple { 3 } else { 1 };
            let start = i + quote_len;
            let mut end = start;
            loop {
                if end >= bytes.len() {
                    break;
                }
                if bytes[end] == b'\\' {
                    end += 2;
                    continue;
                }
                if bytes[end] == c && (!triple || bytes[end..].starts_with(&[c, c, c])) {
                    break;
                }
                end += 1;
            }
            let text = source.get(start..end.min(bytes.len())).unwrap_or_default();
            match literals.last_mut() {
                Some(last) if joining => last.push_str(text),
                _ => literals.push(text.to_owned()),
            }
            joining = true;
            i = (end + quote_len).min(bytes.len());
            continue;
        }
        if !(c.is_ascii_whitespace() || c == b'\\' || (c.is_ascii_alphabetic() && next_is_quote(bytes, i))) {
            joining = false;
        }
        i += 1;
    }
    literals
        .iter()
        .filter(|text| {
            let mut words = text.split_whitespace();
            let verb = words.next().unwrap_or_default().to_ascii_uppercase();
            words.next().is_some()
                && ["SELECT", "INSERT", "UPDATE", "DELETE", "WITH"].contains(&verb.as_str())
        })
        .map(|text| crate::sql::normalize(text).fingerprint)
        .collect()
}

/// Whether the letters from `at` are a string prefix (`r`, `b`, `f`, `rb`, …) before a quote.
fn next_is_quote(bytes: &[u8], at: usize) -> bool {
    let mut j = at;
    while j < bytes.len() && j < at + 2 && matches!(bytes[j].to_ascii_lowercase(), b'r' | b'b' | b'f' | b'u')
    {
        j += 1;
    }
    j > at && j < bytes.len() && (bytes[j] == b'\'' || bytes[j] == b'"')
}

/// The endpoints whose traces run `fingerprint`, the heaviest first (by the statement's time
/// there).
pub(crate) fn endpoints_running(
    traces: &TraceAggregates,
    fingerprint: Fingerprint,
) -> Vec<(&str, &str, f64)> {
    let mut found: Vec<(&str, &str, f64)> = traces
        .endpoints
        .iter()
        .filter_map(|endpoint| {
            let used = endpoint
                .statements
                .iter()
                .find(|s| s.fingerprint == fingerprint)?;
            Some((
                endpoint.service.as_str(),
                endpoint.endpoint.as_str(),
                used.time_ms,
            ))
        })
        .collect();
    found.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.1.cmp(b.1)));
    found
}

/// The statements a finding's anchors name.
fn statements_of(finding: &Finding) -> Vec<Fingerprint> {
    finding
        .anchors
        .iter()
        .filter_map(|a| match a {
            Anchor::Statement { fingerprint } => Some(*fingerprint),
            _ => None,
        })
        .collect()
}

/// Endpoints named on one finding at most.
const MAX_ENDPOINT_ANCHORS: usize = 5;

/// A database finding about a statement the traces show is placed on the endpoint that runs it
/// (the one where it takes the most time), with every such endpoint among its anchors: a
/// statement is about the request that runs it, which the traces know and the database does not.
/// A lock is the database's, but the endpoints that run its statements are named.
pub(crate) fn place_on_endpoints(findings: &mut [Finding], traces: &TraceAggregates) {
    for finding in findings.iter_mut() {
        if !matches!(finding.scope, Scope::Database { .. }) {
            continue;
        }
        let statements = statements_of(finding);
        let mut running: Vec<(&str, &str, f64)> = Vec::new();
        for fingerprint in statements {
            for found in endpoints_running(traces, fingerprint) {
                if !running.iter().any(|r| r.0 == found.0 && r.1 == found.1) {
                    running.push(found);
                }
            }
        }
        running.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.1.cmp(b.1)));
        for (service, endpoint, _) in running.iter().take(MAX_ENDPOINT_ANCHORS) {
            push(&mut finding.anchors, Anchor::endpoint(service, endpoint));
        }
        let statement_finding = matches!(finding.subject, Subject::Statement { .. });
        if let Some((service, endpoint, _)) = running.first().filter(|_| statement_finding) {
            finding.scope = Scope::Endpoint {
                service: (*service).to_owned(),
                endpoint: (*endpoint).to_owned(),
            };
        }
    }
}

/// A ramp's findings are about the endpoint its URL reaches in the traces.
pub(crate) fn anchor_loaded_endpoint(findings: &mut [Finding], traces: &TraceAggregates, run: &LoadRun) {
    let Some(endpoint) = crate::traces::endpoint_of_url(traces, &run.url) else {
        return;
    };
    let anchor = Anchor::endpoint(&endpoint.service, &endpoint.endpoint);
    for finding in findings
        .iter_mut()
        .filter(|f| matches!(f.scope, Scope::Target { .. }))
    {
        push(&mut finding.anchors, anchor.clone());
    }
}

/// The endpoint a profile saw the requests of: a ramp of one URL ran over the profile's time on
/// the same process, and the traces know the URL's route. `None` otherwise — a profile alone
/// covers every endpoint the process served.
pub(crate) fn profiled_endpoint(evidence: &Evidence) -> Option<Anchor> {
    let (traces, run, profile) = (
        evidence.traces.as_ref()?,
        evidence.load.as_ref()?,
        evidence.profile.as_ref()?,
    );
    if profile.pid.is_some() && run.target_pid.is_some() && profile.pid != run.target_pid {
        return None;
    }
    let window = evidence.profile_window()?;
    let overlaps = run
        .steps
        .iter()
        .any(|s| s.started_unix_s < window.1 && s.started_unix_s + s.duration_s > window.0);
    // A mix of URLs serves several endpoints: the profile is no one's.
    if !overlaps || run.url.contains(" more paths)") {
        return None;
    }
    let endpoint = crate::traces::endpoint_of_url(traces, &run.url)?;
    Some(Anchor::endpoint(&endpoint.service, &endpoint.endpoint))
}

/// The CPU the ramp's sampler measured for the profiled process over the profile's time, in
/// cores: the steps it overlaps, each weighted by the overlap.
pub(crate) fn profiled_cpu_cores(evidence: &Evidence) -> Option<f64> {
    let (run, profile) = (evidence.load.as_ref()?, evidence.profile.as_ref()?);
    if profile.pid.is_some() && run.target_pid.is_some() && profile.pid != run.target_pid {
        return None;
    }
    let (from, to) = evidence.profile_window()?;
    let (mut weighted, mut covered) = (0.0, 0.0);
    for step in &run.steps {
        let Some(target) = &step.target else { continue };
        let overlap =
            (to.min(step.started_unix_s + step.duration_s) - from.max(step.started_unix_s)).max(0.0);
        weighted += target.cpu_cores * overlap;
        covered += overlap;
    }
    // Most of the profile must be covered by measured steps for the figure to be its own.
    (covered >= 0.5 * (to - from)).then(|| weighted / covered)
}

/// Busy samples a profile put on the lines of a finding, and the lines.
struct LineCost {
    frames: Vec<u32>,
    /// Busy samples of the stacks that run the lines.
    samples: u64,
    /// Those of them that wait in a call out of the process.
    calling: u64,
    how: String,
}

/// The CPU each finding's statement or code costs the profiled process: the busy samples of the
/// stacks that run a line holding its statement as a SQL literal or its code place — or, when the
/// profile covered a ramp of one endpoint and no line holds the statement, the lines whose frames
/// call the database driver (an ORM's lazy loads for an N+1) while that endpoint's traces show
/// the statement, when the endpoint has one such finding. Each such finding gets the cost on the
/// CPU, the lines' code anchors and hot frames.
pub(crate) fn profile_costs(findings: &mut [Finding], view: &ProfileView<'_>, endpoint: Option<&Anchor>) {
    if view.busy == 0 {
        return;
    }
    let profile = view.profile;
    let literals: Vec<(u32, Vec<Fingerprint>)> = (0..profile.frames.len() as u32)
        .filter(|&f| view.is_application(f))
        .filter_map(|f| {
            let found = sql_literals(profile.frames[f as usize].source.as_deref()?);
            (!found.is_empty()).then_some((f, found))
        })
        .collect();
    // The findings about a statement on the profiled endpoint, for the inference without a
    // literal.
    let on_endpoint: Vec<usize> = findings
        .iter()
        .enumerate()
        .filter(|(_, f)| receives_costs(f) && endpoint.is_some_and(|e| f.anchors.iter().any(|a| a.meets(e))))
        .filter(|(_, f)| f.anchors.iter().any(|a| matches!(a, Anchor::Statement { .. })))
        .map(|(i, _)| i)
        .collect();
    let callers = |category: Category| -> Vec<u32> {
        view.callers_of(category)
            .into_iter()
            .filter_map(|(caller, tally): (Option<u32>, &Tally)| {
                caller.filter(|_| tally.count as f64 >= 0.02 * view.busy as f64)
            })
            .collect()
    };
    let lazy_callers = callers(Category::LazyLoad);
    let database_callers = callers(Category::Database);
    for (index, finding) in findings.iter_mut().enumerate() {
        if !receives_costs(finding) {
            continue;
        }
        let statements = statements_of(finding);
        let code: Vec<&Anchor> = finding
            .anchors
            .iter()
            .filter(|a| matches!(a, Anchor::Code { .. }))
            .collect();
        let mut frames: Vec<u32> = literals
            .iter()
            .filter(|(_, found)| found.iter().any(|f| statements.contains(f)))
            .map(|(f, _)| *f)
            .collect();
        let mut how = "the profiled lines hold its statement as a SQL literal".to_owned();
        if frames.is_empty() && !code.is_empty() {
            frames = (0..profile.frames.len() as u32)
                .filter(|&f| view.is_application(f))
                .filter(|&f| {
                    let frame = &profile.frames[f as usize];
                    let anchor = Anchor::Code {
                        file: frame.file.clone(),
                        line: (frame.line > 0).then_some(frame.line),
                        function: frame.function.clone(),
                    };
                    code.iter().any(|c| c.meets(&anchor))
                })
                .collect();
            how = "the profiled lines are its code".to_owned();
        }
        if frames.is_empty() && on_endpoint == [index] {
            let lazy =
                !lazy_callers.is_empty() && finding.detector == chokepoint_evidence::DetectorId::NPlusOne;
            frames = if lazy {
                lazy_callers.clone()
            } else {
                database_callers.clone()
            };
            how = format!(
                "the profile covered the ramp of {}, and its lines that call {} run the statement its traces show \
                 (the lines hold no SQL: inferred)",
                endpoint.map_or_else(String::new, ToString::to_string),
                if lazy {
                    "the ORM's lazy loads"
                } else {
                    "the database driver"
                }
            );
        }
        if frames.is_empty() {
            continue;
        }
        let cost = line_cost(view, frames, how);
        attach(finding, view, cost);
    }
}

/// Whether a finding can receive a cost from a profile: a consumer seen by other evidence.
fn receives_costs(finding: &Finding) -> bool {
    matches!(finding.impact, Impact::Consumer(_)) && !finding.evidence.sample.unit.is_profile()
}

/// The busy samples of the stacks that run any of `frames`, each stack counted once.
fn line_cost(view: &ProfileView<'_>, frames: Vec<u32>, how: String) -> LineCost {
    let wanted: HashSet<u32> = frames.iter().copied().collect();
    let (mut samples, mut calling) = (0, 0);
    for stack in view
        .busy_stacks()
        .filter(|stack| stack.frames.iter().any(|f| wanted.contains(f)))
    {
        samples += stack.count;
        if view.calls_out(stack) {
            calling += stack.count;
        }
    }
    LineCost {
        frames,
        samples,
        calling,
        how,
    }
}

fn attach(finding: &mut Finding, view: &ProfileView<'_>, cost: LineCost) {
    if cost.samples == 0 {
        return;
    }
    let split = view.cpu_share(cost.samples, cost.calling);
    let share = split.share;
    let mut how = cost.how.clone();
    if let Some(words) = &split.how {
        how.push_str("; ");
        how.push_str(words);
    }
    // A process whose measured CPU stayed low spent its busy samples waiting: the lines are the
    // cause's, their samples no CPU it burned.
    let waited = view.waited();
    if !waited {
        let s_per_s = match view.cpu_cores {
            Some(cores) => share * cores,
            None => cost.samples as f64 * view.seconds_per_count() / view.wall_s().max(1e-9),
        };
        crate::rank::add_cost(
            finding,
            Cost {
                resource: chokepoint_evidence::Resource::Cpu,
                share: crate::impact::round(share),
                s_per_s: crate::impact::round(s_per_s),
                share_range: split.how.is_some().then(|| split.range.map(crate::impact::round)),
                basis: Basis::Measured,
                seen_by: EvidenceKind::Profile,
                how,
            },
        );
    }
    let mut lines: Vec<(u32, u64)> = cost
        .frames
        .iter()
        .map(|&f| {
            let samples = view
                .busy_stacks()
                .filter(|stack| stack.frames.contains(&f))
                .map(|stack| stack.count)
                .sum();
            (f, samples)
        })
        .collect();
    lines.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    for &(f, samples) in lines.iter().take(3) {
        let frame = view.frame(f);
        push(
            &mut finding.anchors,
            Anchor::Code {
                file: frame.file.clone(),
                line: (frame.line > 0).then_some(frame.line),
                function: frame.function.clone(),
            },
        );
        let item = view.item(
            f,
            &Tally {
                count: samples,
                inferred: 0,
            },
        );
        if !finding.evidence.items.contains(&item) {
            finding.evidence.items.push(item);
        }
    }
}

/// Requests of the loaded endpoint needed to read their in-process time's lower quartile.
const MIN_IN_PROCESS_REQUESTS: u64 = 20;

/// The ramp's limits learn from the traces how long the loaded endpoint's requests ran in their
/// own process outside their calls — the lower quartile (`in_process_ms_p25`), the work of a
/// request that barely waited — which bounds what a request costs the service's CPU once what it
/// waits on is gone, better than CPU per request measured at the few requests/s a limit allows
/// (which carries the idle process's wakeups).
pub(crate) fn in_process_time(findings: &mut [Finding], traces: &TraceAggregates, run: &LoadRun) {
    let Some(endpoint) = crate::traces::endpoint_of_url(traces, &run.url)
        .filter(|endpoint| endpoint.requests >= MIN_IN_PROCESS_REQUESTS)
    else {
        return;
    };
    let Some(quartile) = endpoint.in_process.quantile_ms(0.25).filter(|ms| *ms > 0.0) else {
        return;
    };
    for finding in findings
        .iter_mut()
        .filter(|f| matches!(f.scope, Scope::Target { .. }))
    {
        let Impact::Limit(limit) = &mut finding.impact else {
            continue;
        };
        finding
            .evidence
            .metrics
            .insert("in_process_ms_p25".to_owned(), crate::impact::round(quartile));
        // A line fitted across rates already separates the fixed cost; a single rate's least
        // CPU per request carries it, and the traces' quicker requests tell the marginal one —
        // for a limit other than the CPU, which the process was not using up (a saturated
        // process's in-process time is its wait for the CPU too).
        if let Some(cpu) = &mut limit.inputs.cpu
            && limit.resource != chokepoint_evidence::Resource::Cpu
            && !matches!(cpu.basis, CpuCostBasis::Fit { .. })
            && quartile < cpu.marginal_ms_per_request
        {
            *cpu = CpuCost {
                fixed_cores: 0.0,
                marginal_ms_per_request: quartile,
                marginal_range_ms: [quartile, cpu.marginal_ms_per_request],
                basis: CpuCostBasis::Traced {
                    requests: endpoint.requests,
                },
            };
        }
    }
}

/// Each finding's stable id: a hash of its detector, its scope and what it is about — a
/// statement by fingerprint, a call, a lock, a relation, a code place without its line (an edit
/// moves lines) — never of the words; for a limit, of the detector and the scope alone. Unique
/// within a run: `compare` and SARIF's fingerprints key on it.
pub(crate) fn assign_ids(findings: &mut [Finding]) {
    let keys: Vec<String> = findings.iter().map(id_key).collect();
    let hash = |key: &str| format!("{:016x}", xxhash_rust::xxh3::xxh3_64(key.as_bytes()));
    let mut ids: Vec<String> = keys.iter().map(|k| hash(k)).collect();
    // What an id is made of can be shared — shapes on several lines of one function: each then
    // takes its place too, without the line numbers that edits elsewhere move, and last, the
    // order of its line among the equal.
    let mut shared: std::collections::BTreeMap<&str, Vec<usize>> = std::collections::BTreeMap::new();
    for (i, key) in keys.iter().enumerate() {
        shared.entry(key.as_str()).or_default().push(i);
    }
    for (key, mut members) in shared.into_iter().filter(|(_, m)| m.len() > 1) {
        members.sort_by(|&a, &b| findings[a].location.cmp(&findings[b].location));
        let mut taken: HashSet<String> = HashSet::new();
        for i in members {
            let place = without_line_numbers(&findings[i].location);
            let mut id = hash(&format!("{key}\0{place}"));
            let mut n = 1;
            while !taken.insert(id.clone()) {
                n += 1;
                id = hash(&format!("{key}\0{place}\0{n}"));
            }
            ids[i] = id;
        }
    }
    for (finding, id) in findings.iter_mut().zip(ids) {
        finding.id = id;
    }
}

/// What a finding's id is made of: its detector, its typed scope and, for a consumer, what it
/// is about — never text.
fn id_key(finding: &Finding) -> String {
    let scope = match &finding.scope {
        Scope::Endpoint { service, endpoint } => format!("endpoint\0{service}\0{endpoint}"),
        Scope::Database { database } => format!("database\0{database}"),
        Scope::Target { url, .. } => format!("target\0{url}"),
        Scope::Process { .. } => "process".to_owned(),
        Scope::Source { file } => format!("source\0{file}"),
    };
    let about = match finding.impact {
        Impact::Limit(_) => String::new(),
        Impact::Consumer(_) | Impact::Potential(_) => subject_key(&finding.subject),
    };
    format!("{}\0{scope}\0{about}", finding.detector)
}

/// `app.py:321 \`time.sleep(0.02)\`` as `app.py: \`time.sleep(0.02)\``: a place that stays when
/// lines above it are added or removed.
fn without_line_numbers(location: &str) -> String {
    let mut out = String::with_capacity(location.len());
    let mut after_colon = false;
    for c in location.chars() {
        if after_colon && c.is_ascii_digit() {
            continue;
        }
        after_colon = c == ':';
        out.push(c);
    }
    out
}

/// What a subject is, for an id: stable across runs and edits.
fn subject_key(subject: &Subject) -> String {
    match subject {
        Subject::Statement { fingerprint, .. } => format!("statement\0{fingerprint}"),
        Subject::HttpCall(call) => format!("call\0{call}"),
        Subject::CallSequence { calls } => calls.iter().map(subject_key).collect::<Vec<_>>().join("\0"),
        Subject::Peer { address, .. } => format!("peer\0{address}"),
        Subject::Downstream { service } => format!("downstream\0{service}"),
        Subject::ResponseBody { call } => format!(
            "body\0{}",
            call.as_ref().map_or_else(String::new, ToString::to_string)
        ),
        Subject::Relation { name } => format!("relation\0{name}"),
        Subject::Lock { relation, blocker } => format!(
            "lock\0{}\0{}",
            relation.split(" (").next().unwrap_or(relation),
            crate::sql::normalize(blocker).fingerprint
        ),
        Subject::Sessions { database } => format!("sessions\0{database}"),
        Subject::Resource { resource } => format!("resource\0{resource:?}"),
        Subject::Code { file, function, .. } => format!("code\0{file}\0{function}"),
        Subject::Process { .. } => "process".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_literals_on_a_line_meet_the_statement_the_traces_and_the_database_show() {
        let traced = crate::sql::normalize("SELECT sku, qty FROM items WHERE order_id = %s").fingerprint;
        let counted = crate::sql::normalize("SELECT sku, qty FROM items WHERE order_id = $1").fingerprint;
        assert_eq!(traced, counted);
        assert_eq!(
            sql_literals(r#"cur.execute("SELECT sku, qty FROM items WHERE order_id = %s", (order_id,))"#),
            [traced]
        );
        // Adjacent literals are one string, as Python reads them; a prefix is no break.
        assert_eq!(
            sql_literals(r#"cur.execute("SELECT sku, qty " r'FROM items WHERE order_id = %s', (oid,))"#),
            [traced]
        );
        assert_eq!(
            sql_literals(r#"cur.execute("""select sku, qty from items where order_id = %s""")"#),
            [traced]
        );
        assert!(sql_literals(r#"log.info("selected %s", x)  # "SELECT 1""#).is_empty());
        assert!(sql_literals("items = [i for i in cur.fetchall()]").is_empty());
        assert!(sql_literals(r#"x = "it's \"quoted\" text""#).is_empty());
    }
}
