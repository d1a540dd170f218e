#!/usr/bin/env bash
# Installs what the browser check of the HTML pages needs (testbed/browser/check.mjs): Debian's
# Chromium, and playwright-core and axe-core from npm into testbed/browser/node_modules (npm's
# cache keeps them between runs). No browser is downloaded: playwright drives /usr/bin/chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! [ -x /usr/bin/chromium ]; then
  echo "setup-browser: installing Debian's chromium" >&2
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi
if ! [ -f testbed/browser/node_modules/playwright-core/package.json ] \
  || ! [ -f testbed/browser/node_modules/axe-core/axe.min.js ]; then
  echo "setup-browser: installing playwright-core and axe-core from npm" >&2
  (cd testbed/browser && npm install --no-audit --no-fund --loglevel=error >/dev/null)
fi
