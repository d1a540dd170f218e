//! Any bytes as the JSON `EXPLAIN (FORMAT JSON)` returns, read as the database inspector reads a
//! plan: node types, scans, filters, nested `Plans`. Never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = chokepoint_db::read_plan_json(data);
});
