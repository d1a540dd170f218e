//! Reading every supported format from files recorded with the official OpenTelemetry Python
//! SDK (see `scripts/otel_shop.py`), and bad input of every kind: a clear problem with a
//! position, no panic, and whatever was readable still delivered.

use std::io::Read;
use std::path::{Path, PathBuf};

use chokepoint_evidence::{Position, Span, SpanKind, TraceId};
use chokepoint_traces::{
    Format, ReadOptions, ReadReport, encode_request, read_path, read_source, write_length_prefixed,
};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn read_file(path: &Path) -> (ReadReport, Vec<(TraceId, Span)>) {
    let mut spans = Vec::new();
    let report = read_path(path, &ReadOptions::default(), &mut |id, span| {
        spans.push((id, span))
    });
    (report, spans)
}

fn read_bytes(bytes: &[u8]) -> (ReadReport, Vec<(TraceId, Span)>) {
    let mut spans = Vec::new();
    let report = read_source("input", bytes, &ReadOptions::default(), &mut |id, span| {
        spans.push((id, span))
    });
    (report, spans)
}

/// The recorded shop run has 3 iterations of 5 endpoints: 35 spans each, 105 in all.
const SHOP_SPANS: u64 = 105;

#[test]
fn reads_every_recorded_format() {
    let cases = [
        ("shop.otlp.jsonl.gz", Format::OtlpJson, true),
        ("shop.protojson.jsonl", Format::OtlpJson, false),
        ("shop.otlp.pb", Format::OtlpProtobuf, false),
        ("shop.zipkin.jsonl", Format::Zipkin, false),
    ];
    for (name, format, gzip) in cases {
        let (report, spans) = read_file(&data(name));
        assert!(report.problems.is_empty(), "{name}: {:?}", report.problems);
        assert_eq!(report.format, Some(format), "{name}");
        assert_eq!(report.gzip, gzip, "{name}");
        assert_eq!(report.spans, SHOP_SPANS, "{name}");
        let servers = spans.iter().filter(|(_, s)| s.kind == SpanKind::Server).count();
        assert_eq!(
            servers,
            3 * 8,
            "{name}: 5 endpoints and 3 downstream calls per iteration"
        );
        let statement = spans.iter().find_map(|(_, s)| s.attr_str("db.statement"));
        assert!(statement.is_some_and(|s| s.starts_with("SELECT")), "{name}");
        assert!(spans.iter().any(|(_, s)| &*s.service == "inventory"), "{name}");
    }
}

#[test]
fn every_format_yields_the_same_spans() {
    let key = |(id, s): &(TraceId, Span)| {
        (
            s.name.clone(),
            s.kind,
            s.duration_nano() / 1000,
            s.parent_span_id.is_some(),
            *id != TraceId(0),
        )
    };
    let mut reference: Vec<_> = read_file(&data("shop.otlp.pb")).1.iter().map(key).collect();
    reference.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    for name in ["shop.zipkin.jsonl", "shop.protojson.jsonl", "shop.otlp.jsonl.gz"] {
        let mut spans: Vec<_> = read_file(&data(name)).1.iter().map(key).collect();
        spans.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
        assert_eq!(spans.len(), reference.len(), "{name}");
        // Different recordings of the same script: same shapes, timings within a few ms.
        let names = |v: &[(String, SpanKind, u64, bool, bool)]| {
            v.iter().map(|k| (k.0.clone(), k.1, k.3)).collect::<Vec<_>>()
        };
        assert_eq!(names(&spans), names(&reference), "{name}");
    }
}

#[test]
fn reads_jaeger_query_api_json() {
    let (report, spans) = read_file(&data("jaeger.json"));
    assert_eq!(report.format, Some(Format::Jaeger));
    assert_eq!(report.spans, 18);
    let (_, root) = spans
        .iter()
        .find(|(_, s)| s.parent_span_id.is_none())
        .expect("a root");
    assert_eq!(root.kind, SpanKind::Server);
    assert_eq!(&*root.service, "shop");
    assert_eq!(root.duration_nano(), 90_000_000);
    assert_eq!(root.attr_str("http.route"), Some("/orders"));
}

#[test]
fn reads_a_pretty_printed_document_and_standard_input_bytes() {
    let document = r#"{
      "resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "api"}}]},
        "scopeSpans": [{"spans": [{
          "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
          "name": "GET /", "kind": "SPAN_KIND_SERVER",
          "startTimeUnixNano": 1544712660000000000, "endTimeUnixNano": "1544712661000000000"
        }]}]
      }]
    }"#;
    let (report, spans) = read_bytes(document.as_bytes());
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].1.duration_nano(), 1_000_000_000);
}

#[test]
fn snake_case_keys_read_no_spans_and_say_why() {
    let (report, spans) =
        read_bytes(br#"{"resource_spans":[{"scope_spans":[{"spans":[{"trace_id":"00"}]}]}]}"#);
    assert!(spans.is_empty());
    assert!(report.problems.is_empty());
    let hint = report.empty_hint.expect("a hint");
    assert!(hint.contains("resourceSpans"), "{hint}");
}

#[test]
fn truncated_json_lines_keep_the_complete_lines() {
    let text = std::fs::read_to_string(data("shop.protojson.jsonl")).expect("data");
    let first_line_end = text.find('\n').expect("lines") + 1;
    let truncated = &text.as_bytes()[..first_line_end + 500];
    let (report, spans) = read_bytes(truncated);
    assert!(!spans.is_empty(), "the first line is whole and must be read");
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    let problem = &report.problems[0];
    assert_eq!(problem.position, Some(Position::Line { line: 2, column: 500 }));
    assert!(problem.message.contains("truncated"), "{}", problem.message);
}

#[test]
fn invalid_json_names_line_and_column_and_the_rest_is_read() {
    let good = std::fs::read_to_string(data("shop.protojson.jsonl")).expect("data");
    let first = good.lines().next().expect("a line");
    let input = format!("{first}\n{{\"resourceSpans\": [}}\n{first}\n");
    let (report, spans) = read_bytes(input.as_bytes());
    assert_eq!(report.problems.len(), 1);
    assert!(
        matches!(report.problems[0].position, Some(Position::Line { line: 2, .. })),
        "{:?}",
        report.problems[0]
    );
    assert!(
        report.problems[0]
            .to_string()
            .starts_with("input: line 2, column "),
        "{}",
        report.problems[0]
    );
    let (_, once) = read_bytes(format!("{first}\n").as_bytes());
    assert_eq!(spans.len(), 2 * once.len());
}

#[test]
fn many_lines_decoded_in_parallel_come_out_in_file_order() {
    // Forty lines, so batches of lines are decoded on the pool while the reader goes on; two
    // broken lines and one over the record limit among them.
    let good = std::fs::read_to_string(data("shop.protojson.jsonl")).expect("data");
    let first = good.lines().next().expect("a line");
    let (_, once) = read_bytes(format!("{first}\n").as_bytes());
    let mut input = String::new();
    for line in 1..=40 {
        match line {
            7 | 29 => input.push_str("{\"resourceSpans\": [}\n"),
            18 => input.push_str(&format!("{}\n", "x".repeat(2 << 20))),
            _ => input.push_str(&format!("{first}\n")),
        }
    }
    let options = ReadOptions {
        max_record_bytes: 1 << 20,
    };
    let mut spans = Vec::new();
    let report = read_source("input", input.as_bytes(), &options, &mut |id, span| {
        spans.push((id, span))
    });
    let lines: Vec<Option<Position>> = report.problems.iter().map(|p| p.position.clone()).collect();
    let line = |line| Some(Position::Line { line, column: 1 });
    assert_eq!(lines.len(), 3, "{:?}", report.problems);
    assert!(
        matches!(lines[0], Some(Position::Line { line: 7, .. })),
        "{lines:?}"
    );
    assert_eq!(lines[1], line(18), "{lines:?}");
    assert!(
        matches!(lines[2], Some(Position::Line { line: 29, .. })),
        "{lines:?}"
    );
    assert_eq!(spans.len(), 37 * once.len());
    // The spans of each line arrive in the line's own order, line after line.
    let names: Vec<&str> = spans.iter().map(|(_, s)| s.name.as_str()).collect();
    let one: Vec<&str> = once.iter().map(|(_, s)| s.name.as_str()).collect();
    for chunk in names.chunks(one.len()) {
        assert_eq!(chunk, one.as_slice());
    }
}

#[test]
fn binary_garbage_is_a_clear_error() {
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 | 0x80)
        .collect();
    let (report, spans) = read_bytes(&garbage);
    assert!(spans.is_empty());
    assert_eq!(report.problems.len(), 1);
    assert!(
        report.problems[0]
            .message
            .contains("neither JSON nor OTLP/protobuf"),
        "{}",
        report.problems[0]
    );
}

fn sample_spans() -> Vec<(TraceId, Span)> {
    read_file(&data("shop.otlp.pb")).1
}

#[test]
fn truncated_protobuf_keeps_whole_records() {
    let spans = sample_spans();
    let mut bytes = Vec::new();
    for chunk in spans.chunks(20) {
        write_length_prefixed(&encode_request(chunk.iter().map(|(id, s)| (*id, s))), &mut bytes);
    }
    let cut = bytes.len() - 100;
    let (report, read) = read_bytes(&bytes[..cut]);
    assert_eq!(spans.len(), 105, "five records of 20 spans and one of 5");
    assert_eq!(read.len(), 100, "the five whole records");
    assert_eq!(report.problems.len(), 1);
    assert!(
        matches!(
            report.problems[0].position,
            Some(Position::Record { index: 6, .. })
        ),
        "{:?}",
        report.problems[0]
    );
    assert!(
        report.problems[0].message.contains("truncated"),
        "{}",
        report.problems[0]
    );
}

#[test]
fn a_protobuf_record_that_does_not_decode_is_skipped_and_named() {
    let spans = sample_spans();
    let mut bytes = Vec::new();
    write_length_prefixed(
        &encode_request(spans[..10].iter().map(|(id, s)| (*id, s))),
        &mut bytes,
    );
    let bad_at = bytes.len() as u64;
    bytes.extend_from_slice(&8u32.to_be_bytes());
    bytes.extend_from_slice(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x00, 0x00]);
    write_length_prefixed(
        &encode_request(spans[10..20].iter().map(|(id, s)| (*id, s))),
        &mut bytes,
    );
    let (report, read) = read_bytes(&bytes);
    assert_eq!(read.len(), 20);
    assert_eq!(report.problems.len(), 1);
    assert_eq!(
        report.problems[0].position,
        Some(Position::Record {
            index: 2,
            byte: bad_at
        })
    );
}

#[test]
fn a_bare_protobuf_message_is_read() {
    use prost::Message as _;
    let spans = sample_spans();
    let bytes = encode_request(spans.iter().map(|(id, s)| (*id, s))).encode_to_vec();
    let (report, read) = read_bytes(&bytes);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(read.len(), spans.len());
}

#[test]
fn spans_ending_before_they_start_are_reported_with_their_position() {
    let line = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"backwards","startTimeUnixNano":"2000","endTimeUnixNano":"1000"}]}]}]}"#;
    let (report, spans) = read_bytes(format!("\n{line}\n").as_bytes());
    assert_eq!(spans.len(), 1, "the span is kept");
    assert_eq!(spans[0].1.duration_nano(), 0);
    assert_eq!(report.problems.len(), 1);
    assert!(report.problems[0].message.contains("ends before it starts"));
    assert_eq!(
        report.problems[0].position,
        Some(Position::Line { line: 2, column: 1 })
    );
}

#[test]
fn a_skewed_clock_is_one_problem_however_many_spans_it_bends() {
    let span = |i: u32| {
        format!(
            r#"{{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"{i:016x}","name":"backwards","startTimeUnixNano":"2000","endTimeUnixNano":"1000"}}"#
        )
    };
    let spans: Vec<String> = (1..=5_000).map(span).collect();
    let line = format!(
        r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{}]}}]}}]}}"#,
        spans.join(",")
    );
    let (report, read) = read_bytes(format!("{line}\n{line}\n").as_bytes());
    assert_eq!(read.len(), 10_000, "every span is kept");
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    let problem = &report.problems[0];
    assert_eq!(problem.position, Some(Position::Line { line: 1, column: 1 }));
    assert!(problem.message.contains("9999 more spans"), "{}", problem.message);
}

/// A reader that produces one JSON line of `len` bytes without ever holding it in memory.
struct HugeLine {
    len: u64,
    produced: u64,
}

impl Read for HugeLine {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        const HEAD: &[u8] = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[],"x":""#;
        let mut n = 0;
        while n < buf.len() && self.produced < self.len {
            let i = self.produced;
            buf[n] = if (i as usize) < HEAD.len() {
                HEAD[i as usize]
            } else if i == self.len - 1 {
                b'\n'
            } else {
                b'a'
            };
            n += 1;
            self.produced += 1;
        }
        Ok(n)
    }
}

#[test]
fn a_line_of_hundreds_of_megabytes_is_refused_with_its_position() {
    let good = std::fs::read_to_string(data("shop.protojson.jsonl")).expect("data");
    let first = good.lines().next().expect("a line").to_owned() + "\n";
    let input = first
        .as_bytes()
        .chain(HugeLine {
            len: 300 << 20,
            produced: 0,
        })
        .chain(first.as_bytes());
    let mut spans = 0;
    let report = read_source("huge.jsonl", input, &ReadOptions::default(), &mut |_, _| {
        spans += 1
    });
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    let problem = report.problems[0].to_string();
    assert!(
        problem.starts_with("huge.jsonl: line 2, column 1: line starting at byte"),
        "{problem}"
    );
    assert!(problem.contains("64 MiB record limit"), "{problem}");
    let (_, once) = read_bytes(first.as_bytes());
    assert_eq!(spans, 2 * once.len(), "the lines around it are read");
}

#[test]
fn an_empty_input_has_no_spans_and_no_problems() {
    let (report, spans) = read_bytes(b"  \n\n");
    assert!(spans.is_empty() && report.problems.is_empty());
}

#[test]
fn a_missing_file_is_a_problem_not_a_panic() {
    let (report, _) = read_file(Path::new("/nonexistent/spans.json"));
    assert_eq!(report.problems.len(), 1);
    assert!(report.problems[0].to_string().contains("cannot open"));
}

#[test]
fn corrupt_gzip_is_reported() {
    let bytes = std::fs::read(data("shop.otlp.jsonl.gz")).expect("data");
    let (report, _) = read_bytes(&bytes[..bytes.len() / 2]);
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
}

#[test]
fn ids_that_are_not_hex_are_derived_kept_joined_and_warned_about() {
    let jaeger = br#"{"data":[{"traceID":"trace-1","spans":[
 {"traceID":"trace-1","spanID":"root","operationName":"GET /orders","references":[],"startTime":1700000000000000,"duration":50000,"tags":[{"key":"span.kind","value":"server"}],"processID":"p1"},
 {"traceID":"trace-1","spanID":"child-a","operationName":"SELECT","references":[{"refType":"CHILD_OF","traceID":"trace-1","spanID":"root"}],"startTime":1700000000001000,"duration":1000,"tags":[{"key":"span.kind","value":"client"}],"processID":"p1"}
 ],"processes":{"p1":{"serviceName":"shop","tags":[]}}}]}"#;
    let zipkin = br#"[{"traceId":"trace-1","id":"root","name":"get /orders","kind":"SERVER","timestamp":1700000000000000,"duration":50000,"localEndpoint":{"serviceName":"shop"}},
 {"traceId":"trace-1","id":"child-a","parentId":"root","name":"select","kind":"CLIENT","timestamp":1700000000001000,"duration":1000,"localEndpoint":{"serviceName":"shop"}}]"#;
    for bytes in [&jaeger[..], &zipkin[..]] {
        let (report, spans) = read_bytes(bytes);
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!(spans.len(), 2);
        let (root, child) = (&spans[0], &spans[1]);
        assert_eq!(root.0, child.0, "one trace: the same text, the same id");
        assert_eq!(
            child.1.parent_span_id,
            Some(root.1.span_id),
            "the child still joins its parent"
        );
        assert!(
            spans
                .iter()
                .all(|(_, s)| s.attributes.iter().all(|(k, _)| !k.starts_with("chokepoint."))),
            "the reader's mark is not left on the spans"
        );
        assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
        let warning = report.warnings[0].to_string();
        assert!(
            warning.contains("2 span(s) have ids that are not hex"),
            "{warning}"
        );
        assert!(warning.contains("\"trace-1\""), "{warning}");
    }
}

/// Zipkin's shared spans (B3's default: a call's client and server report one span id, the
/// server's half marked `shared`) and span fragments (the same span reported twice, once without
/// kind or timing), in the shapes of Zipkin's own test data: the halves are two spans, client
/// parent of server; the callee's own calls stay under the server; a fragment is folded in.
#[test]
fn zipkin_shared_spans_are_split_and_fragments_merged() {
    let (report, spans) = read_file(&data("zipkin-shared.json"));
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(spans.len(), 4, "the fragment is folded into its span");
    let find = |service: &str, kind: SpanKind| {
        spans
            .iter()
            .map(|(_, s)| s)
            .find(|s| &*s.service == service && s.kind == kind)
            .unwrap_or_else(|| panic!("{service} {kind:?}"))
    };
    let (root, client) = (
        find("routing", SpanKind::Server),
        find("routing", SpanKind::Client),
    );
    let (server, call) = (
        find("mobile_api", SpanKind::Server),
        find("mobile_api", SpanKind::Client),
    );
    assert_ne!(client.span_id, server.span_id, "two spans, two ids");
    assert_eq!(client.parent_span_id, Some(root.span_id));
    assert_eq!(
        server.parent_span_id,
        Some(client.span_id),
        "the server half is the call's"
    );
    assert_eq!(
        call.parent_span_id,
        Some(server.span_id),
        "the callee's calls stay under it"
    );
    assert_eq!(
        server.duration_ms(),
        41.0,
        "the fragment's missing timing did not erase it"
    );
    assert_eq!(
        server.attr("http.route").and_then(|v| v.as_str()),
        Some("/update"),
        "the fragment's tags are kept"
    );
}
