"""Prometheus metrics: a real worker's ``/metrics`` (``--metrics-port``), ``flask intercom
metrics``, and the Redis work a scrape costs, against a real Redis and the emulator."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from prometheus_client.parser import text_string_to_metric_families
from rq import Queue

from flask_intercom_events import Event, Identity
from flask_intercom_events.job_records import JobSerializer, encode_line
from flask_intercom_events.ratelimit import RateBudget
from flask_intercom_events.sandbox import Sandbox
from flask_intercom_events.store import DeliveryStore, Failure

from .clocks import uuid_made_at
from .redis_server import free_port
from .test_status import cli, ops_app
from .workers import QUEUE, ROOT, Deployment, make_deployments, settings_env

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
WORKER = "host.1.metrics"
SERVING = re.compile(r"Serving Prometheus metrics on http://127\.0\.0\.1:(\d+)/metrics")


@pytest.fixture
def deployments(tmp_path: Path) -> Iterator[Any]:
    yield from make_deployments(tmp_path)


def samples(text: str) -> Samples:
    """Every sample of a Prometheus text page: (name, sorted labels) -> value."""
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: Samples, name: str, **labels: str) -> float | None:
    return found.get((name, tuple(sorted(labels.items()))))


def scrape(port: int) -> Samples:
    answer = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    answer.raise_for_status()
    return samples(answer.text)


def backlog_lines(count: int, *, first_created_at: int, start: int = 0) -> list[bytes]:
    """Intake lines of ``count`` real events, as the request path pushes them, tracked from
    ``first_created_at`` on (their ids say so too)."""
    out = []
    for number in range(start, start + count):
        event = Event.create(
            "ran-report",
            identity=Identity(user_id=f"user-{number}"),
            metadata={"n": number},
            created_at=first_created_at + number // 100,
            uuid=uuid_made_at(first_created_at + number // 100, number),
        )
        out.append(encode_line(event.uuid, event.to_payload()))
    return out


def test_a_worker_serves_its_counters_and_the_queue_on_metrics_port(
    redis_url: str, emulator: Sandbox, deployments: Any
) -> None:
    emulator.configure(require_contacts=True, rate_window=2.0)
    for number in range(8):
        emulator.add_contact(user_id=f"user-{number}")
    emulator.script("429")  # the first call is refused: rate limited
    setup: Deployment = deployments(
        redis_url,
        emulator.url,
        INTERCOM_EVENTS_NOT_FOUND_RETRIES=[],
        INTERCOM_EVENTS_RATE_WINDOW=2,
        INTERCOM_EVENTS_WORKER_TTL=3,
    )
    port = free_port()
    # The port from the configuration key, as a deployment's environment would set it.
    worker = setup.start_worker(
        "--concurrency", "2", "--metrics-host", "127.0.0.1", INTERCOM_EVENTS_METRICS_PORT=port
    )
    setup.track(10)  # user-8 and user-9 are unknown to Intercom: 404, failed at once
    setup.wait_until(setup.settled, 30, "every event settled")

    def counted() -> bool:
        found = scrape(port)
        return value(found, "intercom_events_delivered_total") == 8

    setup.wait_until(counted, 15, "the counters up to date")
    found = scrape(port)
    assert value(found, "intercom_events_failed_total", reason="404 not_found") == 2
    assert value(found, "intercom_events_rate_limited_total") == 1
    assert value(found, "intercom_events_retried_total", reason="429 rate_limit_exceeded") == 1
    assert value(found, "intercom_events_request_duration_seconds_count") == 11
    assert value(found, "intercom_events_request_duration_seconds_sum") > 0  # type: ignore[operator]
    # The queue, read from Redis at the scrape.
    assert value(found, "intercom_events_queued") == 0
    assert value(found, "intercom_events_in_flight") == 0
    assert value(found, "intercom_events_scheduled") == 0
    assert value(found, "intercom_events_failed", reason="404 not_found") == 2
    assert value(found, "intercom_events_failed_registry") == 2
    assert value(found, "intercom_events_spooled") == 0
    assert value(found, "intercom_events_redis_up") == 1
    assert value(found, "intercom_events_oldest_age_seconds") == 0
    assert value(found, "intercom_events_rate_window_allowance") == 333  # 10,000/min, 2 s
    remaining = value(found, "intercom_events_rate_window_remaining")
    assert remaining is not None
    assert 0 <= remaining <= 333
    setup.wait_until(
        lambda: value(scrape(port), "intercom_events_workers_alive") == 1, 10, "itself alive"
    )
    assert worker.stop() == 0
    assert f"Serving Prometheus metrics on http://127.0.0.1:{port}/metrics" in worker.log()


def test_a_burst_of_20000_is_seen_whole_and_with_its_age(
    redis_url: str, emulator: Sandbox, deployments: Any, tmp_path: Path
) -> None:
    """~99% of a backlog waits in the intake list, which RQ's tools never see: the metrics
    count it all, and the oldest event's age, with or without a worker."""
    setup: Deployment = deployments(redis_url, emulator.url, INTERCOM_EVENTS_RATE_LIMIT=60)
    first = int(time.time()) - 900  # the burst began 15 minutes ago
    lines = backlog_lines(20_000, first_created_at=first)
    for start in range(0, len(lines), 1000):
        setup.connection.rpush(setup.store.keys.intake, *lines[start : start + 1000])
    app = ops_app(tmp_path, redis_url)
    text = cli(app, "metrics").output
    found = samples(text)
    assert value(found, "intercom_events_queued") == 20_000
    assert value(found, "intercom_events_queued_parts", part="intake") == 20_000
    assert value(found, "intercom_events_workers_alive") == 0
    assert value(found, "intercom_events_stranded") == 0
    age = value(found, "intercom_events_oldest_age_seconds")
    assert age is not None
    assert 900 <= age < 1200
    # A worker delivering 10 calls per 10-s window: the backlog stays, spread over the intake,
    # its moving list, RQ's queue and its held jobs.
    # Port 0: the worker takes a free one and says which (no other process can take it).
    worker = setup.start_worker("--metrics-port", "0", "--metrics-host", "127.0.0.1")
    rq_queue = Queue(QUEUE, connection=setup.connection, serializer=JobSerializer)
    setup.wait_until(lambda: rq_queue.count > 0, 30, "jobs in RQ's queue")
    setup.wait_until(lambda: bool(SERVING.search(worker.log())), 30, "the metrics served")
    served = SERVING.search(worker.log())
    assert served is not None
    port = int(served.group(1))
    sent_before = emulator.stats.events
    found = scrape(port)
    sent_after = emulator.stats.events
    queued = value(found, "intercom_events_queued")
    in_flight = value(found, "intercom_events_in_flight")
    scheduled = value(found, "intercom_events_scheduled")
    assert queued is not None
    assert in_flight is not None
    assert scheduled is not None
    # One instant of Redis: an event the emulator had before the scrape waits no more, and an
    # event settled at that instant was sent before the scrape ended. A held event may have been
    # sent already (its answer not yet settled): it counts in flight, not delivered.
    assert value(found, "intercom_events_stranded") == 0  # the worker is alive
    settled = 20_000 - queued - in_flight - scheduled
    assert sent_before <= settled + in_flight + scheduled
    assert settled <= sent_after
    # What RQ's tools show (rq info, rq-dashboard): RQ's queue only, a small part of it.
    assert rq_queue.count < queued / 10
    assert value(found, "intercom_events_queued_parts", part="rq_queue") == pytest.approx(
        rq_queue.count, abs=10
    )
    age = value(found, "intercom_events_oldest_age_seconds")
    assert age is not None
    assert 900 <= age < 1200
    assert worker.stop() == 0


def total_commands(connection: redis.Redis) -> int:
    stats = connection.info("commandstats")
    return sum(int(entry["calls"]) for entry in stats.values())


def redis_work(connection: redis.Redis, app: Any, *args: str) -> int:
    """Commands Redis ran for one ``flask intercom ARGS`` (the INFO reading it excluded)."""
    before = total_commands(connection)
    result = cli(app, *args)
    assert result.exit_code == 0, result.output
    return total_commands(connection) - before - 1


def fail_events(store: DeliveryStore, count: int) -> None:
    """``count`` events failed for good, as a worker records them."""
    budget = RateBudget(store.connection, "other-token", allowance=10**9, window=60)
    reasons = ["404 not_found", "400 parameter_invalid", "network"]
    for start in range(0, count, 1000):
        store.connection.rpush(
            store.keys.intake,
            *backlog_lines(min(1000, count - start), first_created_at=1_700_000_000, start=start),
        )
        store.collect(WORKER, 1000, None)
        jobs = store.claim(WORKER, 1000, budget, 60, probe_every=30).jobs
        failures = []
        for number, job in enumerate(jobs):
            reason = reasons[number % 3]
            failures.append(
                Failure(job, reason, f"failed: {reason}", {"failure": {"reason": reason}})
            )
        store.settle(WORKER, failures=failures)


def test_reading_the_queue_costs_the_same_redis_work_at_0_and_3000_failed(
    redis_url: str, tmp_path: Path
) -> None:
    connection = redis.Redis.from_url(redis_url)
    store = DeliveryStore(connection, QUEUE, failure_ttl=3600)
    app = ops_app(tmp_path, redis_url)
    cli(app, "metrics")  # the scripts loaded once, as on any long-lived Redis
    at_zero = (redis_work(connection, app, "metrics"), redis_work(connection, app, "status"))
    fail_events(store, 3_000)
    assert connection.zcard(store.failed.key) == 3_000
    text = cli(app, "metrics").output
    by_reason = {
        dict(labels)["reason"]: count
        for (name, labels), count in samples(text).items()
        if name == "intercom_events_failed"
    }
    assert by_reason == {"404 not_found": 1002, "400 parameter_invalid": 999, "network": 999}
    at_3000 = (redis_work(connection, app, "metrics"), redis_work(connection, app, "status"))
    assert at_3000 == at_zero
    assert max(at_zero) < 40  # a handful of commands, whatever the backlog
    connection.close()


def test_without_prometheus_client_the_error_names_the_extra(
    redis_url: str, tmp_path: Path
) -> None:
    # An interpreter where prometheus_client cannot be imported, as without the extra.
    program = (
        "import sys; sys.modules['prometheus_client'] = None\n"
        "from flask.cli import main; sys.exit(main())\n"
    )
    env = {
        **os.environ,
        **settings_env(
            INTERCOM_ACCESS_TOKEN="test-token",
            INTERCOM_EVENTS_REDIS_URL=redis_url,
            INTERCOM_API_BASE_URL="http://127.0.0.1:9",
        ),
        "DELIVERY_INSTANCE_PATH": str(tmp_path),
    }
    for args in (["metrics"], ["worker", "--metrics-port", str(free_port())]):
        done = subprocess.run(
            [sys.executable, "-c", program, "--app", "tests.delivery_app", "intercom", *args],
            cwd=ROOT,
            env=env,
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 1, done.stderr
        assert "Prometheus metrics need the prometheus_client package, which is not" in (
            done.stderr
        )
        assert "pip install 'flask-intercom-events[metrics]'" in done.stderr
