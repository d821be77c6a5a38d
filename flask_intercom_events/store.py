"""The delivery store: where every event waiting for Intercom is, in Redis, and its moves.

An event's way through Redis; each move of ids is one atomic Lua script (``scripts.py``),
each write of a job record goes through RQ's own API in one ``MULTI`` transaction:

1. the request path ``RPUSH``-es the event's line onto the intake (``intake.py``);
2. a worker moves a batch of lines into its own *moving* list (``collect.lua``), gives each
   event its second (``seconds.lua``: distinct events of one contact and name never share a
   ``created_at``, which Intercom would collapse into one), and turns them into RQ jobs
   (``Queue.enqueue_many``, the job id being the event's uuid) while emptying its moving list.
   A worker killed in between leaves the lines in its moving list; whoever reclaims it puts
   them back on the intake;
3. a worker *claims* jobs: takes their ids off RQ's queue into the hash of jobs it holds,
   spending the rate budget for them (``claim.lua``), then records each start with RQ's
   ``Job.prepare_for_execution`` and ``Execution.create`` (so RQ's started registry and
   ``job.get_executions()`` show them);
4. it *settles* each in one transaction: delivered (the job and its execution deleted: a
   delivered event leaves nothing behind but its same-second claim, which expires), scheduled
   for a retry in RQ's ``ScheduledJobRegistry``, or failed in RQ's ``FailedJobRegistry`` with
   its reason (``job.meta["failure"]``, and the description as RQ's ``exc_info``);
5. due retries go back onto the queue (``promote.lua``), by whichever worker looks first.

What a dead worker held (its moving list and held jobs) goes back in one step
(``reclaim.lua``); reading counts and failures is in ``backlog.py``.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import redis
from rq import Queue
from rq.executions import Execution, ExecutionRegistry
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry
from rq.results import Result

from .collecting import Collected, SameSecond, collect
from .job_records import ClaimedJob, JobSerializer, failed_fields, read_job
from .keys import QueueKeys
from .lines import as_text
from .ratelimit import RateBudget
from .requeued import forget_failure, seconds_again
from .scripts import Scripts

__all__ = ["Claim", "Collected", "DeliveryStore", "Failure", "Retry", "SameSecond"]

#: Fields of RQ's job hash that ``Job.restore`` (rq 2.3 to 3) treats as optional, dropped from a
#: failed job (a requeue by any tool writes them again).
_NOT_KEPT_WHEN_FAILED = (
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
    "description",  # "Intercom event '<name>'": the name is in the payload
)

# RQ 3 keeps an index of each worker's executions; RQ 2 has no such argument.
_EXECUTIONS_KNOW_WORKERS = "worker_name" in inspect.signature(Execution.create).parameters


@dataclass(frozen=True)
class Claim:
    """What :meth:`DeliveryStore.claim` got: the jobs (now started), the seconds until the
    rate budget allows more (``0``: not limited), the jobs left in RQ's queue, and whether
    Intercom refuses the token (the jobs, at most one, are then a probe)."""

    jobs: list[ClaimedJob]
    wait: float
    queue_left: int
    paused: bool = False
    #: Requeued jobs that found no free second: failed as ``collapsed``, not sent.
    collapsed: list[ClaimedJob] = field(default_factory=list)


@dataclass(frozen=True)
class Retry:
    """Schedule ``job`` again at Unix time ``at`` with its new ``meta``; ``reason`` groups
    scheduled retries (``"404 not_found"``)."""

    job: ClaimedJob
    at: float
    meta: dict[str, Any]
    reason: str


@dataclass(frozen=True)
class Failure:
    """Give up on ``job``: ``reason`` groups failures, ``description`` is RQ's ``exc_info``,
    ``meta`` (with a ``failure`` entry) goes to the job."""

    job: ClaimedJob
    reason: str
    description: str
    meta: dict[str, Any]


class DeliveryStore:
    """One delivery queue in Redis: RQ queue ``name``, its registries, and this project's
    intake, moving lists, held jobs, claims and counters (see ``keys.py``)."""

    def __init__(self, connection: redis.Redis, name: str, *, failure_ttl: int) -> None:
        self.connection = connection
        self.name = name
        self.failure_ttl = failure_ttl
        self.queue = Queue(name, connection=connection, serializer=JobSerializer)
        self.started = StartedJobRegistry(queue=self.queue)
        self.scheduled = ScheduledJobRegistry(queue=self.queue)  # type: ignore[no-untyped-call]
        self.failed = FailedJobRegistry(queue=self.queue)
        self.keys = QueueKeys(name)
        self.scripts = Scripts(connection)

    def __repr__(self) -> str:
        return f"DeliveryStore({self.name!r})"

    # --- intake -> RQ jobs -----------------------------------------------------------------

    def collect(self, worker: str, most: int, same_second: SameSecond | None) -> Collected:
        """Turn up to ``most`` intake lines into queued RQ jobs (see ``collecting.py``)."""
        return collect(self, worker, most, same_second)

    def wait_for_intake(self, worker: str, timeout: float) -> bool:
        """Block up to ``timeout`` seconds for a line on the intake; ``True`` if one came
        (it is then in ``worker``'s moving list, for :meth:`collect`)."""
        # BRPOPLPUSH rather than BLMOVE: it works on every Redis RQ supports.
        seconds = max(1, round(timeout))
        moved = self.connection.brpoplpush(self.keys.intake, self.keys.moving(worker), seconds)
        return moved is not None

    # --- claiming --------------------------------------------------------------------------

    def claim(
        self,
        worker: str,
        most: int,
        budget: RateBudget,
        lease: float,
        *,
        probe_every: float,
        same_second: SameSecond | None = None,
    ) -> Claim:
        """Take up to ``most`` jobs for ``worker`` within the rate budget and record their
        start (RQ's started registry, expiring ``lease`` seconds from now unless
        :meth:`heartbeat` extends it). They stay held until settled or released.

        A job that comes back from the failed registry (requeued by any tool) claims its
        second again with ``same_second``: the second it had may belong to another event by
        now (it failed as ``collapsed`` because it did), and Intercom would drop it as a
        duplicate. One that finds no free second fails as ``collapsed`` again
        (:attr:`Claim.collapsed`), not sent."""
        ids, wait, left, paused = self.scripts.claim(
            queue=self.queue.key,
            held=self.keys.held(worker),
            budget=budget.key,
            most=most,
            allowance=budget.allowance,
            window=budget.window,
            probe_every=probe_every,
        )
        jobs = self.read_jobs([as_text(i) for i in ids])
        readable = [job for job in jobs if job.job is not None and job.problem is None]
        gone = [job.id for job in jobs if job.job is None]
        collapsed: list[ClaimedJob] = []
        if readable or gone:
            with self.connection.pipeline(transaction=True) as pipe:
                for claimed in readable:
                    forget_failure(self, pipe, claimed)
                if same_second is not None:
                    collapsed = seconds_again(self, pipe, worker, readable, same_second)
                    readable = [job for job in readable if job.id not in _ids(collapsed)]
                for claimed in readable:
                    assert claimed.job is not None
                    claimed.job.prepare_for_execution(worker, pipeline=pipe)
                    claimed.execution = self._start(claimed.job, int(lease), pipe, worker).id
                    pipe.hset(self.keys.held(worker), claimed.id, claimed.execution)
                if gone:  # nothing left to deliver: an earlier delivery deleted it
                    pipe.hdel(self.keys.held(worker), *gone)
                pipe.execute()
        return Claim(
            jobs=[job for job in jobs if job.job is not None and job.id not in _ids(collapsed)],
            collapsed=collapsed,
            wait=float(wait),
            queue_left=int(left),
            paused=bool(int(paused)),
        )

    def read_jobs(self, job_ids: Sequence[str]) -> list[ClaimedJob]:
        """The jobs of ``job_ids`` as their records say (one pipelined read)."""
        if not job_ids:
            return []
        with self.connection.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hgetall(Job.key_for(job_id))
            records = pipe.execute()
        return [read_job(i, raw, self.connection) for i, raw in zip(job_ids, records, strict=True)]

    @staticmethod
    def _start(job: Job, ttl: int, pipe: Any, worker: str) -> Execution:
        if _EXECUTIONS_KNOW_WORKERS:
            return Execution.create(job, ttl, pipe, worker_name=worker)
        return Execution.create(job, ttl, pipe)

    def _forget_execution(self, pipe: Any, job_id: str, execution: str, worker: str) -> None:
        """Delete RQ's record of one run, as RQ's worker does when the run ends."""
        if not execution:
            return
        if _EXECUTIONS_KNOW_WORKERS:
            run = Execution(execution, job_id, self.connection, worker_name=worker)
        else:
            run = Execution(execution, job_id, self.connection)
        pipe.delete(run.key)
        self.started.remove_execution(run, pipeline=pipe)
        ExecutionRegistry(job_id, self.connection).remove(run, pipeline=pipe)
        if _EXECUTIONS_KNOW_WORKERS:
            pipe.srem(run.worker_executions_key, run.composite_key)

    def heartbeat(self, worker: str, held: Iterable[ClaimedJob], lease: float) -> None:
        """Extend the lease of the jobs ``worker`` is sending (RQ's started registry and
        execution records), as RQ's worker does for its job."""
        with self.connection.pipeline(transaction=False) as pipe:
            for claimed in held:
                if not claimed.execution:
                    continue
                if _EXECUTIONS_KNOW_WORKERS:
                    run = Execution(
                        claimed.execution, claimed.id, self.connection, worker_name=worker
                    )
                else:
                    run = Execution(claimed.execution, claimed.id, self.connection)
                run.heartbeat(self.started, int(lease), pipe)
            pipe.execute()

    # --- settling --------------------------------------------------------------------------

    def settle(
        self,
        worker: str,
        *,
        delivered: Iterable[ClaimedJob] = (),
        retries: Iterable[Retry] = (),
        failures: Iterable[Failure] = (),
    ) -> None:
        """Record, in one transaction, what became of jobs ``worker`` held."""
        keys = self.keys
        delivered, retries, failures = list(delivered), list(retries), list(failures)
        held = keys.held(worker)
        with self.connection.pipeline(transaction=True) as pipe:
            for claimed in delivered:
                self._forget_execution(pipe, claimed.id, claimed.execution, worker)
                pipe.delete(
                    Job.key_for(claimed.id),
                    # (an rq:results stream another tool may have left)
                    Result.get_key(claimed.id),  # type: ignore[no-untyped-call]
                    ExecutionRegistry(claimed.id, self.connection).key,
                )
                pipe.hdel(held, claimed.id)
                name = (claimed.payload or {}).get("event_name")
                if isinstance(name, str):
                    pipe.sadd(keys.event_names, name)
            for retry in retries:
                job = retry.job.job
                self._forget_execution(pipe, retry.job.id, retry.job.execution, worker)
                pipe.hdel(held, retry.job.id)
                if job is None:
                    continue
                job.meta = dict(retry.meta)
                job.started_at = None
                job.worker_name = None
                job.set_status(JobStatus.SCHEDULED, pipeline=pipe)
                job.save(pipeline=pipe)
                self.scheduled.schedule(job, _due(retry.at), pipeline=pipe)
                pipe.hset(keys.scheduled_why, job.id, retry.reason)
                self.scripts.add_counts(
                    counters=keys.scheduled_reasons, amounts={retry.reason: 1}, client=pipe
                )
            for failure in failures:
                claimed = failure.job
                self._forget_execution(pipe, claimed.id, claimed.execution, worker)
                pipe.hdel(held, claimed.id)
                if claimed.job is not None:
                    self.fail_now(
                        pipe, claimed.job, failure.reason, failure.description, dict(failure.meta)
                    )
            counted = {
                "delivered": len(delivered),
                "retried": len(retries),
                "failed": len(failures),
            }
            self.scripts.add_counts(
                counters=keys.stats,
                amounts={counter: count for counter, count in counted.items() if count},
                client=pipe,
            )
            pipe.execute()

    def fail_now(
        self, pipe: Any, job: Job, reason: str, description: str, meta: dict[str, Any]
    ) -> None:
        """Put ``job`` in RQ's failed registry with its reason, in ``pipe``."""
        job.meta = meta
        job.ended_at = datetime.now(timezone.utc)
        try:
            job.to_dict()
        except Exception:  # no data to write back: a hash with a status alone, say
            self._fail_unwritable(pipe, job, reason, description)
            return
        job.set_status(JobStatus.FAILED, pipeline=pipe)
        self.failed.add(job, ttl=self.failure_ttl, exc_string=description, pipeline=pipe)
        # No rq:results stream (4.7 KB each with Redis's default stream-node-max-bytes): the
        # description goes to the job's exc_info, which RQ reads when there is no result.
        # A failed event waits, maybe for a year: the record is written again without the
        # fields RQ reads as optional, empty or of no use once it failed (each costs 40 to 70
        # bytes in a hash table), as a new hash (one whose fields were deleted keeps the
        # table sized for all of them: 200 bytes more).
        record = job.to_dict()
        pipe.delete(job.key)
        pipe.hset(
            job.key,
            mapping={
                field: value
                for field, value in record.items()
                if field not in _NOT_KEPT_WHEN_FAILED
            },
        )
        pipe.expire(job.key, self.failure_ttl)  # as RQ's registry set it
        self.scripts.add_counts(counters=self.keys.failed_reasons, amounts={reason: 1}, client=pipe)

    # --- moving back -----------------------------------------------------------------------

    def release(self, worker: str, job_ids: Sequence[str]) -> int:
        """Put jobs ``worker`` holds but did not finish back at the head of the queue."""
        released = 0
        for start in range(0, len(job_ids), 500):
            pairs = self.scripts.release(
                held=self.keys.held(worker),
                queue=self.queue.key,
                started=self.started.key,
                ids=list(job_ids[start : start + 500]),
            )
            released += self._requeued(pairs, worker)
        if released:
            self.scripts.add_counts(counters=self.keys.stats, amounts={"released": released})
        return released

    def _fail_unwritable(self, pipe: Any, job: Job, reason: str, description: str) -> None:
        """Fail a job RQ cannot write back (``Job.save`` raises: its record has no data),
        listed like any failed one: in the failed registry, its description as ``exc_info``."""
        pipe.zadd(self.failed.key, {job.id: time.time() + self.failure_ttl})
        pipe.hset(job.key, mapping=failed_fields(job, description))
        pipe.expire(job.key, self.failure_ttl)
        self.scripts.add_counts(counters=self.keys.failed_reasons, amounts={reason: 1}, client=pipe)

    def _requeued(self, pairs: Sequence[Any], worker: str) -> int:
        """Mark the jobs a script put back on the queue as queued (RQ's status), and forget
        their runs. ``pairs`` is ``[id, execution, ...]``."""
        if not pairs:
            return 0
        with self.connection.pipeline(transaction=True) as pipe:
            ids = [as_text(pairs[i]) for i in range(0, len(pairs), 2)]
            for i, job_id in enumerate(ids):
                self._forget_execution(pipe, job_id, as_text(pairs[2 * i + 1]), worker)
            self.scripts.set_status(
                jobs=[Job.key_for(job_id) for job_id in ids],
                status=JobStatus.QUEUED.value,
                client=pipe,
            )
            pipe.execute()
        return len(pairs) // 2

    def promote_due(self, now: float, most: int = 1000) -> int:
        """Move scheduled retries that are due onto the queue; returns how many."""
        keys = self.keys
        ids = self.scripts.promote(
            scheduled=self.scheduled.key,
            queue=self.queue.key,
            why=keys.scheduled_why,
            reasons=keys.scheduled_reasons,
            now=now,
            most=most,
        )
        self.scripts.set_status(
            jobs=[Job.key_for(as_text(job_id)) for job_id in ids], status=JobStatus.QUEUED.value
        )
        return len(ids)

    def next_retry_in(self, now: float) -> float | None:
        """Seconds until the next scheduled retry is due (``0`` if one is), else ``None``."""
        first = self.connection.zrange(self.scheduled.key, 0, 0, withscores=True)
        if not first:
            return None
        return max(float(first[0][1]) - now, 0.0)

    def reclaim(
        self, worker: str, *, rq_worker_key: str, force: bool = False
    ) -> tuple[int, int] | None:
        """Put back what ``worker`` held if it is dead (or ``force``): ``(lines moved back to
        the intake, jobs moved back to the queue)``, or ``None`` if it is alive."""
        keys = self.keys
        result = self.scripts.reclaim(
            workers=keys.workers,
            rq_worker=rq_worker_key,
            old_heartbeat=keys.old_heartbeat(worker),
            held=keys.held(worker),
            moving=keys.moving(worker),
            intake=keys.intake,
            queue=self.queue.key,
            started=self.started.key,
            stats=keys.stats,
            name=worker,
            force=force,
        )
        if int(result[0]) < 0:
            return None
        return int(result[0]), self._requeued(result[1:], worker)

    def register(self, worker: str) -> None:
        """Add ``worker`` to this queue's workers (so it is reclaimed if it dies)."""
        self.connection.sadd(self.keys.workers, worker)

    def worker_names(self) -> list[str]:
        """Every registered worker, alive or not yet reclaimed."""
        return sorted(as_text(name) for name in self.connection.smembers(self.keys.workers))

    def held_ids(self, worker: str) -> list[str]:
        """Ids of the jobs ``worker`` holds (one read of its own hash)."""
        return [as_text(job_id) for job_id in self.connection.hkeys(self.keys.held(worker))]


def _due(timestamp: float) -> datetime:
    """Rounded up to its second: RQ's registry keeps whole ones, and a retry is never early."""
    return datetime.fromtimestamp(-(-timestamp // 1), timezone.utc)


def _ids(jobs: list[ClaimedJob]) -> set[str]:
    return {job.id for job in jobs}
