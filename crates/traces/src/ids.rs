//! Ids that are not hex — hand-made exports, other tools' test data — read with ids derived
//! from their text, so their spans are kept (and still join: the same text, the same id), and
//! said in a warning with the first such span.

use chokepoint_evidence::{AttrValue, Span, SpanId, TraceId, attr_key_owned};

/// The attribute a reader marks a span with when it derived one of its ids; the checked sink
/// removes it and counts the span.
pub(crate) const DERIVED: &str = "chokepoint.derived_id";

/// 64-bit FNV-1a of `text`, from `basis`: stable from run to run, never zero.
fn fnv(text: &str, basis: u64) -> u64 {
    let hash = text
        .bytes()
        .fold(basis, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    hash.max(1)
}

/// The trace id `text` says, or one derived from it; the text when derived.
pub(crate) fn trace_id(text: &str) -> (TraceId, Option<&str>) {
    match TraceId::from_hex(text) {
        Some(id) => (id, None),
        None => {
            let high = u128::from(fnv(text, 0xcbf2_9ce4_8422_2325));
            let low = u128::from(fnv(text, 0x8422_2325_cbf2_9ce4));
            (TraceId(high << 64 | low), Some(text))
        }
    }
}

/// The span id `text` says, or one derived from it; the text when derived.
pub(crate) fn span_id(text: &str) -> (SpanId, Option<&str>) {
    match SpanId::from_hex(text) {
        Some(id) => (id, None),
        None => (SpanId(fnv(text, 0xcbf2_9ce4_8422_2325)), Some(text)),
    }
}

/// Marks `span` as read with derived ids when any of `derived` (the texts ids were derived
/// from) is there.
pub(crate) fn mark(span: &mut Span, derived: &[Option<&str>]) {
    let texts: Vec<String> = derived.iter().flatten().map(|text| format!("{text:?}")).collect();
    if !texts.is_empty() {
        span.attributes.push((
            attr_key_owned(DERIVED.to_owned()),
            AttrValue::Str(texts.join(", ")),
        ));
    }
}

/// Removes the mark, if any: the texts of the ids derived.
pub(crate) fn take_mark(span: &mut Span) -> Option<String> {
    let at = span.attributes.iter().rposition(|(key, _)| &**key == DERIVED)?;
    match span.attributes.swap_remove(at).1 {
        AttrValue::Str(texts) => Some(texts),
        _ => Some(String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_ids_are_read_and_other_text_derives_a_stable_id() {
        let (hex, derived) = trace_id("5b8efff798038103d269b633813fc60c");
        assert_eq!(derived, None);
        assert_eq!(
            hex,
            TraceId::from_hex("5b8efff798038103d269b633813fc60c").expect("hex")
        );
        let (a, derived) = trace_id("trace-1");
        assert_eq!(derived, Some("trace-1"));
        assert_eq!(a, trace_id("trace-1").0, "the same text, the same id");
        assert_ne!(a, trace_id("trace-2").0);
        assert_ne!(span_id("root").0, span_id("child").0);
        assert_ne!(span_id("").0, SpanId(0), "never the zero id");
    }
}
