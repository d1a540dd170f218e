"""A TCP proxy that adds delay as a far peer does. `--connect-delay-ms`: the connect handshake's
round trips (and TLS's, on a real link) are paid once per connection, so a client that opens a
connection per call pays them on every call, and one that keeps connections alive pays them
once. `--round-trip-delay-ms`: every message the client sends arrives that much later, so each
request-response exchange (a SQL statement, say) pays it: a database in another zone.
`tc netem` is not available on these machines; this stands in for it.

Usage: delay_proxy.py --listen PORT --target PORT [--connect-delay-ms N] [--round-trip-delay-ms N]
"""

import argparse
import asyncio


async def pipe(reader, writer, delay_s=0.0):
    try:
        while data := await reader.read(65536):
            if delay_s:
                await asyncio.sleep(delay_s)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", type=int, required=True)
    parser.add_argument("--target", type=int, required=True)
    parser.add_argument("--connect-delay-ms", type=float, default=0.0)
    parser.add_argument("--round-trip-delay-ms", type=float, default=0.0)
    args = parser.parse_args()

    async def handle(client_reader, client_writer):
        await asyncio.sleep(args.connect_delay_ms / 1000)
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", args.target)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(
            pipe(client_reader, upstream_writer, args.round_trip_delay_ms / 1000),
            pipe(upstream_reader, client_writer),
        )

    server = await asyncio.start_server(handle, "127.0.0.1", args.listen)
    async with server:
        await server.serve_forever()


asyncio.run(main())
