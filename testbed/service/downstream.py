"""The downstream service the shop calls: items, profiles, stock, and a unit of work."""

import asyncio

from fastapi import FastAPI

import otel

provider = otel.setup("inventory")
app = FastAPI()
otel.instrument_app(app)


@app.get("/health")
async def health():
    return {"ok": True}


@app.get("/__flush")
async def flush():
    return {"flushed": provider.force_flush(5000)}


@app.get("/items/{item_id}")
async def item(item_id: int):
    await asyncio.sleep(0.008)
    return {"id": item_id, "sku": f"SKU-{item_id}", "stock": item_id % 17}


@app.get("/items")
async def items(ids: str):
    await asyncio.sleep(0.010)
    return [{"id": int(i), "sku": f"SKU-{i}", "stock": int(i) % 17} for i in ids.split(",")]


@app.get("/profile/{user_id}")
async def profile(user_id: int):
    await asyncio.sleep(0.06)
    return {"id": user_id, "name": f"User {user_id}"}


@app.get("/recommendations/{user_id}")
async def recommendations(user_id: int):
    await asyncio.sleep(0.06)
    return {"user": user_id, "items": [1, 2, 3]}


@app.get("/stock/{user_id}")
async def stock(user_id: int):
    await asyncio.sleep(0.06)
    return {"user": user_id, "available": True}


@app.get("/work")
async def work():
    await asyncio.sleep(0.005)
    return {"done": True}
