#!/usr/bin/env bash
# Records the profile fixtures of this folder with the real tools: py-spy (raw and speedscope),
# pyinstrument (speedscope) and cProfile (pstats), over workload.py. Needs a venv with py-spy and
# pyinstrument: python3 -m venv /tmp/v && /tmp/v/bin/pip install py-spy pyinstrument
set -euo pipefail
cd "$(dirname "$0")"
bin=${VENV:-/tmp/pyspy-venv}/bin
export WORKLOAD_SECONDS=3
"$bin/py-spy" record --format raw --idle --threads --rate 100 --duration 3 -o workload.raw -- "$bin/python" workload.py
"$bin/py-spy" record --format speedscope --idle --threads --rate 100 --duration 3 -o workload.speedscope.json -- "$bin/python" workload.py
"$bin/pyinstrument" -r speedscope -o workload.pyinstrument.json workload.py
"$bin/python" -m cProfile -o workload.prof workload.py
gzip -kf workload.raw
