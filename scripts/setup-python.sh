#!/usr/bin/env bash
# Creates .venv with the official OpenTelemetry Python SDK (scripts/requirements.txt) and the
# testbed service's packages (testbed/requirements.txt). Idempotent: does nothing when the venv
# already matches both files.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv"
stamp="$venv/.requirements"
wanted=$(cat "$root/scripts/requirements.txt" "$root/testbed/requirements.txt")
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then
  exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check \
  -r "$root/scripts/requirements.txt" -r "$root/testbed/requirements.txt"
printf '%s' "$wanted" > "$stamp"
