"""Where events are in Redis (``delivery.py``, ``job_records.py``): real Redis, read back
through RQ's own classes to show the registries tell the truth."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
import redis
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry
from rq.serializers import JSONSerializer

from flask_intercom_events.delivery import DeliveryQueue, Failure, Retry, reason_matches
from flask_intercom_events.job_records import ClaimedJob, read_claimed
from flask_intercom_events.jobs import DELIVER
from flask_intercom_events.ratelimit import RateBudget

QUEUE = "drills"
WORKER = "host.1.abcdef"


def payload(number: int) -> dict[str, Any]:
    return {
        "event_name": "placed-order",
        "created_at": 1_700_000_000 + number,
        "user_id": f"user-{number}",
        "metadata": {"order": number},
    }


@pytest.fixture
def connection(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


@pytest.fixture
def store(connection: redis.Redis) -> DeliveryQueue:
    return DeliveryQueue(connection, QUEUE, failure_ttl=3600)


@pytest.fixture
def budget(connection: redis.Redis) -> RateBudget:
    return RateBudget(connection, "token", allowance=1000, window=60)


def track(connection: redis.Redis, store: DeliveryQueue, count: int, first: int = 0) -> None:
    """What the request path does: RPUSH the events' JSON onto the intake."""
    connection.rpush(store.intake_key, *(json.dumps(payload(first + n)) for n in range(count)))


def rq_queue(connection: redis.Redis) -> Queue:
    return Queue(QUEUE, connection=connection, serializer=JSONSerializer)


def test_collect_makes_one_rq_job_per_event(connection: redis.Redis, store: DeliveryQueue) -> None:
    track(connection, store, 150)
    assert store.collect(WORKER, 100) == 100
    assert store.collect(WORKER, 100) == 50
    assert store.collect(WORKER, 100) == 0
    queue = rq_queue(connection)
    assert queue.count == 150
    jobs = queue.get_jobs()
    assert sorted(job.args[0]["created_at"] for job in jobs) == [
        payload(n)["created_at"] for n in range(150)
    ]
    for job in jobs:  # every job, the copies too, is an ordinary RQ job
        assert job.func_name == DELIVER
        assert job.args == [payload(job.args[0]["created_at"] - 1_700_000_000)]
        assert job.kwargs == {}
        assert job.get_status() == JobStatus.QUEUED
        assert job.origin == QUEUE
        assert job.result_ttl == 0
        assert job.failure_ttl == 3600
        assert job.description == "Intercom event 'placed-order'"
        assert job.serializer is JSONSerializer
    assert len({job.id for job in jobs}) == 150
    assert store._writer._copies_work is True  # this RQ's format was checked and copied
    assert connection.llen(store.intake_key) == 0
    assert connection.llen(store.moving_key(WORKER)) == 0
    assert store.status().counters == {"collected": 150}


def test_collect_finishes_a_move_left_half_done(
    connection: redis.Redis, store: DeliveryQueue
) -> None:
    # A worker that stopped between taking events off the intake and enqueueing them.
    connection.rpush(store.moving_key(WORKER), *(json.dumps(payload(n)) for n in range(3)))
    track(connection, store, 2, first=10)
    assert store.collect(WORKER, 100) == 3
    assert store.collect(WORKER, 100) == 2
    assert rq_queue(connection).count == 5


def test_an_unreadable_intake_line_fails_visibly(
    connection: redis.Redis, store: DeliveryQueue
) -> None:
    connection.rpush(store.intake_key, "{not json", "[1, 2]", json.dumps(payload(1)))
    assert store.collect(WORKER, 10) == 3
    assert rq_queue(connection).count == 1
    failed = FailedJobRegistry(QUEUE, connection=connection, serializer=JSONSerializer)
    assert failed.count == 2
    kept = sorted(
        Job.fetch(i, connection=connection, serializer=JSONSerializer).args[0]
        for i in failed.get_job_ids()
    )
    assert kept == ["[1, 2]", "{not json"]
    assert store.failed_by_reason() == {"unreadable": 2}


def test_claim_marks_jobs_started_in_rqs_registry(
    connection: redis.Redis, store: DeliveryQueue, budget: RateBudget
) -> None:
    track(connection, store, 5)
    store.collect(WORKER, 10)
    claim = store.claim(WORKER, 3, budget, lease=60)
    assert len(claim.jobs) == 3
    assert (claim.wait, claim.queue_left) == (0.0, 2)
    assert [job.args[0]["created_at"] for job in claim.jobs] == [
        payload(n)["created_at"] for n in range(3)
    ]
    started = StartedJobRegistry(QUEUE, connection=connection, serializer=JSONSerializer)
    assert sorted(started.get_job_ids()) == sorted(job.id for job in claim.jobs)
    executions = started.get_job_and_execution_ids()
    assert [execution for _, execution in executions] == [WORKER] * 3
    for claimed in claim.jobs:
        job = Job.fetch(claimed.id, connection=connection, serializer=JSONSerializer)
        assert job.get_status() == JobStatus.STARTED
        assert job.worker_name == WORKER
        assert job.started_at is not None
    assert rq_queue(connection).count == 2
    assert budget.state().used == 3


def test_claim_stays_within_the_rate_budget(connection: redis.Redis, store: DeliveryQueue) -> None:
    small = RateBudget(connection, "token", allowance=4, window=60)
    track(connection, store, 10)
    store.collect(WORKER, 10)
    first = store.claim(WORKER, 3, small, lease=60)
    second = store.claim(WORKER, 3, small, lease=60)
    assert (len(first.jobs), len(second.jobs)) == (3, 1)
    assert first.wait == 0
    assert 0 < second.wait <= 60
    assert second.queue_left == 6
    # An empty queue spends nothing.
    empty = DeliveryQueue(connection, "empty", failure_ttl=60)
    assert empty.claim(WORKER, 3, small, lease=60).jobs == []


def test_settle_delivered_retried_and_failed(
    connection: redis.Redis, store: DeliveryQueue, budget: RateBudget
) -> None:
    track(connection, store, 3)
    store.collect(WORKER, 10)
    ok, again, bad = store.claim(WORKER, 3, budget, lease=60).jobs
    at = time.time() + 30
    failure_meta = {"failure": {"reason": "401 unauthorized", "status": 401}}
    store.settle(
        WORKER,
        delivered=[ok.id],
        retries=[Retry(again, at, {"attempts": {"total": 1}})],
        failures=[Failure(bad, "the access token was refused: HTTP 401", failure_meta)],
    )
    assert not Job.exists(ok.id, connection=connection)  # as RQ does with result_ttl=0
    started = StartedJobRegistry(QUEUE, connection=connection, serializer=JSONSerializer)
    assert started.get_job_ids() == []
    scheduled = ScheduledJobRegistry(  # type: ignore[no-untyped-call]
        QUEUE, connection=connection, serializer=JSONSerializer
    )
    assert scheduled.get_job_ids() == [again.id]
    assert connection.zscore(scheduled.key, again.id) == pytest.approx(at)
    retried = Job.fetch(again.id, connection=connection, serializer=JSONSerializer)
    assert retried.get_status() == JobStatus.SCHEDULED
    assert retried.meta == {"attempts": {"total": 1}}
    assert retried.args == [payload(1)]
    failed_registry = FailedJobRegistry(QUEUE, connection=connection, serializer=JSONSerializer)
    assert failed_registry.get_job_ids() == [bad.id]
    failed = Job.fetch(bad.id, connection=connection, serializer=JSONSerializer)
    assert failed.get_status() == JobStatus.FAILED
    assert failed.meta == failure_meta
    result = failed.latest_result()
    assert result is not None
    assert result.exc_string == "the access token was refused: HTTP 401"
    assert store.status().counters == {"collected": 3, "delivered": 1, "retried": 1, "failed": 1}


def test_due_retries_go_back_on_the_queue(
    connection: redis.Redis, store: DeliveryQueue, budget: RateBudget
) -> None:
    track(connection, store, 2)
    store.collect(WORKER, 10)
    soon, later = store.claim(WORKER, 2, budget, lease=60).jobs
    store.settle(
        WORKER,
        retries=[Retry(soon, time.time() - 1, {}), Retry(later, time.time() + 60, {})],
    )
    assert store.promote_due() == 1
    assert store.promote_due() == 0
    queue = rq_queue(connection)
    assert queue.get_job_ids() == [soon.id]
    assert queue.get_jobs()[0].get_status() == JobStatus.QUEUED
    assert store.next_retry_in() == pytest.approx(60, abs=1)


def test_a_dead_workers_events_are_put_back(
    connection: redis.Redis, store: DeliveryQueue, budget: RateBudget
) -> None:
    track(connection, store, 4)
    store.collect(WORKER, 10)
    claimed = store.claim(WORKER, 2, budget, lease=600).jobs
    connection.rpush(store.moving_key(WORKER), json.dumps(payload(99)))
    store.heartbeat(WORKER, {"pid": 1}, ttl=60, held=[j.id for j in claimed], lease=600)
    assert store.reclaim_dead(me="other") == {}  # alive: untouched
    assert store.reclaim(WORKER) is None
    connection.delete(store.heartbeat_key(WORKER))  # its heartbeat expired
    assert store.reclaim_dead(me="other") == {WORKER: (1, 2)}
    queue = rq_queue(connection)
    assert set(queue.get_job_ids()[:2]) == {j.id for j in claimed}  # at the head
    assert all(job.get_status() == JobStatus.QUEUED for job in queue.get_jobs())
    assert StartedJobRegistry(QUEUE, connection=connection).get_job_ids() == []
    assert [json.loads(x) for x in connection.lrange(store.intake_key, 0, -1)] == [payload(99)]
    assert store.workers() == []
    assert store.status().counters["reclaimed"] == 3
    assert store.reclaim_dead(me="other") == {}


def test_a_worker_that_looks_alive_but_is_known_dead_is_reclaimed(
    connection: redis.Redis, store: DeliveryQueue, budget: RateBudget
) -> None:
    track(connection, store, 1)
    store.collect(WORKER, 10)
    [job] = store.claim(WORKER, 1, budget, lease=600).jobs
    store.heartbeat(WORKER, {"pid": 12345}, ttl=60, held=[job.id], lease=600)
    reclaimed = store.reclaim_dead(me="other", is_dead=lambda info: info.details["pid"] == 12345)
    assert reclaimed == {WORKER: (0, 1)}


def test_release_puts_unfinished_jobs_back_first(
    connection: redis.Redis, store: DeliveryQueue, budget: RateBudget
) -> None:
    track(connection, store, 3)
    store.collect(WORKER, 10)
    claimed = store.claim(WORKER, 2, budget, lease=60).jobs
    assert store.release(WORKER, [j.id for j in claimed]) == 2
    assert store.release(WORKER, [j.id for j in claimed]) == 0  # only what it still holds
    assert rq_queue(connection).get_job_ids()[:2] == [j.id for j in claimed]
    assert store.owned(WORKER) == []


def test_rqs_own_cleanup_understands_our_entries(
    connection: redis.Redis, store: DeliveryQueue, budget: RateBudget
) -> None:
    """A worker dead for longer than its lease, and no worker of ours running: RQ's own
    cleanup (``rq info``, RQ workers) fails the event visibly instead of losing it."""
    track(connection, store, 1)
    store.collect(WORKER, 10)
    [job] = store.claim(WORKER, 1, budget, lease=-10).jobs  # lease already over
    started = StartedJobRegistry(QUEUE, connection=connection, serializer=JSONSerializer)
    started.cleanup()
    failed = FailedJobRegistry(QUEUE, connection=connection, serializer=JSONSerializer)
    assert failed.get_job_ids() == [job.id]
    assert store.failed_by_reason() == {"other (see the job's RQ failure result)": 1}
    assert store.requeue_failed() == 1
    assert rq_queue(connection).get_job_ids() == [job.id]


def fail(store: DeliveryQueue, budget: RateBudget, reasons: list[str]) -> list[ClaimedJob]:
    claimed = store.claim(WORKER, len(reasons), budget, lease=60).jobs
    store.settle(
        WORKER,
        failures=[
            Failure(
                job,
                reason,
                {"failure": {"reason": reason}, "attempts": {"total": 3}, "kept": "yes"},
            )
            for job, reason in zip(claimed, reasons, strict=True)
        ],
    )
    return claimed


def test_status_counts_every_place_an_event_can_be(
    connection: redis.Redis, store: DeliveryQueue, budget: RateBudget
) -> None:
    track(connection, store, 10)
    store.collect(WORKER, 6)  # 6 in the queue, 4 still on the intake
    fail(store, budget, ["404 not_found", "401 unauthorized", "404 not_found"])
    [retry] = store.claim(WORKER, 1, budget, lease=60).jobs
    store.settle(WORKER, retries=[Retry(retry, time.time() + 5, {})])
    store.claim(WORKER, 1, budget, lease=60)
    connection.rpush(store.moving_key("gone"), "{}")
    connection.sadd(store.workers_key, "gone")
    found = store.status()
    assert (found.intake, found.moving, found.queued) == (4, 1, 1)
    assert found.waiting == 6
    assert (found.started, found.scheduled, found.failed) == (1, 1, 3)
    assert found.failed_by_reason == {"404 not_found": 2, "401 unauthorized": 1}
    assert found.next_retry_in == pytest.approx(5, abs=1)
    assert [(w.name, w.alive) for w in found.workers] == [("gone", False)]
    assert store.pending() == 8


def test_status_counts_events_in_motion_once(
    connection: redis.Redis, store: DeliveryQueue, redis_url: str
) -> None:
    """While a worker moves events intake -> moving list -> queue -> started, every reading
    counts each one once: ``settled()`` and ``flask intercom status`` never see "nothing
    pending" while a batch is between two places."""
    store.heartbeat(WORKER, {}, 60, [], 600)
    mover = DeliveryQueue(redis.Redis.from_url(redis_url), QUEUE, failure_ttl=3600)
    budget = RateBudget(mover.connection, "token", allowance=100_000, window=60)
    readings: set[int] = set()
    for round_ in range(20):
        track(connection, store, 30, first=30 * round_)
        done = threading.Event()

        def move(done: threading.Event) -> None:
            while mover.collect(WORKER, 10):  # three moves, each in two steps
                pass
            mover.claim(WORKER, 30, budget, lease=600)
            done.set()

        thread = threading.Thread(target=move, args=(done,))
        thread.start()
        while not done.is_set():
            readings.add(store.pending())
        thread.join()
        readings.add(store.pending())
        assert readings == {30 * (round_ + 1)}, f"round {round_}"
        readings.clear()


@pytest.mark.parametrize(
    ("wanted", "requeued"),
    [("404", 2), ("not_found", 2), ("404 not_found", 2), ("401", 1), ("network", 0), (None, 3)],
)
def test_requeue_failed_by_reason(
    connection: redis.Redis,
    store: DeliveryQueue,
    budget: RateBudget,
    wanted: str | None,
    requeued: int,
) -> None:
    track(connection, store, 3)
    store.collect(WORKER, 10)
    fail(store, budget, ["404 not_found", "401 unauthorized", "404 not_found"])
    seen: list[int] = []
    assert store.requeue(store.failed_ids(wanted), progress=seen.append) == requeued
    assert sum(seen) == requeued
    queue = rq_queue(connection)
    assert queue.count == requeued
    for job in queue.get_jobs():
        assert job.get_status() == JobStatus.QUEUED
        assert job.meta == {"kept": "yes", "requeued": 1}  # a fresh retry history
    assert store.status().failed == 3 - requeued
    assert store.requeue(store.failed_ids(wanted)) == 0 or wanted is None


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


@pytest.mark.parametrize(
    ("data", "meta", "problem"),
    [
        (None, None, "the job has no data (it was deleted)"),
        (b"\x00garbage", None, "the job cannot be read as JSON"),
        (
            json.dumps(["f", None, "not a list", {}]).encode(),
            None,
            "the job cannot be read as JSON: unexpected shape",
        ),
        (
            json.dumps(["f", None, [1], {}]).encode(),
            b"[]",
            "the job cannot be read as JSON: unexpected shape",
        ),
    ],
)
def test_read_claimed_refuses_what_it_cannot_read(
    data: bytes | None, meta: bytes | None, problem: str
) -> None:
    found = read_claimed("id", data, meta)
    assert found.problem is not None
    assert found.problem.startswith(problem)


def test_read_claimed_reads_uncompressed_data_like_rq() -> None:
    found = read_claimed("id", json.dumps([DELIVER, None, [{"a": 1}], {}]).encode(), b'{"m": 1}')
    assert (found.func_name, list(found.args), dict(found.meta)) == (DELIVER, [{"a": 1}], {"m": 1})
    assert found.problem is None
