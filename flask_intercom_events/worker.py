"""``flask intercom worker``: one process keeping many deliveries in flight.

One process uses all of Intercom's budget: Intercom answers in 50-150 ms, so one request at
a time would deliver 10-20 events a second, far below the 166 a second it allows.

- The **main thread** does all the Redis work, in batches: it moves events from the intake
  into RQ jobs, claims jobs within the shared rate budget, settles what the senders report
  (delivered, retry scheduled, failed), promotes due retries, keeps the worker's heartbeat
  (and its registration with RQ, which ``rq info`` lists), and puts back what dead workers
  held. It alone handles ``SIGTERM``/``SIGINT``.
- **Sender threads** (``--concurrency``, default ``INTERCOM_EVENTS_WORKER_CONCURRENCY``) each
  take a claimed job, push an app context and call the job's function,
  :func:`~flask_intercom_events.jobs.deliver`, through this process's one
  ``requests.Session``; they never touch Redis.

Every event stays visible in RQ's structures meanwhile: queued (the intake list counts as
queued too), started (RQ's ``StartedJobRegistry``, one entry per event in flight), scheduled
for a retry (``ScheduledJobRegistry``) or failed with its reason (``FailedJobRegistry``).

Stopping: the first ``SIGTERM``/``SIGINT`` stops claiming, puts the claimed jobs no sender
has started back at the head of the queue, waits for the requests in flight (at most the API
timeout) and settles them; whatever is still unanswered then goes back to the queue too
(sending it again is harmless: Intercom de-duplicates on ``created_at``). A second signal skips
the wait. A worker killed outright is detected by its heartbeat expiring (or, on the same
machine, by its process being gone) and its events are put back by the next worker.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import random
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from types import FrameType
from typing import Any

import redis
import rq
from flask import Flask
from redis.backoff import ExponentialBackoff
from redis.retry import Retry as RedisRetry

from .delivery import Claim, DeliveryQueue, Failure, Retry, WorkerInfo, new_worker_name
from .errors import ConfigurationError, IntercomAPIError, RateLimitInfo
from .events import Event
from .job_records import DELIVER, ClaimedJob
from .jobs import client_for, deliver
from .ratelimit import RateBudget, seconds_until_reset
from .retry import Attempts, RetryPolicy, Verdict, classify_error, decide, reason_of
from .signals import event_failed
from .state import state_of

__all__ = ["DeliveryWorker", "ForeignJobError", "connect_worker_redis"]

log = logging.getLogger("flask_intercom_events.worker")

#: How often due retries are looked for, in seconds.
PROMOTE_EVERY = 0.25
#: ``--burst`` still waits for retries due within this many seconds (e.g. after a 429).
BURST_RETRY_HORIZON = 30.0
_LONGEST_NAP = 0.5


class ForeignJobError(TypeError):
    """A job on the queue does not call :data:`~flask_intercom_events.jobs.DELIVER`."""


@dataclass
class _Outcome:
    job: ClaimedJob
    result: dict[str, Any] | None = None
    error: Exception | None = None


def connect_worker_redis(url: str) -> redis.Redis:
    """The worker's Redis client: patient, unlike the request path's (which spools instead).

    A few quick reconnection attempts per command; past that the worker's loop waits and
    tries again, keeping what it has not recorded yet in memory.
    """
    return redis.Redis.from_url(
        url,
        socket_timeout=10.0,
        socket_connect_timeout=2.0,
        socket_keepalive=True,
        health_check_interval=15,
        retry=RedisRetry(ExponentialBackoff(cap=0.5, base=0.05), 2),
    )


class RQPresence:
    """The worker as RQ's own tools (``rq info``, rq-dashboard) see workers: registered,
    kept alive and unregistered with RQ's :class:`rq.Worker` API, with its state (``busy``
    while events are in flight, else ``idle``) and its counts of delivered and failed events.

    Only for people and their tools to see: what the worker holds, and who takes it over
    when the worker dies, is kept by :class:`~flask_intercom_events.delivery.DeliveryQueue`.
    Every call raises :class:`redis.RedisError` when Redis does not answer; a registration
    that has expired meanwhile (Redis restarted) is made again on the next beat.
    """

    def __init__(self, connection: redis.Redis, queue_name: str, name: str, ttl: int) -> None:
        queue = rq.Queue(queue_name, connection=connection)
        self.worker = rq.Worker([queue], connection=connection, name=name)
        self.ttl = ttl
        self._busy: bool | None = None
        self._delivered = 0
        self._failed = 0

    def count(self, *, delivered: int, failed: int) -> None:
        """Add to the counts written with the next beat or change of state."""
        self._delivered += delivered
        self._failed += failed

    def beat(self, *, busy: bool) -> None:
        """Register (again, if the registration is gone), refresh, write state and counts."""
        worker = self.worker
        if not worker.connection.exists(worker.key):
            worker.register_birth()  # type: ignore[no-untyped-call]
        self._write(busy, beat=True)

    def mark(self, *, busy: bool) -> None:
        """Write the state (and counts) if it changed since the last write: one call."""
        if busy != self._busy:
            self._write(busy, beat=False)

    def _write(self, busy: bool, *, beat: bool) -> None:
        worker = self.worker
        with worker.connection.pipeline() as pipe:
            if beat:
                worker.heartbeat(self.ttl, pipeline=pipe)
            worker.set_state("busy" if busy else "idle", pipeline=pipe)
            if self._delivered:
                pipe.hincrby(worker.key, "successful_job_count", self._delivered)
            if self._failed:
                pipe.hincrby(worker.key, "failed_job_count", self._failed)
            pipe.execute()
        self._busy = busy
        self._delivered = self._failed = 0

    def leave(self) -> None:
        """Unregister: the worker stopped."""
        self.worker.register_death()  # type: ignore[no-untyped-call]

    def bury(self, name: str) -> None:
        """Unregister the worker ``name``, found dead, rather than let RQ's tools show it
        until its registration expires."""
        dead = rq.Worker(self.worker.queues, connection=self.worker.connection, name=name)
        dead.register_death()  # type: ignore[no-untyped-call]


class DeliveryWorker:
    """Delivers one queue's events from Redis to Intercom; :meth:`run` until stopped.

    ``concurrency`` is the most requests in flight (default
    ``INTERCOM_EVENTS_WORKER_CONCURRENCY``), ``queue`` the queue name (default
    ``INTERCOM_EVENTS_QUEUE``); with ``burst`` the worker exits once nothing is waiting, in
    flight, or due for a retry within :data:`BURST_RETRY_HORIZON` seconds.
    """

    def __init__(
        self,
        app: Flask,
        *,
        concurrency: int | None = None,
        queue_name: str | None = None,
        burst: bool = False,
        connection: redis.Redis | None = None,
    ) -> None:
        settings = state_of(app).settings
        if settings.access_token is None:
            raise ConfigurationError(
                "INTERCOM_ACCESS_TOKEN is not set: the worker cannot send events without it"
            )
        if concurrency is not None and concurrency < 1:
            raise ConfigurationError(
                f"--concurrency must be at least 1 (requests in flight), got {concurrency}"
            )
        self.app = app
        self.settings = settings
        self.concurrency = concurrency or settings.worker_concurrency
        self.burst = burst
        self.name = new_worker_name()
        self.connection = connection or connect_worker_redis(settings.redis_url)
        self.store = DeliveryQueue(
            self.connection, queue_name or settings.queue, failure_ttl=settings.failure_ttl
        )
        self.budget = RateBudget(
            self.connection,
            settings.access_token,
            allowance=settings.window_budget,
            window=settings.rate_window,
        )
        self.policy = RetryPolicy.from_settings(settings)
        connect, read = settings.api_timeout
        #: Seconds a claimed job stays in RQ's started registry without a heartbeat.
        self.lease = 3 * settings.worker_ttl + connect + read + 60
        self.heartbeat_every = max(min(settings.worker_ttl / 3, 10.0), 0.1)
        #: Seconds a graceful stop waits for the requests in flight.
        self.grace = connect + read + 1
        self.collect_size = max(4 * self.concurrency, 100)
        self._inbox: queue.SimpleQueue[ClaimedJob | None] = queue.SimpleQueue()
        self._outbox: queue.SimpleQueue[_Outcome] = queue.SimpleQueue()
        self._held: dict[str, ClaimedJob] = {}
        self._done: list[_Outcome] = []
        self._threads: list[threading.Thread] = []
        self._random = random.Random()
        self._stopping = 0
        self._auth_reported = False
        self._redis_down_since: float | None = None
        self._machine = _machine_id()
        self._started_at = time.time()
        self.presence = RQPresence(
            self.connection,
            self.store.name,
            self.name,
            ttl=max(int(settings.worker_ttl) + 60, 60),
        )

    def __repr__(self) -> str:
        return (
            f"<DeliveryWorker {self.name} queue={self.store.name!r} concurrency={self.concurrency}>"
        )

    # --- running ---------------------------------------------------------------------------

    def run(self) -> None:
        """Deliver until stopped by a signal (or, with ``burst``, until nothing is left)."""
        client_for(self.settings, pool_size=self.concurrency)  # this process's session
        with self._signals(), self.app.app_context():
            self._start_senders()
            log.info(
                "Worker %s delivering queue %r, up to %d requests in flight, %d calls per "
                "%g s window",
                self.name,
                self.store.name,
                self.concurrency,
                self.budget.allowance,
                self.budget.window,
            )
            try:
                self._loop()
            finally:
                self._shut_down()
        log.info("Worker %s stopped", self.name)

    def stop(self, *, now: bool = False) -> None:
        """Ask the worker to stop: gracefully, or ``now`` without waiting for requests in
        flight (their events go back to the queue). Safe from a signal handler."""
        self._stopping = max(self._stopping + 1, 2 if now else 1)

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def on_signal(signum: int, frame: FrameType | None) -> None:
            first = self._stopping == 0
            self.stop()
            if first:
                log.warning(
                    "%s: finishing the requests in flight (at most %.0f s), then stopping; "
                    "send it again to stop at once",
                    signal.Signals(signum).name,
                    self.grace,
                )
            else:
                log.warning("Stopping now: unfinished events go back to the queue")

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _start_senders(self) -> None:
        for number in range(self.concurrency):
            thread = threading.Thread(
                target=self._send_loop, name=f"intercom-sender-{number}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _send_loop(self) -> None:
        while True:
            job = self._inbox.get()
            if job is None:
                return
            try:
                if job.problem is not None:
                    raise ForeignJobError(f"job {job.id} cannot be delivered: {job.problem}")
                if job.func_name != DELIVER:
                    raise ForeignJobError(
                        f"job {job.id} calls {job.func_name!r}, not {DELIVER}: only "
                        "Intercom event deliveries belong on this queue"
                    )
                with self.app.app_context():
                    result = deliver(*job.args, **job.kwargs)
                outcome = _Outcome(job, result=result)
            except Exception as exc:
                outcome = _Outcome(job, error=exc)
            self._outbox.put(outcome)

    # --- the main loop ---------------------------------------------------------------------

    def _loop(self) -> None:
        next_beat = 0.0
        next_promote = 0.0
        rate_wait_until = 0.0
        queue_left: int | None = None
        while not self._stopping:
            now = time.monotonic()
            self._take_outcomes(timeout=0)
            try:
                if self._done:
                    self._settle()
                if now >= next_beat:
                    self._housekeeping()
                    next_beat = now + self.heartbeat_every
                if now >= next_promote:
                    if self.store.promote_due():
                        queue_left = None
                    next_promote = now + PROMOTE_EVERY
                free = self.concurrency - len(self._held)
                collected = 0
                if free > 0 and now >= rate_wait_until:
                    if queue_left is None or queue_left < self.concurrency:
                        collected = self.store.collect(self.name, self.collect_size)
                    claim = self._claim(free)
                    queue_left = claim.queue_left
                    if claim.wait > 0:
                        rate_wait_until = time.monotonic() + claim.wait
                self.presence.mark(busy=bool(self._held))
                self._redis_answers()
            except redis.RedisError as exc:
                self._redis_failed(exc)
                queue_left = None
                continue
            limited = time.monotonic() < rate_wait_until
            if self._held:
                if len(self._held) >= self.concurrency or limited or queue_left == 0:
                    nap = min(_LONGEST_NAP, max(next_beat - time.monotonic(), 0.001))
                    if limited and len(self._held) < self.concurrency:
                        nap = min(nap, rate_wait_until - time.monotonic())
                    self._take_outcomes(timeout=max(nap, 0.001))
            elif limited:
                self._take_outcomes(timeout=min(_LONGEST_NAP, rate_wait_until - time.monotonic()))
            elif queue_left == 0 and not collected and not self._idle(next_beat):
                return

    def _claim(self, free: int) -> Claim:
        claim = self.store.claim(self.name, free, self.budget, self.lease)
        for job in claim.jobs:
            self._held[job.id] = job
            self._inbox.put(job)
        return claim

    def _idle(self, next_beat: float) -> bool:
        """Nothing to send: wait for events; ``False`` when a burst worker is done."""
        try:
            due_in = self.store.next_retry_in()
            if (
                self.burst
                and (due_in is None or due_in > BURST_RETRY_HORIZON)
                and self.store.connection.llen(self.store.intake_key) == 0
            ):
                return False
            if due_in is not None and due_in < 1.0:
                self._take_outcomes(timeout=max(due_in, 0.01))
            elif next_beat - time.monotonic() > 1.0:
                self.store.wait_for_intake(self.name, 1.0)
            else:
                self._take_outcomes(timeout=max(next_beat - time.monotonic(), 0.01))
        except redis.RedisError as exc:
            self._redis_failed(exc)
        return True

    def _take_outcomes(self, timeout: float) -> None:
        try:
            if timeout > 0:
                self._done.append(self._outbox.get(timeout=timeout))
            while True:
                self._done.append(self._outbox.get_nowait())
        except queue.Empty:
            pass

    # --- settling --------------------------------------------------------------------------

    def _settle(self) -> None:
        """Record the outcomes in Redis (one transaction), then correct the rate budget."""
        outcomes = self._done
        now = time.time()
        delivered: list[str] = []
        retries: list[Retry] = []
        failures: list[tuple[Failure, Exception]] = []
        newest: tuple[RateLimitInfo, float | None] | None = None
        block_for: float | None = None
        for outcome in outcomes:
            job = outcome.job
            if outcome.error is None:
                delivered.append(job.id)
                info, server_time = _rate_limit_of(outcome.result)
                newest = _newer(newest, info, server_time)
                continue
            error = outcome.error
            verdict = classify_error(error)
            info = error.rate_limit if isinstance(error, IntercomAPIError) else RateLimitInfo()
            retry_after = error.retry_after if isinstance(error, IntercomAPIError) else None
            newest = _newer(newest, info, None)
            reset_in = seconds_until_reset(info.reset, now=now)
            spent = verdict is Verdict.THROTTLED or info.remaining == 0
            if verdict is Verdict.THROTTLED:
                wait = max(retry_after or 0.0, reset_in or 0.0) or self.policy.window
                block_for = max(block_for or 0.0, wait)
            if verdict is Verdict.UNAUTHORIZED:
                self._report_auth(error)
            attempts = Attempts.from_meta(job.meta.get("attempts")).after(verdict, now)
            decision = decide(
                verdict,
                attempts,
                self.policy,
                now=now,
                draw=self._random.random(),
                retry_after=retry_after,
                window_resets_in=reset_in if spent else None,
            )
            meta = {**job.meta, "attempts": attempts.to_meta(), "last_error": _describe(error)}
            if decision.retry:
                log.info("Event job %s: %s; %s", job.id, _describe(error), decision.reason)
                retries.append(Retry(job, now + decision.delay, meta))
            else:
                meta["failure"] = _failure_record(error, decision.reason, attempts, now)
                log.warning(
                    "Event job %s failed: %s (%s)", job.id, _describe(error), decision.reason
                )
                failure = Failure(job, f"{decision.reason}: {_describe(error)}", meta)
                failures.append((failure, error))
        self.store.settle(
            self.name,
            delivered=delivered,
            retries=retries,
            failures=[failure for failure, _ in failures],
        )
        self._done = []
        self.presence.count(delivered=len(delivered), failed=len(failures))
        for outcome in outcomes:
            self._held.pop(outcome.job.id, None)
        for failure, error in failures:
            self._send_failed(failure, error)
        if newest is not None or block_for is not None:
            info, server_time = newest if newest is not None else (RateLimitInfo(), None)
            self.budget.observe(
                info,
                reset_in=seconds_until_reset(info.reset, now=time.time(), server_time=server_time),
                block_for=block_for,
            )

    def _send_failed(self, failure: Failure, error: Exception) -> None:
        """``event_failed`` (sender: the app) with the event (``None`` if its payload is not
        a valid event), the error, and the failure's reason label."""
        if not event_failed.receivers:
            return
        payload = failure.job.args[0] if failure.job.args else None
        try:
            event = Event.from_payload(payload) if isinstance(payload, dict) else None
        except ValueError:
            event = None
        reason = failure.meta["failure"]["reason"]
        try:
            event_failed.send(self.app, event=event, error=error, reason=reason)
        except Exception:
            log.exception("An event_failed receiver raised (the failure is recorded)")

    def _report_auth(self, error: Exception) -> None:
        if self._auth_reported:
            return
        self._auth_reported = True
        log.critical(
            "Intercom refused the access token (%s). Every event fails until "
            "INTERCOM_ACCESS_TOKEN is fixed (a valid token with write scope); then run "
            "`flask intercom requeue-failed --reason %s`. Reported once per worker.",
            _describe(error),
            getattr(error, "status", "401"),
        )

    # --- housekeeping ----------------------------------------------------------------------

    def _housekeeping(self) -> None:
        details = {
            "host": socket.gethostname(),
            "machine": self._machine,
            "pid": os.getpid(),
            "concurrency": self.concurrency,
            "in_flight": len(self._held),
            "started_at": self._started_at,
        }
        self.store.heartbeat(
            self.name, details, self.settings.worker_ttl, list(self._held), self.lease
        )
        self.presence.beat(busy=bool(self._held))
        for name, (moved, requeued) in self.store.reclaim_dead(
            me=self.name, is_dead=self._process_gone
        ).items():
            self.presence.bury(name)
            if moved or requeued:
                log.warning(
                    "Worker %s is gone: put %d event(s) back on the intake and %d back on the "
                    "queue",
                    name,
                    moved,
                    requeued,
                )
        # Claimed in Redis but unknown here: a claim whose reply was lost in a Redis blip.
        orphans = [job_id for job_id in self.store.owned(self.name) if job_id not in self._held]
        if orphans:
            released = self.store.release(self.name, orphans)
            log.warning("Put %d job(s) this worker lost track of back on the queue", released)

    def _process_gone(self, info: WorkerInfo) -> bool:
        """Whether a worker with a live heartbeat ran on this machine and its process died."""
        pid = info.details.get("pid")
        if info.details.get("machine") != self._machine or not isinstance(pid, int):
            return False
        if pid == os.getpid():
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def _redis_failed(self, exc: redis.RedisError) -> None:
        if self._redis_down_since is None:
            self._redis_down_since = time.monotonic()
            log.warning(
                "Redis (INTERCOM_EVENTS_REDIS_URL) does not answer (%s); %d outcome(s) kept in "
                "memory until it does, retrying",
                type(exc).__name__,
                len(self._done),
            )
        down_for = time.monotonic() - self._redis_down_since
        self._take_outcomes(timeout=min(0.1 * 2 ** min(down_for, 4), 2.0))

    def _redis_answers(self) -> None:
        if self._redis_down_since is not None:
            log.warning(
                "Redis answers again after %.1f s", time.monotonic() - self._redis_down_since
            )
            self._redis_down_since = None
            # A claim whose reply was lost is found by the next housekeeping.

    # --- stopping --------------------------------------------------------------------------

    def _shut_down(self) -> None:
        unsent: list[str] = []
        with contextlib.suppress(queue.Empty):
            while True:
                job = self._inbox.get_nowait()
                if job is not None:
                    unsent.append(job.id)
        self._release(unsent)
        deadline = time.monotonic() + self.grace
        while self._held and self._stopping < 2 and time.monotonic() < deadline:
            self._take_outcomes(timeout=0.2)
            if self._done:
                try:
                    self._settle()
                except redis.RedisError as exc:
                    self._redis_failed(exc)
        if self._done:
            with contextlib.suppress(redis.RedisError):
                self._settle()
        self._release([job_id for job_id in self._held if job_id not in unsent])
        for _ in self._threads:
            self._inbox.put(None)
        try:
            self.presence.leave()
            if not self._held:
                self.store.unregister(self.name)
        except redis.RedisError as exc:
            log.error(
                "Could not unregister worker %s (%s): the next worker will put back what it "
                "held once its heartbeat expires",
                self.name,
                exc,
            )

    def _release(self, job_ids: list[str]) -> None:
        if not job_ids:
            return
        try:
            released = self.store.release(self.name, job_ids)
        except redis.RedisError as exc:
            log.error(
                "Could not put %d event job(s) back on the queue (%s): they stay in RQ's "
                "started registry under worker %s, and the next worker puts them back once "
                "its heartbeat expires",
                len(job_ids),
                exc,
                self.name,
            )
            return
        for job_id in job_ids:
            self._held.pop(job_id, None)
        if released:
            log.info("Put %d unfinished event job(s) back on the queue", released)


def _rate_limit_of(result: dict[str, Any] | None) -> tuple[RateLimitInfo, float | None]:
    if not result:
        return RateLimitInfo(), None
    raw = result.get("rate_limit") or {}
    server_time = result.get("server_time")
    return (
        RateLimitInfo(
            limit=raw.get("limit"), remaining=raw.get("remaining"), reset=raw.get("reset")
        ),
        float(server_time) if isinstance(server_time, (int, float)) else None,
    )


def _newer(
    current: tuple[RateLimitInfo, float | None] | None,
    info: RateLimitInfo,
    server_time: float | None,
) -> tuple[RateLimitInfo, float | None] | None:
    """Of two ``X-RateLimit-*`` readings, the one that says most about the present: the
    later window, then the fewer calls remaining."""
    if info.limit is None or info.remaining is None or info.reset is None:
        return current
    if current is None:
        return info, server_time
    best = current[0]
    if (info.reset, -info.remaining) > (best.reset or 0, -(best.remaining or 0)):
        return info, server_time
    return current


def _describe(error: Exception) -> str:
    if isinstance(error, IntercomAPIError):
        return str(error)
    return f"{type(error).__name__}: {error}"


def _failure_record(error: Exception, why: str, attempts: Attempts, now: float) -> dict[str, Any]:
    record: dict[str, Any] = {
        "reason": reason_of(error),
        "why": why,
        "message": str(error) if not isinstance(error, IntercomAPIError) else error.message,
        "attempts": attempts.total,
        "failed_at": now,
    }
    if isinstance(error, IntercomAPIError):
        record.update(
            status=error.status,
            code=error.code,
            request_id=error.request_id,
            type=type(error).__name__,
        )
    else:
        record["type"] = type(error).__name__
    return record


def _machine_id() -> str:
    """What tells this machine (and PID namespace) apart: a worker whose heartbeat carries
    the same id and whose PID no longer exists is dead."""
    parts = [socket.gethostname()]
    for path in ("/proc/sys/kernel/random/boot_id", "/etc/machine-id"):
        try:
            with open(path, encoding="ascii") as handle:
                parts.append(handle.read().strip())
        except OSError:
            continue
        break
    with contextlib.suppress(OSError):
        parts.append(str(os.stat("/proc/self/ns/pid").st_ino))
    return "/".join(parts)
