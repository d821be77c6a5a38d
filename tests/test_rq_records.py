"""What this project leaves in Redis for an event, next to what RQ's own worker leaves for
one job, field by field: RQ's tools (``rq info``, rq-dashboard, ``Job.fetch``,
``job.get_executions()``) read both the same way.

The differences are deliberate and listed with their reason in :data:`OURS_ONLY` and
:data:`RQS_ONLY`; any other difference fails the test (run on the oldest and the newest rq
the project supports).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import rq
from flask import Flask
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.registry import FailedJobRegistry, StartedJobRegistry

from flask_intercom_events import IntercomEvents
from flask_intercom_events.extension import state_of
from flask_intercom_events.job_records import JobSerializer
from flask_intercom_events.sandbox import Sandbox
from flask_intercom_events.worker import DeliveryWorker

from .rq_jobs import explode, hold

ROOT = Path(__file__).resolve().parent.parent
OURS = "ours"
THEIRS = "theirs"
#: Fields only our job hashes have, by state, and why.
OURS_ONLY: dict[str, dict[str, str]] = {
    "failed": {
        "meta": "the failure's reason, status and code, in RQ's own meta field",
        "exc_info": "no rq:results stream (4.7 KB each): the description is RQ's exc_info",
    },
}
#: Keys only RQ's worker leaves, by state, and why.
RQS_ONLY: dict[str, dict[str, str]] = {
    "failed": {"results": "an rq:results stream per failure costs 4.7 KB of Redis"},
}
#: Fields of RQ's failed job that ours leaves out: RQ reads each as optional, and a failed
#: event may wait a year (each field costs 40 to 70 bytes).
RQS_ONLY_FIELDS: dict[str, set[str]] = {
    "failed": {
        "success_callback_name",
        "failure_callback_name",
        "stopped_callback_name",
        "group_id",
        "last_heartbeat",
        "worker_name",
        "timeout",
        "result_ttl",
        "failure_ttl",
        "enqueued_at",
        "started_at",
        "description",
    },
}


def text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def snapshot(connection: redis.Redis, queue: str, job_id: str) -> dict[str, Any]:
    """Everything about one job in Redis, as shapes: field names, and what RQ reads."""
    raw = connection.hgetall(Job.key_for(job_id))
    job = Job.fetch(job_id, connection=connection, serializer=JobSerializer) if raw else None
    started = StartedJobRegistry(queue, connection=connection)
    members = [text(m) for m in connection.zrange(started.key, 0, -1)]
    executions = job.get_executions() if job is not None else []
    return {
        "fields": sorted(text(k) for k in raw),
        "status": job.get_status() if job is not None else None,
        "worker_name": bool(job.worker_name) if job is not None else None,
        "started_at": job.started_at is not None if job is not None else None,
        "ended_at": job.ended_at is not None if job is not None else None,
        "in_started": [m.split(":")[0] == job_id for m in members],
        "executions": [
            (sorted(text(k) for k in connection.hgetall(e.key)), f"{job_id}:{e.id}" in members)
            for e in executions
        ],
        "in_failed": job_id in FailedJobRegistry(queue, connection=connection).get_job_ids(),
        "results": bool(connection.exists(f"rq:results:{job_id}")),
        "keys": sorted(
            _shape(text(key), job_id, [e.id for e in executions])
            for key in connection.scan_iter(f"*{job_id}*")
        ),
    }


def _shape(key: str, job_id: str, executions: list[str]) -> str:
    for execution in executions:
        key = key.replace(execution.rpartition(":")[2], "<execution>")
    return key.replace(job_id, "<id>")


def compare(ours: dict[str, Any], theirs: dict[str, Any], state: str) -> None:
    only_ours = set(ours["fields"]) - set(theirs["fields"])
    only_theirs = set(theirs["fields"]) - set(ours["fields"])
    assert only_ours == set(OURS_ONLY.get(state, {})), (state, only_ours)
    assert only_theirs == RQS_ONLY_FIELDS.get(state, set()), (state, only_theirs)
    allowed_keys = {"rq:results:<id>"} if "results" in RQS_ONLY.get(state, {}) else set()
    assert set(theirs["keys"]) - set(ours["keys"]) == allowed_keys, state
    compared: tuple[str, ...] = ("status", "ended_at", "in_started", "in_failed")
    if state != "failed":  # what a failed job of ours leaves out (see RQS_ONLY_FIELDS)
        compared += ("worker_name", "started_at")
    for name in compared:
        assert ours[name] == theirs[name], (state, name, ours[name], theirs[name])
    assert ours["executions"] == theirs["executions"], state


class Ours:
    """One delivery worker of this project, in a thread, against the emulator."""

    def __init__(self, tmp_path: Path, redis_url: str, emulator: Sandbox) -> None:
        self.app = Flask("compare", instance_path=str(tmp_path))
        self.app.config.update(
            INTERCOM_ACCESS_TOKEN="test-token",
            INTERCOM_API_BASE_URL=emulator.url,
            INTERCOM_EVENTS_REDIS_URL=redis_url,
            INTERCOM_EVENTS_DELIVERY="rq",
            INTERCOM_EVENTS_QUEUE=OURS,
            INTERCOM_EVENTS_NOT_FOUND_RETRIES=[],
            # Longer than any answer's latency here (the started test's is 30 s), so an
            # event in flight stays started until the test is done with it.
            INTERCOM_API_TIMEOUT=[3.05, 60.0],
        )
        self.intercom = IntercomEvents(self.app)
        self.worker = DeliveryWorker(self.app, concurrency=1)
        self.thread = threading.Thread(target=self.worker.run, daemon=True)
        self.thread.start()

    def track(self) -> str:
        with self.app.app_context():
            event = self.intercom.track("compared", user_id="1", metadata={"n": 1})
        assert event is not None
        return event.uuid

    def stop(self) -> None:
        # Now: an event still in flight (the started test's) goes back to the queue, rather
        # than the stop waiting for its answer.
        self.worker.stop(now=True)
        self.thread.join(30)
        assert not self.thread.is_alive(), "our worker did not stop"
        # The worker closed the connection it opened (a socket left to the garbage collector
        # is a ResourceWarning, an error, in whichever test it is collected in).
        pool = self.worker.connection.connection_pool
        assert all(c._sock is None for c in pool._available_connections), "left open"
        assert not pool._in_use_connections
        intake = state_of(self.app).intake
        if intake is not None:
            intake.close()


@pytest.fixture
def ours(tmp_path: Path, redis_url: str, emulator: Sandbox) -> Iterator[Ours]:
    found = Ours(tmp_path, redis_url, emulator)
    yield found
    found.stop()


class RQWorkers:
    """RQ's own worker (``rq worker --burst``, a process of its own, with this project's
    JSON serializer), each run on one job of a queue of RQ's own; every one still running at
    the end of the test is released (its ``hold`` key set), then killed if it keeps going,
    so no ``rq worker`` outlives the test that started it."""

    def __init__(self, connection: redis.Redis, redis_url: str) -> None:
        self.connection = connection
        self.redis_url = redis_url
        self.running: list[tuple[subprocess.Popen[bytes], str | None]] = []

    def run(
        self, func: Any, *args: Any, release: str | None = None
    ) -> tuple[Job, subprocess.Popen[bytes]]:
        """Enqueue ``func(*args)`` and start a worker on it; ``release`` is the key that ends
        a ``hold`` job (set at the end of the test if the test has not set it)."""
        queue = rq.Queue(THEIRS, connection=self.connection, serializer=JobSerializer)
        job = queue.enqueue(func, *args, result_ttl=0, failure_ttl=3600)
        command = [
            str(Path(sys.executable).with_name("rq")),
            "worker",
            "--burst",
            "--url",
            self.redis_url,
            "--serializer",
            "flask_intercom_events.job_records.JobSerializer",
            THEIRS,
        ]
        worker = subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.running.append((worker, release))
        return job, worker

    def close(self) -> None:
        for worker, release in self.running:
            if worker.poll() is not None:
                continue
            if release is not None:
                with contextlib.suppress(redis.RedisError):
                    self.connection.set(release, 1)
            try:
                worker.wait(10)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(10)


@pytest.fixture
def rq_workers(connection: redis.Redis, redis_url: str) -> Iterator[RQWorkers]:
    workers = RQWorkers(connection, redis_url)
    yield workers
    workers.close()


def status(connection: redis.Redis, job_id: str) -> str | None:
    """The job's status as RQ reads it, None once its record is gone."""
    try:
        job = Job.fetch(job_id, connection=connection, serializer=JobSerializer)
    except NoSuchJobError:
        return None
    return job.get_status()


def wait(predicate: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_a_started_event_is_recorded_as_rqs_worker_records_a_started_job(
    connection: redis.Redis, emulator: Sandbox, ours: Ours, rq_workers: RQWorkers
) -> None:
    # RQ's job first, held started until released: its worker process may take seconds to
    # start on a loaded machine. Then ours, whose answer takes 30 s (within our read
    # timeout): it stays started while the two are compared.
    theirs, process = rq_workers.run(hold, "release", release="release")
    wait(lambda: status(connection, theirs.id) == "started", "RQ's job started")
    emulator.configure(latency=30.0)
    ours_id = ours.track()
    wait(lambda: status(connection, ours_id) == "started", "our event started")
    compare(snapshot(connection, OURS, ours_id), snapshot(connection, THEIRS, theirs.id), "started")
    connection.set("release", 1)
    assert process.wait(30) == 0


def test_a_failed_event_is_recorded_as_rqs_worker_records_a_failed_job(
    connection: redis.Redis, emulator: Sandbox, ours: Ours, rq_workers: RQWorkers
) -> None:
    emulator.configure(require_contacts=True)  # a 404, failed at once (no retries)
    ours_id = ours.track()
    theirs, process = rq_workers.run(explode)
    assert process.wait(30) == 0
    wait(lambda: connection.zcard(f"rq:failed:{OURS}") == 1, "our event failed")
    mine, rqs = snapshot(connection, OURS, ours_id), snapshot(connection, THEIRS, theirs.id)
    compare(mine, rqs, "failed")
    # What RQ's tools show for the failure: RQ's from its result, ours from exc_info.
    job = Job.fetch(ours_id, connection=connection, serializer=JobSerializer)
    assert "HTTP 404 not_found" in (job._exc_info or "")
    assert job.meta["failure"] == {"reason": "404 not_found", "attempts": 1}


def test_a_delivered_event_leaves_what_rqs_worker_leaves_for_a_job_done(
    connection: redis.Redis, emulator: Sandbox, ours: Ours, rq_workers: RQWorkers
) -> None:
    ours_id = ours.track()
    wait(lambda: len(emulator.events) == 1, "our event delivered")
    wait(lambda: not connection.exists(Job.key_for(ours_id)), "our job settled")
    connection.set("released", 1)
    theirs, process = rq_workers.run(hold, "released", release="released")
    assert process.wait(30) == 0
    mine, rqs = snapshot(connection, OURS, ours_id), snapshot(connection, THEIRS, theirs.id)
    assert mine["keys"] == rqs["keys"] == []  # result_ttl=0: nothing is left
