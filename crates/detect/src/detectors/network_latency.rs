//! `network-latency`: calls whose time is spent on the wire, not in the service called.

use chokepoint_evidence::{Resource, SpanKind, Subject};

use crate::detectors::{ms, ns, percent};
use crate::finding::{Basis, Confidence};
use crate::registry::{Conclusion, Detector, Estimate, Reads, detector};
use crate::request::Request;
use crate::trace_analysis::{Observation, Observer};
use crate::traces::GroupView;

detector! {
    /// # What it detects
    ///
    /// Outgoing calls that take much longer than the downstream service spent serving them,
    /// when both sides are traced: at least 10 ms and 30 % of the call spent between the two —
    /// round trips, connection setup, queues on the way.
    ///
    /// # Why it limits throughput
    ///
    /// Time on the wire is time the caller waits with its worker and connection held. A far
    /// peer (another zone or region), a new connection per call, or a proxy in between multiplies
    /// with every call a request makes.
    ///
    /// # Evidence used
    ///
    /// A client span and its child server span from another service in the same trace:
    /// wire time = client duration − server duration. Flagged when most calls to the downstream
    /// (half or more) spend that long on the wire: a far peer, or a new connection per call,
    /// shows on every call, while a caller's busy moment — its event loop or CPU taken when the
    /// answer arrived — stretches a call here and there (the testbed's kept-alive twin showed
    /// 25 ms of "wire" on two calls in eight).
    ///
    /// # Known false positives
    ///
    /// Clock skew between hosts does not matter (only durations are compared), but time the
    /// downstream spends before its server span starts (its own accept queue, a busy event loop)
    /// counts as wire time here; check the downstream's `worker-exhaustion` too.
    ///
    /// # Typical fix
    ///
    /// Keep connections alive (one shared `httpx.AsyncClient` / `requests.Session`), batch
    /// calls, and place the services in the same zone.
    pub(crate) struct NetworkLatency {
        id: NetworkLatency,
        summary: "calls whose time goes to the wire rather than to the service called",
        reads: [Reads::Traces("client span whose downstream server span is in the same trace")],
        same_cause: [],
    }
}

/// Wire time worth reporting per call, in ms.
const MIN_WIRE_MS: f64 = 10.0;
/// …as a share of the call.
const MIN_WIRE_SHARE: f64 = 0.3;
/// The share of calls to the downstream that must spend that long on the wire.
const MIN_FAR_CALLS: f64 = 0.5;
/// Round trip assumed between services in one zone with kept-alive connections, in ms.
const NEAR_RTT_MS: f64 = 1.0;

impl Detector for NetworkLatency {
    fn observe(&self, request: &Request<'_>, out: &mut Observer<'_>) {
        for &i in &request.local {
            let client = request.span(i);
            if client.kind != SpanKind::Client {
                continue;
            }
            for &c in request.children(i) {
                let server = request.span(c);
                if server.kind != SpanKind::Server || server.service == client.service {
                    continue;
                }
                out.evaluated();
                // Every call is observed, so the share of calls on the wire can be judged.
                let wire_ms = ms(client.duration_nano().saturating_sub(server.duration_nano()));
                let far = wire_ms >= MIN_WIRE_MS && wire_ms >= MIN_WIRE_SHARE * client.duration_ms();
                let saved_ns = if far { ns(wire_ms - NEAR_RTT_MS) } else { 0 };
                out.push(Observation {
                    subject: Subject::Downstream {
                        service: server.service.to_string(),
                    },
                    location: None,
                    related: None,
                    code: None,
                    saved_ns,
                    latency_saved_ns: saved_ns,
                    occurrences: u64::from(far),
                    metrics: vec![
                        ("wire_ms", wire_ms),
                        ("call_ms", client.duration_ms()),
                        ("server_ms", server.duration_ms()),
                        ("on_the_wire", if far { 1.0 } else { 0.0 }),
                    ],
                });
            }
        }
    }

    fn conclude(&self, group: &GroupView<'_>) -> Option<Conclusion> {
        let far_share = group.mean("on_the_wire");
        if far_share < MIN_FAR_CALLS {
            return None;
        }
        let wire = group.mean("wire_ms");
        let call = group.mean("call_ms");
        let calls = group.group.metrics.get("wire_ms").map_or(0, |s| s.count);
        let title = format!(
            "Calls from {} to {} spend {wire:.0} ms of {call:.0} ms on the wire (the server works {:.0} ms), {:.1} calls per request, {} of them this far",
            group.endpoint,
            group.location,
            group.mean("server_ms"),
            calls as f64 / group.requests.max(1) as f64,
            percent(far_share),
        );
        let fix = format!(
            "Cut round trips to {}: reuse connections (one shared `httpx.AsyncClient` / `requests.Session`, so keep-alive \
             skips TCP and TLS setup), batch several calls into one, and run the caller in the same zone as the callee.",
            group.location
        );
        Some(
            Conclusion::new(
                Resource::Network,
                Basis::Measured,
                Estimate::Observed,
                title,
                fix,
                Confidence::from_share(group.affected_share()),
            )
            .assume(vec![
                format!("a near peer with a kept-alive connection costs about {NEAR_RTT_MS:.0} ms per call"),
                format!(
                    "seen in {} of the endpoint's requests",
                    percent(group.affected_share())
                ),
            ]),
        )
    }
}
