#!/usr/bin/env bash
# Installs what building chokepoint needs besides Rust: libclang and clang's headers, with which
# the pg_query crate generates its bindings to libpg_query (PostgreSQL's own parser, used by
# `chokepoint db` to read statements). Debian's packages; a no-op when they are there.
set -euo pipefail
if ldconfig -p 2>/dev/null | grep -q 'libclang\(-[0-9.]*\)\?\.so' && ls /usr/lib/llvm-*/lib/clang/*/include/stdbool.h >/dev/null 2>&1; then
  exit 0
fi
echo "setup-build: installing libclang (for pg_query's bindings)" >&2
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq libclang1-14 libclang-common-14-dev >/dev/null
