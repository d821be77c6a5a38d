"""Where every event waiting for Intercom is, in Redis: the intake, RQ's queue and registries.

An event's way through Redis, every step atomic (a Lua script or a ``MULTI`` transaction):

1. the request path ``RPUSH``-es its JSON onto the intake list (``intake.py``);
2. a worker moves a batch from the intake into its own *moving* list (Lua), makes one RQ job
   per event (function :data:`~flask_intercom_events.jobs.DELIVER`, the event's JSON as the
   only argument, RQ's ``JSONSerializer``) and, in one transaction, enqueues them and empties
   its moving list. A worker killed between the two leaves the events in its moving list,
   which another worker puts back on the intake (:meth:`DeliveryQueue.reclaim`);
3. a worker *claims* jobs: takes their ids off RQ's queue, spends the rate budget for them,
   and records them in RQ's ``StartedJobRegistry`` as ``<job id>:<worker name>`` with status
   ``started`` (one Lua script: mirrors ``Job.prepare_for_execution``);
4. then it *settles* each in one transaction: delivered (the job is deleted, as RQ does with
   ``result_ttl=0``), scheduled for a retry in RQ's ``ScheduledJobRegistry``, or failed in
   RQ's ``FailedJobRegistry`` with the reason (``job.meta["failure"]`` and RQ's failure
   result);
5. due retries are moved back onto the queue by whichever worker looks first (Lua, no lock:
   a dead worker's lock can never hold them up).

Workers announce themselves with a heartbeat key that expires after
``INTERCOM_EVENTS_WORKER_TTL`` seconds; the events of a worker whose heartbeat is gone (its
moving list and its started jobs) are put back by the next worker that looks.

Only this module and ``job_records.py`` (the jobs' storage format) import RQ.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import redis
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry
from rq.results import Result
from rq.serializers import JSONSerializer

from .intake import intake_key
from .job_records import DELIVER, ClaimedJob, JobWriter, read_claimed
from .ratelimit import BUDGET_LUA, RateBudget

__all__ = [
    "Claim",
    "DeliveryQueue",
    "Failure",
    "QueueStatus",
    "Retry",
    "WorkerInfo",
    "new_worker_name",
    "reason_matches",
]

#: Events moved from the intake into RQ jobs at a time.
MAX_COLLECT = 1000

_MOVE_INTAKE = r"""
local items = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
if #items > 0 then
  redis.call('LTRIM', KEYS[1], #items, -1)
  redis.call('RPUSH', KEYS[2], unpack(items))
end
return #items
"""

# Every count at one instant: events move intake -> moving list -> queue -> started ->
# (settled) in atomic steps, so counts read in several round trips could miss a batch in
# motion and say "nothing pending" while it waits.
# KEYS: intake, queue, started, scheduled, failed, stats, workers. ARGV: moving-key prefix.
_COUNTS = r"""
local moving = 0
for _, worker in ipairs(redis.call('SMEMBERS', KEYS[7])) do
  moving = moving + redis.call('LLEN', ARGV[1] .. worker)
end
return {redis.call('LLEN', KEYS[1]), moving, redis.call('LLEN', KEYS[2]),
        redis.call('ZCARD', KEYS[3]), redis.call('ZCARD', KEYS[4]),
        redis.call('ZCARD', KEYS[5]), redis.call('HGETALL', KEYS[6])}
"""

# KEYS: queue, started registry, budget. ARGV: most to claim, worker, started score,
# job key prefix, started status, ISO time, allowance, window.
_CLAIM = (
    BUDGET_LUA
    + r"""
local want = math.min(tonumber(ARGV[1]), redis.call('LLEN', KEYS[1]))
if want <= 0 then
  return {{}, '0', 0}
end
local granted, wait = budget_take(KEYS[3], want, tonumber(ARGV[7]), tonumber(ARGV[8]),
                                  budget_now())
local claimed = {}
if granted > 0 then
  local ids = redis.call('LRANGE', KEYS[1], 0, granted - 1)
  redis.call('LTRIM', KEYS[1], granted, -1)
  for _, id in ipairs(ids) do
    local job = ARGV[4] .. id
    if redis.call('EXISTS', job) == 1 then
      redis.call('ZADD', KEYS[2], ARGV[3], id .. ':' .. ARGV[2])
      redis.call('HSET', job, 'status', ARGV[5], 'started_at', ARGV[6],
                 'last_heartbeat', ARGV[6], 'worker_name', ARGV[2])
      claimed[#claimed + 1] = id
    end
  end
end
return {claimed, tostring(wait), redis.call('LLEN', KEYS[1])}
"""
)

# KEYS: scheduled registry, queue. ARGV: now, most to move, job key prefix, queued status,
# ISO time.
_PROMOTE = r"""
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local moved = 0
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  local job = ARGV[3] .. id
  if redis.call('EXISTS', job) == 1 then
    redis.call('HSET', job, 'status', ARGV[4], 'enqueued_at', ARGV[5])
    redis.call('RPUSH', KEYS[2], id)
    moved = moved + 1
  end
end
return moved
"""

# Put a worker's claimed jobs back at the head of the queue, if it still holds them.
# KEYS: started registry, queue. ARGV: worker, job key prefix, queued status, ids...
_RELEASE = r"""
local released = 0
for i = #ARGV, 4, -1 do
  local id = ARGV[i]
  if redis.call('ZREM', KEYS[1], id .. ':' .. ARGV[1]) == 1 then
    if redis.call('EXISTS', ARGV[2] .. id) == 1 then
      redis.call('HSET', ARGV[2] .. id, 'status', ARGV[3])
      redis.call('LPUSH', KEYS[2], id)
      released = released + 1
    end
  end
end
return released
"""

# Everything a dead worker held goes back: its moving list to the intake, its started jobs
# to the head of the queue. Refuses while the worker's heartbeat lives (unless forced).
# KEYS: workers set, heartbeat, moving list, intake, started registry, queue, stats.
# ARGV: worker, job key prefix, queued status, force.
_RECLAIM = r"""
if ARGV[4] ~= '1' and redis.call('EXISTS', KEYS[2]) == 1 then
  return {-1, -1}
end
local items = redis.call('LRANGE', KEYS[3], 0, -1)
for i = #items, 1, -1 do
  redis.call('LPUSH', KEYS[4], items[i])
end
redis.call('DEL', KEYS[3])
local suffix = ':' .. ARGV[1]
local requeued = 0
for _, entry in ipairs(redis.call('ZRANGE', KEYS[5], 0, -1)) do
  if #entry > #suffix and string.sub(entry, -#suffix) == suffix then
    redis.call('ZREM', KEYS[5], entry)
    local id = string.sub(entry, 1, #entry - #suffix)
    if redis.call('EXISTS', ARGV[2] .. id) == 1 then
      redis.call('HSET', ARGV[2] .. id, 'status', ARGV[3])
      redis.call('LPUSH', KEYS[6], id)
      requeued = requeued + 1
    end
  end
end
redis.call('SREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
if #items + requeued > 0 then
  redis.call('HINCRBY', KEYS[7], 'reclaimed', #items + requeued)
end
return {#items, requeued}
"""

# A failed job back on the queue, unless someone else took it out of the failed registry
# first. KEYS: failed registry, queue. ARGV: id, job key prefix, queued status, meta (JSON).
_REQUEUE = r"""
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 or redis.call('EXISTS', ARGV[2] .. ARGV[1]) == 0 then
  return 0
end
redis.call('HSET', ARGV[2] .. ARGV[1], 'status', ARGV[3], 'meta', ARGV[4],
           'started_at', '', 'ended_at', '')
redis.call('RPUSH', KEYS[2], ARGV[1])
return 1
"""


def new_worker_name() -> str:
    """A name unique to this worker process: ``host.pid.random`` (no ``:``, which RQ's
    started registry uses as a separator)."""
    host = "".join(c if c.isalnum() or c in "-_" else "-" for c in socket.gethostname())
    return f"{host or 'host'}.{os.getpid()}.{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class Claim:
    """What :meth:`DeliveryQueue.claim` got: the jobs (now ``started``), the seconds until
    the rate budget allows more (``0``: not limited) and the jobs left in the queue."""

    jobs: list[ClaimedJob]
    wait: float
    queue_left: int


@dataclass(frozen=True)
class Retry:
    """Schedule ``job`` again at Unix time ``at``, with its updated ``meta``."""

    job: ClaimedJob
    at: float
    meta: dict[str, Any]


@dataclass(frozen=True)
class Failure:
    """Give up on ``job``: ``description`` goes to RQ's failure record, ``meta`` (with a
    ``failure`` entry) to the job."""

    job: ClaimedJob
    description: str
    meta: dict[str, Any]


@dataclass(frozen=True)
class WorkerInfo:
    """A worker as its heartbeat describes it."""

    name: str
    alive: bool
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class QueueStatus:
    """Counts for ``flask intercom status``: where every event of a queue is."""

    intake: int
    moving: int
    queued: int
    started: int
    scheduled: int
    next_retry_in: float | None
    failed: int
    failed_by_reason: dict[str, int]
    counters: dict[str, int]
    workers: list[WorkerInfo]

    @property
    def waiting(self) -> int:
        """Events waiting to be sent: the intake, moving lists and RQ's queue."""
        return self.intake + self.moving + self.queued


class DeliveryQueue:
    """One delivery queue's state in Redis (RQ queue ``name`` and its intake list)."""

    def __init__(self, connection: redis.Redis, name: str, *, failure_ttl: int) -> None:
        self.connection = connection
        self.name = name
        self.failure_ttl = failure_ttl
        self.queue = Queue(name, connection=connection, serializer=JSONSerializer)
        self.started = StartedJobRegistry(queue=self.queue)
        self.scheduled = ScheduledJobRegistry(queue=self.queue)  # type: ignore[no-untyped-call]
        self.failed = FailedJobRegistry(queue=self.queue)
        self.intake_key = intake_key(name)
        self.workers_key = f"intercom-events:{name}:workers"
        self.stats_key = f"intercom-events:{name}:stats"
        self._job_prefix = Job.key_for("")
        self._writer = JobWriter(self.queue, failure_ttl=failure_ttl)
        self._move_intake = connection.register_script(_MOVE_INTAKE)
        self._claim = connection.register_script(_CLAIM)
        self._promote = connection.register_script(_PROMOTE)
        self._release = connection.register_script(_RELEASE)
        self._reclaim = connection.register_script(_RECLAIM)
        self._requeue = connection.register_script(_REQUEUE)
        self._counts = connection.register_script(_COUNTS)

    def __repr__(self) -> str:
        return f"DeliveryQueue({self.name!r})"

    def heartbeat_key(self, worker: str) -> str:
        """The key that exists while ``worker`` is alive."""
        return f"intercom-events:{self.name}:worker:{worker}"

    def moving_key(self, worker: str) -> str:
        """``worker``'s list of events between the intake and the queue."""
        return f"intercom-events:{self.name}:moving:{worker}"

    # --- intake -> RQ jobs -----------------------------------------------------------------

    def collect(self, worker: str, most: int) -> int:
        """Turn up to ``most`` events of the intake into queued RQ jobs; returns how many.

        Events left in ``worker``'s moving list by a failed earlier try go first.
        """
        moving = self.moving_key(worker)
        lines = self.connection.lrange(moving, 0, -1)
        if not lines:
            if not self._move_intake(keys=[self.intake_key, moving], args=[min(most, MAX_COLLECT)]):
                return 0
            lines = self.connection.lrange(moving, 0, -1)
        return self._enqueue_lines(moving, lines)

    def wait_for_intake(self, worker: str, timeout: float) -> bool:
        """Block up to ``timeout`` seconds for an event on the intake; ``True`` if one came
        (it is then in ``worker``'s moving list, for :meth:`collect`)."""
        # BRPOPLPUSH rather than BLMOVE: it works on every Redis RQ supports. It takes the
        # newest event; order does not matter, as every event carries its own created_at.
        seconds = max(1, round(timeout))
        return (
            self.connection.brpoplpush(self.intake_key, self.moving_key(worker), seconds)
            is not None
        )

    def _enqueue_lines(self, moving: str, lines: Sequence[bytes | str]) -> int:
        payloads: list[dict[str, Any]] = []
        unreadable: list[Job] = []
        for line in lines:
            try:
                payload = json.loads(line)
                if not isinstance(payload, dict):
                    raise ValueError("not a JSON object")
            except ValueError as exc:
                # Kept, visibly: a failed job holding the line as it was.
                unreadable.append(
                    self.queue.create_job(
                        DELIVER,
                        args=[_text(line)],
                        result_ttl=0,
                        failure_ttl=self.failure_ttl,
                        description="unreadable Intercom event",
                        meta={"failure": {"reason": "unreadable", "message": str(exc)}},
                    )
                )
                continue
            payloads.append(payload)
        with self.connection.pipeline(transaction=True) as pipe:
            self._writer.enqueue(payloads, pipe)
            for job in unreadable:
                self._record_failure(
                    pipe, job, "unreadable event payload: not a JSON object", dict(job.meta)
                )
            pipe.delete(moving)
            pipe.hincrby(self.stats_key, "collected", len(payloads) + len(unreadable))
            if unreadable:
                pipe.hincrby(self.stats_key, "failed", len(unreadable))
            pipe.execute()
        return len(payloads) + len(unreadable)

    # --- claiming and settling -------------------------------------------------------------

    def claim(self, worker: str, most: int, budget: RateBudget, lease: float) -> Claim:
        """Take up to ``most`` jobs off the queue for ``worker``, within the rate budget.

        They are ``started`` in RQ's registry (expiring ``lease`` seconds from now unless
        :meth:`heartbeat` extends it) until :meth:`settle` or :meth:`release`.
        """
        now = time.time()
        ids, wait, left = self._claim(
            keys=[self.queue.key, self.started.key, budget.key],
            args=[
                most,
                worker,
                now + lease,
                self._job_prefix,
                JobStatus.STARTED.value,
                _iso(now),
                budget.allowance,
                budget.window,
            ],
        )
        jobs: list[ClaimedJob] = []
        if ids:
            job_ids = [_text(i) for i in ids]
            with self.connection.pipeline(transaction=False) as pipe:
                for job_id in job_ids:
                    pipe.hmget(Job.key_for(job_id), "data", "meta")
                fields = pipe.execute()
            jobs = [
                read_claimed(job_id, data, meta)
                for job_id, (data, meta) in zip(job_ids, fields, strict=True)
            ]
        return Claim(jobs=jobs, wait=float(wait), queue_left=int(left))

    def settle(
        self,
        worker: str,
        *,
        delivered: Iterable[str] = (),
        retries: Iterable[Retry] = (),
        failures: Iterable[Failure] = (),
    ) -> None:
        """Record, in one transaction, what became of jobs ``worker`` claimed.

        A retried or failed job whose record has vanished meanwhile (deleted by hand) is
        only taken off the started registry.
        """
        delivered = list(delivered)
        retries = list(retries)
        failures = list(failures)
        full = self._full_jobs(
            [retry.job.id for retry in retries] + [failure.job.id for failure in failures]
        )
        with self.connection.pipeline(transaction=True) as pipe:
            for job_id in delivered:
                pipe.zrem(self.started.key, f"{job_id}:{worker}")
                pipe.delete(Job.key_for(job_id))
            for retry in retries:
                pipe.zrem(self.started.key, f"{retry.job.id}:{worker}")
                job = full.get(retry.job.id)
                if job is None:
                    continue
                job.meta = dict(retry.meta)
                job.started_at = None
                job.worker_name = None
                job.set_status(JobStatus.SCHEDULED, pipeline=pipe)
                job.save(pipeline=pipe)
                # A float score: RQ's own schedule() rounds down to the second.
                pipe.zadd(self.scheduled.key, {job.id: retry.at})
            for failure in failures:
                pipe.zrem(self.started.key, f"{failure.job.id}:{worker}")
                job = full.get(failure.job.id)
                if job is not None:
                    self._record_failure(pipe, job, failure.description, dict(failure.meta))
            for name, count in (
                ("delivered", len(delivered)),
                ("retried", len(retries)),
                ("failed", len(failures)),
            ):
                if count:
                    pipe.hincrby(self.stats_key, name, count)
            pipe.execute()

    def _full_jobs(self, job_ids: list[str]) -> dict[str, Job]:
        if not job_ids:
            return {}
        fetched = Job.fetch_many(job_ids, connection=self.connection, serializer=JSONSerializer)
        return {job.id: job for job in fetched if job is not None}

    def _record_failure(self, pipe: Any, job: Job, description: str, meta: dict[str, Any]) -> None:
        job.meta = meta
        job.ended_at = datetime.now(timezone.utc)
        job.set_status(JobStatus.FAILED, pipeline=pipe)
        job.save(pipeline=pipe)
        self.failed.add(job, ttl=self.failure_ttl, exc_string=description, pipeline=pipe)
        Result.create_failure(job, self.failure_ttl, description, pipeline=pipe)

    def release(self, worker: str, job_ids: Sequence[str]) -> int:
        """Put jobs ``worker`` claimed but did not finish back at the head of the queue."""
        if not job_ids:
            return 0
        released = 0
        for start in range(0, len(job_ids), 500):
            chunk = list(job_ids[start : start + 500])
            released += int(
                self._release(
                    keys=[self.started.key, self.queue.key],
                    args=[worker, self._job_prefix, JobStatus.QUEUED.value, *chunk],
                )
            )
        if released:
            self.connection.hincrby(self.stats_key, "released", released)
        return released

    def promote_due(self, most: int = 1000) -> int:
        """Move scheduled retries that are due onto the queue; returns how many."""
        now = time.time()
        return int(
            self._promote(
                keys=[self.scheduled.key, self.queue.key],
                args=[now, most, self._job_prefix, JobStatus.QUEUED.value, _iso(now)],
            )
        )

    def next_retry_in(self) -> float | None:
        """Seconds until the next scheduled retry is due (``0`` if one is), else ``None``."""
        first = self.connection.zrange(self.scheduled.key, 0, 0, withscores=True)
        if not first:
            return None
        return max(float(first[0][1]) - time.time(), 0.0)

    # --- workers ---------------------------------------------------------------------------

    def heartbeat(
        self,
        worker: str,
        details: dict[str, Any],
        ttl: float,
        held: Iterable[str],
        lease: float,
    ) -> None:
        """Say ``worker`` is alive for ``ttl`` more seconds and extend the lease of the jobs
        it holds."""
        score = time.time() + lease
        with self.connection.pipeline(transaction=False) as pipe:
            pipe.sadd(self.workers_key, worker)
            pipe.set(self.heartbeat_key(worker), json.dumps(details), px=int(ttl * 1000))
            entries = {f"{job_id}:{worker}": score for job_id in held}
            if entries:
                pipe.zadd(self.started.key, entries, xx=True)
            pipe.execute()

    def unregister(self, worker: str) -> None:
        """Forget ``worker`` (its events must have been settled or released)."""
        self.reclaim(worker, force=True)

    def reclaim(self, worker: str, *, force: bool = False) -> tuple[int, int] | None:
        """Put back what ``worker`` held, if it is dead (or ``force``): ``(events moved back
        to the intake, jobs moved back to the queue)``, or ``None`` if it is alive."""
        moved, requeued = self._reclaim(
            keys=[
                self.workers_key,
                self.heartbeat_key(worker),
                self.moving_key(worker),
                self.intake_key,
                self.started.key,
                self.queue.key,
                self.stats_key,
            ],
            args=[worker, self._job_prefix, JobStatus.QUEUED.value, "1" if force else "0"],
        )
        if int(moved) < 0:
            return None
        return int(moved), int(requeued)

    def reclaim_dead(
        self, *, me: str, is_dead: Callable[[WorkerInfo], bool] | None = None
    ) -> dict[str, tuple[int, int]]:
        """Reclaim every registered worker whose heartbeat expired, and those ``is_dead``
        says are dead even though their heartbeat has not expired yet (a process of this
        machine that no longer exists). Returns what was reclaimed, by worker."""
        done: dict[str, tuple[int, int]] = {}
        for info in self.workers():
            if info.name == me:
                continue
            if not info.alive or (is_dead is not None and is_dead(info)):
                result = self.reclaim(info.name, force=info.alive)
                if result is not None:
                    done[info.name] = result
        return done

    def owned(self, worker: str) -> list[str]:
        """Ids of the jobs RQ's started registry says ``worker`` holds."""
        suffix = f":{worker}"
        return [
            entry[: -len(suffix)]
            for entry in (_text(e) for e in self.connection.zrange(self.started.key, 0, -1))
            if entry.endswith(suffix)
        ]

    def workers(self) -> list[WorkerInfo]:
        """Every registered worker, alive or not."""
        names = sorted(_text(n) for n in self.connection.smembers(self.workers_key))
        if not names:
            return []
        beats = self.connection.mget([self.heartbeat_key(n) for n in names])
        infos = []
        for name, beat in zip(names, beats, strict=True):
            details: dict[str, Any] = {}
            if beat is not None:
                try:
                    loaded = json.loads(beat)
                    details = loaded if isinstance(loaded, dict) else {}
                except ValueError:
                    details = {}
            infos.append(WorkerInfo(name=name, alive=beat is not None, details=details))
        return infos

    # --- reading and repairing -------------------------------------------------------------

    def pending(self) -> int:
        """Events not yet settled: intake, moving lists, queue, started and scheduled."""
        status = self.status(with_reasons=False)
        return status.waiting + status.started + status.scheduled

    def status(self, *, with_reasons: bool = True) -> QueueStatus:
        """Where every event of this queue is (reads only; changes nothing). The counts are
        of one instant; the workers, reasons and next retry are read after them."""
        keys = [
            self.intake_key,
            self.queue.key,
            self.started.key,
            self.scheduled.key,
            self.failed.key,
            self.stats_key,
            self.workers_key,
        ]
        counts = self._counts(keys=keys, args=[self.moving_key("")])
        intake, moving, queued, started, scheduled, failed, flat = counts
        raw_counters = dict(zip(flat[::2], flat[1::2], strict=True))
        workers = self.workers()
        return QueueStatus(
            intake=intake,
            moving=moving,
            queued=queued,
            started=started,
            scheduled=scheduled,
            next_retry_in=self.next_retry_in(),
            failed=failed,
            failed_by_reason=self.failed_by_reason() if with_reasons else {},
            counters={k.decode(): int(v) for k, v in raw_counters.items()},
            workers=workers,
        )

    def failed_by_reason(self) -> dict[str, int]:
        """Failed events counted by reason (``"401 unauthorized"``, ``"404 not_found"``...)."""
        counts: dict[str, int] = {}
        for _, reason in self._failed_reasons():
            counts[reason] = counts.get(reason, 0) + 1
        return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))

    def _failed_reasons(self) -> Iterable[tuple[str, str]]:
        ids = [_text(i) for i in self.connection.zrange(self.failed.key, 0, -1)]
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            with self.connection.pipeline(transaction=False) as pipe:
                for job_id in chunk:
                    pipe.hmget(Job.key_for(job_id), "meta", "status")
                fields = pipe.execute()
            for job_id, (meta, status) in zip(chunk, fields, strict=True):
                yield job_id, _reason_from_meta(meta, exists=status is not None)

    def failed_ids(self, reason: str | None = None) -> list[str]:
        """Ids of the failed jobs whose reason matches ``reason`` (see
        :func:`reason_matches`), or of all of them."""
        return [
            job_id
            for job_id, found in self._failed_reasons()
            if reason is None or reason_matches(found, reason)
        ]

    def requeue_failed(self, reason: str | None = None) -> int:
        """Put failed events (those whose reason matches ``reason``, or all) back on the
        queue with a fresh retry history; returns how many."""
        return self.requeue(self.failed_ids(reason))

    def requeue(
        self, wanted: Sequence[str], *, progress: Callable[[int], None] | None = None
    ) -> int:
        """Move the failed jobs ``wanted`` back on the queue with a fresh retry history;
        returns how many were still there. ``progress(n)`` follows each batch of ``n``."""
        requeued = 0
        for start in range(0, len(wanted), 200):
            chunk = wanted[start : start + 200]
            jobs = Job.fetch_many(chunk, connection=self.connection, serializer=JSONSerializer)
            with self.connection.pipeline(transaction=False) as pipe:
                for job_id, job in zip(chunk, jobs, strict=True):
                    meta: dict[str, Any] = {}
                    if job is not None:
                        meta = {
                            k: v for k, v in job.meta.items() if k not in ("attempts", "failure")
                        }
                        meta["requeued"] = int(meta.get("requeued", 0)) + 1
                    self._requeue(
                        keys=[self.failed.key, self.queue.key],
                        args=[job_id, self._job_prefix, JobStatus.QUEUED.value, json.dumps(meta)],
                        client=pipe,
                    )
                requeued += sum(int(n) for n in pipe.execute())
            if progress is not None:
                progress(len(chunk))
        return requeued


def reason_matches(reason: str, wanted: str) -> bool:
    """Whether a failure ``reason`` such as ``"404 not_found"`` matches what an operator
    typed: the whole reason, or one of its words (``404``, ``not_found``)."""
    wanted = wanted.strip().lower()
    reason = reason.lower()
    return wanted == reason or wanted in reason.split()


def _reason_from_meta(raw: bytes | None, *, exists: bool) -> str:
    if not exists:
        return "unknown (job expired)"
    try:
        meta = json.loads(raw) if raw else {}  # RQ's JSONSerializer format
    except (ValueError, TypeError):
        meta = {}
    failure = meta.get("failure") if isinstance(meta, dict) else None
    if isinstance(failure, dict) and isinstance(failure.get("reason"), str):
        return str(failure["reason"])
    # Failed by RQ itself, e.g. its StartedJobRegistry cleanup ("AbandonedJobError").
    return "other (see the job's RQ failure result)"


def _text(value: object) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def _iso(timestamp: float) -> str:
    # RQ's own format (rq.utils.utcformat).
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
