#!/usr/bin/env bash
# Builds chokepoint's wheel for x86-64 Linux — the binary inside, as ruff and py-spy ship theirs —
# into target/wheels, and prints its path. maturin, zig (the ziglang wheel) and auditwheel come
# from PyPI into ~/.cache/chokepoint/wheel-venv; the release build's target is
# ~/.cache/chokepoint/wheel-target, so a fresh clone rebuilds only the workspace's crates. zig
# links it against glibc 2.28, so the wheel is tagged manylinux_2_28 and runs on any Linux from
# 2019 on (Debian 10, Ubuntu 18.10, RHEL 8). The binary is stripped.
#
#   scripts/build-wheel.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) ;;
  *)
    echo "build-wheel: the wheel is built for x86-64 Linux, not $(uname -s) $(uname -m)." >&2
    echo "build-wheel: elsewhere, build from source: scripts/setup-build.sh && cargo install --path crates/chokepoint" >&2
    exit 1
    ;;
esac
scripts/setup-build.sh
cache=${CHOKEPOINT_CACHE:-$HOME/.cache/chokepoint}
venv=$cache/wheel-venv
wanted="maturin==1.16.0 ziglang==0.17.0 auditwheel==6.8.2"
if ! [ -x "$venv/bin/maturin" ] || [ "$(cat "$venv/.wanted" 2>/dev/null)" != "$wanted" ]; then
  echo "build-wheel: installing $wanted into $venv" >&2
  python3 -m venv "$venv"
  # shellcheck disable=SC2086
  "$venv/bin/pip" install --quiet --disable-pip-version-check $wanted
  printf '%s' "$wanted" > "$venv/.wanted"
fi
rm -f target/wheels/chokepoint_cli-*.whl
# bindgen (pg_query's bindings) runs libclang for the target maturin names; clang's own headers
# (stdbool.h) and the C library's are then not on its path unless said: the layouts it reads are
# the same for every glibc on x86-64.
clang_include=$(ls -d /usr/lib/llvm-*/lib/clang/*/include | sort -V | tail -n 1)
export BINDGEN_EXTRA_CLANG_ARGS="-I$clang_include -I/usr/include/x86_64-linux-gnu -I/usr/include"
# maturin finds zig through the ziglang package of its own environment.
PATH="$venv/bin:$PATH" CARGO_TARGET_DIR="$cache/wheel-target" "$venv/bin/maturin" build --release --locked --strip --zig \
  --compatibility manylinux_2_28 --out target/wheels >&2
ls target/wheels/chokepoint_cli-*.whl
