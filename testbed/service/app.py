"""The shop: a FastAPI service on PostgreSQL (SQLAlchemy 2 over psycopg 3) that calls a downstream
service (httpx, requests), with one switchable bottleneck per taxonomy id.

Every scenario has two routes: `/<id>/bad` carries the problem, `/<id>/fixed` is the same feature
written the right way. testbed/README.md lists them with the detector each must trigger.
"""

import asyncio
import datetime
import gzip
import json
import logging
import os
import re
import tempfile
import time

import httpx
import requests
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from sqlalchemy import ForeignKey, create_engine, select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, selectinload
from sqlalchemy.pool import NullPool

import otel

DATABASE_URL = os.environ["DATABASE_URL"]
DOWNSTREAM_URL = os.environ["DOWNSTREAM_URL"]
DOWNSTREAM_FAR_URL = os.environ["DOWNSTREAM_FAR_URL"]
DATABASE_FAR_URL = os.environ["DATABASE_FAR_URL"]

provider = otel.setup("shop")
pooled = create_engine(DATABASE_URL, pool_size=20, max_overflow=10)
unpooled = create_engine(DATABASE_URL, poolclass=NullPool)
tiny_pool = create_engine(DATABASE_URL, pool_size=2, max_overflow=0, pool_timeout=30)
# The same database in another zone (delay_proxy.py: 5 ms per round trip), two connections.
far_pool = create_engine(DATABASE_FAR_URL, pool_size=2, max_overflow=0, pool_timeout=30)
otel.instrument_engines([pooled, unpooled, tiny_pool, far_pool])

app = FastAPI()
otel.instrument_app(app)
downstream = httpx.AsyncClient(base_url=DOWNSTREAM_URL)
downstream_far = httpx.AsyncClient(base_url=DOWNSTREAM_FAR_URL)


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str]
    handle: Mapped[str]
    name: Mapped[str]


class Order(Base):
    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    total: Mapped[float]
    items: Mapped[list["Item"]] = relationship(lazy="select")


class Item(Base):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"))
    sku: Mapped[str]
    qty: Mapped[int]


class Message(Base):
    __tablename__ = "messages"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int]
    room_id: Mapped[int]
    body: Mapped[str]
    created_at: Mapped[datetime.datetime]


class Event(Base):
    __tablename__ = "events"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str]
    score: Mapped[int]
    payload: Mapped[str]


def event_json(e):
    return {"id": e.id, "kind": e.kind, "score": e.score, "payload": e.payload}


@app.get("/health")
def health():
    return {"ok": True}


@app.get("/__flush")
def flush():
    """Exports every finished span now, so a test can stop its receiver without losing any."""
    return {"flushed": provider.force_flush(5000)}


# n-plus-one: an ORM list endpoint that loads each order's items lazily.
ORDERS_LISTED = 200


@app.get("/n-plus-one/bad")
def orders_lazy():
    with Session(pooled) as session:
        orders = session.scalars(select(Order).order_by(Order.id).limit(ORDERS_LISTED)).all()
        return [{"id": o.id, "items": len(o.items)} for o in orders]


@app.get("/n-plus-one/fixed")
def orders_eager():
    with Session(pooled) as session:
        query = select(Order).options(selectinload(Order.items)).order_by(Order.id).limit(ORDERS_LISTED)
        return [{"id": o.id, "items": len(o.items)} for o in session.scalars(query).all()]


# n-plus-one that exhausts the pool: each lazy load holds one of two connections to a far database
# for a round trip, so the pool, not the CPU, caps throughput — and batching raises the cap.
FAR_ORDERS_LISTED = 10


@app.get("/n-plus-one-pool/bad")
def far_orders_lazy():
    with Session(far_pool) as session:
        orders = session.scalars(select(Order).order_by(Order.id).limit(FAR_ORDERS_LISTED)).all()
        return [{"id": o.id, "items": len(o.items)} for o in orders]


@app.get("/n-plus-one-pool/fixed")
def far_orders_eager():
    with Session(far_pool) as session:
        query = select(Order).options(selectinload(Order.items)).order_by(Order.id).limit(FAR_ORDERS_LISTED)
        return [{"id": o.id, "items": len(o.items)} for o in session.scalars(query).all()]


# n-plus-one over HTTP: one downstream call per item.
ITEM_IDS = list(range(1, 9))


@app.get("/n-plus-one-http/bad")
async def items_one_by_one():
    return [(await downstream.get(f"/items/{i}")).json() for i in ITEM_IDS]


@app.get("/n-plus-one-http/fixed")
async def items_batched():
    return (await downstream.get("/items", params={"ids": ",".join(map(str, ITEM_IDS))})).json()


# sequential-calls: three independent downstream calls awaited one after another.
@app.get("/sequential-calls/bad")
async def dashboard_sequential():
    profile = (await downstream.get("/profile/7")).json()
    recommendations = (await downstream.get("/recommendations/7")).json()
    stock = (await downstream.get("/stock/7")).json()
    return {"profile": profile, "recommendations": recommendations, "stock": stock}


@app.get("/sequential-calls/fixed")
async def dashboard_concurrent():
    profile, recommendations, stock = await asyncio.gather(
        downstream.get("/profile/7"), downstream.get("/recommendations/7"), downstream.get("/stock/7")
    )
    return {"profile": profile.json(), "recommendations": recommendations.json(), "stock": stock.json()}


# slow-query / missing-index: a lookup on a million-row table by an unindexed column.
@app.get("/slow-query/bad")
@app.get("/missing-index/bad")
def user_by_email(n: int = 777_777):
    with Session(pooled) as session:
        user = session.scalars(select(User).where(User.email == f"user{n}@example.com")).first()
        return {"id": user.id if user else None}


@app.get("/slow-query/fixed")
@app.get("/missing-index/fixed")
def user_by_handle(n: int = 777_777):
    with Session(pooled) as session:
        user = session.scalars(select(User).where(User.handle == f"user{n}")).first()
        return {"id": user.id if user else None}


# missing-index, "the latest N of X": the latest 20 messages of a user, with no index for it —
# the index that serves it is the one in the sort's order, (user_id, created_at); the twin asks
# the same of a room, which has that index.
@app.get("/missing-index-latest/bad")
def latest_messages_of_user(user: int = 77):
    with Session(pooled) as session:
        rows = session.scalars(
            select(Message).where(Message.user_id == user).order_by(Message.created_at.desc()).limit(20)
        ).all()
        return [{"id": m.id, "body": m.body} for m in rows]


@app.get("/missing-index-latest/fixed")
def latest_messages_of_room(room: int = 77):
    with Session(pooled) as session:
        rows = session.scalars(
            select(Message).where(Message.room_id == room).order_by(Message.created_at.desc()).limit(20)
        ).all()
        return [{"id": m.id, "body": m.body} for m in rows]


# unbounded-result: the whole events table fetched to answer with a count.
@app.get("/unbounded-result/bad")
def events_all():
    with Session(pooled) as session:
        events = session.scalars(select(Event)).all()
        return {"count": len(events), "first": events[0].id if events else None}


@app.get("/unbounded-result/fixed")
def events_page(after: int = 0):
    with Session(pooled) as session:
        events = session.scalars(select(Event).where(Event.id > after).order_by(Event.id).limit(100)).all()
        return {"count": len(events), "next": events[-1].id if events else None}


# large-payload (and bandwidth-limit): megabytes of JSON, uncompressed.
@app.get("/large-payload/bad")
@app.get("/bandwidth-limit/bad")
def events_export():
    with Session(pooled) as session:
        events = session.scalars(select(Event).order_by(Event.id).limit(20_000)).all()
        return JSONResponse([event_json(e) for e in events])


@app.get("/large-payload/fixed")
@app.get("/bandwidth-limit/fixed")
def events_export_paged(after: int = 0):
    with Session(pooled) as session:
        events = session.scalars(select(Event).where(Event.id > after).order_by(Event.id).limit(100)).all()
        body = gzip.compress(json.dumps([event_json(e) for e in events]).encode())
        return Response(body, media_type="application/json", headers={"Content-Encoding": "gzip"})


# connection-churn: a new PostgreSQL connection per request (NullPool).
@app.get("/connection-churn/bad")
def item_unpooled(item_id: int = 42):
    with Session(unpooled) as session:
        item = session.get(Item, item_id)
        return {"id": item.id, "sku": item.sku}


@app.get("/connection-churn/fixed")
def item_pooled(item_id: int = 42):
    with Session(pooled) as session:
        item = session.get(Item, item_id)
        return {"id": item.id, "sku": item.sku}


# connection-churn over HTTP: a new client, so a new TCP connection, per downstream call.
@app.get("/connection-churn-http/bad")
async def stock_new_client_per_call():
    results = []
    for path in ("/stock/1", "/stock/2", "/stock/3"):
        async with httpx.AsyncClient(base_url=DOWNSTREAM_URL) as client:
            results.append((await client.get(path)).json())
    return results


@app.get("/connection-churn-http/fixed")
async def stock_shared_client():
    return [(await downstream.get(path)).json() for path in ("/stock/1", "/stock/2", "/stock/3")]


# network-latency: a far downstream reached with a new connection per call.
@app.get("/network-latency/bad")
async def far_new_connection():
    async with httpx.AsyncClient(base_url=DOWNSTREAM_FAR_URL) as client:
        return (await client.get("/work")).json()


@app.get("/network-latency/fixed")
async def far_kept_alive():
    return (await downstream_far.get("/work")).json()


# cpu-saturation: pure-Python compute per request.
@app.get("/cpu-saturation/bad")
def compute_loop(n: int = 300_000):
    return {"sum_of_squares": sum(i * i for i in range(n))}


@app.get("/cpu-saturation/fixed")
def compute_closed_form(n: int = 300_000):
    return {"sum_of_squares": (n - 1) * n * (2 * n - 1) // 6}


# worker-exhaustion: sync endpoints holding a worker and one of two pooled connections.
@app.get("/worker-exhaustion/bad")
def slow_call_on_tiny_pool():
    with Session(tiny_pool) as session:
        session.execute(text("SELECT pg_sleep(0.05)"))
    return {"ok": True}


@app.get("/worker-exhaustion/fixed")
async def slow_call_without_holding():
    await asyncio.sleep(0.05)
    return {"ok": True}


# blocking-call: blocking I/O inside `async def` stalls the event loop.
DATA_FILE = os.path.join(tempfile.gettempdir(), "chokepoint-testbed-data.bin")
with open(DATA_FILE, "wb") as f:
    f.write(os.urandom(1 << 20))


@app.get("/blocking-call/bad")
async def blocking_io():
    time.sleep(0.02)
    requests.get(f"{DOWNSTREAM_URL}/work", timeout=5)
    with open(DATA_FILE, "rb") as f:
        size = len(f.read())
    return {"read": size}


@app.get("/blocking-call/fixed")
async def non_blocking_io():
    await asyncio.sleep(0.02)
    await downstream.get("/work")
    size = len(await asyncio.to_thread(lambda: open(DATA_FILE, "rb").read()))
    return {"read": size}


# slow-serialization: a large nested document serialized with pretty-printing and a fallback.
DOCUMENT = [{"id": i, "tags": [f"t{j}" for j in range(20)], "attrs": {f"k{j}": j for j in range(20)}} for i in range(2000)]
DOCUMENT_BYTES = json.dumps(DOCUMENT, separators=(",", ":")).encode()


@app.get("/slow-serialization/bad")
def serialize_each_time():
    return Response(json.dumps(DOCUMENT, indent=2, sort_keys=True, default=str), media_type="application/json")


@app.get("/slow-serialization/fixed")
def serialize_once():
    return Response(DOCUMENT_BYTES, media_type="application/json")


# sync-logging: a handler that flushes and fsyncs every record, many records per request.
class FsyncHandler(logging.FileHandler):
    def emit(self, record):
        super().emit(record)
        self.flush()
        os.fsync(self.stream.fileno())


sync_logger = logging.getLogger("testbed.sync")
sync_logger.addHandler(FsyncHandler(os.path.join(tempfile.gettempdir(), "chokepoint-testbed-sync.log")))
sync_logger.setLevel(logging.INFO)
sync_logger.propagate = False
buffered_logger = logging.getLogger("testbed.buffered")
buffered_logger.addHandler(logging.FileHandler(os.path.join(tempfile.gettempdir(), "chokepoint-testbed-buffered.log")))
buffered_logger.setLevel(logging.WARNING)
buffered_logger.propagate = False


@app.get("/sync-logging/bad")
def log_every_step():
    for step in range(200):
        sync_logger.info("step %d of the request", step)
    return {"ok": True}


@app.get("/sync-logging/fixed")
def log_what_matters():
    for step in range(200):
        buffered_logger.info("step %d of the request", step)
    return {"ok": True}


# regex-per-request: patterns built and compiled per request, more than re's cache holds.
@app.get("/regex-per-request/bad")
def validate_compiling(n: int = 0):
    matched = sum(bool(re.compile(rf"^user{n + i}-[a-z]+\d+$").match(f"user{n + i}-abc1")) for i in range(600))
    return {"matched": matched}


SKU_PATTERN = re.compile(r"^user(\d+)-[a-z]+\d+$")


@app.get("/regex-per-request/fixed")
def validate_precompiled(n: int = 0):
    matched = sum(bool(SKU_PATTERN.match(f"user{n + i}-abc1")) for i in range(600))
    return {"matched": matched}


# in-memory-sort: everything fetched and sorted in Python for a top 20.
@app.get("/in-memory-sort/bad")
def top_events_sorted_in_python():
    with Session(pooled) as session:
        events = session.scalars(select(Event)).all()
        top = sorted(events, key=lambda e: e.score, reverse=True)[:20]
        return [e.id for e in top]


@app.get("/in-memory-sort/fixed")
def top_events_sorted_by_index():
    with Session(pooled) as session:
        return list(session.scalars(select(Event.id).order_by(Event.score.desc()).limit(20)))


# lock-contention: SELECT … FOR UPDATE on a hot row, held across slow work in the transaction.
@app.get("/lock-contention/bad")
def transfer_holding_lock(amount: int = 1):
    with Session(pooled) as session, session.begin():
        session.execute(text("SELECT balance FROM accounts WHERE id = 1 FOR UPDATE"))
        session.execute(text("SELECT pg_sleep(0.05)"))
        session.execute(update_balance(amount))
    return {"ok": True}


@app.get("/lock-contention/fixed")
def transfer_atomic(amount: int = 1):
    with Session(pooled) as session, session.begin():
        session.execute(update_balance(amount))
    return {"ok": True}


def update_balance(amount):
    return text("UPDATE accounts SET balance = balance - :amount WHERE id = 1 AND balance >= :amount").bindparams(
        amount=amount
    )


@app.get("/lock-contention/ddl")
def migration_holding_access_exclusive():
    with Session(pooled) as session, session.begin():
        session.execute(text("ALTER TABLE accounts ADD COLUMN IF NOT EXISTS note text"))
        session.execute(text("SELECT pg_sleep(0.5)"))
        session.rollback()
    return {"ok": True}

