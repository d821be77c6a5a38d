"""``flask intercom worker`` and its companions (``status``, ``requeue-failed``): real worker
processes, a real Redis, the emulator over HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import Result
from flask import Flask
from rq import Queue
from rq import Worker as RQWorker
from rq.serializers import JSONSerializer

from flask_intercom_events import IntercomEvents
from flask_intercom_events.errors import RateLimitInfo
from flask_intercom_events.ratelimit import RateBudget, budget_key
from flask_intercom_events.sandbox import Sandbox

from .workers import QUEUE, TOKEN, Deployment, make_deployments

Make = Callable[..., Deployment]


@pytest.fixture
def deployments(tmp_path: Path) -> Iterator[Make]:
    """Delivery set-ups (an app tracking events, worker processes) for this test."""
    yield from make_deployments(tmp_path)


def cli(app: Flask, *args: str) -> Result:
    return app.test_cli_runner().invoke(args=["intercom", *args], catch_exceptions=False)


def test_delivers_what_the_app_tracked(
    redis_url: str, emulator: Sandbox, deployments: Make
) -> None:
    setup = deployments(redis_url, emulator.url)
    setup.track(30, name="invited-friend")
    worker = setup.start_worker("--concurrency", "4")
    emulator.wait_for_events(30, timeout=30)
    setup.wait_until(setup.settled, 10, "every event settled")
    assert worker.stop() == 0
    received = {(e.user_id, e.created_at): e for e in emulator.events}
    assert set(received) == set(setup.tracked)
    sample = received[setup.tracked[7]]
    assert sample.event_name == "invited-friend"
    assert sample.metadata == {"n": 7}
    assert emulator.warnings == []
    assert emulator.stats.duplicates == 0
    # The signal fired in the worker, with the worker's app as sender, once per event.
    assert setup.signals() == ["delivered tests.delivery_app invited-friend"] * 30
    found = setup.status()
    assert found.counters["delivered"] == 30
    assert found.workers == []  # unregistered on the way out
    assert TOKEN not in worker.log()


def test_rq_tools_see_the_worker_busy_then_idle_then_gone(
    redis_url: str, emulator: Sandbox, deployments: Make
) -> None:
    # Answers take 6 s (under the 10-s read timeout): the worker stays busy long enough for
    # a test on a loaded machine to see it.
    emulator.configure(latency=6.0)
    setup = deployments(redis_url, emulator.url)
    queue = Queue(QUEUE, connection=setup.connection)

    def seen() -> list[tuple[int | None, str, int]]:
        """What ``rq info`` lists for the queue: pid, state, delivered count."""
        return [
            (found.pid, found.get_state(), found.successful_job_count)
            for found in RQWorker.all(queue=queue)
        ]

    worker = setup.start_worker("--concurrency", "4")
    setup.wait_until(lambda: seen() == [(worker.pid, "idle", 0)], 30, "RQ sees it idle")
    setup.track(3)
    setup.wait_until(lambda: seen() == [(worker.pid, "busy", 0)], 30, "RQ sees it busy")
    setup.wait_until(lambda: seen() == [(worker.pid, "idle", 3)], 30, "idle, 3 delivered")
    assert worker.stop() == 0
    assert seen() == []
    assert RQWorker.all(connection=setup.connection) == []


def test_burst_exits_once_everything_is_delivered(
    redis_url: str, emulator: Sandbox, deployments: Make
) -> None:
    setup = deployments(redis_url, emulator.url)
    setup.track(12)
    worker = setup.start_worker("--burst", "--concurrency", "3")
    assert worker.wait(30) == 0
    assert emulator.stats.events == 12
    assert setup.settled()


def test_sigterm_finishes_the_requests_in_flight_and_leaves_the_rest_queued(
    redis_url: str, emulator: Sandbox, deployments: Make
) -> None:
    # Answers take 6 s: under the 10-s read timeout and the 14-s grace of a SIGTERM, long
    # enough for a test on a loaded machine to signal while all 4 are in flight.
    emulator.configure(latency=6.0)
    setup = deployments(redis_url, emulator.url)
    setup.track(10)
    worker = setup.start_worker("--concurrency", "4")
    # Started in Redis, and received by the emulator (not just claimed by the worker).
    setup.wait_until(
        lambda: setup.status().started == 4 and emulator.stats.requests == 4,
        30,
        "4 requests in flight",
    )
    worker.signal(signal.SIGTERM)
    assert worker.wait(20) == 0
    found = setup.status()
    # The 4 in flight were answered and recorded; the 6 never sent are still queued.
    assert (emulator.stats.events, found.started, found.waiting) == (4, 0, 6)
    assert found.counters["delivered"] == 4
    assert "finishing the requests in flight" in worker.log()
    emulator.configure(latency=0)
    assert setup.start_worker("--burst").wait(30) == 0
    assert emulator.stats.events == 10
    assert emulator.stats.duplicates == 0


def test_a_second_signal_stops_at_once_and_puts_everything_back(
    redis_url: str, emulator: Sandbox, deployments: Make
) -> None:
    # Answers take 12 s and the read timeout is longer still: a worker that waited for the
    # requests in flight would take over 11 s to stop, one that does not a fraction of one.
    emulator.configure(latency=12)
    setup = deployments(redis_url, emulator.url, INTERCOM_API_TIMEOUT=[3.05, 30])
    setup.track(6)
    worker = setup.start_worker("--concurrency", "3")
    setup.wait_until(lambda: setup.status().started == 3, 15, "3 requests in flight")
    worker.signal(signal.SIGINT)
    time.sleep(0.3)
    worker.signal(signal.SIGTERM)
    started = time.monotonic()
    assert worker.wait(20) == 0
    assert time.monotonic() - started < 8  # did not wait out the 12-s answers
    found = setup.status()
    assert (found.started, found.waiting) == (0, 6)
    assert "Stopping now" in worker.log()
    emulator.configure(latency=0)
    assert setup.start_worker("--burst").wait(30) == 0
    emulator.wait_for_events(6, timeout=10)
    # The emulator handled the 3 abandoned requests too: sent again, they are duplicates,
    # which Intercom ignores (same contact, name and created_at).
    assert emulator.stats.duplicates <= 3


def test_the_rate_limit_is_shared_by_every_worker(
    redis_url: str, emulator: Sandbox, deployments: Make
) -> None:
    # Intercom allows 10 calls per 2-s window here; two workers, each able to do far more.
    emulator.configure(rate_limit=10, rate_window=2.0)
    setup = deployments(
        redis_url, emulator.url, INTERCOM_EVENTS_RATE_LIMIT=300, INTERCOM_EVENTS_RATE_WINDOW=2
    )
    workers = [setup.start_worker("--concurrency", "8") for _ in range(2)]
    # Both in their loop (registered, their signal handlers installed), waiting for events:
    # neither can deliver everything before the other starts, and SIGTERM stops both cleanly.
    setup.wait_until(lambda: len(setup.registered()) == 2, 30, "both workers up")
    # The windows (the budget's in Redis and the emulator's) are aligned to multiples of 2 s:
    # track just after one begins, so that each window's calls are granted at its start,
    # far from its end, and none reaches the emulator in the next window.
    time.sleep(2 - time.time() % 2 + 0.05)
    setup.track(30)
    setup.wait_until(setup.settled, 30, "every event settled")
    for worker in workers:
        assert worker.stop() == 0
    assert emulator.stats.events == 30
    assert emulator.stats.rate_limited == 0
    per_window: dict[int, int] = {}
    for record in emulator.requests:
        window = int(record.received_at // 2)
        per_window[window] = per_window.get(window, 0) + 1
    assert max(per_window.values()) <= 10
    assert len(per_window) >= 3


def test_a_429_makes_every_worker_wait_for_the_reset(
    redis_url: str, emulator: Sandbox, deployments: Make
) -> None:
    window = 4  # long enough for the check below to see sends tried before the reset
    emulator.configure(rate_window=float(window))
    emulator.script("429")
    setup = deployments(redis_url, emulator.url, INTERCOM_EVENTS_RATE_WINDOW=window)
    worker = setup.start_worker("--concurrency", "2")
    setup.wait_until(lambda: len(setup.registered()) == 1, 30, "the worker up")
    # The 429 comes just after a window began (windows are aligned to multiples of 4 s):
    # nearly the whole window is left to try sending in.
    time.sleep(window - time.time() % window + 0.05)
    setup.track(1)
    assert emulator.wait_for(lambda: emulator.stats.rate_limited == 1, 15)
    throttled_at = emulator.requests[0].received_at
    reset = (int(throttled_at // window) + 1) * window
    # Once the worker has taken the 429 in (the event scheduled for after the reset, then
    # every worker blocked until it), nothing is sent before the reset. The block stays
    # recorded in the budget, unlike the retry, which is scheduled only until the reset.
    key = budget_key(TOKEN)
    setup.wait_until(lambda: setup.connection.hexists(key, "blocked"), 10, "the 429 recorded")
    assert float(setup.connection.hget(key, "blocked") or 0) >= reset
    setup.track(5)
    emulator.wait_for_events(6, timeout=30)
    worker.stop()
    assert all(r.received_at >= reset for r in emulator.requests[1:])
    assert emulator.stats.rate_limited == 1


def test_status_and_requeue_failed(
    redis_url: str, emulator: Sandbox, deployments: Make, tmp_path: Path
) -> None:
    emulator.configure(require_contacts=True)
    setup = deployments(redis_url, emulator.url, INTERCOM_EVENTS_NOT_FOUND_RETRIES=[])
    setup.track(3, prefix="nobody")
    worker = setup.start_worker("--concurrency", "2")
    setup.wait_until(lambda: setup.status().failed == 3, 20, "3 failures")
    worker.stop()
    setup.track(2, prefix="later")  # waiting on the intake: queued too
    # Intercom says 666 of its 1,666 calls are spent in a window ending in 300 s: the budget
    # follows it, and status shows it (whatever the clock, the window cannot refill meanwhile).
    budget = RateBudget(setup.connection, TOKEN, allowance=1666, window=10)
    budget.observe(RateLimitInfo(limit=1666, remaining=1000, reset=0), reset_in=300.0)
    app = Flask("ops", instance_path=str(tmp_path / "ops"))
    app.config.update(setup.config, INTERCOM_EVENTS_DELIVERY="rq")
    IntercomEvents(app)
    report = json.loads(cli(app, "status", "--json").output)
    assert report["queued"] == 2
    assert report["queued_detail"] == {"intake": 2, "moving": 0, "rq_queue": 0}
    assert (report["in_flight"], report["scheduled"], report["failed"]) == (0, 0, 3)
    assert report["failed_by_reason"] == {"404 not_found": 3}
    assert report["spooled"] == 0
    assert report["rate_window"]["allowance"] == 1666
    assert report["rate_window"]["used"] == 666
    assert 290 < report["rate_window"]["resets_in"] <= 300
    text = cli(app, "status").output
    assert "queued             2" in text
    assert "3  404 not_found" in text
    assert TOKEN not in text + json.dumps(report)
    result = cli(app, "requeue-failed", "--reason", "401")
    assert "Requeued 0 of 3 failed event(s) with reason '401'." in result.output
    for user in ("nobody-0", "nobody-1", "nobody-2", "later-3", "later-4"):
        emulator.add_contact(user_id=user)  # the contacts now exist
    result = cli(app, "requeue-failed", "--reason", "not_found")
    assert "Requeued 3 of 3 failed event(s) with reason 'not_found'." in result.output
    assert setup.start_worker("--burst").wait(30) == 0
    assert {e.user_id for e in emulator.events} == {
        "nobody-0",
        "nobody-1",
        "nobody-2",
        "later-3",
        "later-4",
    }
    assert setup.status().failed == 0


def test_failing_signal_receivers_change_nothing(
    redis_url: str, emulator: Sandbox, deployments: Make
) -> None:
    emulator.configure(require_contacts=True)
    emulator.add_contact(user_id="user-0")
    emulator.add_contact(user_id="user-1")
    setup = deployments(redis_url, emulator.url, INTERCOM_EVENTS_NOT_FOUND_RETRIES=[])
    setup.track(3)  # user-2 does not exist: it fails
    worker = setup.start_worker("--concurrency", "3", raising_receivers=True)
    setup.wait_until(setup.settled, 20, "every event settled")
    assert worker.stop() == 0
    assert (emulator.stats.events, emulator.stats.duplicates) == (2, 0)  # sent once each
    assert setup.status().failed_by_reason == {"404 not_found": 1}
    assert sorted(setup.signals()) == [
        "delivered tests.delivery_app ran-drill",
        "delivered tests.delivery_app ran-drill",
        "failed tests.delivery_app ran-drill 404 not_found",
    ]
    log = worker.log()
    assert "An event_delivered receiver raised (the event was delivered)" in log
    assert "An event_failed receiver raised (the failure is recorded)" in log


def test_what_cannot_be_sent_fails_with_its_reason(
    redis_url: str, emulator: Sandbox, deployments: Make
) -> None:
    setup = deployments(redis_url, emulator.url)
    setup.track(1)
    # Not an event Intercom would take (pushed by hand: the extension would refuse it), a
    # line that is not JSON, and a job of some other function on the queue.
    setup.connection.rpush(
        setup.store.keys.intake,
        json.dumps({"event_name": "bad", "created_at": "yesterday", "user_id": "1"}),
        "{truncated",
    )
    Queue(setup.store.name, connection=setup.connection, serializer=JSONSerializer).enqueue(
        "os.getcwd"
    )
    # JSON nested deeper than Python's decoder can recurse (RecursionError, no ValueError),
    # at the head of the intake, where status and the metrics read the oldest event's age.
    setup.connection.lpush(setup.store.keys.intake, b"deep " + b"[" * 100_000 + b"]" * 100_000)
    status = setup.status()
    assert (status.intake, status.queued) == (4, 1)  # the foreign job is on RQ's queue
    worker = setup.start_worker("--concurrency", "2")
    setup.wait_until(setup.settled, 20, "every event settled")
    assert worker.stop() == 0
    assert emulator.stats.requests == 1  # only the good one was sent
    assert setup.status().failed_by_reason == {
        "foreign_job": 1,
        "invalid_event": 1,
        "unreadable": 2,
    }
    assert "Traceback" not in worker.log()


def test_a_job_record_with_no_data_is_failed_visibly_and_stops_nothing(
    redis_url: str, emulator: Sandbox, deployments: Make
) -> None:
    """A record with a status and nothing else (what setting the status of a job whose
    record was deleted leaves: rq-dashboard's Delete of a dead worker's job, an eviction)
    made every worker that claimed it exit with RQ's "Cannot build the job data": the queue
    stopped. It is failed as unreadable, and the rest is delivered."""
    setup = deployments(redis_url, emulator.url)
    setup.track(3)
    setup.connection.hset("rq:job:stub-1", mapping={"status": "queued"})
    setup.connection.rpush(setup.store.queue.key, "stub-1")
    worker = setup.start_worker("--concurrency", "2")
    setup.wait_until(setup.settled, 20, "every event settled")
    assert worker.process.poll() is None, worker.log()  # still running
    assert worker.stop() == 0
    assert len(emulator.events) == 3
    assert setup.status().failed_by_reason == {"unreadable_job": 1}
    assert "Traceback" not in worker.log()


def test_the_worker_needs_a_token(tmp_path: Path, redis_url: str) -> None:
    app = Flask("no-token", instance_path=str(tmp_path))
    app.config.update(INTERCOM_EVENTS_DELIVERY="disabled", INTERCOM_EVENTS_REDIS_URL=redis_url)
    IntercomEvents(app)
    result = app.test_cli_runner().invoke(args=["intercom", "worker", "--burst"])
    assert result.exit_code != 0
    assert "INTERCOM_ACCESS_TOKEN is not set" in str(result.exception)


def test_a_worker_paused_past_its_ttl_leaves_what_was_taken_from_it(
    redis_url: str, emulator: Sandbox, deployments: Make
) -> None:
    """A worker stopped (SIGSTOP, a VM paused) past INTERCOM_EVENTS_WORKER_TTL is reclaimed:
    another worker sends its events. Woken, it settled them all the same: counted delivered
    twice (more delivered than collected) and rescheduled jobs the other had delivered, each
    sent again. What was taken from it is left to the worker that took it."""
    emulator.configure(latency=2.0)
    setup = deployments(redis_url, emulator.url, INTERCOM_EVENTS_WORKER_TTL=3)
    setup.track(6)
    sleeper = setup.start_worker("--concurrency", "6")
    setup.wait_until(lambda: emulator.stats.requests >= 6, 30, "all six in flight")
    sleeper.signal(signal.SIGSTOP)
    try:
        emulator.configure(latency=0)
        other = setup.start_worker("--concurrency", "6")
        setup.wait_until(
            lambda: setup.status().counters.get("delivered", 0) >= 6, 30, "the six delivered"
        )
    finally:
        sleeper.signal(signal.SIGCONT)
    setup.wait_until(
        lambda: "left to the worker that took them" in sleeper.log(), 30, "the woken worker"
    )
    setup.wait_until(setup.settled, 30, "every event settled")
    assert sleeper.stop() == 0
    assert other.stop() == 0
    found = setup.status()
    assert found.counters.get("delivered") == 6
    assert found.counters.get("collected") == 6
    assert (found.scheduled, found.failed) == (0, 0)
