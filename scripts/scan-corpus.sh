#!/usr/bin/env bash
# Keeps the scan's reviewed findings on a real code base stable: Wagtail 6.3.1 (a large Django
# CMS, from PyPI) is scanned and its findings must be exactly those reviewed by hand in
# docs/scan-review/wagtail-6.3.1.tsv (each with its verdict); the precision is printed.
# Usage: scripts/scan-corpus.sh [CHOKEPOINT]   (default: target/debug/chokepoint)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/debug/chokepoint}
version=6.3.1
cache=${XDG_CACHE_HOME:-$HOME/.cache}/chokepoint/corpus
src=$cache/wagtail-$version
if [ ! -d "$src/wagtail" ]; then
  mkdir -p "$cache"
  python3 -m pip download --quiet --no-deps "wagtail==$version" -d "$cache"
  python3 -m zipfile -e "$cache/wagtail-$version-py3-none-any.whl" "$src"
fi
review=docs/scan-review/wagtail-$version.tsv
found=$(cd "$src" && "$OLDPWD/$bin" scan wagtail --format json | python3 -c '
import json, sys
for f in json.load(sys.stdin)["findings"]:
    s = f["subject"]
    print("%s:%s\t%s" % (s["file"], s["line"], f["detector"]))' | sort)
reviewed=$(grep -v '^#' "$review" | cut -f1,2 | sort)
if [ "$found" != "$reviewed" ]; then
  echo "scan-corpus: the findings on Wagtail $version changed; review them and update $review:"
  diff <(echo "$reviewed") <(echo "$found") || true
  exit 1
fi
total=$(grep -vc '^#' "$review")
true_positives=$(grep -v '^#' "$review" | cut -f3 | grep -c '^true$' || true)
echo "scan-corpus: Wagtail $version: $total findings, all reviewed; precision $true_positives/$total"
