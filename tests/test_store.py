"""Where events are in Redis (``store.py``, ``job_records.py``): real Redis, read back
through RQ's own classes to show that RQ's records tell the truth."""

from __future__ import annotations

import json
import math
import pickle
import threading
import time
from typing import Any

import pytest
import redis
from rq import Queue
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry

from flask_intercom_events.backlog import failed_events, purge_failed, read_status, requeue_failed
from flask_intercom_events.job_records import (
    DELIVER,
    ClaimedJob,
    JobSerializer,
    decode_line,
    encode_line,
)
from flask_intercom_events.keys import seconds_prefix
from flask_intercom_events.presence import Presence
from flask_intercom_events.ratelimit import RateBudget
from flask_intercom_events.rules import MILLISECONDS_FROM
from flask_intercom_events.store import DeliveryStore, Failure, Retry, SameSecond

QUEUE = "drills"
WORKER = "host.1.abcdef"
CLAIMS = seconds_prefix("test-token")


def payload(number: int, **changes: Any) -> dict[str, Any]:
    return {
        "event_name": "placed-order",
        "created_at": 1_700_000_000 + number,
        "user_id": f"user-{number}",
        "metadata": {"order": number},
        **changes,
    }


@pytest.fixture
def store(connection: redis.Redis) -> DeliveryStore:
    return DeliveryStore(connection, QUEUE, failure_ttl=3600)


@pytest.fixture
def budget(connection: redis.Redis) -> RateBudget:
    return RateBudget(connection, "token", allowance=1000, window=60)


def presence(connection: redis.Redis, name: str = WORKER) -> Presence:
    return Presence(connection, QUEUE, name, ttl=60)


def track(store: DeliveryStore, count: int, first: int = 0) -> list[str]:
    """What the request path does: RPUSH the events' lines onto the intake."""
    uuids = [f"event-{first + n}" for n in range(count)]
    store.connection.rpush(
        store.keys.intake, *(encode_line(u, payload(first + n)) for n, u in enumerate(uuids))
    )
    return uuids


def rq_queue(connection: redis.Redis) -> Queue:
    return Queue(QUEUE, connection=connection, serializer=JobSerializer)


def claim(
    store: DeliveryStore, budget: RateBudget, most: int, lease: float = 60
) -> list[ClaimedJob]:
    return store.claim(WORKER, most, budget, lease, probe_every=30).jobs


def test_collect_makes_one_rq_job_per_event_named_by_its_uuid(
    connection: redis.Redis, store: DeliveryStore
) -> None:
    uuids = track(store, 150)
    assert store.collect(WORKER, 100, None).enqueued == 100
    assert store.collect(WORKER, 100, None).enqueued == 50
    assert store.collect(WORKER, 100, None).total == 0
    queue = rq_queue(connection)
    assert queue.count == 150
    jobs = queue.get_jobs()
    assert sorted(job.id for job in jobs) == sorted(uuids)
    for job in jobs:  # ordinary RQ jobs, made by RQ
        number = int(job.id.removeprefix("event-"))
        assert job.func_name == DELIVER
        assert job.args == [payload(number)]
        assert job.kwargs == {}
        assert job.get_status() == JobStatus.QUEUED
        assert job.origin == QUEUE
        assert job.result_ttl == 0
        assert job.failure_ttl == 3600
        assert job.description == "Intercom event 'placed-order'"
    assert connection.llen(store.keys.intake) == 0
    assert connection.llen(store.keys.moving(WORKER)) == 0
    assert connection.hgetall(store.keys.stats) == {b"collected": b"150"}


def test_collect_finishes_a_move_left_half_done(
    connection: redis.Redis, store: DeliveryStore
) -> None:
    # A worker that stopped between taking events off the intake and enqueueing them.
    connection.rpush(
        store.keys.moving(WORKER), *(encode_line(f"m-{n}", payload(n)) for n in range(3))
    )
    track(store, 2, first=10)
    assert store.collect(WORKER, 100, None).enqueued == 3
    assert store.collect(WORKER, 100, None).enqueued == 2
    assert rq_queue(connection).count == 5


def test_a_line_of_the_earlier_format_is_one_event_with_a_stable_uuid(
    connection: redis.Redis, store: DeliveryStore
) -> None:
    line = json.dumps(payload(1))
    uuid, body = decode_line(line.encode())
    assert body == payload(1)
    assert decode_line(line.encode())[0] == uuid  # the same line is the same event
    connection.rpush(store.keys.intake, line, line)  # pushed twice (a spool drained twice)
    assert store.collect(WORKER, 10, None).enqueued == 1
    assert rq_queue(connection).get_job_ids() == [uuid]


def test_an_unreadable_intake_line_fails_visibly(
    connection: redis.Redis, store: DeliveryStore
) -> None:
    connection.rpush(store.keys.intake, "{not json", "[1, 2]", encode_line("ok", payload(1)))
    collected = store.collect(WORKER, 10, None)
    assert (collected.enqueued, collected.unreadable) == (1, 2)
    assert rq_queue(connection).count == 1
    failed = FailedJobRegistry(QUEUE, connection=connection, serializer=JobSerializer)
    assert failed.count == 2
    kept = sorted(
        Job.fetch(i, connection=connection, serializer=JobSerializer).args[0]
        for i in failed.get_job_ids()
    )
    assert kept == ["[1, 2]", "{not json"]
    assert read_status(store, presence(connection)).failed_by_reason == {"unreadable": 2}


def test_distinct_events_of_one_second_get_distinct_seconds(
    connection: redis.Redis, store: DeliveryStore
) -> None:
    """Intercom keeps one event per (contact, name, created_at): five distinct exports in
    one second move to the next free seconds; another contact or name is not moved."""
    same = payload(0, user_id="42", event_name="exported-report")
    lines = [encode_line(f"export-{n}", {**same, "metadata": {"n": n}}) for n in range(5)]
    lines.append(encode_line("other-user", {**same, "user_id": "43"}))
    lines.append(encode_line("other-name", {**same, "event_name": "printed-report"}))
    connection.rpush(store.keys.intake, *lines)
    assert store.collect(WORKER, 100, SameSecond(CLAIMS, most=60)).enqueued == 7
    jobs = {job.id: job for job in rq_queue(connection).get_jobs()}
    seconds = sorted(jobs[f"export-{n}"].args[0]["created_at"] for n in range(5))
    assert seconds == [same["created_at"] + n for n in range(5)]
    assert jobs["other-user"].args[0]["created_at"] == same["created_at"]
    assert jobs["other-name"].args[0]["created_at"] == same["created_at"]
    moved = [jobs[f"export-{n}"].meta.get("moved_from") for n in range(5)]
    assert moved.count(None) == 1
    assert moved.count(same["created_at"]) == 4


def test_the_same_event_again_keeps_its_second(
    connection: redis.Redis, store: DeliveryStore, budget: RateBudget
) -> None:
    """A re-delivery (the same uuid: a spool drained twice, a line reclaimed) keeps the
    second it got, so Intercom still de-duplicates it; a new event takes the next."""
    same = payload(0, user_id="42")
    connection.rpush(store.keys.intake, encode_line("first", same), encode_line("second", same))
    store.collect(WORKER, 10, SameSecond(CLAIMS, most=60))
    connection.rpush(store.keys.intake, encode_line("first", same), encode_line("third", same))
    store.collect(WORKER, 10, SameSecond(CLAIMS, most=60))
    created = {job.id: job.args[0]["created_at"] for job in rq_queue(connection).get_jobs()}
    assert created == {
        "first": same["created_at"],
        "second": same["created_at"] + 1,
        "third": same["created_at"] + 2,
    }


def test_no_event_is_moved_past_the_last_second_intercom_takes(
    connection: redis.Redis, store: DeliveryStore
) -> None:
    """At the model's last second (``MILLISECONDS_FROM - 1``), the next free second would be
    one Intercom takes for milliseconds: the second event is collapsed, not sent with a
    ``created_at`` nobody tracked (and failed as the user's invalid event)."""
    last = payload(0, user_id="42", created_at=MILLISECONDS_FROM - 1)
    connection.rpush(store.keys.intake, *(encode_line(f"e{n}", last) for n in range(2)))
    collected = store.collect(WORKER, 10, SameSecond(CLAIMS, most=60))
    assert (collected.enqueued, [job.id for job in collected.collapsed]) == (1, ["e1"])


def test_past_the_most_seconds_an_event_is_failed_as_collapsed(
    connection: redis.Redis, store: DeliveryStore
) -> None:
    same = payload(0, user_id="42")
    connection.rpush(store.keys.intake, *(encode_line(f"e{n}", same) for n in range(4)))
    collected = store.collect(WORKER, 10, SameSecond(CLAIMS, most=2))
    assert collected.enqueued == 3
    assert [job.id for job in collected.collapsed] == ["e3"]
    failed = FailedJobRegistry(QUEUE, connection=connection, serializer=JobSerializer)
    assert failed.get_job_ids() == ["e3"]
    job = Job.fetch("e3", connection=connection, serializer=JobSerializer)
    assert job.meta["failure"]["reason"] == "collapsed"
    status = read_status(store, presence(connection))
    assert status.failed_by_reason == {"collapsed": 1}
    assert status.counters["collapsed"] == 1


def test_claim_records_each_start_as_rq_does(
    connection: redis.Redis, store: DeliveryStore, budget: RateBudget
) -> None:
    track(store, 5)
    store.collect(WORKER, 10, None)
    claimed = store.claim(WORKER, 3, budget, 60, probe_every=30)
    assert len(claimed.jobs) == 3
    assert (claimed.wait, claimed.queue_left, claimed.paused) == (0.0, 2, False)
    assert [job.id for job in claimed.jobs] == ["event-0", "event-1", "event-2"]
    started = StartedJobRegistry(QUEUE, connection=connection, serializer=JobSerializer)
    assert sorted(started.get_job_ids()) == sorted(job.id for job in claimed.jobs)
    for held in claimed.jobs:
        job = Job.fetch(held.id, connection=connection, serializer=JobSerializer)
        assert job.get_status() == JobStatus.STARTED
        assert job.worker_name == WORKER
        assert job.started_at is not None
        # RQ's own execution record, as its worker makes one per run.
        [execution] = job.get_executions()
        assert execution.id == held.execution
        assert Execution.fetch(held.execution, held.id, connection=connection).job_id == held.id
    assert rq_queue(connection).count == 2
    assert budget.state().used == 3
    assert sorted(store.held_ids(WORKER)) == sorted(job.id for job in claimed.jobs)


def test_claim_stays_within_the_rate_budget(connection: redis.Redis, store: DeliveryStore) -> None:
    small = RateBudget(connection, "token", allowance=4, window=60)
    track(store, 10)
    store.collect(WORKER, 10, None)
    first = store.claim(WORKER, 3, small, 60, probe_every=30)
    second = store.claim(WORKER, 3, small, 60, probe_every=30)
    assert (len(first.jobs), len(second.jobs)) == (3, 1)
    assert first.wait == 0
    assert 0 < second.wait <= 60
    assert second.queue_left == 6
    empty = DeliveryStore(connection, "empty", failure_ttl=60)  # spends nothing
    assert empty.claim(WORKER, 3, small, 60, probe_every=30).jobs == []


def test_a_paused_budget_lets_one_probe_through_per_interval(
    connection: redis.Redis, store: DeliveryStore, budget: RateBudget
) -> None:
    track(store, 10)
    store.collect(WORKER, 10, None)
    assert budget.pause("401 unauthorized", now=time.time(), probe_every=0.0) is True
    assert budget.pause("401 unauthorized", now=time.time(), probe_every=0.0) is False
    probe = store.claim(WORKER, 5, budget, 60, probe_every=3600)
    assert (len(probe.jobs), probe.paused) == (1, True)
    blocked = store.claim(WORKER, 5, budget, 60, probe_every=3600)
    assert (len(blocked.jobs), blocked.paused) == (0, True)
    assert blocked.wait == pytest.approx(3600, abs=5)
    state = budget.state()
    assert state.paused_reason == "401 unauthorized"
    assert budget.resume() is True
    assert len(store.claim(WORKER, 5, budget, 60, probe_every=30).jobs) == 5


def test_settle_delivered_retried_and_failed(
    connection: redis.Redis, store: DeliveryStore, budget: RateBudget
) -> None:
    track(store, 3)
    store.collect(WORKER, 10, None)
    ok, again, bad = claim(store, budget, 3)
    at = time.time() + 30
    failure_meta = {"failure": {"reason": "400 parameter_invalid", "status": 400}}
    store.settle(
        WORKER,
        delivered=[ok],
        retries=[Retry(again, at, {"attempts": {"total": 1}}, "500")],
        failures=[Failure(bad, "400 parameter_invalid", "refused: HTTP 400", failure_meta)],
    )
    # Delivered: nothing of it is left (job, execution, results), as RQ with result_ttl=0.
    assert not Job.exists(ok.id, connection=connection)
    assert not list(connection.scan_iter(f"*{ok.id}*"))
    started = StartedJobRegistry(QUEUE, connection=connection, serializer=JobSerializer)
    assert started.get_job_ids() == []
    scheduled = ScheduledJobRegistry(  # type: ignore[no-untyped-call]
        QUEUE, connection=connection, serializer=JobSerializer
    )
    assert scheduled.get_job_ids() == [again.id]
    assert connection.zscore(scheduled.key, again.id) == pytest.approx(at, abs=1)
    retried = Job.fetch(again.id, connection=connection, serializer=JobSerializer)
    assert retried.get_status() == JobStatus.SCHEDULED
    assert retried.meta == {"attempts": {"total": 1}}
    assert retried.args == [payload(1)]
    assert retried.get_executions() == []
    failed_registry = FailedJobRegistry(QUEUE, connection=connection, serializer=JobSerializer)
    assert failed_registry.get_job_ids() == [bad.id]
    failed = Job.fetch(bad.id, connection=connection, serializer=JobSerializer)
    assert failed.get_status() == JobStatus.FAILED
    assert failed.meta == failure_meta
    assert failed._exc_info == "refused: HTTP 400"  # what RQ shows without a result stream
    status = read_status(store, presence(connection))
    assert status.counters == {"collected": 3, "delivered": 1, "retried": 1, "failed": 1}
    assert status.failed_by_reason == {"400 parameter_invalid": 1}
    assert status.scheduled_by_reason == {"500": 1}
    assert store.held_ids(WORKER) == []


def test_due_retries_go_back_on_the_queue(
    connection: redis.Redis, store: DeliveryStore, budget: RateBudget
) -> None:
    track(store, 2)
    store.collect(WORKER, 10, None)
    soon, later = claim(store, budget, 2)
    now = time.time()
    store.settle(
        WORKER, retries=[Retry(soon, now - 1, {}, "network"), Retry(later, now + 60, {}, "500")]
    )
    assert store.promote_due(now) == 1
    assert store.promote_due(now) == 0
    queue = rq_queue(connection)
    assert queue.get_job_ids() == [soon.id]
    assert queue.get_jobs()[0].get_status() == JobStatus.QUEUED
    assert store.next_retry_in(now) == pytest.approx(60, abs=1)
    assert read_status(store, presence(connection)).scheduled_by_reason == {"500": 1}


def test_a_dead_workers_events_are_put_back(
    connection: redis.Redis, store: DeliveryStore, budget: RateBudget
) -> None:
    alive = presence(connection)
    alive.beat(busy=True, details={})
    store.register(WORKER)
    track(store, 4)
    store.collect(WORKER, 10, None)
    claimed = claim(store, budget, 2, lease=600)
    connection.rpush(store.keys.moving(WORKER), encode_line("moving", payload(99)))
    key = alive.key_of(WORKER)
    assert store.reclaim(WORKER, rq_worker_key=key) is None  # alive: untouched
    connection.delete(key)  # its registration expired
    assert store.reclaim(WORKER, rq_worker_key=key) == (1, 2)
    queue = rq_queue(connection)
    assert set(queue.get_job_ids()[:2]) == {j.id for j in claimed}  # at the head
    assert all(job.get_status() == JobStatus.QUEUED for job in queue.get_jobs())
    assert all(job.get_executions() == [] for job in queue.get_jobs())
    assert StartedJobRegistry(QUEUE, connection=connection).get_job_ids() == []
    assert [decode_line(x)[0] for x in connection.lrange(store.keys.intake, 0, -1)] == ["moving"]
    assert store.worker_names() == []
    assert read_status(store, alive).counters["reclaimed"] == 3
    assert store.reclaim(WORKER, rq_worker_key=key) == (0, 0)


def test_a_worker_that_stopped_is_reclaimed_at_once(
    connection: redis.Redis, store: DeliveryStore, budget: RateBudget
) -> None:
    stopped = presence(connection)
    stopped.beat(busy=False, details={})
    track(store, 1)
    store.collect(WORKER, 10, None)
    claim(store, budget, 1)
    stopped.leave()  # RQ's death mark: the key lives on a minute, the worker is gone
    assert store.reclaim(WORKER, rq_worker_key=stopped.key_of(WORKER)) == (0, 1)


def test_release_puts_unfinished_jobs_back_first(
    connection: redis.Redis, store: DeliveryStore, budget: RateBudget
) -> None:
    track(store, 3)
    store.collect(WORKER, 10, None)
    claimed = claim(store, budget, 2)
    assert store.release(WORKER, [j.id for j in claimed]) == 2
    assert store.release(WORKER, [j.id for j in claimed]) == 0  # only what it still holds
    assert rq_queue(connection).get_job_ids()[:2] == [j.id for j in claimed]
    assert store.held_ids(WORKER) == []
    assert StartedJobRegistry(QUEUE, connection=connection).get_job_ids() == []


def test_a_job_whose_meta_another_tool_pickled_is_read(
    connection: redis.Redis, store: DeliveryStore, budget: RateBudget
) -> None:
    """rq-dashboard without -j and ``rq requeue`` without -S json save meta with pickle."""
    track(store, 1)
    store.collect(WORKER, 10, None)
    connection.hset(Job.key_for("event-0"), "meta", pickle.dumps({"note": "rewritten"}))
    [job] = claim(store, budget, 1)
    assert job.problem is None
    assert job.meta == {"note": "rewritten"}
    assert job.payload == payload(0)


def test_a_pickle_that_would_run_code_is_refused_not_run() -> None:
    class Evil:
        def __reduce__(self) -> tuple[Any, ...]:
            return (print, ("ran",))

    with pytest.raises(pickle.UnpicklingError, match=r"refusing to load builtins\.print"):
        JobSerializer.loads(pickle.dumps(Evil()))


def test_a_job_requeued_by_another_tool_starts_a_fresh_history(
    connection: redis.Redis, store: DeliveryStore, budget: RateBudget
) -> None:
    track(store, 1)
    store.collect(WORKER, 10, None)
    [job] = claim(store, budget, 1)
    meta = {"failure": {"reason": "404 not_found"}, "attempts": {"total": 4}}
    store.settle(WORKER, failures=[Failure(job, "404 not_found", "gone", meta)])
    FailedJobRegistry(QUEUE, connection=connection, serializer=JobSerializer).requeue("event-0")
    [again] = claim(store, budget, 1)
    assert again.meta == {"requeued": 1}
    assert read_status(store, presence(connection)).failed_by_reason == {}


def test_status_counts_every_place_an_event_can_be(
    connection: redis.Redis, store: DeliveryStore, budget: RateBudget
) -> None:
    store.register(WORKER)
    track(store, 10)
    store.collect(WORKER, 6, None)  # 6 in the queue, 4 still on the intake
    failing = claim(store, budget, 3)
    store.settle(
        WORKER,
        failures=[
            Failure(job, reason, "x", {"failure": {"reason": reason}})
            for job, reason in zip(
                failing, ["404 not_found", "400 bad", "404 not_found"], strict=True
            )
        ],
    )
    [retry] = claim(store, budget, 1)
    due = time.time() + 5
    store.settle(WORKER, retries=[Retry(retry, due, {}, "network")])
    claim(store, budget, 1)
    connection.rpush(store.keys.moving("gone"), "{}")
    store.register("gone")
    found = read_status(store, presence(connection))
    read_at = time.time()
    assert (found.intake, found.moving, found.queued) == (4, 1, 1)
    assert found.waiting == 6
    assert (found.held, found.started, found.scheduled, found.failed) == (1, 1, 1, 3)
    assert found.failed_by_reason == {"404 not_found": 2, "400 bad": 1}
    assert found.next_retry_in is not None
    assert due - read_at - 0.01 <= found.next_retry_in <= math.ceil(due) - read_at + 0.01
    assert [(w.name, w.alive) for w in found.workers] == [("gone", False), (WORKER, False)]
    assert found.pending == 8
    # Neither worker beats (no heartbeat): what they hold or move is stranded, and waits.
    assert found.stranded == 2
    assert found.oldest_created_at == payload(4)["created_at"]  # held by WORKER, gone
    store.connection.hdel(store.keys.held(WORKER), retry_id := "event-4")
    assert retry_id not in store.held_ids(WORKER)
    found = read_status(store, presence(connection))
    assert found.stranded == 1
    assert found.oldest_created_at == payload(5)["created_at"]  # the head of RQ's queue


def test_status_counts_events_in_motion_once(
    connection: redis.Redis, store: DeliveryStore, redis_url: str
) -> None:
    """While a worker moves events intake -> moving list -> queue -> held, every reading
    counts each one once: ``settled()`` and ``flask intercom status`` never see "nothing
    pending" while a batch is between two places."""
    store.register(WORKER)
    mover = DeliveryStore(redis.Redis.from_url(redis_url), QUEUE, failure_ttl=3600)
    budget = RateBudget(mover.connection, "token", allowance=100_000, window=60)
    reader = presence(connection)
    readings: set[int] = set()
    for round_ in range(20):
        track(store, 30, first=30 * round_)
        done = threading.Event()

        def move(done: threading.Event) -> None:
            while mover.collect(WORKER, 10, SameSecond(CLAIMS, most=60)).total:
                pass
            mover.claim(WORKER, 30, budget, 600, probe_every=30)
            done.set()

        thread = threading.Thread(target=move, args=(done,))
        thread.start()
        while not done.is_set():
            readings.add(read_status(store, reader).pending)
        thread.join()
        readings.add(read_status(store, reader).pending)
        assert readings == {30 * (round_ + 1)}, f"round {round_}"
        readings.clear()


def test_a_counter_written_by_hand_stops_nothing(
    connection: redis.Redis, store: DeliveryStore, budget: RateBudget
) -> None:
    """A counter that is not an integer (``HSET ... delivered 1.5`` by hand, another tool):
    Redis refuses to ``HINCRBY`` it, which once failed every transaction that counted, so a
    worker settled nothing, ever. Each count now starts such a field again; readings take it
    for 0."""
    garbage = {
        store.keys.stats: ("delivered", "1.5"),
        store.keys.failed_reasons: ("404 not_found", "many"),
        store.keys.scheduled_reasons: ("network", "1e3"),
    }
    for key, (field, value) in garbage.items():
        connection.hset(key, field, value)
    status = read_status(store, presence(connection))
    assert (status.counters.get("delivered"), status.failed_by_reason) == (0, {})
    store.register(WORKER)
    track(store, 3)
    store.collect(WORKER, 10, None)
    delivered, retried, failed = store.claim(WORKER, 10, budget, 60, probe_every=30).jobs
    now = time.time()
    store.settle(
        WORKER,
        delivered=[delivered],
        retries=[Retry(retried, now - 1, {}, "network")],
        failures=[
            Failure(failed, "404 not_found", "404", {"failure": {"reason": "404 not_found"}})
        ],
    )
    assert store.promote_due(now) == 1
    assert connection.hget(store.keys.stats, "delivered") == b"1"
    assert connection.hget(store.keys.failed_reasons, "404 not_found") == b"1"
    assert connection.hget(store.keys.scheduled_reasons, "network") is None  # promoted
    connection.hset(store.keys.failed_reasons, "404 not_found", "garbage again")
    assert requeue_failed(store) == 1
    status = read_status(store, presence(connection))
    assert (status.queued, status.failed, status.failed_by_reason) == (2, 0, {})


def test_a_job_record_that_cannot_be_read_keeps_its_reason_to_the_end(
    connection: redis.Redis, store: DeliveryStore, budget: RateBudget
) -> None:
    """A record on the queue no one can read (written by another tool): failed as
    ``unreadable_job``, listed so, and purged so, leaving no count behind."""
    store.register(WORKER)
    connection.hset("rq:job:made-by-hand", mapping={"data": b"not zlib", "origin": QUEUE})
    connection.rpush(rq_queue(connection).key, "made-by-hand")
    (claimed,) = store.claim(WORKER, 10, budget, 60, probe_every=30).jobs
    assert claimed.problem is not None
    reason = claimed.problem_reason
    store.settle(
        WORKER,
        failures=[
            Failure(
                claimed, reason, claimed.problem, {"failure": {"reason": reason, "attempts": 0}}
            )
        ],
    )
    assert [event.reason for event in failed_events(store)] == ["unreadable_job"]
    assert read_status(store, presence(connection)).failed_by_reason == {"unreadable_job": 1}
    assert purge_failed(store) == 1
    assert read_status(store, presence(connection)).failed_by_reason == {}


def test_putting_back_a_job_whose_record_is_gone_leaves_no_stub(
    connection: redis.Redis, store: DeliveryStore, budget: RateBudget
) -> None:
    """Setting RQ's status of a job whose record was deleted (by a dashboard's Delete, or
    evicted) wrote a hash with a status and no data, which no worker could run."""
    track(store, 2)
    store.collect(WORKER, 10, None)
    held, scheduled = claim(store, budget, 2)
    store.settle(WORKER, retries=[Retry(scheduled, time.time() - 1, {}, "network")])
    connection.delete(Job.key_for(held.id), Job.key_for(scheduled.id))
    assert store.reclaim(WORKER, rq_worker_key="rq:worker:gone", force=True) == (0, 1)
    assert store.promote_due(time.time()) == 1
    assert not connection.exists(Job.key_for(held.id), Job.key_for(scheduled.id))


def test_a_retry_is_never_promoted_before_it_is_due(
    connection: redis.Redis, store: DeliveryStore, budget: RateBudget
) -> None:
    """RQ's scheduled registry keeps whole seconds: a retry due at x.9 (a Retry-After, a
    backoff) was moved to the queue at x.0, up to a second early."""
    track(store, 1)
    store.collect(WORKER, 10, None)
    [job] = claim(store, budget, 1)
    due = math.floor(time.time()) + 2.9
    store.settle(WORKER, retries=[Retry(job, due, {}, "503 service_unavailable")])
    assert store.promote_due(due - 0.05) == 0
    assert store.promote_due(math.ceil(due)) == 1
