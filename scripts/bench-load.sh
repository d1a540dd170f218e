#!/usr/bin/env bash
# The load generator benchmark (issue #4): chokepoint against wrk (Debian's package) on the same
# loopback target — a minimal one-thread HTTP/1.1 server (`chokepoint-bench serve`) — with the
# generator pinned to core 0 and the target to core 1. Measures, best of 3:
#   - maximum requests per second at 64 connections for 10 s (chokepoint with full HDR recording);
#   - CPU time per request at that maximum, for both;
#   - CPU time per request at a fixed 5,000 requests/s, for both: wrk has no fixed-rate mode, so
#     the rate is the target's — a second target answers each request after 12.8 ms, which holds
#     64 closed-loop connections at 5,000/s whichever generator drives them; and chokepoint's own
#     open model at 5,000/s against that target.
# Prints a Markdown table for the README. Usage: scripts/bench-load.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
[ -x /usr/bin/time ] || { echo "needs GNU time: apt-get install time" >&2; exit 2; }
cargo build --release --quiet -p chokepoint -p chokepoint-bench
chokepoint=target/release/chokepoint
runs=3; connections=64; seconds=10; rate=5000

taskset -c 1 target/release/chokepoint-bench serve > target/bench-serve.port &
server=$!
taskset -c 1 target/release/chokepoint-bench serve $((connections * 1000000 / rate)) > target/bench-slow.port &
slow=$!
trap 'kill $server $slow 2>/dev/null' EXIT
for _ in $(seq 50); do [ -s target/bench-serve.port ] && [ -s target/bench-slow.port ] && break; sleep 0.1; done
url="http://127.0.0.1:$(cat target/bench-serve.port)/"
slow_url="http://127.0.0.1:$(cat target/bench-slow.port)/"

best() { sort -g | tail -1; }
least() { sort -g | head -1; }
cpu_s() { awk '{print $1 + $2}'; }

# wrk and chokepoint take turns, so drift in the machine affects both alike.
wrk_rps=(); wrk_cpu=(); cp_rps=(); cp_cpu=()
for _ in $(seq $runs); do
  out=$( { /usr/bin/time -f "TIME %U %S" taskset -c 0 wrk -t1 -c$connections -d${seconds}s "$url"; } 2>&1 )
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  total=$(echo "$out" | awk '/requests in/ {print $1}')
  cpu=$(echo "$out" | awk '/^TIME/ {print $2 + $3}')
  wrk_rps+=("$rps"); wrk_cpu+=("$(awk -v c="$cpu" -v n="$total" 'BEGIN {printf "%.3f", c / n * 1e6}')")
  out=$( { /usr/bin/time -f "TIME %U %S" taskset -c 0 $chokepoint load "$url" --concurrency $connections \
           --step-duration ${seconds}s --max-duration 60s --format json --quiet --pid $server; } 2>&1 >target/bench-load.json )
  cpu=$(echo "$out" | awk '/^TIME/ {print $2 + $3}')
  read -r rps total < <(python3 -c 'import json; s = json.load(open("target/bench-load.json"))["load"]["steps"][0]; print(s["throughput_rps"], s["requests"])')
  cp_rps+=("$rps"); cp_cpu+=("$(awk -v c="$cpu" -v n="$total" 'BEGIN {printf "%.3f", c / n * 1e6}')")
done
wrk_fixed=(); cp_fixed=(); open_fixed=(); rates=()
for _ in $(seq $runs); do
  out=$( { /usr/bin/time -f "TIME %U %S" taskset -c 0 wrk -t1 -c$connections -d${seconds}s "$slow_url"; } 2>&1 )
  total=$(echo "$out" | awk '/requests in/ {print $1}')
  cpu=$(echo "$out" | awk '/^TIME/ {print $2 + $3}')
  rates+=("$(echo "$out" | awk '/Requests\/sec/ {printf "%.0f", $2}')")
  wrk_fixed+=("$(awk -v c="$cpu" -v n="$total" 'BEGIN {printf "%.3f", c / n * 1e6}')")
  out=$( { /usr/bin/time -f "TIME %U %S" taskset -c 0 $chokepoint load "$slow_url" --concurrency $connections \
           --step-duration ${seconds}s --max-duration 60s --format json --quiet --pid $slow; } 2>&1 >target/bench-load.json )
  cpu=$(echo "$out" | awk '/^TIME/ {print $2 + $3}')
  read -r rps total < <(python3 -c 'import json; s = json.load(open("target/bench-load.json"))["load"]["steps"][0]; print(s["throughput_rps"], s["requests"])')
  rates+=("$(printf '%.0f' "$rps")")
  cp_fixed+=("$(awk -v c="$cpu" -v n="$total" 'BEGIN {printf "%.3f", c / n * 1e6}')")
  out=$( { /usr/bin/time -f "TIME %U %S" taskset -c 0 $chokepoint load "$slow_url" --model open --rate $rate --max-rate $rate \
           --connections $((connections * 2)) --step-duration ${seconds}s --format json --quiet --pid $slow; } 2>&1 >target/bench-load.json )
  cpu=$(echo "$out" | awk '/^TIME/ {print $2 + $3}')
  total=$(python3 -c 'import json; print(json.load(open("target/bench-load.json"))["load"]["steps"][0]["requests"])')
  open_fixed+=("$(awk -v c="$cpu" -v n="$total" 'BEGIN {printf "%.3f", c / n * 1e6}')")
done

w_rps=$(printf '%s\n' "${wrk_rps[@]}" | best); c_rps=$(printf '%s\n' "${cp_rps[@]}" | best)
w_cpu=$(printf '%s\n' "${wrk_cpu[@]}" | least); c_cpu=$(printf '%s\n' "${cp_cpu[@]}" | least)
w_fixed=$(printf '%s\n' "${wrk_fixed[@]}" | least); c_fixed=$(printf '%s\n' "${cp_fixed[@]}" | least)
o_fixed=$(printf '%s\n' "${open_fixed[@]}" | least)
held=$(printf '%s\n' "${rates[@]}" | awk '{sum += $1} END {printf "%.0f", sum / NR}')
echo "| generator | max requests/s ($connections connections) | CPU µs per request at max | CPU µs per request at ~$held/s |"
echo "|---|--:|--:|--:|"
printf '| wrk 4.1 (-t1) | %.0f | %s | %s |\n' "$w_rps" "$w_cpu" "$w_fixed"
printf '| chokepoint load | %.0f | %s | %s |\n' "$c_rps" "$c_cpu" "$c_fixed"
awk -v a="$c_rps" -v b="$w_rps" -v c="$c_cpu" -v d="$w_cpu" -v e="$c_fixed" -v f="$w_fixed" -v h="$held" \
  'BEGIN {printf "\nchokepoint / wrk: %.2f× the throughput, %.2f× the CPU per request at max, %.2f× at ~%s/s.\n", a / b, c / d, e / f, h}'
echo "The fixed rate is the 12.8 ms target's, with 64 connections; each run held: ${rates[*]} requests/s."
echo "chokepoint's open model at $rate/s against that target: $o_fixed µs per request."
echo "Best of $runs runs; generator on core 0, target on core 1; scripts/bench-load.sh."
