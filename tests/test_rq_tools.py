"""RQ's own tools, driven for real against our queue: rq-dashboard through its HTTP
endpoints (a subprocess on 127.0.0.1), and ``rq requeue``, ``rq info`` and ``rq empty``
through RQ's command line. What they show is the delivery window (RQ's queue, started,
scheduled, failed); what they do must lead to delivery by our worker."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from rq import Queue

from flask_intercom_events.job_records import JobSerializer
from flask_intercom_events.sandbox import Sandbox

from .redis_server import free_port
from .workers import QUEUE, Deployment, make_deployments


@pytest.fixture
def deployments(tmp_path: Path) -> Iterator[Any]:
    yield from make_deployments(tmp_path)


def rq_command(*args: str) -> subprocess.CompletedProcess[str]:
    """RQ's own command line (``rq ...``), as an operator types it."""
    rq = shutil.which("rq", path=os.path.dirname(sys.executable)) or "rq"
    return subprocess.run([rq, *args], capture_output=True, text=True, timeout=60, check=False)


class Dashboard:
    """rq-dashboard, run as its users run it (``rq-dashboard -u URL``, optionally ``-j``)."""

    def __init__(self, redis_url: str, *options: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        executable = shutil.which("rq-dashboard", path=os.path.dirname(sys.executable))
        assert executable is not None, "rq-dashboard is part of the test extra"
        self.process = subprocess.Popen(
            [executable, "-b", "127.0.0.1", "-p", str(self.port), "-u", redis_url, *options],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                # A first answer may take seconds on a loaded machine (a timeout is a
                # RequestException, not a ConnectionError): try again until the deadline.
                requests.get(f"{self.url}/0/data/queues.json", timeout=10)
                return
            except requests.RequestException:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("rq-dashboard did not start") from None
                time.sleep(0.1)

    def get(self, path: str) -> Any:
        answer = requests.get(self.url + path, timeout=10)
        answer.raise_for_status()
        return answer.json()

    def post(self, path: str) -> Any:
        answer = requests.post(self.url + path, timeout=30)
        answer.raise_for_status()
        return answer.json()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def dashboards(redis_url: str) -> Iterator[Any]:
    made: list[Dashboard] = []

    def make(*options: str) -> Dashboard:
        made.append(Dashboard(redis_url, *options))
        return made[-1]

    yield make
    for dashboard in made:
        dashboard.stop()


def failed_setup(redis_url: str, emulator: Sandbox, deployments: Any, count: int) -> Deployment:
    """``count`` events failed by a real worker: their contacts do not exist yet (404)."""
    emulator.configure(require_contacts=True)
    setup: Deployment = deployments(redis_url, emulator.url, INTERCOM_EVENTS_NOT_FOUND_RETRIES=[])
    setup.track(count, prefix="late")
    assert setup.start_worker("--burst", "--concurrency", "4").wait(30) == 0
    assert setup.status().failed == count
    return setup


def deliver_everything(setup: Deployment, emulator: Sandbox, users: int) -> None:
    """The contacts now exist: a worker delivers what was requeued, and nothing is left."""
    for number in range(users):
        emulator.add_contact(user_id=f"late-{number}")
    assert setup.start_worker("--burst", "--concurrency", "4").wait(30) == 0
    found = setup.status()
    assert (found.pending, found.failed, found.failed_by_reason) == (0, 0, {})
    assert sorted(str(e.user_id) for e in emulator.events) == sorted(u for u, _ in setup.tracked)
    assert emulator.stats.duplicates == 0


@pytest.mark.parametrize("options", [(), ("-j",)], ids=["pickle", "json"])
def test_requeue_from_rq_dashboard_one_then_all(
    redis_url: str,
    emulator: Sandbox,
    deployments: Any,
    dashboards: Any,
    options: tuple[str, ...],
) -> None:
    setup = failed_setup(redis_url, emulator, deployments, 4)
    dashboard = dashboards(*options)
    [queue] = dashboard.get("/0/data/queues.json")["queues"]
    assert (queue["name"], queue["count"], queue["failed_job_registry_count"]) == (QUEUE, 0, 4)
    one = setup.failed_ids()[0]
    assert dashboard.post(f"/job/{one}/requeue") == {"status": "OK"}
    assert setup.status().queued == 1
    assert dashboard.post(f"/requeue/{QUEUE}") == {"status": "OK", "count": 3}
    found = setup.status()
    assert (found.queued, found.failed) == (4, 0)
    deliver_everything(setup, emulator, 4)


def test_rq_requeue_with_rqs_default_serializer_before_and_after_a_dashboard_requeue(
    redis_url: str, emulator: Sandbox, deployments: Any, dashboards: Any
) -> None:
    setup = failed_setup(redis_url, emulator, deployments, 3)
    # `rq requeue` as typed, without -S: RQ's default (pickle) serializer.
    done = rq_command("requeue", "--all", "-u", redis_url, "--queue", QUEUE)
    assert done.returncode == 0, done.stderr
    assert "Requeueing 3 jobs from failed queue" in done.stdout
    # Still no contacts: they fail again, from jobs `rq requeue` rewrote.
    assert setup.start_worker("--burst", "--concurrency", "4").wait(30) == 0
    assert setup.status().failed_by_reason == {"404 not_found": 3}
    # Once more through the dashboard (pickle), fail again, then `rq requeue` again.
    dashboard = dashboards()
    assert dashboard.post(f"/requeue/{QUEUE}")["count"] == 3
    assert setup.start_worker("--burst", "--concurrency", "4").wait(30) == 0
    assert setup.status().failed_by_reason == {"404 not_found": 3}
    done = rq_command("requeue", "--all", "-u", redis_url, "--queue", QUEUE)
    assert done.returncode == 0, done.stderr
    deliver_everything(setup, emulator, 3)


def test_rq_info_shows_the_delivery_window_and_status_the_whole_backlog(
    redis_url: str, emulator: Sandbox, deployments: Any
) -> None:
    setup = failed_setup(redis_url, emulator, deployments, 2)
    setup.track(100, prefix="waiting")  # on the intake list: no worker runs
    done = rq_command("info", "-u", redis_url, QUEUE)
    assert done.returncode == 0, done.stderr
    # RQ's queue is empty: the 100 events wait in the intake list, which RQ does not know.
    # rq 3: "intercom-events | 0, 0 executing, 0 finished, 2 failed"; rq 2: "... | 0".
    line = next(line for line in done.stdout.splitlines() if line.startswith(f"{QUEUE} |"))
    assert line.split("|")[1].strip(" █").startswith("0"), done.stdout
    assert "1 queues, 0 jobs total" in done.stdout
    found = setup.status()
    assert (found.intake, found.waiting, found.failed) == (100, 100, 2)


def test_rq_empty_drops_the_jobs_in_rqs_queue_and_status_counts_what_is_left(
    redis_url: str, emulator: Sandbox, deployments: Any
) -> None:
    emulator.configure(rate_limit=0)
    setup: Deployment = deployments(redis_url, emulator.url, INTERCOM_EVENTS_RATE_LIMIT=6)
    setup.track(300)
    # A worker allowed one call per 10-s window moves a batch into RQ's queue and sends one.
    worker = setup.start_worker("--concurrency", "1")
    rq_queue = Queue(QUEUE, connection=setup.connection, serializer=JobSerializer)
    setup.wait_until(lambda: rq_queue.count > 0, 30, "jobs in RQ's queue")
    assert worker.stop() == 0
    before = setup.status()
    in_rq = rq_queue.count
    assert in_rq == before.queued
    done = rq_command("empty", "-u", redis_url, QUEUE)
    assert done.returncode == 0, done.stderr
    assert f"{in_rq} jobs removed from {QUEUE} queue" in done.stdout
    after = setup.status()
    # Those jobs are gone for good (never sent, not failed): the intake is untouched.
    assert (after.queued, after.intake) == (0, before.intake)
    assert after.pending == before.pending - in_rq
    assert after.failed == 0
