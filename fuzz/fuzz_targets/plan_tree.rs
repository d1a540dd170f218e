//! Structure-aware: plan trees built by `arbitrary` — the node types PostgreSQL emits, relations
//! with and without a schema, costs of any float, children nested up to the depth `serde_json`
//! reads — written as `EXPLAIN (FORMAT JSON)` and read as the database inspector reads a plan.
//! Never a panic, and what it reads matches the tree: one scan in words per `… Scan` node, each
//! sequentially scanned relation once, a sort or a hash when the tree has one.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

const NODE_TYPES: &[&str] = &[
    "Seq Scan",
    "Index Scan",
    "Index Only Scan",
    "Bitmap Heap Scan",
    "Bitmap Index Scan",
    "Nested Loop",
    "Hash Join",
    "Hash",
    "Merge Join",
    "Sort",
    "Incremental Sort",
    "Aggregate",
    "Limit",
    "Gather",
    "Result",
];

#[derive(Arbitrary, Debug)]
struct Node {
    kind: Kind,
    relation: Option<Name>,
    schema: Option<Name>,
    index: Option<Name>,
    hashed: bool,
    cost: f64,
    rows: f64,
    children: Vec<Node>,
}

#[derive(Arbitrary, Debug)]
enum Kind {
    Known(u8),
    Other(String),
    Missing,
}

#[derive(Arbitrary, Debug)]
enum Name {
    Known(u8),
    Other(String),
}

impl Name {
    fn text(&self) -> String {
        match self {
            Name::Known(i) => {
                ["orders", "items", "public", "users_email_idx", "é"][*i as usize % 5].to_owned()
            }
            Name::Other(s) => s.clone(),
        }
    }
}

impl Kind {
    fn text(&self) -> Option<String> {
        match self {
            Kind::Known(i) => Some(NODE_TYPES[*i as usize % NODE_TYPES.len()].to_owned()),
            Kind::Other(s) => Some(s.clone()),
            Kind::Missing => None,
        }
    }
}

/// What the reader should find in the tree: scans, sequentially scanned relations, sorts, hashes.
#[derive(Default)]
struct Expected {
    scans: usize,
    seq_scans: Vec<String>,
    sorts: bool,
    hashes: bool,
}

/// The node as JSON, at `depth`; children past the depth `serde_json` reads are left out.
fn node(n: &Node, depth: usize, expected: &mut Expected) -> Value {
    let mut object = serde_json::Map::new();
    let kind = n.kind.text();
    if let Some(kind) = &kind {
        object.insert("Node Type".into(), json!(kind));
    }
    for (key, name) in [
        ("Relation Name", &n.relation),
        ("Schema", &n.schema),
        ("Index Name", &n.index),
    ] {
        if let Some(name) = name {
            object.insert(key.into(), json!(name.text()));
        }
    }
    if n.hashed {
        object.insert("Strategy".into(), json!("Hashed"));
    }
    // JSON has no NaN or infinity: PostgreSQL never writes them.
    if n.cost.is_finite() {
        object.insert("Total Cost".into(), json!(n.cost));
    }
    if n.rows.is_finite() {
        object.insert("Plan Rows".into(), json!(n.rows));
    }
    let kind = kind.unwrap_or_default();
    expected.scans += usize::from(kind.ends_with("Scan"));
    match kind.as_str() {
        "Seq Scan" => {
            if let Some(relation) = &n.relation {
                let name = match &n.schema {
                    Some(schema) => format!("{}.{}", schema.text(), relation.text()),
                    None => relation.text(),
                };
                if !expected.seq_scans.contains(&name) {
                    expected.seq_scans.push(name);
                }
            }
        }
        "Sort" | "Incremental Sort" => expected.sorts = true,
        "Hash" => expected.hashes = true,
        "Aggregate" if n.hashed => expected.hashes = true,
        _ => {}
    }
    if !n.children.is_empty() && depth < 50 {
        let children: Vec<Value> = n.children.iter().map(|c| node(c, depth + 1, expected)).collect();
        object.insert("Plans".into(), Value::Array(children));
    }
    Value::Object(object)
}

fuzz_target!(|root: Node| {
    let mut expected = Expected::default();
    let plan = json!([{ "Plan": node(&root, 0, &mut expected) }]);
    let text = serde_json::to_vec(&plan).expect("a plan writes as JSON");
    let read = chokepoint_db::read_plan_json(&text).expect("a plan reads back");
    assert_eq!(read.scans.len(), expected.scans, "{plan}");
    assert_eq!(read.seq_scans, expected.seq_scans, "{plan}");
    assert_eq!(read.sorts, expected.sorts, "{plan}");
    assert_eq!(read.hashes, expected.hashes, "{plan}");
});
