"""Abuses an OTLP/HTTP receiver for SECONDS while other clients use it (scripts/soak-listen.sh):
malformed protobuf, truncated gzip, a gzip bomb, a declared oversized body, a body shorter than
its Content-Length, slow-drip headers (slowloris), and thousands of idle connections. Prints, per
kind, how many were sent, how each was answered (status, or the connection cut) and the slowest
answer. Standard library only.

Usage: abuse_receiver.py HOST PORT SECONDS [IDLE_CONNECTIONS]
"""

import collections
import gzip
import json
import socket
import sys
import threading
import time

HOST, PORT, SECONDS = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
IDLE = int(sys.argv[4]) if len(sys.argv) > 4 else 2000
END = time.monotonic() + SECONDS

SPAN = {"resourceSpans": [{"scopeSpans": [{"spans": [{
    "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174", "name": "GET /",
    "kind": 2, "startTimeUnixNano": "1", "endTimeUnixNano": "9"}]}]}]}
VALID_GZIP = gzip.compress(json.dumps(SPAN).encode())
BOMB = gzip.compress(b"\0" * (256 << 20), compresslevel=9)  # 256 MiB once decompressed

results = collections.defaultdict(collections.Counter)
slowest = collections.defaultdict(float)
lock = threading.Lock()


def note(kind, answer, seconds):
    with lock:
        results[kind][answer] += 1
        slowest[kind] = max(slowest[kind], seconds)


def exchange(kind, head, body=b"", drip=None, timeout=45.0):
    """Sends one request (the head, then the body, or the head a byte at a time every `drip`
    seconds); notes the status, or how the connection ended."""
    started = time.monotonic()
    try:
        with socket.create_connection((HOST, PORT), timeout=timeout) as s:
            if drip is None:
                s.sendall(head + body)
            else:
                for byte in head:
                    s.sendall(bytes([byte]))
                    time.sleep(drip)
            answer = s.recv(64)
            status = answer.split(b" ")[1].decode() if answer.startswith(b"HTTP/1.1 ") else "cut"
    except (ConnectionResetError, BrokenPipeError):
        status = "cut"
    except socket.timeout:
        status = "no answer"
    except OSError as e:
        status = f"error {e.errno}"
    note(kind, status, time.monotonic() - started)


def post(kind, body, content_type="application/x-protobuf", encoding=None, length=None):
    extra = f"Content-Encoding: {encoding}\r\n" if encoding else ""
    head = (f"POST /v1/traces HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: {content_type}\r\n{extra}"
            f"Content-Length: {len(body) if length is None else length}\r\nConnection: close\r\n\r\n").encode()
    exchange(kind, head, body)


KINDS = {
    "malformed protobuf": lambda: post("malformed protobuf", b"\x0a\xff\xff\xff\xff\x0fnot protobuf"),
    "truncated gzip": lambda: post("truncated gzip", VALID_GZIP[: len(VALID_GZIP) // 2], "application/json", "gzip"),
    "gzip bomb (256 MiB)": lambda: post("gzip bomb (256 MiB)", BOMB, "application/json", "gzip"),
    "declared 10 GiB body": lambda: post("declared 10 GiB body", b"x" * 1000, length=10 << 30),
    "body shorter than declared": lambda: post("body shorter than declared", b"{}", "application/json", length=1000),
}


def loop(kind):
    while time.monotonic() < END:
        KINDS[kind]()
        time.sleep(0.2)


def slowloris():
    head = f"POST /v1/traces HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n".encode() * 20
    while time.monotonic() < END:
        exchange("slow-drip headers (1 byte/s)", head, drip=1.0)


def idle():
    """Keeps up to IDLE connections open that send nothing; each one the receiver closes (or
    refused at its cap) is counted and opened again."""
    open_ = []
    while time.monotonic() < END:
        while len(open_) < IDLE and time.monotonic() < END:
            try:
                s = socket.create_connection((HOST, PORT), timeout=5)
                s.setblocking(False)
                open_.append((s, time.monotonic()))
            except OSError:
                note("idle connections", "connect failed", 0)
                time.sleep(0.05)
                break
        time.sleep(1)
        alive = []
        for s, since in open_:
            try:
                if s.recv(1) == b"":
                    note("idle connections", "closed by the receiver", time.monotonic() - since)
                    s.close()
                    continue
            except BlockingIOError:
                pass
            except OSError:
                note("idle connections", "reset by the receiver", time.monotonic() - since)
                s.close()
                continue
            alive.append((s, since))
        open_ = alive
    for s, _ in open_:
        note("idle connections", "still open at the end", 0)
        s.close()


threads = [threading.Thread(target=loop, args=(k,)) for k in KINDS]
threads += [threading.Thread(target=slowloris) for _ in range(20)]
threads.append(threading.Thread(target=idle))
for t in threads:
    t.start()
for t in threads:
    t.join()

print("| abuse | sent | answered | slowest |")
print("|---|--:|---|--:|")
for kind in [*KINDS, "slow-drip headers (1 byte/s)", "idle connections"]:
    counts = results[kind]
    answers = ", ".join(f"{status}: {n}" for status, n in counts.most_common())
    print(f"| {kind} | {sum(counts.values())} | {answers} | {slowest[kind]:.1f} s |")
