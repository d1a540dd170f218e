//! The testbed's services scanned: every bad route that has a shape in source is found at its
//! line, and none of the fixed twins is.

use std::path::{Path, PathBuf};

use chokepoint_evidence::Shape;

fn testbed(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testbed")
        .join(dir)
}

fn scan(dir: &str) -> Vec<Shape> {
    let scanned = chokepoint_scan::scan(&[testbed(dir)], &chokepoint_scan::Options::default());
    assert!(scanned.notes.is_empty(), "{:?}", scanned.notes);
    scanned.scan.shapes
}

/// The line of `file` holding `text`, inside the function `function` (1-based).
fn line_of(dir: &str, file: &str, function: &str, text: &str) -> u32 {
    let source = std::fs::read_to_string(testbed(dir).join(file)).expect("present");
    let start = source
        .lines()
        .position(|l| l.contains(&format!("def {function}(")))
        .expect("present");
    let at = source
        .lines()
        .skip(start)
        .position(|l| l.contains(text))
        .expect("present");
    (start + at + 1) as u32
}

fn assert_found(shapes: &[Shape], id: &str, dir: &str, file: &str, function: &str, text: &str) {
    let line = line_of(dir, file, function, text);
    assert!(
        shapes
            .iter()
            .any(|s| s.detector.as_str() == id && s.line == line && s.file.ends_with(file)),
        "{id} not found at {file}:{line} ({function}): {:#?}",
        shapes
            .iter()
            .map(|s| (s.detector.as_str(), s.line))
            .collect::<Vec<_>>()
    );
}

fn assert_no_fixed_twin(shapes: &[Shape]) {
    for shape in shapes {
        let routes = shape.handler.iter().flat_map(|h| &h.routes);
        for route in routes {
            assert!(
                !route.contains("fixed"),
                "a fixed twin shows {}: {shape:#?}",
                shape.detector
            );
        }
    }
}

#[test]
fn the_fastapi_shop_has_each_bad_route_at_its_line_and_no_fixed_twin() {
    let shapes = scan("service");
    let cases = [
        ("n-plus-one", "orders_lazy", "len(o.items)"),
        ("n-plus-one", "far_orders_lazy", "len(o.items)"),
        ("n-plus-one", "items_one_by_one", "downstream.get"),
        ("sequential-calls", "dashboard_sequential", "profile = "),
        (
            "unbounded-result",
            "events_all",
            "session.scalars(select(Event)).all()",
        ),
        ("connection-churn", "item_unpooled", "Session(unpooled)"),
        (
            "connection-churn",
            "stock_new_client_per_call",
            "httpx.AsyncClient",
        ),
        ("blocking-call", "blocking_io", "time.sleep"),
        ("blocking-call", "blocking_io", "requests.get"),
        ("blocking-call", "blocking_io", "open(DATA_FILE"),
        ("regex-per-request", "validate_compiling", "re.compile"),
        ("in-memory-sort", "top_events_sorted_in_python", "sorted("),
        ("sync-logging", "emit", "os.fsync"),
    ];
    for (id, function, text) in cases {
        assert_found(&shapes, id, "service", "app.py", function, text);
    }
    assert_no_fixed_twin(&shapes);
    let n_plus_one = shapes
        .iter()
        .find(|s| s.function == "orders_lazy")
        .expect("present");
    assert_eq!(
        n_plus_one.handler.as_ref().expect("present").routes,
        ["GET /n-plus-one/bad"]
    );
    assert!(
        n_plus_one.fix.contains("selectinload(Order.items)"),
        "{}",
        n_plus_one.fix
    );
}

#[test]
fn the_flask_shop_has_its_n_plus_one_at_its_statement() {
    let shapes = scan("flask_shop");
    assert_found(
        &shapes,
        "n-plus-one",
        "flask_shop",
        "app.py",
        "orders_bad",
        "SELECT sku, qty FROM items",
    );
    assert_no_fixed_twin(&shapes);
    let shape = shapes
        .iter()
        .find(|s| s.detector.as_str() == "n-plus-one")
        .expect("present");
    assert_eq!(
        shape.statement.as_deref(),
        Some("SELECT sku, qty FROM items WHERE order_id = %s")
    );
    assert!(shape.fix.contains("order_id = ANY(%s)"), "{}", shape.fix);
}

#[test]
fn the_django_shop_speaks_django_and_takes_routes_from_urls() {
    let shapes = scan("django_shop");
    assert_found(
        &shapes,
        "n-plus-one",
        "django_shop",
        "dj/views.py",
        "books_bad",
        "b.author.name",
    );
    assert_found(
        &shapes,
        "unbounded-result",
        "django_shop",
        "dj/views.py",
        "events_bad",
        "Event.objects.all()",
    );
    assert_no_fixed_twin(&shapes);
    let books = shapes
        .iter()
        .find(|s| s.function == "books_bad")
        .expect("present");
    assert!(books.fix.contains(".select_related(\"author\")"), "{}", books.fix);
    assert_eq!(books.handler.as_ref().expect("present").routes, ["/books/bad"]);
}
