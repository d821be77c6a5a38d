"""Benchmark the Intercom emulator with wrk: throughput, and requests in flight at 100 ms.

Starts ``python -m flask_intercom_events.sandbox`` as a subprocess on 127.0.0.1 (rate limit
off), then for each load runs ``wrk`` a few rounds with valid ``POST /events`` bodies (every
one a new event, so each is validated and stored) and prints the median round: requests/s,
latency percentiles, and requests in flight by Little's law (throughput x mean latency).
Between rounds it resets the emulator and checks, through ``/_sandbox/stats``, that every
request wrk counted was answered ``202``.

Needs ``wrk`` on PATH (``apt-get install -y wrk``). Bounded: about
``rounds x loads x (duration + 2)`` seconds, and it stops the emulator itself.

    python benchmarks/emulator.py                 # 3 rounds of 8 s per load
    python benchmarks/emulator.py --rounds 5 --duration 10
    python benchmarks/emulator.py --url http://127.0.0.1:8000   # a server already running
"""

from __future__ import annotations

import argparse
import json
import os
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TOKEN = "bench-token"

# One new event per request: a per-thread counter makes created_at and user_id unique, so
# nothing is a duplicate. done() prints wrk's exact figures as one JSON line.
WRK_SCRIPT = r"""
local threads = {}
local next_id = 0
function setup(thread)
  thread:set("thread_id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end
wrk.method = "POST"
wrk.path = "/events"
wrk.headers["Authorization"] = "Bearer TOKEN"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json"
wrk.headers["Intercom-Version"] = "2.11"
local counter = 0
function request()
  counter = counter + 1
  local body = string.format(
    '{"event_name":"invited-friend","created_at":%d,"user_id":"bench-%d-%d",' ..
    '"metadata":{"invite_code":"ADDAFRIEND","seats":3,' ..
    '"price":{"amount":34999,"currency":"eur"}}}',
    1700000000 + counter, thread_id, counter % 1000)
  return wrk.format(nil, nil, nil, body)
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"mean_us":%f,"p50_us":%d,"p90_us":%d,' ..
    '"p99_us":%d,"max_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}\n',
    summary.requests, summary.duration, latency.mean, latency:percentile(50),
    latency:percentile(90), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
""".replace("TOKEN", TOKEN)


@dataclass(frozen=True)
class Load:
    """One benchmark load: keep-alive connections and the emulator's latency."""

    name: str
    connections: int
    latency: float


@dataclass(frozen=True)
class Round:
    """wrk's figures for one round, plus what the emulator counted."""

    requests_per_second: float
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    errors: int
    answered_202: int
    wrk_requests: int

    @property
    def in_flight(self) -> float:
        """Little's law: throughput x mean time in the system."""
        return self.requests_per_second * self.mean_ms / 1000


def main(argv: list[str] | None = None) -> int:
    """Run every load; print the median rounds; exit 1 if a target is missed."""
    args = _parser().parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not on PATH: apt-get install -y wrk", file=sys.stderr)
        return 2
    loads = [
        Load("zero latency", args.connections, 0.0),
        Load("100 ms latency", args.latency_connections, 0.1),
        Load("100 ms latency, headroom", args.latency_connections * 2, 0.1),
    ]
    process = None
    url = args.url
    if url is None:
        process, url = _start_emulator()
    try:
        with tempfile.TemporaryDirectory() as directory:
            script = Path(directory) / "post_events.lua"
            script.write_text(WRK_SCRIPT)
            results = {load: _run_load(url, load, script, args) for load in loads}
    finally:
        if process is not None:
            _stop(process)
    return _report(results, args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds per load (median shown)")
    parser.add_argument("--duration", type=int, default=8, help="seconds per round")
    parser.add_argument("--connections", type=int, default=50, help="zero-latency load")
    parser.add_argument(
        "--latency-connections", type=int, default=200, help="100 ms load (headroom: twice)"
    )
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--url", help="benchmark a running emulator instead of starting one")
    return parser


def _start_emulator() -> tuple[subprocess.Popen[str], str]:
    command = [
        sys.executable,
        "-m",
        "flask_intercom_events.sandbox",
        "--port",
        "0",
        "--token",
        TOKEN,
        "--rate-limit",
        "0",
        "--max-event-names",
        "0",
        "--log-size",
        "1000",
    ]
    root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], 15)
    line = process.stdout.readline() if ready else ""
    if "http://" not in line:
        _stop(process)
        raise RuntimeError(f"the emulator did not start (first line: {line!r})")
    return process, line.split()[-1]


def _stop(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _control(url: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """Call a ``/_sandbox/`` control endpoint; the decoded JSON answer."""
    request = urllib.request.Request(
        f"{url}/_sandbox/{path}",
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _run_load(url: str, load: Load, script: Path, args: argparse.Namespace) -> list[Round]:
    _control(url, "PATCH", "settings", {"latency": load.latency, "rate_limit": 0})
    rounds = []
    for number in range(1, args.rounds + 1):
        _control(url, "POST", "reset")
        command = [
            "wrk",
            f"-t{args.threads}",
            f"-c{load.connections}",
            f"-d{args.duration}s",
            "--timeout",
            "5s",
            "-s",
            str(script),
            url,
        ]
        output = subprocess.run(
            command, capture_output=True, text=True, timeout=args.duration + 30, check=True
        ).stdout
        figures = json.loads(output.split("WRK_JSON ", 1)[1].splitlines()[0])
        stats = _control(url, "GET", "stats")
        seconds = figures["duration_us"] / 1e6
        errors = sum(figures[key] for key in ("connect", "read", "write", "status", "timeout"))
        result = Round(
            requests_per_second=figures["requests"] / seconds,
            mean_ms=figures["mean_us"] / 1000,
            p50_ms=figures["p50_us"] / 1000,
            p90_ms=figures["p90_us"] / 1000,
            p99_ms=figures["p99_us"] / 1000,
            errors=errors,
            answered_202=int(stats["by_status"].get("202", 0)),
            wrk_requests=figures["requests"],
        )
        rounds.append(result)
        print(
            f"  {load.name}, {load.connections} connections, round {number}: "
            f"{result.requests_per_second:,.0f} req/s, p50 {result.p50_ms:.1f} ms, "
            f"in flight {result.in_flight:.0f}, errors {errors}",
            flush=True,
        )
        time.sleep(0.5)
    return rounds


def _report(results: dict[Load, list[Round]], args: argparse.Namespace) -> int:
    print()
    print(f"median of {args.rounds} rounds of {args.duration} s, wrk -t{args.threads}:")
    print(
        f"{'load':<28}{'conns':>6}{'req/s':>9}{'mean':>9}{'p50':>9}{'p90':>9}{'p99':>9}"
        f"{'in flight':>11}{'errors':>8}"
    )
    ok = True
    for load, rounds in results.items():
        median = sorted(rounds, key=lambda r: r.requests_per_second)[len(rounds) // 2]
        print(
            f"{load.name:<28}{load.connections:>6}{median.requests_per_second:>9,.0f}"
            f"{median.mean_ms:>7.1f}ms{median.p50_ms:>7.1f}ms{median.p90_ms:>7.1f}ms"
            f"{median.p99_ms:>7.1f}ms{median.in_flight:>11.0f}{median.errors:>8}"
        )
        unanswered = [r for r in rounds if r.answered_202 < r.wrk_requests]
        if unanswered or any(r.errors for r in rounds):
            print(f"  ! {load.name}: errors, or fewer 202s than requests counted by wrk")
            ok = False
    zero, at_100ms = list(results.values())[:2]
    throughput = statistics.median(r.requests_per_second for r in zero)
    in_flight = statistics.median(r.in_flight for r in at_100ms)
    p50 = statistics.median(r.p50_ms for r in at_100ms)
    checks = [
        (f"zero latency: {throughput:,.0f} req/s", "at least 1,000", throughput >= 1000),
        (
            f"100 ms latency, {args.latency_connections} connections: {in_flight:.0f} in flight",
            f"at least {0.95 * args.latency_connections:.0f} (95% of the connections)",
            in_flight >= 0.95 * args.latency_connections,
        ),
        (f"100 ms latency: p50 {p50:.1f} ms", "at most 125 ms", p50 <= 125),
    ]
    print()
    for figure, target, passed in checks:
        print(f"{'PASS' if passed else 'FAIL'}  {figure} (target: {target})")
    return 0 if ok and all(passed for _, _, passed in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
