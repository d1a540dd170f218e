//! Any text as a SQL statement: the traces' normalizer (every text gets a stable key), and
//! PostgreSQL's own parser with what chokepoint reads of its tree (filters, sorts, limits,
//! index columns) and the literal redaction. Never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let (normalized, fingerprint) = chokepoint_detect::normalize_statement(text);
    assert_eq!(
        chokepoint_detect::normalize_statement(text),
        (normalized, fingerprint),
        "stable"
    );
    let _ = chokepoint_sql::redact(text);
    if let Ok(parsed) = chokepoint_sql::parse(text) {
        for relation in ["users", "public.users"] {
            let _ = parsed.index_columns(relation);
            let _ = parsed.patterns_of(relation);
        }
    }
});
