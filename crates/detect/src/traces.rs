//! The trace detectors' concluding stage: each (endpoint, subject) aggregate past the noise gate
//! is handed to its detector as a [`GroupView`], with the database's view of its statement when
//! there is one.

use chokepoint_evidence::{EndpointAggregate, ObservedGroup, Subject, TraceAggregates};

use crate::db::{DbView, StatementView};
use crate::registry::Detector;
use crate::stack::ServiceStack;

/// A finding needs this many affected requests, so one odd trace among many does not make a
/// finding — or half of its endpoint's requests, when the endpoint has too few for an outlier to
/// be an outlier: one slow trace downloaded from a trace viewer gets its verdict.
pub const MIN_AFFECTED_REQUESTS: u64 = 2;
/// …and this share of its endpoint's requests.
pub const MIN_AFFECTED_SHARE: f64 = 0.05;
/// Fewer affected requests than this make a small sample: the finding's confidence is at most
/// medium, and it says how few requests it rests on.
pub const SMALL_SAMPLE: u64 = 3;

/// A group as a detector sees it when concluding.
pub(crate) struct GroupView<'a> {
    /// The endpoint.
    pub(crate) endpoint: &'a str,
    /// The observations.
    pub(crate) group: &'a ObservedGroup,
    /// What the finding names.
    pub(crate) location: &'a str,
    /// Requests that showed the problem.
    pub(crate) requests: u64,
    /// Requests of the endpoint.
    pub(crate) endpoint_requests: u64,
    /// Service time saved per affected request, in ms.
    pub(crate) saved_ms_per_request: f64,
    /// The database, when it was read too.
    pub(crate) database: Option<&'a DbView<'a>>,
    /// What the endpoint's service is built with: its spans' instrumentation scopes, then what
    /// the rest of the evidence says.
    pub(crate) stack: ServiceStack,
}

impl<'a> GroupView<'a> {
    /// The mean of a per-request metric.
    pub(crate) fn mean(&self, metric: &str) -> f64 {
        self.group.metrics.get(metric).map_or(0.0, |s| s.mean())
    }

    /// The maximum of a per-request metric.
    pub(crate) fn max(&self, metric: &str) -> f64 {
        self.group.metrics.get(metric).map_or(0.0, |s| s.max)
    }

    /// Affected requests as a share of the endpoint's.
    pub(crate) fn affected_share(&self) -> f64 {
        self.requests as f64 / self.endpoint_requests.max(1) as f64
    }

    /// What the group is about.
    pub(crate) fn subject(&self) -> &'a Subject {
        &self.group.subject
    }

    /// The database's own view of the group's statement, when the database was read and knows
    /// it.
    pub(crate) fn db_statement(&self) -> Option<&'a StatementView<'a>> {
        let Subject::Statement { fingerprint, .. } = &self.group.subject else {
            return None;
        };
        self.database?.statement(*fingerprint)
    }
}

/// Whether a group is seen in enough of its endpoint's requests to be more than noise: in
/// [`MIN_AFFECTED_REQUESTS`] of them (or half, when the endpoint has fewer than twice that) and
/// in [`MIN_AFFECTED_SHARE`] of them.
pub(crate) fn passes_noise_gate(group: &ObservedGroup, endpoint: &EndpointAggregate) -> bool {
    let share = group.requests as f64 / endpoint.requests.max(1) as f64;
    let needed = MIN_AFFECTED_REQUESTS.min(endpoint.requests.div_ceil(2));
    group.requests >= needed && share >= MIN_AFFECTED_SHARE
}

/// Each of `detector`'s groups in the traces, as the detector sees it, with its endpoint;
/// groups below the noise gate are counted in `below_gate` and left out.
pub(crate) fn groups<'a>(
    detector: &'a dyn Detector,
    traces: &'a TraceAggregates,
    database: Option<&'a DbView<'a>>,
    stack: ServiceStack,
    below_gate: &'a mut u64,
) -> impl Iterator<Item = (&'a EndpointAggregate, GroupView<'a>)> + 'a {
    let id = detector.meta().id;
    traces
        .endpoints
        .iter()
        .flat_map(move |endpoint| {
            endpoint
                .groups
                .iter()
                .filter(move |g| g.detector == id)
                .map(move |group| (endpoint, group))
        })
        .filter_map(move |(endpoint, group)| {
            if !passes_noise_gate(group, endpoint) {
                *below_gate += 1;
                return None;
            }
            Some((
                endpoint,
                GroupView {
                    endpoint: &endpoint.endpoint,
                    group,
                    location: &group.location,
                    requests: group.requests,
                    endpoint_requests: endpoint.requests,
                    saved_ms_per_request: group.saved_ms / group.requests.max(1) as f64,
                    database,
                    stack: ServiceStack::from_scopes(endpoint.instrumentation.iter().map(String::as_str))
                        .or(stack),
                },
            ))
        })
}

/// The endpoint a URL reaches: the one whose route matches the URL's path segment by segment (a
/// `{id}`, `<id>`, `:id` or `*` segment matches any), the method aside; the one with the most
/// requests when several do. How a load run's requests are found among the traces.
pub(crate) fn endpoint_of_url<'a>(traces: &'a TraceAggregates, url: &str) -> Option<&'a EndpointAggregate> {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = after_scheme
        .find('/')
        .map_or("/", |at| &after_scheme[at..])
        .split(['?', '#'])
        .next()
        .unwrap_or("/");
    traces
        .endpoints
        .iter()
        .filter(|endpoint| {
            let name = endpoint.endpoint.as_str();
            let route = match name.split_once(' ') {
                Some((method, route)) if method.chars().all(|c| c.is_ascii_uppercase()) => route,
                _ => name,
            };
            route_matches(route.trim(), path)
        })
        .max_by_key(|endpoint| endpoint.requests)
}

/// Whether `path` is one of the paths `route` names.
pub(crate) fn route_matches(route: &str, path: &str) -> bool {
    // Django's routes come without their leading slash (`orders/<int:id>/`).
    let trim = |s: &'_ str| s.trim_matches('/').to_owned();
    let (route, path) = (trim(route), trim(path));
    route.split('/').count() == path.split('/').count()
        && route.split('/').zip(path.split('/')).all(|(template, segment)| {
            template == segment
                || (!segment.is_empty()
                    && (template == "*"
                        || template.starts_with(':')
                        || (template.starts_with('{') && template.ends_with('}'))
                        || (template.starts_with('<') && template.ends_with('>'))))
        })
}
