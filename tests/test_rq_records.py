"""What this project leaves in Redis for an event, next to what RQ's own worker leaves for
one job, field by field: RQ's tools (``rq info``, rq-dashboard, ``Job.fetch``,
``job.get_executions()``) read both the same way.

The differences are deliberate and listed with their reason in :data:`OURS_ONLY` and
:data:`RQS_ONLY`; any other difference fails the test (run on the oldest and the newest rq
the project supports).
"""

from __future__ import annotations

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
from rq.job import Job
from rq.registry import FailedJobRegistry, StartedJobRegistry

from flask_intercom_events import IntercomEvents
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
        self.worker.stop()
        self.thread.join(30)


@pytest.fixture
def ours(tmp_path: Path, redis_url: str, emulator: Sandbox) -> Iterator[Ours]:
    found = Ours(tmp_path, redis_url, emulator)
    yield found
    found.stop()


def run_rq(redis_url: str, func: Any, *args: Any) -> tuple[Job, subprocess.Popen[bytes]]:
    """Enqueue one job on a queue of RQ's own and run RQ's own worker on it (``rq worker
    --burst``, a process of its own, with this project's JSON serializer)."""
    connection = redis.Redis.from_url(redis_url)
    queue = rq.Queue(THEIRS, connection=connection, serializer=JobSerializer)
    job = queue.enqueue(func, *args, result_ttl=0, failure_ttl=3600)
    command = [
        str(Path(sys.executable).with_name("rq")),
        "worker",
        "--burst",
        "--url",
        redis_url,
        "--serializer",
        "flask_intercom_events.job_records.JobSerializer",
        THEIRS,
    ]
    worker = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return job, worker


def wait(predicate: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_a_started_event_is_recorded_as_rqs_worker_records_a_started_job(
    connection: redis.Redis, redis_url: str, emulator: Sandbox, ours: Ours
) -> None:
    emulator.configure(latency=3.0)
    ours_id = ours.track()
    wait(lambda: emulator.stats.requests >= 1, "our event in flight")
    theirs, process = run_rq(redis_url, hold, "release")
    wait(
        lambda: Job.fetch(theirs.id, connection=connection).get_status() == "started",
        "RQ's job started",
    )
    compare(snapshot(connection, OURS, ours_id), snapshot(connection, THEIRS, theirs.id), "started")
    connection.set("release", 1)
    assert process.wait(30) == 0


def test_a_failed_event_is_recorded_as_rqs_worker_records_a_failed_job(
    connection: redis.Redis, redis_url: str, emulator: Sandbox, ours: Ours
) -> None:
    emulator.configure(require_contacts=True)  # a 404, failed at once (no retries)
    ours_id = ours.track()
    theirs, process = run_rq(redis_url, explode)
    assert process.wait(30) == 0
    wait(lambda: connection.zcard(f"rq:failed:{OURS}") == 1, "our event failed")
    mine, rqs = snapshot(connection, OURS, ours_id), snapshot(connection, THEIRS, theirs.id)
    compare(mine, rqs, "failed")
    # What RQ's tools show for the failure: RQ's from its result, ours from exc_info.
    job = Job.fetch(ours_id, connection=connection, serializer=JobSerializer)
    assert "HTTP 404 not_found" in (job._exc_info or "")
    assert job.meta["failure"] == {"reason": "404 not_found", "attempts": 1}


def test_a_delivered_event_leaves_what_rqs_worker_leaves_for_a_job_done(
    connection: redis.Redis, redis_url: str, emulator: Sandbox, ours: Ours
) -> None:
    ours_id = ours.track()
    wait(lambda: len(emulator.events) == 1, "our event delivered")
    wait(lambda: not connection.exists(Job.key_for(ours_id)), "our job settled")
    connection.set("released", 1)
    theirs, process = run_rq(redis_url, hold, "released")
    assert process.wait(30) == 0
    mine, rqs = snapshot(connection, OURS, ours_id), snapshot(connection, THEIRS, theirs.id)
    assert mine["keys"] == rqs["keys"] == []  # result_ttl=0: nothing is left
