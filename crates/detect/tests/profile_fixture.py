#!/usr/bin/env python3
"""Turns a py-spy raw recording into a detector fixture: its stacks (those of at least MIN
samples), paths moved under /srv/shop as a deployed service's would be, and the source lines of
the application's frames read from the checkout.

Usage: profile_fixture.py RECORDING.raw "description" > fixture.json

The profile fixtures (fixtures/*/*py-spy*.json) were made so from recordings of the testbed's routes under
load (`chokepoint profile --pid PID --duration 5s --out X.raw` beside `chokepoint load URL
--concurrency 4`)."""

import json
import re
import sys
from pathlib import Path

MIN = 2
ROOT = Path(__file__).resolve().parents[3]
MOVES = [
    (re.compile(r"/[^;()]*?/\.venv/lib/python3\.\d+/site-packages/"), "/srv/shop/.venv/lib/python3.11/site-packages/"),
    (re.compile(r"/[^;()]*?/lib/python3\.\d+/"), "/usr/lib/python3.11/"),
    (re.compile(r"/[^;()]*?/testbed/service/"), "/srv/shop/"),
]


def main(path, description):
    stacks = []
    sources = {}
    app_lines = (ROOT / "testbed/service/app.py").read_text().splitlines()
    for line in Path(path).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if int(count) < MIN:
            continue
        for pattern, replacement in MOVES:
            stack = pattern.sub(replacement, stack)
        frames = stack.split(";")
        thread = frames[0].split(":")[1].strip() if frames[0].startswith("thread (") and ":" in frames[0] else "worker"
        frames = [f for f in frames if not f.startswith("thread (")]
        for frame in frames:
            m = re.search(r"\((/srv/shop/app\.py):(\d+)\)$", frame)
            if m:
                sources[f"{m[1]}:{m[2]}"] = app_lines[int(m[2]) - 1].strip()
        stacks.append({"thread": thread, "stack": ";".join(frames), "count": int(count)})
    fixture = {"description": description, "profile": {"rate_hz": 100, "duration_s": 5, "stacks": stacks, "sources": sources}}
    json.dump(fixture, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
