"""Tracing for the testbed services with the official OpenTelemetry packages.

Spans go over OTLP/HTTP to OTEL_EXPORTER_OTLP_ENDPOINT (where the tests run `chokepoint listen`).
One addition to what the instrumentations record: `db.response.returned_rows` on SELECT spans,
the current semantic convention for result size, which the SQLAlchemy instrumentation does not
set yet.
"""

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.requests import RequestsInstrumentor
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from sqlalchemy import event

EXCLUDED_URLS = "health,__flush"


def setup(service_name):
    """Installs a tracer provider exporting OTLP/HTTP; returns it (for flushing)."""
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    HTTPXClientInstrumentor().instrument()
    RequestsInstrumentor().instrument()
    return provider


def instrument_app(app):
    FastAPIInstrumentor.instrument_app(app, excluded_urls=EXCLUDED_URLS)


def instrument_engines(engines):
    for engine in engines:
        # Registered first so it runs before the instrumentation's own listener ends the span.
        event.listen(engine, "after_cursor_execute", _record_returned_rows)
    SQLAlchemyInstrumentor().instrument(engines=engines)


def _record_returned_rows(conn, cursor, statement, params, context, executemany):
    span = getattr(context, "_otel_span", None)
    if span is not None and cursor.description is not None and cursor.rowcount >= 0:
        span.set_attribute("db.response.returned_rows", cursor.rowcount)
