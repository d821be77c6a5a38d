"""Real ``flask intercom worker`` processes for the delivery tests and drills.

Each runs ``python -m flask --app tests.delivery_app intercom worker`` with its settings in
``FLASK_INTERCOM_...`` environment variables, its log in a file the test can read.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask

from flask_intercom_events import IntercomEvents
from flask_intercom_events.backlog import QueueStatus, WorkerInfo, failed_events, read_status
from flask_intercom_events.extension import state_of
from flask_intercom_events.presence import Presence
from flask_intercom_events.store import DeliveryStore

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "test-token"
QUEUE = "intercom-events"


def settings_env(**config: Any) -> dict[str, str]:
    """``FLASK_``-prefixed variables for ``app.config.from_prefixed_env()`` (JSON values)."""
    return {
        f"FLASK_{key}": value if isinstance(value, str) else json.dumps(value)
        for key, value in config.items()
    }


class Worker:
    """One worker process."""

    def __init__(self, env: dict[str, str], log: Path, args: list[str]) -> None:
        self.log_path = log
        self.handle = log.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "flask",
                "--app",
                "tests.delivery_app",
                "intercom",
                "worker",
                *args,
            ],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=self.handle,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout)
        finally:
            if self.process.poll() is not None:
                self.handle.close()

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, then wait for the graceful stop."""
        if self.process.poll() is None:
            self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        """SIGKILL: no chance to clean up, like an OOM kill or a lost machine."""
        self.process.kill()
        self.wait(10)

    def running(self) -> bool:
        return self.process.poll() is None


class Deployment:
    """A test's delivery set-up: an app that tracks events (the request path, delivery
    ``rq``) and worker processes sharing its Redis and the emulator."""

    def __init__(self, tmp_path: Path, redis_url: str, api_url: str, **config: Any) -> None:
        self.tmp_path = tmp_path
        self.redis_url = redis_url
        self.config: dict[str, Any] = {
            "INTERCOM_ACCESS_TOKEN": TOKEN,
            "INTERCOM_API_BASE_URL": api_url,
            "INTERCOM_EVENTS_REDIS_URL": redis_url,
            # The app's hand-off to Redis: a slow moment of a loaded machine must not send
            # events to the spool while Redis is up (a stopped Redis refuses at once).
            "INTERCOM_EVENTS_REDIS_TIMEOUT": 2.0,
            "INTERCOM_EVENTS_REDIS_SLOW": 1.0,
            "INTERCOM_EVENTS_RETRY_DELAY": 0.05,
            "INTERCOM_EVENTS_RETRY_MAX_DELAY": 0.5,
            **config,
        }
        queue = str(self.config.get("INTERCOM_EVENTS_QUEUE", QUEUE))
        # Two deployments of one test (two queues) keep their files apart.
        self.home = tmp_path if queue == QUEUE else tmp_path / queue
        self.home.mkdir(exist_ok=True)
        self.signal_log = self.home / "signals.log"
        self.app = Flask("producer", instance_path=str(self.home / "producer"))
        self.app.config.update(self.config, INTERCOM_EVENTS_DELIVERY="rq")
        self.intercom = IntercomEvents(self.app)
        self.connection = redis.Redis.from_url(redis_url)
        self.store = DeliveryStore(self.connection, queue, failure_ttl=3600)
        self.presence = Presence(self.connection, queue, "test-reader", ttl=1)
        self.workers: list[Worker] = []
        self.tracked: list[tuple[str, int]] = []

    def track(
        self, count: int, *, name: str = "ran-drill", prefix: str = "user", backdate: int = 60
    ) -> None:
        """Track ``count`` events through the extension, as a view would, with ``created_at``
        from ``backdate`` seconds ago on, a second apart."""
        base = int(time.time()) - backdate
        with self.app.app_context():
            for number in range(count):
                user = f"{prefix}-{len(self.tracked)}"
                event = self.intercom.track(
                    name, user_id=user, created_at=base + number, metadata={"n": number}
                )
                assert event is not None
                self.tracked.append((user, event.created_at))

    def start_worker(self, *args: str, raising_receivers: bool = False, **config: Any) -> Worker:
        env = settings_env(**{**self.config, **config})
        env["DELIVERY_SIGNAL_LOG"] = str(self.signal_log)
        if raising_receivers:
            env["DELIVERY_SIGNAL_RAISE"] = "1"
        env["DELIVERY_INSTANCE_PATH"] = str(self.home / "worker")
        worker = Worker(env, self.home / f"worker-{len(self.workers)}.log", list(args))
        self.workers.append(worker)
        return worker

    def status(self) -> QueueStatus:
        return read_status(self.store, self.presence)

    def failed_ids(self, reason: str | None = None) -> list[str]:
        """Ids of the failed events (whose reason matches ``reason``)."""
        return [event.id for event in failed_events(self.store, reason=reason)]

    def registered(self) -> list[WorkerInfo]:
        """The registered workers."""
        return self.status().workers

    def wait_until(self, predicate: Callable[[], bool], timeout: float, what: str) -> float:
        """Poll ``predicate``; returns the seconds it took, fails the test on timeout."""
        started = time.monotonic()
        while not predicate():
            for worker in self.workers:
                if worker.process.poll() not in (None, 0, -9, -15):
                    pytest.fail(f"a worker crashed while waiting for {what}:\n{worker.log()}")
            if time.monotonic() - started > timeout:
                logs = "\n".join(w.log()[-3000:] for w in self.workers)
                pytest.fail(
                    f"timed out after {timeout} s waiting for {what}; "
                    f"status {self.status()}\n{logs}"
                )
            time.sleep(0.05)
        return time.monotonic() - started

    def settled(self) -> bool:
        """Nothing left to deliver: every event delivered or failed (none spooled by the
        app during a Redis outage either)."""
        intake = state_of(self.app).intake
        spooled = intake.spool.count() if intake is not None else 0
        return spooled == 0 and self.status().pending == 0

    def signals(self) -> list[str]:
        if not self.signal_log.exists():
            return []
        return self.signal_log.read_text().splitlines()

    def close(self) -> None:
        for worker in self.workers:
            if worker.running():
                worker.kill()
        self.connection.close()


def make_deployments(tmp_path: Path) -> Iterator[Callable[..., Deployment]]:
    """For a test module's ``deployments`` fixture: make :class:`Deployment` objects; their
    worker processes are killed at the end."""
    made: list[Deployment] = []

    def make(redis_url: str, api_url: str, **config: Any) -> Deployment:
        deployment = Deployment(tmp_path, redis_url, api_url, **config)
        made.append(deployment)
        return deployment

    yield make
    for deployment in made:
        deployment.close()
