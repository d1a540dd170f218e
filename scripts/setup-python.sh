#!/usr/bin/env bash
# Creates .venv with the official OpenTelemetry Python SDK pinned in scripts/requirements.txt.
# Idempotent: does nothing when the venv already matches the requirements.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv"
stamp="$venv/.requirements"
if [ -x "$venv/bin/python" ] && cmp -s "$root/scripts/requirements.txt" "$stamp"; then
  exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$root/scripts/requirements.txt"
cp "$root/scripts/requirements.txt" "$stamp"
