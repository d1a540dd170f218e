"""A synchronous Flask service, written the way many are outside this project: waitress with 8
threads, psycopg2 behind a fixed pool of 8 connections, the official OpenTelemetry Flask and
psycopg2 instrumentation. Two scenarios, each with its fixed twin (testbed/README.md):

- `/orders/bad`: a list endpoint that runs one statement per order (40 per request) — an N+1 that
  burns the service's own CPU (each statement costs the driver and its span); `/orders/fixed`
  runs one JOIN.
- `/transfer/bad`: each request locks one hot row (`SELECT … FOR UPDATE`), calls a 4 ms check
  while holding it, then updates and commits; `/transfer/fixed` runs the check first and one
  conditional `UPDATE … RETURNING`.

Run: `python app.py PORT` (spans over OTLP/HTTP to OTEL_EXPORTER_OTLP_ENDPOINT).
"""

import os
import random
import sys
import time
from decimal import Decimal

from flask import Flask, jsonify
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.instrumentation.psycopg2 import Psycopg2Instrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from psycopg2.pool import ThreadedConnectionPool
from waitress import serve

provider = TracerProvider(resource=Resource.create({"service.name": "flask-shop"}))
provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
trace.set_tracer_provider(provider)
# Before the pool connects: the instrumentation wraps psycopg2.connect.
Psycopg2Instrumentor().instrument()

DSN = os.environ["DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")
pool = ThreadedConnectionPool(8, 8, DSN)
app = Flask(__name__)
FlaskInstrumentor().instrument_app(app, excluded_urls="health,__flush")

ORDERS_PER_PAGE = 40
# The hot row: one account every transfer debits (the FastAPI shop's scenario uses account 1).
HOT_ACCOUNT = 2


class Connection:
    """A pooled connection for one request."""

    def __enter__(self):
        self.conn = pool.getconn()
        return self.conn

    def __exit__(self, *exc):
        if exc[0] is not None:
            self.conn.rollback()
        pool.putconn(self.conn)


def first_order():
    return random.randrange(1, 20_000 - ORDERS_PER_PAGE)


@app.get("/health")
def health():
    return "ok"


@app.get("/__flush")
def flush():
    provider.force_flush()
    return "flushed"


@app.get("/orders/bad")
def orders_bad():
    start = first_order()
    with Connection() as conn:
        cur = conn.cursor()
        cur.execute("SELECT id, total FROM orders WHERE id BETWEEN %s AND %s ORDER BY id", (start, start + ORDERS_PER_PAGE - 1))
        orders = []
        for order_id, total in cur.fetchall():
            cur.execute("SELECT sku, qty FROM items WHERE order_id = %s", (order_id,))
            items = [{"sku": sku, "qty": qty} for sku, qty in cur.fetchall()]
            orders.append({"id": order_id, "total": float(total), "items": items})
        conn.commit()
    return jsonify(orders)


@app.get("/orders/fixed")
def orders_fixed():
    start = first_order()
    with Connection() as conn:
        cur = conn.cursor()
        cur.execute(
            "SELECT o.id, o.total, i.sku, i.qty FROM orders o JOIN items i ON i.order_id = o.id "
            "WHERE o.id BETWEEN %s AND %s ORDER BY o.id, i.id",
            (start, start + ORDERS_PER_PAGE - 1),
        )
        orders = {}
        for order_id, total, sku, qty in cur.fetchall():
            order = orders.setdefault(order_id, {"id": order_id, "total": float(total), "items": []})
            order["items"].append({"sku": sku, "qty": qty})
        conn.commit()
    return jsonify(list(orders.values()))


def fraud_check(amount):
    """Stands for a call to a remote risk service: 4 ms of waiting."""
    time.sleep(0.004)
    return amount < 1000


@app.get("/transfer/bad")
def transfer_bad():
    amount = Decimal("1.00")
    with Connection() as conn:
        cur = conn.cursor()
        cur.execute("SELECT balance FROM accounts WHERE id = %s FOR UPDATE", (HOT_ACCOUNT,))
        (balance,) = cur.fetchone()
        if balance < amount or not fraud_check(amount):
            conn.rollback()
            return jsonify({"ok": False}), 409
        cur.execute("UPDATE accounts SET balance = balance - %s WHERE id = %s", (amount, HOT_ACCOUNT))
        conn.commit()
    return jsonify({"ok": True, "balance": float(balance - amount)})


@app.get("/transfer/fixed")
def transfer_fixed():
    amount = Decimal("1.00")
    if not fraud_check(amount):
        return jsonify({"ok": False}), 409
    with Connection() as conn:
        cur = conn.cursor()
        cur.execute(
            "UPDATE accounts SET balance = balance - %s WHERE id = %s AND balance >= %s RETURNING balance",
            (amount, HOT_ACCOUNT, amount),
        )
        row = cur.fetchone()
        conn.commit()
    if row is None:
        return jsonify({"ok": False}), 409
    return jsonify({"ok": True, "balance": float(row[0])})


if __name__ == "__main__":
    serve(app, host="127.0.0.1", port=int(sys.argv[1]), threads=8, _quiet=True)
