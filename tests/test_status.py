"""``flask intercom status``: what an operator needs, at one instant, against a real Redis
(and, for the drain rate and the workers' figures, real worker processes and the emulator)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import Result
from flask import Flask

from flask_intercom_events import Event, Identity, IntercomEvents
from flask_intercom_events.errors import RateLimitInfo
from flask_intercom_events.job_records import encode_line
from flask_intercom_events.presence import Presence
from flask_intercom_events.ratelimit import RateBudget
from flask_intercom_events.sandbox import Sandbox
from flask_intercom_events.store import DeliveryStore, Failure, Retry

from .redis_server import free_port
from .workers import QUEUE, TOKEN, Deployment, make_deployments

WORKER = "host.1.status"


@pytest.fixture
def deployments(tmp_path: Path) -> Iterator[Any]:
    yield from make_deployments(tmp_path)


def ops_app(tmp_path: Path, redis_url: str, **config: Any) -> Flask:
    """The app an operator runs ``flask intercom ...`` with."""
    app = Flask("ops", instance_path=str(tmp_path / "ops"))
    app.config.update(
        INTERCOM_ACCESS_TOKEN=TOKEN,
        INTERCOM_EVENTS_DELIVERY="rq",
        INTERCOM_EVENTS_REDIS_URL=redis_url,
        INTERCOM_EVENTS_REDIS_TIMEOUT=0.2,
        **config,
    )
    IntercomEvents(app)
    return app


def cli(app: Flask, *args: str, input: str | None = None) -> Result:
    return app.test_cli_runner().invoke(args=["intercom", *args], input=input)


def status_json(app: Flask, *args: str) -> dict[str, Any]:
    result = cli(app, "status", "--json", *args)
    document: dict[str, Any] = json.loads(result.output)
    return document


@pytest.fixture
def store(redis_url: str) -> Iterator[DeliveryStore]:
    connection = redis.Redis.from_url(redis_url)
    yield DeliveryStore(connection, QUEUE, failure_ttl=3600)
    connection.close()


def push(store: DeliveryStore, count: int, *, created_at: int, first: int = 0) -> None:
    """What the request path does: RPUSH event lines onto the intake."""
    store.connection.rpush(
        store.keys.intake,
        *(
            encode_line(
                f"ev-{first + n}",
                {"event_name": "ran", "created_at": created_at + n, "user_id": f"u{first + n}"},
            )
            for n in range(count)
        ),
    )


def claimed(store: DeliveryStore, count: int) -> list[Any]:
    store.collect(WORKER, count, None)
    budget = RateBudget(store.connection, "other-token", allowance=100_000, window=60)
    return store.claim(WORKER, count, budget, 60, probe_every=30).jobs


def failure(job: Any, reason: str = "400 bad") -> Failure:
    return Failure(job, reason, f"failed: {reason}", {"failure": {"reason": reason}})


def alive_worker(store: DeliveryStore, name: str = WORKER, **details: Any) -> None:
    """A worker registration as a running worker writes it (its one heartbeat)."""
    store.register(name)
    Presence(store.connection, QUEUE, name, ttl=60).beat(
        busy=False, details={"in_flight": 0, "concurrency": 8, "delivery_rate": 0, **details}
    )


def test_status_shows_the_oldest_age_the_drain_rate_the_eta_and_each_workers_load(
    redis_url: str, emulator: Sandbox, deployments: Any, tmp_path: Path
) -> None:
    emulator.configure(latency=0.4)
    setup: Deployment = deployments(redis_url, emulator.url, INTERCOM_EVENTS_WORKER_TTL=3)
    began = time.time()
    setup.track(200, backdate=3600)  # created_at from an hour ago on
    app = ops_app(tmp_path, redis_url)
    worker = setup.start_worker("--concurrency", "4")

    def busy() -> bool:
        found = status_json(app)
        workers = found["workers"]
        # A worker is listed from its registration on; its details come with its heartbeat.
        return bool(workers) and workers[0].get("in_flight") == 4 and found["drain_rate"] > 0

    setup.wait_until(busy, 30, "the worker busy and delivering")
    report = status_json(app)
    # The age is since the event was tracked (a moment ago), not since its created_at (an
    # hour before, and 200 s apart at most).
    assert 0 <= report["oldest_age_seconds"] <= time.time() - began + 1
    assert report["oldest_created_at"] >= setup.tracked[0][1]
    assert report["oldest_tracked_at"] >= began - 0.01
    assert report["oldest_tracked_at"] > report["oldest_created_at"] + 3000
    assert report["eta_seconds"] == pytest.approx(
        (report["queued"] + report["in_flight"]) / report["drain_rate"], rel=0.01
    )
    assert report["workers_alive"] == 1
    assert report["workers"][0]["concurrency"] == 4
    text = cli(app, "status").output
    assert "the oldest has waited" in text
    assert "events/s; ETA" in text
    assert "4 in flight of 4" in text
    worker.stop()


def test_status_runs_with_redis_down_and_counts_this_machines_spool(tmp_path: Path) -> None:
    app = ops_app(tmp_path, f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    with app.app_context():
        for number in range(3):
            app.extensions["intercom_events"].extension.track(
                "ran", user_id=f"u{number}", created_at=1_700_000_000
            )
    result = cli(app, "status")
    assert result.exit_code == 3
    assert "did not answer" in result.output
    assert "spooled            3" in result.output
    document = json.loads(cli(app, "status", "--json").output)
    assert document["spooled"] == 3
    assert "did not answer" in document["error"]
    checked = cli(app, "status", "--check", "--json")
    assert checked.exit_code == 3
    assert json.loads(checked.output)["check"]["problems"][0]["kind"] == "redis_down"


def test_status_says_redis_refused_the_database_not_that_it_did_not_answer(
    tmp_path: Path, redis_url: str
) -> None:
    # A valid number, past the 16 databases a server has by default: only Redis can tell.
    app = ops_app(tmp_path, redis_url.rsplit("/", 1)[0] + "/16")
    result = cli(app, "status")
    assert result.exit_code == 3
    assert "did not answer" not in result.output
    assert (
        "Redis refused to SELECT the database INTERCOM_EVENTS_REDIS_URL names (DB index is out "
        "of range)" in result.output
    )
    assert "databases" in result.output
    assert "Traceback" not in result.output


def test_check_exit_codes(tmp_path: Path, redis_url: str, store: DeliveryStore) -> None:
    app = ops_app(tmp_path, redis_url)
    assert cli(app, "status", "--check").exit_code == 0
    assert "check       OK" in cli(app, "status", "--check").output
    push(store, 5, created_at=int(time.time()) - 600)
    result = cli(app, "status", "--check")
    assert result.exit_code == 4
    assert "5 event(s) wait and no worker is alive" in result.output
    assert cli(app, "status").exit_code == 0  # without --check, no verdict
    alive_worker(store)
    assert cli(app, "status", "--check").exit_code == 0
    result = cli(app, "status", "--max-age", "5m")  # --max-age implies --check
    assert result.exit_code == 5
    assert "more than --max-age 5 min" in result.output
    assert cli(app, "status", "--check", "--max-age", "1h").exit_code == 0
    jobs = claimed(store, 1)
    store.settle(WORKER, failures=[failure(jobs[0])])
    assert cli(app, "status", "--check").exit_code == 0
    result = cli(app, "status", "--check", "--fail-on-failed", "--json")
    assert result.exit_code == 6
    assert json.loads(result.output)["check"]["problems"] == [
        {
            "kind": "failed",
            "message": "1 failed event(s) (1 × 400 bad): see `flask intercom failed`",  # noqa: RUF001
        }
    ]
    bad = cli(app, "status", "--max-age", "soon")
    assert bad.exit_code == 2
    assert "'soon' is not a duration" in bad.output


def test_status_says_why_delivery_is_paused_and_why_retries_wait(
    tmp_path: Path, redis_url: str, store: DeliveryStore
) -> None:
    app = ops_app(tmp_path, redis_url)
    budget = RateBudget(store.connection, TOKEN, allowance=1666, window=10)
    paused_at = time.time() - 75
    budget.pause("401 unauthorized", now=paused_at, probe_every=87)
    push(store, 3, created_at=1_700_000_000)
    jobs = claimed(store, 3)
    later = time.time() + 55
    store.settle(
        WORKER,
        retries=[
            Retry(jobs[0], later, {}, "404 not_found"),
            Retry(jobs[1], later + 100, {}, "404 not_found"),
            Retry(jobs[2], later + 5, {}, "network"),
        ],
    )
    text = cli(app, "status").output
    probe_in = paused_at + 87 - time.time()  # at most, as the text was read before
    assert "delivery paused since " in text
    said = re.search(r" ago\): 401 unauthorized, next probe in ([\d.]+) s", text)
    assert said is not None, text
    assert probe_in - 0.5 <= float(said.group(1)) <= 12
    assert "scheduled          3   (2 × 404 not_found, 1 × network, next in 5" in text  # noqa: RUF001
    document = status_json(app)
    assert document["scheduled_by_reason"] == {"404 not_found": 2, "network": 1}
    paused = document["rate_window"]["paused"]
    assert paused["reason"] == "401 unauthorized"
    assert paused_at + 87 - time.time() <= paused["probe_in"] <= 12


def test_the_rate_line_says_what_holds_workers_back(
    tmp_path: Path, redis_url: str, store: DeliveryStore
) -> None:
    app = ops_app(tmp_path, redis_url)
    text = cli(app, "status").output
    assert "calls used in this 10 s window" in text
    assert "429" not in text
    assert "holds off" not in text
    # Intercom's answer said Remaining: 0 (no 429 came): workers hold off until the reset.
    budget = RateBudget(store.connection, TOKEN, allowance=1666, window=10)
    budget.observe(RateLimitInfo(limit=1666, remaining=0, reset=int(time.time()) + 5), reset_in=5)
    text = cli(app, "status").output
    assert "every worker holds off" in text
    assert "Intercom said this window is spent (a 429, X-RateLimit-Remaining: 0" in text
    assert "(429)" not in text


@pytest.mark.parametrize(
    ("names", "warned"), [(0, False), (37, False), (99, False), (100, True), (120, True)]
)
def test_event_names_are_counted_against_intercoms_120(
    tmp_path: Path, redis_url: str, store: DeliveryStore, names: int, warned: bool
) -> None:
    if names:
        store.connection.sadd(store.keys.event_names, *(f"name-{n}" for n in range(names)))
    text = cli(ops_app(tmp_path, redis_url), "status").output
    assert f"event names {names} of 120" in text
    assert ("Intercom refuses new event names past 120" in text) is warned


def test_recount_after_another_tool_deleted_failed_jobs(
    tmp_path: Path, redis_url: str, store: DeliveryStore
) -> None:
    app = ops_app(tmp_path, redis_url)
    push(store, 3, created_at=1_700_000_000)
    jobs = claimed(store, 3)
    store.settle(WORKER, failures=[failure(job) for job in jobs])
    store.connection.zrem(store.failed.key, jobs[0].id)  # as a dashboard's "delete" would
    assert status_json(app)["failed_by_reason"] == {"400 bad": 3}
    assert status_json(app, "--recount")["failed_by_reason"] == {"400 bad": 2}
    assert status_json(app)["failed_by_reason"] == {"400 bad": 2}


def test_a_worker_killed_on_this_machine_is_dead_for_status_at_once(
    redis_url: str, emulator: Sandbox, deployments: Any, tmp_path: Path
) -> None:
    """Its registration lives on for INTERCOM_EVENTS_WORKER_TTL, but on the machine it ran
    on its process is visibly gone: status and --check say so at once, as workers do. What
    it held is stranded, and waits: it is in the oldest event's age (it was not), until a
    live worker puts it back."""
    emulator.configure(latency=30)  # its events stay in flight
    setup = deployments(redis_url, emulator.url, INTERCOM_EVENTS_WORKER_TTL=600)
    tracked = time.time()
    setup.track(3)
    after = time.time()
    worker = setup.start_worker("--concurrency", "4")
    setup.wait_until(lambda: setup.status().held == 3, 30, "the events in flight")
    worker.kill()
    found = setup.status()
    assert [info.alive for info in found.workers] == [False]
    assert (found.held, found.waiting, found.stranded) == (3, 0, 3)
    app = ops_app(tmp_path, redis_url)
    result = cli(app, "status", "--check")
    assert result.exit_code == 4, result.output
    time.sleep(1.5)
    report = status_json(app)
    assert report["stranded"] == 3
    assert tracked - 0.01 <= report["oldest_tracked_at"] <= after + 0.01
    assert report["oldest_age_seconds"] >= 1
    assert "stranded           3" in cli(app, "status").output
    too_old = cli(app, "status", "--max-age", "1s")
    assert too_old.exit_code == 4, too_old.output  # no worker comes first, then:
    assert "the oldest waiting event has waited" in too_old.output
    # A live worker puts them back at its first beat, and sends them.
    emulator.configure(latency=0)
    again = setup.start_worker()
    setup.wait_until(lambda: setup.status().pending == 0, 30, "the stranded events delivered")
    found = setup.status()
    assert (found.held, found.stranded, found.failed) == (0, 0, 0)
    assert found.counters.get("delivered") == 3
    assert status_json(app)["oldest_age_seconds"] is None
    assert again.stop() == 0


def test_a_worker_is_alive_again_after_redis_lost_its_data(
    redis_url: str, emulator: Sandbox, deployments: Any
) -> None:
    """After a FLUSHDB (or a restart without its data), the worker's state written between
    two beats made its registration anew without its birth: status read it as dead for good
    (--check: no worker alive) while it delivered. Its next beat registers it again."""
    emulator.configure(latency=0.5)  # busy, then idle: states written between beats
    setup = deployments(redis_url, emulator.url, INTERCOM_EVENTS_WORKER_TTL=18)  # beat: 6 s
    worker = setup.start_worker("--concurrency", "2")
    setup.wait_until(
        lambda: [info.alive for info in setup.status().workers] == [True], 30, "it registered"
    )
    key = f"rq:worker:{setup.registered()[0].name}"
    setup.connection.flushdb()
    flushed = time.monotonic()
    setup.track(3)
    setup.wait_until(lambda: len(emulator.events) == 3, 30, "the events delivered")
    if time.monotonic() - flushed < 5:  # before the next beat: written anew, no birth
        assert setup.connection.exists(key)
        assert setup.connection.hget(key, "birth") is None
    setup.wait_until(
        lambda: [info.alive for info in setup.status().workers] == [True],
        20,
        "the worker alive again",
    )
    assert worker.stop() == 0


def test_a_workers_own_in_flight_follows_its_load_between_heartbeats(
    redis_url: str, emulator: Sandbox, deployments: Any
) -> None:
    """A worker's line ("5 in flight of 8") said 0 until its next heartbeat (up to 10 s)
    while the queue's figure said 5: it is written again when it changes (at most once a
    second)."""
    emulator.configure(latency=30)  # the events stay in flight
    setup = deployments(redis_url, emulator.url, INTERCOM_EVENTS_WORKER_TTL=600)
    worker = setup.start_worker("--concurrency", "8")
    setup.wait_until(lambda: len(setup.registered()) == 1, 30, "the worker registered")
    setup.track(5)
    setup.wait_until(lambda: setup.status().held == 5, 30, "the events in flight")
    # The next heartbeat is 10 s after the first (WORKER_TTL 600: every 10 s); well before:
    setup.wait_until(
        lambda: [info.details.get("in_flight") for info in setup.status().workers] == [5],
        5,
        "the worker's own count of events in flight",
    )
    worker.kill()


def test_a_backfill_waits_as_long_as_it_was_tracked_not_since_its_created_at(
    tmp_path: Path, redis_url: str, store: DeliveryStore
) -> None:
    """Events of a month ago tracked a moment ago (a backfill) have not waited a month: the
    age comes from the id, which says when an event was tracked; an event of tomorrow at the
    head of the queue hides no older one behind it either."""
    app = ops_app(tmp_path, redis_url)
    alive_worker(store)
    month_ago = int(time.time()) - 30 * 86400
    backfill = Event.create("imported-order", identity=Identity(user_id="42"), created_at=month_ago)
    store.connection.rpush(store.keys.intake, encode_line(backfill.uuid, backfill.to_payload()))
    report = status_json(app)
    assert report["oldest_created_at"] == month_ago
    assert 0 <= report["oldest_age_seconds"] < 60
    assert cli(app, "status", "--max-age", "15m").exit_code == 0
    # Ids this project did not make (given ones, or the random ones of earlier versions)
    # tell no time: their created_at does.
    push(store, 1, created_at=int(time.time()) - 600, first=1)
    store.connection.lpop(store.keys.intake)
    assert status_json(app)["oldest_age_seconds"] >= 600
