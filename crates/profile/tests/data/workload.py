"""A small workload with one hot spot per category, for recording profile fixtures
(see record.sh): serialization, logging with fsync, regex compilation, sorting."""

import json
import logging
import os
import re
import tempfile
import time

DOCUMENT = [{"id": i, "tags": [f"t{j}" for j in range(10)]} for i in range(500)]
log = logging.getLogger("workload")
log.addHandler(logging.FileHandler(os.path.join(tempfile.gettempdir(), "chokepoint-workload.log")))
log.setLevel(logging.INFO)
log.propagate = False


def serialize():
    return json.dumps(DOCUMENT, indent=2, sort_keys=True)


def log_lines():
    for i in range(50):
        log.info("step %d", i)
        os.fsync(log.handlers[0].stream.fileno())


def compile_patterns(n):
    return sum(bool(re.compile(rf"^user{n + i}-[a-z]+\d+$").match(f"user{n + i}-abc1")) for i in range(100))


def sort_rows():
    rows = [(i * 7919) % 10007 for i in range(20000)]
    return sorted(rows, key=lambda r: -r)[:20]


def main(seconds):
    end = time.time() + seconds
    n = 0
    while time.time() < end:
        serialize()
        log_lines()
        compile_patterns(n)
        sort_rows()
        n += 100


if __name__ == "__main__":
    main(float(os.environ.get("WORKLOAD_SECONDS", "3")))
