"""A TCP proxy that adds delay to every new connection, as a far peer does: the connect
handshake's round trips (and TLS's, on a real link) are paid once per connection, so a client
that opens a connection per call pays them on every call, and one that keeps connections alive
pays them once. `tc netem` is not available on these machines; this stands in for it.

Usage: delay_proxy.py --listen PORT --target PORT --connect-delay-ms N
"""

import argparse
import asyncio


async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
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
    parser.add_argument("--connect-delay-ms", type=float, default=30.0)
    args = parser.parse_args()

    async def handle(client_reader, client_writer):
        await asyncio.sleep(args.connect_delay_ms / 1000)
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", args.target)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(pipe(client_reader, upstream_writer), pipe(upstream_reader, client_writer))

    server = await asyncio.start_server(handle, "127.0.0.1", args.listen)
    async with server:
        await server.serve_forever()


asyncio.run(main())
