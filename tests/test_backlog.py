"""Reading and repairing failures (``backlog.py``): real Redis, RQ's own registries."""

from __future__ import annotations

import time

import pytest
import redis
from rq import Queue
from rq.job import JobStatus
from rq.registry import FailedJobRegistry, StartedJobRegistry

from flask_intercom_events.backlog import (
    failed_events,
    purge_failed,
    read_status,
    reason_matches,
    recount_failed,
    requeue_failed,
)
from flask_intercom_events.job_records import JobSerializer, encode_line
from flask_intercom_events.presence import Presence
from flask_intercom_events.ratelimit import RateBudget
from flask_intercom_events.store import DeliveryStore, Failure

QUEUE = "drills"
WORKER = "host.1.abcdef"


@pytest.fixture
def store(connection: redis.Redis) -> DeliveryStore:
    return DeliveryStore(connection, QUEUE, failure_ttl=3600)


@pytest.fixture
def budget(connection: redis.Redis) -> RateBudget:
    return RateBudget(connection, "token", allowance=1000, window=60)


def fail(store: DeliveryStore, budget: RateBudget, reasons: list[str]) -> None:
    """Track one event per reason and fail it with that reason."""
    start = int(store.connection.hget(store.keys.stats, "collected") or 0)  # ids never reused
    store.connection.rpush(
        store.keys.intake,
        *(
            encode_line(
                f"e{start + n}",
                {"event_name": "ran", "created_at": 1_700_000_000 + n, "user_id": f"u{n}"},
            )
            for n in range(len(reasons))
        ),
    )
    store.collect(WORKER, 100, None)
    claimed = store.claim(WORKER, len(reasons), budget, 60, probe_every=30).jobs
    store.settle(
        WORKER,
        failures=[
            Failure(
                job,
                reason,
                f"failed: {reason}",
                {
                    "failure": {"reason": reason, "failed_at": time.time()},
                    "attempts": {"total": 3},
                    "last_error": f"HTTP {reason}",
                    "kept": "yes",
                },
            )
            for job, reason in zip(claimed, reasons, strict=True)
        ],
    )


def reasons(store: DeliveryStore) -> dict[str, int]:
    return read_status(store, Presence(store.connection, QUEUE, "reader", ttl=1)).failed_by_reason


@pytest.mark.parametrize(
    ("wanted", "requeued"),
    [("404", 2), ("not_found", 2), ("404 not_found", 2), ("400", 1), ("network", 0), (None, 3)],
)
def test_requeue_failed_by_reason(
    connection: redis.Redis,
    store: DeliveryStore,
    budget: RateBudget,
    wanted: str | None,
    requeued: int,
) -> None:
    fail(store, budget, ["404 not_found", "400 bad", "404 not_found"])
    seen: list[int] = []
    assert requeue_failed(store, wanted, progress=seen.append) == requeued
    assert sum(seen) == requeued
    queue = Queue(QUEUE, connection=connection, serializer=JobSerializer)
    assert queue.count == requeued
    for job in queue.get_jobs():
        assert job.get_status() == JobStatus.QUEUED
        assert job.meta == {"kept": "yes", "last_error": job.meta["last_error"], "requeued": 1}
        assert connection.ttl(job.key) == -1  # no longer expiring with the failed registry
    assert sum(reasons(store).values()) == 3 - requeued
    assert requeue_failed(store, wanted) == 0


def test_failed_events_are_listed_newest_first_with_what_an_operator_needs(
    store: DeliveryStore, budget: RateBudget
) -> None:
    fail(store, budget, ["404 not_found", "400 bad"])
    listed = list(failed_events(store))
    assert [event.reason for event in listed] == ["400 bad", "404 not_found"]
    first = listed[0]
    assert (first.event_name, first.contact, first.attempts) == ("ran", "u1", 3)
    assert first.created_at == 1_700_000_001
    assert first.last_error == "HTTP 400 bad"
    assert [e.id for e in failed_events(store, reason="404")] == [listed[1].id]
    assert len(list(failed_events(store, limit=1))) == 1


def test_purge_failed_deletes_what_matches_and_keeps_the_counts_true(
    connection: redis.Redis, store: DeliveryStore, budget: RateBudget
) -> None:
    fail(store, budget, ["404 not_found", "400 bad", "404 not_found"])
    assert purge_failed(store, "404", older_than=3600) == 0  # too recent
    assert purge_failed(store, "404") == 2
    assert reasons(store) == {"400 bad": 1}
    assert connection.zcard(store.failed.key) == 1
    assert len(list(connection.scan_iter("rq:job:*"))) == 1


def test_recount_rebuilds_the_counts_after_another_tool_changed_the_registry(
    connection: redis.Redis, store: DeliveryStore, budget: RateBudget
) -> None:
    fail(store, budget, ["404 not_found", "400 bad"])
    connection.zrem(store.failed.key, "e0")  # as a dashboard's "delete" would
    assert sum(reasons(store).values()) == 2
    assert recount_failed(store) == {"400 bad": 1}
    assert reasons(store) == {"400 bad": 1}


def test_rqs_own_cleanup_fails_an_abandoned_event_visibly(
    connection: redis.Redis, store: DeliveryStore, budget: RateBudget
) -> None:
    """A worker dead for longer than its lease, and no worker of ours running: RQ's own
    cleanup (``rq info``, RQ workers) fails the event visibly instead of losing it."""
    connection.rpush(
        store.keys.intake,
        encode_line("lost", {"event_name": "ran", "created_at": 1_700_000_000, "user_id": "1"}),
    )
    store.collect(WORKER, 10, None)
    store.claim(WORKER, 1, budget, 1, probe_every=30)
    started = StartedJobRegistry(QUEUE, connection=connection, serializer=JobSerializer)
    started.cleanup(timestamp=time.time() + 60)  # a minute later, the lease long over
    failed = FailedJobRegistry(QUEUE, connection=connection, serializer=JobSerializer)
    assert failed.get_job_ids() == ["lost"]
    assert [event.reason for event in failed_events(store)] == ["other (see the job's exc_info)"]
    assert requeue_failed(store) == 1


@pytest.mark.parametrize(
    ("reason", "wanted", "matches"),
    [
        ("404 not_found", "404", True),
        ("404 not_found", "NOT_FOUND", True),
        ("404 not_found", " 404 not_found ", True),
        ("404 not_found", "40", False),
        ("4041", "404", False),
        ("network", "network", True),
        ("unreadable", "un", False),
    ],
)
def test_reason_matches(reason: str, wanted: str, matches: bool) -> None:
    assert reason_matches(reason, wanted) is matches


@pytest.mark.parametrize("wanted", [None, "404"])
def test_requeue_failed_takes_every_batch(
    store: DeliveryStore, budget: RateBudget, wanted: str | None
) -> None:
    """More failures than one batch (500): each requeued batch leaves the registry while it
    is read, and none of the next is skipped."""
    plenty = RateBudget(store.connection, "plenty", allowance=10_000, window=60)
    for _ in range(30):
        fail(store, plenty, ["404 not_found"] * 40 + ["400 bad"])
    assert requeue_failed(store, wanted) == (1230 if wanted is None else 1200)
    assert store.queue.count == (1230 if wanted is None else 1200)
    assert reasons(store) == ({} if wanted is None else {"400 bad": 30})


def test_the_last_error_falls_back_to_the_jobs_exc_info(
    store: DeliveryStore, budget: RateBudget
) -> None:
    """A failed job whose ``meta`` leaves the description to RQ's ``exc_info`` (as a compact
    record would) still lists its last error."""
    store.connection.rpush(
        store.keys.intake,
        encode_line("e-x", {"event_name": "ran", "created_at": 1_700_000_000, "user_id": "1"}),
    )
    store.collect(WORKER, 10, None)
    [job] = store.claim(WORKER, 1, budget, 60, probe_every=30).jobs
    store.settle(
        WORKER,
        failures=[Failure(job, "400 bad", "HTTP 400 bad: no", {"failure": {"reason": "400 bad"}})],
    )
    [listed] = failed_events(store)
    assert listed.last_error == "HTTP 400 bad: no"
