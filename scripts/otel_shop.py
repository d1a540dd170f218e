"""Emit traces of a small shop backend with the official OpenTelemetry Python SDK.

The spans follow the semantic conventions that the FastAPI, SQLAlchemy and httpx
instrumentations emit, with real timing (sleeps stand in for the database and the network).
Each endpoint carries one known problem, so the tests and the bundled examples know what
chokepoint must find:

  GET /orders        N+1: one SELECT of items per order, pool connects interleaved
  GET /dashboard     three independent downstream calls awaited one after another,
                     each spending most of its time on the wire
  GET /users/search  a statement that takes most of the request
  GET /report        an unbounded SELECT and a large uncompressed response
  GET /items/{id}    a new database connection per request

Exporters: otlp-http and otlp-grpc send to a receiver (ENDPOINT is its URL); zipkin-file,
otlp-jsonl and protojson-jsonl write ENDPOINT as a file: Zipkin v2 JSON as the official Zipkin
exporter posts it, OTLP/JSON Lines as the Collector's file exporter writes it (hex ids), and
OTLP requests through protobuf's generic JSON printer (base64 ids, enum names).

Usage: otel_shop.py --exporter KIND --endpoint URL|FILE [--requests N]
"""

import argparse
import base64
import http.server
import json
import threading
import time

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind


class JsonLinesExporter:
    """Writes each export as one line of OTLP/JSON, encoded by the SDK's own OTLP encoder."""

    def __init__(self, path, hex_ids):
        self.file = open(path, "a", encoding="utf-8")
        self.hex_ids = hex_ids

    def export(self, spans):
        from google.protobuf.json_format import MessageToDict
        from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
        from opentelemetry.sdk.trace.export import SpanExportResult

        document = MessageToDict(encode_spans(spans))
        if self.hex_ids:
            for resource in document.get("resourceSpans", []):
                for scope in resource.get("scopeSpans", []):
                    for span in scope.get("spans", []):
                        for key in ("traceId", "spanId", "parentSpanId"):
                            if key in span:
                                span[key] = base64.b64decode(span[key]).hex()
        self.file.write(json.dumps(document, separators=(",", ":")) + "\n")
        self.file.flush()
        return SpanExportResult.SUCCESS

    def shutdown(self):
        self.file.close()

    def force_flush(self, timeout_millis=None):
        return True


def zipkin_capture(path):
    """A loopback Zipkin collector that appends every posted body to `path`, one per line."""
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with lock, open(path, "ab") as out:
                out.write(body.replace(b"\n", b" ") + b"\n")
            self.send_response(202)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/api/v2/spans"


def exporter(kind, endpoint):
    if kind == "otlp-jsonl":
        return JsonLinesExporter(endpoint, hex_ids=True)
    if kind == "protojson-jsonl":
        return JsonLinesExporter(endpoint, hex_ids=False)
    if kind == "zipkin-file":
        kind, endpoint = "zipkin", zipkin_capture(endpoint)
    if kind == "otlp-http":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces")
    if kind == "otlp-grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=endpoint, insecure=True)
    if kind == "zipkin":
        from opentelemetry.exporter.zipkin.json import ZipkinExporter

        return ZipkinExporter(endpoint=endpoint)
    raise SystemExit(f"unknown exporter {kind}")


def provider(service, kind, endpoint):
    p = TracerProvider(resource=Resource.create({"service.name": service}))
    p.add_span_processor(BatchSpanProcessor(exporter(kind, endpoint)))
    return p


def db(tracer, statement, seconds, **extra):
    attrs = {
        "db.system": "postgresql",
        "db.name": "shop",
        "db.statement": statement,
        "net.peer.name": "127.0.0.1",
        "net.peer.port": 5432,
    }
    attrs.update(extra)
    with tracer.start_as_current_span("SELECT shop", kind=SpanKind.CLIENT, attributes=attrs):
        time.sleep(seconds)


def connect(tracer):
    attrs = {"db.system": "postgresql", "db.name": "shop", "net.peer.name": "127.0.0.1", "net.peer.port": 5432}
    with tracer.start_as_current_span("connect", kind=SpanKind.CLIENT, attributes=attrs):
        time.sleep(0.004)


def server(tracer, route, **extra):
    attrs = {"http.method": "GET", "http.route": route, "http.target": route, "http.status_code": 200}
    attrs.update(extra)
    return tracer.start_as_current_span(f"GET {route}", kind=SpanKind.SERVER, attributes=attrs)


def downstream(shop, inventory, path, wire_seconds, work_seconds):
    url = f"http://127.0.0.1:8001{path}"
    attrs = {"http.method": "GET", "http.url": url, "net.peer.name": "127.0.0.1", "net.peer.port": 8001}
    with shop.start_as_current_span("GET", kind=SpanKind.CLIENT, attributes=attrs) as client:
        time.sleep(wire_seconds / 2)
        parent = trace.set_span_in_context(client)
        route = "/" + path.strip("/").split("/")[0]
        with inventory.start_as_current_span(
            f"GET {route}", context=parent, kind=SpanKind.SERVER,
            attributes={"http.method": "GET", "http.route": route, "http.target": path},
        ):
            time.sleep(work_seconds)
        time.sleep(wire_seconds / 2)


def orders(shop):
    with server(shop, "/orders"):
        db(shop, "SELECT orders.id, orders.total FROM orders WHERE orders.user_id = %(user_id_1)s", 0.003)
        for order_id in range(15):
            if order_id % 4 == 0:
                connect(shop)
            db(shop, "SELECT items.id, items.sku, items.qty FROM items WHERE items.order_id = %(order_id_1)s", 0.004)


def dashboard(shop, inventory):
    with server(shop, "/dashboard"):
        downstream(shop, inventory, "/stock/42", 0.025, 0.005)
        downstream(shop, inventory, "/prices/42", 0.025, 0.005)
        downstream(shop, inventory, "/reviews/42", 0.025, 0.005)


def search(shop):
    with server(shop, "/users/search"):
        db(shop, "SELECT * FROM users WHERE lower(email) = %(email_1)s", 0.12)


def report(shop):
    with server(shop, "/report", **{"http.response_content_length": 640000}):
        db(shop, "SELECT * FROM events", 0.03, **{"db.response.returned_rows": 25000})
        time.sleep(0.01)


def item(shop):
    with server(shop, "/items/{item_id}"):
        connect(shop)
        db(shop, "SELECT * FROM items WHERE items.id = %(id_1)s", 0.002)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exporter", required=True, choices=["otlp-http", "otlp-grpc", "zipkin-file", "otlp-jsonl", "protojson-jsonl"])
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--requests", type=int, default=6)
    args = parser.parse_args()
    shop_provider = provider("shop", args.exporter, args.endpoint)
    inventory_provider = provider("inventory", args.exporter, args.endpoint)
    shop = shop_provider.get_tracer("shop")
    inventory = inventory_provider.get_tracer("inventory")
    for _ in range(args.requests):
        orders(shop)
        dashboard(shop, inventory)
        search(shop)
        report(shop)
        item(shop)
    shop_provider.shutdown()
    inventory_provider.shutdown()


if __name__ == "__main__":
    main()
