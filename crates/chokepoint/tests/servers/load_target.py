"""Loopback HTTP servers with one known capacity limit each, for the load detectors' tests.

An asyncio server (one Python process, one event loop) whose handler is, by --mode:
  cpu       5 ms of pure-Python compute per request: the CPU (one core, the GIL) caps it
  pool      waits 50 ms for one of 4 slots (a small worker pool): the pool caps it, CPU idle
  blocking  time.sleep(20 ms) inside the coroutine: the event loop stalls, requests never overlap
  fine      awaits 20 ms without holding anything: scales with concurrency
  close     answers at once with `Connection: close`, and closes: a new connection per request
  dial      opens a new connection to a downstream listener of its own for every request, holds
            it 20 ms for the answer, and closes it: a client per call

Every mode counts requests per path; `GET /__counts` answers the counts as JSON, and
`GET /metrics` the Prometheus text format: process_cpu_seconds_total and the pool gauge.
Prints the port it listens on, then serves until killed.
Usage: load_target.py --mode MODE
"""

import argparse
import asyncio
import collections
import json
import time

BODY = b'{"ok": true}'


def compute(ms):
    end = time.perf_counter() + ms / 1000
    n = 0
    while time.perf_counter() < end:
        n += 1
    return n


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["cpu", "pool", "blocking", "fine", "close", "dial"], required=True)
    mode = parser.parse_args().mode
    slots = asyncio.Semaphore(4)
    counts = collections.Counter()

    async def downstream(reader, writer):
        await reader.read(1)
        await asyncio.sleep(0.02)
        writer.write(b"k")
        await writer.drain()
        writer.close()

    downstream_server = await asyncio.start_server(downstream, "127.0.0.1", 0)
    downstream_port = downstream_server.sockets[0].getsockname()[1]

    async def work():
        if mode == "dial":
            reader, writer = await asyncio.open_connection("127.0.0.1", downstream_port)
            writer.write(b"?")
            await writer.drain()
            await reader.read(1)
            writer.close()
        elif mode == "cpu":
            compute(5)
        elif mode == "pool":
            async with slots:
                await asyncio.sleep(0.05)
        elif mode == "blocking":
            time.sleep(0.02)
        else:
            await asyncio.sleep(0.02)

    async def handle(reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ", 2)[1].decode()
                if path == "/__counts":
                    answer = json.dumps(counts).encode()
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(answer), answer))
                    await writer.drain()
                    continue
                if path == "/metrics":
                    in_use = 4 - slots._value
                    answer = (
                        "# TYPE process_cpu_seconds_total counter\n"
                        f"process_cpu_seconds_total {time.process_time()}\n"
                        "# TYPE app_pool_in_use gauge\n"
                        f"app_pool_in_use {in_use}\n"
                    ).encode()
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(answer), answer))
                    await writer.drain()
                    continue
                counts[path] += 1
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                if length:
                    await reader.readexactly(length)
                if mode == "close":
                    writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY))
                    await writer.drain()
                    break
                await work()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


asyncio.run(main())
