"""End-to-end diagnosis tests on the running testbed (testbed/testbed.sh up).

For every scenario: exercise `/<id>/bad`, collect the evidence chokepoint can read today, run
chokepoint, and check that the expected id is the bottleneck (the first finding) of that
endpoint; then exercise `/<id>/fixed` and check that the id does not appear. A scenario whose
detector does not exist yet is reported as pending, by name, after a smoke check that both its
routes answer.

Usage: e2e.py [--chokepoint PATH] [--only ID ...]
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATE = Path(os.environ.get("CHOKEPOINT_TESTBED", "/tmp/chokepoint-testbed"))
REQUESTS = 8

# (scenario, expected detector id, how chokepoint sees it today, or why it is pending)
TRACE_SCENARIOS = [
    ("n-plus-one", "n-plus-one"),
    ("n-plus-one-http", "n-plus-one"),
    ("sequential-calls", "sequential-calls"),
    ("slow-query", "slow-query"),
    ("unbounded-result", "unbounded-result"),
    ("large-payload", "large-payload"),
    ("connection-churn", "connection-churn"),
    ("network-latency", "network-latency"),
]
PENDING = [
    ("cpu-saturation", "needs `chokepoint load` (issue #4)"),
    ("worker-exhaustion", "needs `chokepoint load` (issue #4)"),
    ("blocking-call", "needs `chokepoint load` (issue #4)"),
    ("bandwidth-limit", "needs `chokepoint load` (issue #4) and the shaped network namespace"),
    ("missing-index", "needs `chokepoint db` (issue #5)"),
    ("lock-contention", "needs `chokepoint db` (issue #5)"),
    ("slow-serialization", "needs `chokepoint profile`"),
    ("sync-logging", "needs `chokepoint profile`"),
    ("regex-per-request", "needs `chokepoint profile`"),
    ("in-memory-sort", "needs `chokepoint profile`"),
]


def load_env():
    env = {}
    for line in (STATE / "env").read_text().splitlines():
        key, _, value = line.partition("=")
        env[key] = value
    return env


def get(url, timeout=60):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        response.read()
        return response.status


def analyse(chokepoint, env, route):
    """Runs `chokepoint listen` while `route` is exercised; returns its JSON report."""
    listen = subprocess.Popen(
        [chokepoint, "listen", "--http", f"127.0.0.1:{env['OTLP_PORT']}", "--grpc", "off", "--format", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    banner = listen.stderr.readline()
    if "listening" not in banner:
        listen.kill()
        raise RuntimeError(f"chokepoint listen did not start: {banner}{listen.stderr.read()}")
    try:
        for _ in range(REQUESTS):
            get(env["APP_URL"] + route)
        get(env["APP_URL"] + "/__flush")
        get(env["DOWNSTREAM_URL"] + "/__flush")
    finally:
        listen.send_signal(signal.SIGINT)
    out, err = listen.communicate(timeout=60)
    if listen.returncode not in (0, 1):
        raise RuntimeError(f"chokepoint listen exited {listen.returncode}: {err}")
    return json.loads(out)


def findings_for(report, endpoint):
    return [f for f in report["findings"] if f["endpoint"] == endpoint]


def check(chokepoint, env, scenario, expected):
    """Returns a list of failure messages (empty when the scenario passes)."""
    failures = []
    bad_endpoint = f"GET /{scenario}/bad"
    report = analyse(chokepoint, env, f"/{scenario}/bad")
    bad = findings_for(report, bad_endpoint)
    if not bad:
        failures.append(f"{bad_endpoint}: no finding (summary {report['summary']})")
    elif bad[0]["detector"] != expected:
        failures.append(f"{bad_endpoint}: bottleneck is {bad[0]['detector']} ({bad[0]['title']}), expected {expected}")
    else:
        print(f"    bad:   {bad[0]['title']}")
    fixed_endpoint = f"GET /{scenario}/fixed"
    report = analyse(chokepoint, env, f"/{scenario}/fixed")
    fixed = [f for f in findings_for(report, fixed_endpoint) if f["detector"] == expected]
    if fixed:
        failures.append(f"{fixed_endpoint}: the fixed twin still shows {expected}: {fixed[0]['title']}")
    elif report["summary"]["requests"] < REQUESTS:
        failures.append(f"{fixed_endpoint}: only {report['summary']['requests']} requests were traced")
    else:
        others = ", ".join(f["detector"] for f in findings_for(report, fixed_endpoint)) or "none"
        print(f"    fixed: no {expected} (other findings: {others})")
    return failures


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chokepoint", default=str(ROOT / "target" / "debug" / "chokepoint"))
    parser.add_argument("--only", nargs="*", default=None)
    args = parser.parse_args()
    env = load_env()
    passed, failed = [], []
    for scenario, expected in TRACE_SCENARIOS:
        if args.only and scenario not in args.only:
            continue
        print(f"  {scenario} → {expected}")
        started = time.monotonic()
        try:
            failures = check(args.chokepoint, env, scenario, expected)
        except Exception as error:  # a scenario that breaks is a failure, not a crash
            failures = [f"{scenario}: {error}"]
        for failure in failures:
            print(f"    FAIL {failure}")
        (failed if failures else passed).append(scenario)
        print(f"    {'ok' if not failures else 'FAILED'} in {time.monotonic() - started:.1f} s")
    pending = []
    for scenario, why in PENDING:
        if args.only and scenario not in args.only:
            continue
        for variant in ("bad", "fixed"):
            status = get(f"{env['APP_URL']}/{scenario}/{variant}")
            if status != 200:
                failed.append(f"{scenario}/{variant} answered {status}")
        pending.append(scenario)
        print(f"  {scenario}: pending — {why} (both routes answer)")
    print()
    print("passed:  " + (", ".join(passed) or "none"))
    print("failed:  " + (", ".join(failed) or "none"))
    print("pending: " + (", ".join(pending) or "none"))
    print(f"testbed: {len(passed)} passed, {len(failed)} failed, {len(pending)} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
