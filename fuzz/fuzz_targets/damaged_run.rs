//! Real saved runs damaged, as a shard copied from another machine may be: the fuzzer's bytes
//! choose a run (traces alone; a diagnose run with a ramp, the database, a profile and traces)
//! and a list of damages to its `evidence.json` — an element removed from an array, a number
//! made negative, huge or another index, a field removed, a string emptied. The damaged run is
//! written as a folder and read by the library `chokepoint report` and `merge` use: refused with
//! the file and what is wrong, or, accepted, analysed and rendered without a panic.
#![no_main]

#[path = "report.rs"]
mod report;

use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const RUNS: [(&str, &str); 2] = [
    (
        include_str!("../../crates/chokepoint/tests/data/layout-1/traces/run.json"),
        include_str!("../../crates/chokepoint/tests/data/layout-1/traces/evidence.json"),
    ),
    (
        include_str!("../../crates/chokepoint/tests/data/layout-1/diagnose-hot-row/run.json"),
        include_str!("../../crates/chokepoint/tests/data/layout-1/diagnose-hot-row/evidence.json"),
    ),
];

/// Every value in `value`, depth first, as a path of steps.
fn paths(value: &Value, at: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
    out.push(at.clone());
    match value {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                at.push(Step::Index(i));
                paths(item, at, out);
                at.pop();
            }
        }
        Value::Object(fields) => {
            for (name, item) in fields {
                at.push(Step::Key(name.clone()));
                paths(item, at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

#[derive(Clone)]
enum Step {
    Index(usize),
    Key(String),
}

fn at<'v>(value: &'v mut Value, path: &[Step]) -> Option<&'v mut Value> {
    path.iter().try_fold(value, |v, step| match step {
        Step::Index(i) => v.get_mut(*i),
        Step::Key(k) => v.get_mut(k.as_str()),
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&choice, damages)) = data.split_first() else { return };
    let (meta, evidence) = RUNS[usize::from(choice) % RUNS.len()];
    let mut value: Value = serde_json::from_str(evidence).expect("a real run");
    let mut all = Vec::new();
    paths(&value, &mut Vec::new(), &mut all);
    for damage in damages.chunks(4).take(8) {
        let [kind, a, b, c] = [damage[0], *damage.get(1).unwrap_or(&0), *damage.get(2).unwrap_or(&0), *damage.get(3).unwrap_or(&0)];
        let path = &all[(usize::from(a) << 8 | usize::from(b)) % all.len()];
        let Some(target) = at(&mut value, path) else { continue };
        match kind % 6 {
            0 => {
                if let Value::Array(items) = target
                    && !items.is_empty()
                {
                    items.remove(usize::from(c) % items.len());
                }
            }
            1 if target.is_number() => *target = (-(f64::from(c) + 1.0)).into(),
            2 if target.is_number() => *target = (u64::from(c) * 1_000_003).into(),
            3 if target.is_number() => *target = 1e300.into(),
            4 => {
                if let Value::Object(fields) = target {
                    let key = fields.keys().nth(usize::from(c) % fields.len().max(1)).cloned();
                    if let Some(key) = key {
                        fields.remove(&key);
                    }
                }
            }
            5 => {
                if let Value::String(text) = target {
                    text.clear();
                }
            }
            _ => {}
        }
    }
    let dir = std::env::temp_dir().join(format!("chokepoint-fuzz-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    std::fs::write(dir.join("run.json"), meta).expect("write");
    std::fs::write(dir.join("evidence.json"), value.to_string()).expect("write");
    match chokepoint_run::load(&dir) {
        Ok(run) => report::analyse_and_render("report", run.evidence),
        Err(error) => assert!(error.to_string().contains("evidence.json"), "{error}"),
    }
});
