"""Reading a delivery queue's backlog and failures, and repairing them.

Counts are read at one instant (``counts.lua``), at a cost that does not grow with the
backlog: failures are counted by reason as they happen, never by reading every failed job.
Listing, requeueing and purging failed events read the failed jobs themselves, in batches.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from rq.executions import ExecutionRegistry
from rq.job import Job, JobStatus
from rq.results import Result

from .job_records import ClaimedJob
from .lines import as_text
from .oldest import oldest_of, stranded_of
from .presence import Presence
from .process import machine_id, process_gone
from .requeued import fresh_history
from .store import DeliveryStore

__all__ = [
    "FailedEvent",
    "QueueStatus",
    "WorkerInfo",
    "failed_events",
    "purge_failed",
    "read_status",
    "reason_matches",
    "recount_failed",
    "requeue_failed",
]

_BATCH = 500


@dataclass(frozen=True)
class WorkerInfo:
    """A registered worker, and what its heartbeat says (``details``) if it is alive."""

    name: str
    alive: bool
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class QueueStatus:
    """Where every event of a queue is, at one instant."""

    intake: int
    moving: int
    queued: int
    held: int
    started: int
    scheduled: int
    failed: int
    failed_by_reason: dict[str, int]
    scheduled_by_reason: dict[str, int]
    counters: dict[str, int]
    workers: list[WorkerInfo]
    next_retry_in: float | None
    #: Events held or being moved by workers that are gone (counted in ``held`` and
    #: ``moving``), put back when a live worker reclaims them.
    stranded: int
    oldest_created_at: int | None
    #: When the oldest waiting event was tracked (its id says; else its ``created_at``).
    oldest_tracked_at: float | None
    event_names: int

    @property
    def waiting(self) -> int:
        """Events waiting to be sent: the intake, moving lists and RQ's queue."""
        return self.intake + self.moving + self.queued

    @property
    def in_flight(self) -> int:
        """Events workers hold: being sent, or claimed and about to be."""
        return self.held

    @property
    def pending(self) -> int:
        """Events not yet delivered nor failed."""
        return self.waiting + self.held + self.scheduled

    @property
    def drain_rate(self) -> float:
        """Events a second the live workers delivered over the last minute."""
        return sum(float(w.details.get("delivery_rate", 0) or 0) for w in self.workers if w.alive)

    def oldest_age(self, now: float) -> float | None:
        """Seconds the oldest waiting event (at the head of the intake or of RQ's queue, or
        left by a gone worker) has waited since it was tracked, or ``None`` if none waits."""
        if self.oldest_tracked_at is None:
            return None
        return max(now - self.oldest_tracked_at, 0.0)


def read_status(
    store: DeliveryStore, presence: Presence, *, now: float | None = None
) -> QueueStatus:
    """Everything ``flask intercom status`` and the metrics show about ``store``'s queue."""
    keys = store.keys
    counts = store.scripts.counts(
        keys=[
            keys.intake,
            store.queue.key,
            store.started.key,
            store.scheduled.key,
            store.failed.key,
            keys.stats,
            keys.workers,
            keys.failed_reasons,
            keys.scheduled_reasons,
        ],
        moving_prefix=keys.moving_prefix,
        held_prefix=keys.held_prefix,
    )
    intake, moving, queued, held, started, scheduled, failed = (int(n) for n in counts[:7])
    counters, by_reason, scheduled_reasons = (_pairs(flat) for flat in counts[7:10])
    intake_head, queue_head = counts[10], counts[11]
    names = store.worker_names()
    details = presence.details(names) if names else {}
    machine = machine_id()  # a worker of this machine whose process is gone is dead now
    workers = [
        WorkerInfo(name, found is not None and not process_gone(found, machine), found or {})
        for name, found in ((name, details.get(name)) for name in names)
    ]
    stranded = stranded_of(store, [w.name for w in workers if not w.alive])
    oldest = oldest_of(store, intake_head, queue_head, stranded)
    moment = time.time() if now is None else now
    return QueueStatus(
        intake=intake,
        moving=moving,
        queued=queued,
        held=held,
        started=started,
        scheduled=scheduled,
        failed=failed,
        failed_by_reason=_sorted(by_reason),
        scheduled_by_reason=_sorted(scheduled_reasons),
        counters=counters,
        workers=workers,
        next_retry_in=store.next_retry_in(moment),
        stranded=stranded.count,
        oldest_created_at=oldest.created_at,
        oldest_tracked_at=oldest.tracked_at,
        event_names=int(store.connection.scard(keys.event_names)),
    )


@dataclass(frozen=True)
class FailedEvent:
    """A failed (or scheduled) event as ``flask intercom failed`` lists it."""

    id: str
    event_name: str
    contact: str
    created_at: int | None
    reason: str
    attempts: int
    last_error: str
    at: float | None  # when it failed, or when its retry is due

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "id": self.id,
            "event_name": self.event_name,
            "contact": self.contact,
            "created_at": self.created_at,
            "reason": self.reason,
            "attempts": self.attempts,
            "last_error": self.last_error,
            "at": self.at,
        }


def reason_matches(reason: str, wanted: str) -> bool:
    """Whether a failure ``reason`` such as ``"404 not_found"`` matches what an operator
    typed: the whole reason, or one of its words (``404``, ``not_found``)."""
    wanted = wanted.strip().lower()
    reason = reason.lower()
    return wanted == reason or wanted in reason.split()


def _reason_of(claimed: ClaimedJob, *, scheduled: bool) -> str:
    entry = claimed.meta.get("retry" if scheduled else "failure")
    if isinstance(entry, dict) and isinstance(entry.get("reason"), str):
        return str(entry["reason"])
    if claimed.job is None:
        return "unknown (job expired)"
    if claimed.problem is not None:  # a record that cannot be read, failed as such
        return claimed.problem_reason
    # Failed by RQ itself, e.g. its started registry cleanup ("AbandonedJobError").
    return "other (see the job's exc_info)"


def _listed(claimed: ClaimedJob, reason: str, score: float) -> FailedEvent:
    payload = claimed.payload or {}
    contact = payload.get("user_id") or payload.get("email") or payload.get("id") or "?"
    attempts = claimed.meta.get("attempts")
    failure = claimed.meta.get("failure")
    if isinstance(failure, dict) and isinstance(failure.get("attempts"), int):
        attempts = {"total": failure["attempts"]}  # a failed event's compact record
    created = payload.get("created_at")
    return FailedEvent(
        id=claimed.id,
        event_name=claimed.event_name,
        contact=str(contact),
        created_at=created if isinstance(created, int) else None,
        reason=reason,
        attempts=_count(attempts.get("total", 0)) if isinstance(attempts, dict) else 0,
        last_error=str(
            claimed.meta.get("last_error")
            # RQ's exc_info as read from the record (job.exc_info would read rq:results too)
            or getattr(claimed.job, "_exc_info", None)
            or claimed.problem
            or ""
        ),
        at=score,
    )


def failed_events(
    store: DeliveryStore,
    *,
    reason: str | None = None,
    scheduled: bool = False,
    limit: int | None = None,
) -> Iterator[FailedEvent]:
    """The failed events (or, ``scheduled``, those waiting for a retry), newest failure
    first (soonest retry first), those whose reason matches ``reason`` if given."""
    registry = store.scheduled if scheduled else store.failed
    found = 0
    start = 0
    while limit is None or found < limit:
        if scheduled:
            entries = store.connection.zrange(
                registry.key, start, start + _BATCH - 1, withscores=True
            )
        else:
            entries = store.connection.zrevrange(
                registry.key, start, start + _BATCH - 1, withscores=True
            )
        if not entries:
            return
        start += _BATCH
        pairs: list[tuple[Any, float]] = list(entries)  # type: ignore[arg-type]
        ids = [as_text(job_id) for job_id, _ in pairs]
        for claimed, (_, score) in zip(store.read_jobs(ids), pairs, strict=True):
            why = _reason_of(claimed, scheduled=scheduled)
            if reason is not None and not reason_matches(why, reason):
                continue
            at = float(score)
            if not scheduled:
                at = _failed_at(claimed, at)
            yield _listed(claimed, why, at)
            found += 1
            if limit is not None and found >= limit:
                return


def _failed_at(claimed: ClaimedJob, otherwise: float) -> float:
    """When a job failed: its record's ``failed_at`` (kept by earlier versions), else RQ's
    ``ended_at``, else ``otherwise``."""
    failure = claimed.meta.get("failure")
    if isinstance(failure, dict) and isinstance(failure.get("failed_at"), (int, float)):
        return float(failure["failed_at"])
    ended = claimed.job.ended_at if claimed.job is not None else None
    return ended.timestamp() if ended is not None else otherwise


def requeue_failed(
    store: DeliveryStore,
    reason: str | None = None,
    *,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Put failed events (those whose reason matches ``reason``, or all) back on the queue
    with a fresh delivery history; returns how many."""
    # Every match is found before any leaves the registry: failed_events pages through the
    # registry by offset, and a page requeued meanwhile would shift the next one past events.
    chosen = [(event.id, event.reason) for event in failed_events(store, reason=reason)]
    requeued = 0
    for start in range(0, len(chosen), _BATCH):
        batch = chosen[start : start + _BATCH]
        requeued += _requeue(store, batch)
        if progress is not None:
            progress(len(batch))
    return requeued


def _requeue(store: DeliveryStore, events: Sequence[tuple[str, str]]) -> int:
    # A fresh history first, then the move: a worker that claims the job at once must not
    # take it for one another tool requeued (and count its failure out a second time).
    with store.connection.pipeline(transaction=True) as pipe:
        for claimed in store.read_jobs([job_id for job_id, _ in events]):
            if claimed.job is None:
                continue
            claimed.job.meta = fresh_history(claimed.meta)
            claimed.job.ended_at = None
            claimed.job.set_status(JobStatus.QUEUED, pipeline=pipe)
            claimed.job.save(pipeline=pipe)
            pipe.persist(claimed.job.key)  # a failed job expires with the registry
        pipe.execute()
    moved = store.scripts.requeue(
        failed=store.failed.key,
        queue=store.queue.key,
        reasons=store.keys.failed_reasons,
        pairs=list(events),
    )
    return len(moved)


def purge_failed(
    store: DeliveryStore, reason: str | None = None, *, older_than: float | None = None
) -> int:
    """Delete failed events (whose reason matches ``reason``, failed more than
    ``older_than`` seconds ago); returns how many."""
    cutoff = None if older_than is None else time.time() - older_than
    doomed = [
        event
        for event in failed_events(store, reason=reason)
        if cutoff is None or (event.at is not None and event.at <= cutoff)
    ]
    deleted = 0
    for start in range(0, len(doomed), _BATCH):
        chunk = doomed[start : start + _BATCH]
        with store.connection.pipeline(transaction=True) as pipe:
            for event in chunk:
                pipe.zrem(store.failed.key, event.id)
            removed = pipe.execute()
        gone = [event for event, removed_now in zip(chunk, removed, strict=True) if removed_now]
        with store.connection.pipeline(transaction=True) as pipe:
            for event in gone:
                pipe.delete(
                    Job.key_for(event.id),
                    Result.get_key(event.id),  # type: ignore[no-untyped-call]
                    ExecutionRegistry(event.id, store.connection).key,
                )
            by_reason = Counter(event.reason for event in gone)
            store.scripts.add_counts(  # one call a chunk, not one an event
                counters=store.keys.failed_reasons,
                amounts={reason: -count for reason, count in by_reason.items()},
                client=pipe,
            )
            pipe.execute()
        deleted += len(gone)
    _drop_empty_reasons(store)
    return deleted


def recount_failed(store: DeliveryStore) -> dict[str, int]:
    """Count the failed events by reason by reading them all, and keep that count (after
    another tool requeued or deleted failed jobs); returns it."""
    counts: dict[str, int] = {}
    for event in failed_events(store):
        counts[event.reason] = counts.get(event.reason, 0) + 1
    with store.connection.pipeline(transaction=True) as pipe:
        pipe.delete(store.keys.failed_reasons)
        if counts:
            pipe.hset(store.keys.failed_reasons, mapping=dict(counts))  # type: ignore[arg-type]
        pipe.execute()
    return _sorted(counts)


def _drop_empty_reasons(store: DeliveryStore) -> None:
    found = _pairs(store.connection.hgetall(store.keys.failed_reasons))
    empty = [reason for reason, count in found.items() if count <= 0]
    if empty:
        store.connection.hdel(store.keys.failed_reasons, *empty)


def _pairs(flat: Any) -> dict[str, int]:
    if isinstance(flat, dict):
        items = list(flat.items())
    else:
        items = list(zip(flat[::2], flat[1::2], strict=True))
    return {as_text(key): _count(value) for key, value in items}


def _count(value: object) -> int:
    """A counter as stored; one that is not an integer (written by hand or by another tool:
    the next count starts it again, ``status --recount`` rebuilds it) reads as 0."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, (bytes, str)):
        try:
            return int(value)
        except ValueError:
            return 0
    return 0


def _sorted(counts: dict[str, int]) -> dict[str, int]:
    kept = {reason: count for reason, count in counts.items() if count > 0}
    return dict(sorted(kept.items(), key=lambda item: (-item[1], item[0])))
