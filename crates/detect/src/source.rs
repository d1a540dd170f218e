//! Source as evidence: a shape the scan found becomes a finding of its detector, with a
//! **potential** impact — not measured, ranked after every measured finding — and the anchors by
//! which runtime evidence meets it: its line (a profile's frame, a span's `code.*`), the statement
//! written on it, the routes its handler serves.

use chokepoint_evidence::{Anchor, Certainty, Resource, Shape, Subject};

use crate::finding::{Basis, Confidence};
use crate::registry::{Conclusion, Estimate};

/// The resource a shape of this detector would use if it runs.
fn resource(shape: &Shape) -> Resource {
    use chokepoint_evidence::DetectorId as Id;
    match shape.detector {
        Id::BlockingCall => Resource::EventLoop,
        Id::NPlusOne if shape.what.contains("HTTP") => Resource::Downstream,
        Id::NPlusOne | Id::UnboundedResult | Id::SlowQuery | Id::MissingIndex => Resource::Database,
        Id::ConnectionChurn => Resource::Connections,
        Id::SequentialCalls | Id::NetworkLatency => Resource::Downstream,
        _ => Resource::Cpu,
    }
}

/// A shape's conclusion.
pub(crate) fn conclusion(shape: &Shape) -> Conclusion {
    let confidence = match shape.certainty {
        Certainty::High => Confidence::High,
        Certainty::Medium => Confidence::Medium,
        Certainty::Low => Confidence::Low,
    };
    let place = format!("{}:{}", shape.file, shape.line);
    let handler = match &shape.handler {
        Some(h) if !h.routes.is_empty() => format!(" ({}, {})", h.routes.join(", "), h.function),
        Some(h) => format!(" (handler {})", h.function),
        None => String::new(),
    };
    let mut conclusion = Conclusion::new(
        resource(shape),
        Basis::Source,
        Estimate::Potential,
        format!("{} at {place}{handler}", shape.what),
        shape.fix.clone(),
        confidence,
    )
    .about(
        Subject::Code {
            file: shape.file.clone(),
            line: Some(shape.line),
            function: shape.function.clone(),
        },
        format!("{place} `{}`", shape.excerpt),
    )
    .assume(vec![
        "found in the source, not measured: what it costs shows under load (`chokepoint diagnose --source`)"
            .to_owned(),
    ]);
    if shape.handler.is_none() {
        conclusion = conclusion.assume_more("no request handler in its module was seen reaching it");
    }
    if shape.certainty == Certainty::Low {
        conclusion = conclusion.assume_more("low confidence: the shape may be cheap where it runs");
    }
    conclusion
}

/// The anchors a shape gives its finding beside its line: the statement written on it and the
/// routes of its handler (with no service: the source does not name it).
pub(crate) fn anchors(shape: &Shape) -> Vec<Anchor> {
    let mut anchors = Vec::new();
    if let Some(sql) = &shape.statement {
        anchors.push(Anchor::Statement {
            fingerprint: crate::sql::normalize(sql).fingerprint,
        });
    }
    for route in shape.handler.iter().flat_map(|h| &h.routes) {
        anchors.push(Anchor::endpoint("", route));
    }
    anchors
}
