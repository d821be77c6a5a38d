"""``flask intercom worker``: one process keeping many deliveries in flight.

One process keeps many requests in flight, to use Intercom's whole budget (166 events/s).

- The **main thread** does all the Redis work, in batches, in a loop that only iterates
  (:meth:`DeliveryWorker._step`, then a nap until the earliest deadline): it settles what
  the senders report, keeps the worker's heartbeat, promotes due retries, turns intake lines
  into RQ jobs and claims jobs within the shared rate budget. What becomes of each outcome is
  decided by the pure :func:`~flask_intercom_events.retry.settle`. It alone handles
  ``SIGTERM``/``SIGINT``.
- **Sender threads** (``--concurrency``) each take a claimed job, push an app context and
  call :func:`~flask_intercom_events.jobs.deliver` through this process's one
  ``requests.Session``; they never touch Redis.

Stopping: the first ``SIGTERM``/``SIGINT`` stops claiming, puts the claimed jobs no sender
has started back at the head of the queue, waits for the requests in flight (at most the API
timeout) and settles them; what is still unanswered then goes back to the queue too (sending
it again is harmless: Intercom de-duplicates on ``created_at``). A second signal skips the
wait. A worker killed outright is found dead when its RQ registration expires (or at once,
on the same machine, when its process is gone) and its events are put back by the next
worker. Redis down, at start or later: the worker says so once and carries on when it
answers, keeping the outcomes it has not recorded in memory.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import random
import signal
import threading
import time
from typing import Any

import redis
from flask import Flask

from .config import Settings
from .errors import ConfigurationError
from .job_records import ClaimedJob
from .jobs import client_for
from .key_types import is_wrong_type, repair
from .logs import FailureLog
from .outcomes import DeliveryObserver, Settler
from .presence import Presence
from .printable import printable
from .process import connect_worker_redis, machine_id, new_worker_name, process_gone, stop_signals
from .ratelimit import RateBudget
from .redis_errors import refusal
from .retry import RetryPolicy
from .sending import Outcome, send_one
from .state import state_of
from .store import Claim, DeliveryStore, SameSecond

__all__ = ["DeliveryWorker", "connect_worker_redis"]

log = logging.getLogger("flask_intercom_events.worker")

#: How often due retries are looked for, in seconds.
PROMOTE_EVERY = 0.25
#: ``--burst`` still waits for retries due within this many seconds (e.g. after a 429).
BURST_RETRY_HORIZON = 30.0
_LONGEST_NAP = 0.5


class DeliveryWorker:
    """Delivers one queue's events from Redis to Intercom; :meth:`run` until stopped.

    ``concurrency`` is the most requests in flight (default
    ``INTERCOM_EVENTS_WORKER_CONCURRENCY``), ``queue_name`` the queue (default
    ``INTERCOM_EVENTS_QUEUE``); with ``burst`` the worker exits once nothing is waiting, in
    flight, or due for a retry within :data:`BURST_RETRY_HORIZON` seconds. ``observer`` is
    told what becomes of each event (metrics). Nothing here needs Redis to answer yet.
    """

    def __init__(
        self,
        app: Flask,
        *,
        concurrency: int | None = None,
        queue_name: str | None = None,
        burst: bool = False,
        connection: redis.Redis | None = None,
        observer: DeliveryObserver | None = None,
    ) -> None:
        settings: Settings = state_of(app).settings
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
        self._own_connection = connection is None  # closed when run() ends
        self.connection = connection or connect_worker_redis(settings.redis_url)
        self.store = DeliveryStore(
            self.connection, queue_name or settings.queue, failure_ttl=settings.failure_ttl
        )
        self.budget = RateBudget(
            self.connection,
            settings.access_token,
            allowance=settings.window_budget,
            window=settings.rate_window,
        )
        self.policy = RetryPolicy.from_settings(settings)
        self.same_second = SameSecond.from_settings(settings)
        connect, read = settings.api_timeout
        #: Seconds a claimed job stays in RQ's started registry without a heartbeat.
        self.lease = 3 * settings.worker_ttl + connect + read + 60
        self.heartbeat_every = max(min(settings.worker_ttl / 3, 10.0), 0.1)
        #: Seconds a graceful stop waits for the requests in flight.
        self.grace = connect + read + 1
        self.collect_size = max(4 * self.concurrency, 100)
        self.presence = Presence(
            self.connection, self.store.name, self.name, ttl=max(int(settings.worker_ttl), 1)
        )
        self.failure_log = FailureLog(log)
        self.observer = observer or DeliveryObserver()
        self.settler = Settler(self, random.Random())
        self._inbox: queue.SimpleQueue[ClaimedJob | None] = queue.SimpleQueue()
        self._outbox: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
        self.held: dict[str, ClaimedJob] = {}
        self._done: list[Outcome] = []
        self._threads: list[threading.Thread] = []
        self._stopping = 0
        self._redis_down_since: float | None = None
        self._machine = machine_id()
        self._started_at = time.time()
        # Deadlines on the monotonic clock: the nap is the earliest of them.
        self._next_beat = 0.0
        self._next_promote = 0.0
        self._claim_at = 0.0
        self._queue_left: int | None = None
        self.paused = False

    def __repr__(self) -> str:
        return (
            f"<DeliveryWorker {self.name} queue={self.store.name!r} concurrency={self.concurrency}>"
        )

    # --- running ---------------------------------------------------------------------------

    def run(self) -> None:
        """Deliver until stopped by a signal (or, with ``burst``, until nothing is left)."""
        client_for(self.settings, pool_size=self.concurrency)  # this process's session
        with stop_signals(self._on_signal), self.app.app_context():
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
                if self._own_connection:
                    self.connection.close()  # a later command would connect again
        log.info("Worker %s stopped", self.name)

    def stop(self, *, now: bool = False) -> None:
        """Ask the worker to stop: gracefully, or ``now`` without waiting for requests in
        flight (their events go back to the queue). Safe from a signal handler."""
        self._stopping = max(self._stopping + 1, 2 if now else 1)

    def _on_signal(self, signum: int) -> None:
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
            self._outbox.put(send_one(self.app, self.settings, job))

    # --- the main loop ---------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stopping:
            self._take_outcomes(timeout=0)
            try:
                nap = self._step()
                self._redis_answers()
            except redis.RedisError as exc:
                self._redis_failed(exc)
                continue
            if nap is None:
                return  # a burst worker with nothing left
            if nap > 0:
                self._take_outcomes(timeout=nap)

    def _step(self) -> float | None:
        """One round of work; returns the seconds to nap (outcomes end it early), ``0`` to
        go on at once, or ``None`` when a burst worker is done."""
        now = time.monotonic()
        if self._done:
            self.settler.settle(self._done)
            self._done = []
        if now >= self._next_beat:
            self._housekeeping()
            self._next_beat = now + self.heartbeat_every
        if now >= self._next_promote:
            if self.store.promote_due(time.time()):
                self._queue_left = None
            self._next_promote = now + PROMOTE_EVERY
        free = self.concurrency - len(self.held)
        collected = 0
        if free > 0 and now >= self._claim_at:
            if not self.paused and (self._queue_left is None or self._queue_left < free):
                collected = self._collect(self.collect_size)
            elif self.paused and self._queue_left == 0:
                collected = self._collect(1)  # a probe needs a job; the rest stay compact
            claim = self._claim(free)
            self._queue_left = claim.queue_left
            if claim.wait > 0:
                self._claim_at = time.monotonic() + claim.wait
        self.presence.mark(busy=bool(self.held), in_flight=len(self.held), details=self.details)
        return self._nap(collected)

    def _nap(self, collected: int) -> float | None:
        now = time.monotonic()
        deadlines = [self._next_beat, self._next_promote]
        can_claim = len(self.held) < self.concurrency
        if can_claim and self._claim_at > now:
            deadlines.append(self._claim_at)
        elif can_claim and (self._queue_left or collected):
            return 0.0  # more to claim right now
        if self.held or self._claim_at > now or self.paused:
            return min(max(min(deadlines) - now, 0.001), _LONGEST_NAP)
        # Nothing held, nothing queued: wait for events (or stop, in a burst).
        due_in = self.store.next_retry_in(time.time())
        if (
            self.burst
            and (due_in is None or due_in > BURST_RETRY_HORIZON)
            and self.connection.llen(self.store.keys.intake) == 0
        ):
            return None
        if due_in is not None and due_in < 1.0:
            return max(due_in, 0.01)
        if self._next_beat - now > 1.0:
            self.store.wait_for_intake(self.name, 1.0)
            return 0.0
        return max(self._next_beat - now, 0.01)

    def _collect(self, most: int) -> int:
        collected = self.store.collect(self.name, most, self.same_second)
        self.settler.collapsed(collected.collapsed)
        if collected.unreadable:
            log.error("%d unreadable line(s) on the intake kept as failed", collected.unreadable)
        if collected.total:
            self._queue_left = None
        return collected.total

    def _claim(self, free: int) -> Claim:
        claim = self.store.claim(
            self.name,
            free,
            self.budget,
            self.lease,
            probe_every=self.settings.auth_probe_every,
            same_second=self.same_second,
        )
        self.settler.collapsed(claim.collapsed)  # requeued events with no free second
        self.paused = claim.paused
        for job in claim.jobs:
            self.held[job.id] = job
            self._inbox.put(job)
        return claim

    def _take_outcomes(self, timeout: float) -> None:
        try:
            if timeout > 0:
                self._done.append(self._outbox.get(timeout=timeout))
            while True:
                self._done.append(self._outbox.get_nowait())
        except queue.Empty:
            pass

    # --- housekeeping ----------------------------------------------------------------------

    def details(self) -> dict[str, Any]:
        """What the heartbeat says about this worker (``status`` and metrics show it)."""
        return {
            "machine": self._machine,
            "pid": os.getpid(),
            "concurrency": self.concurrency,
            "in_flight": len(self.held),
            "started_at": self._started_at,
            "delivery_rate": round(self.settler.rate.per_second(time.monotonic()), 3),
            "paused": self.paused,
        }

    def _housekeeping(self) -> None:
        # Every beat (one idempotent SADD): after a Redis restart that lost its data, what this
        # worker holds from then on must still be counted and, should it die, reclaimed.
        self.store.register(self.name)
        self.presence.beat(busy=bool(self.held), details=self.details())
        self.store.heartbeat(self.name, self.held.values(), self.lease)
        others = [name for name in self.store.worker_names() if name != self.name]
        alive = self.presence.details(others) if others else {}
        for name, details in alive.items():
            gone = details is None or process_gone(details, self._machine)
            if not gone:
                continue
            result = self.store.reclaim(
                name, rq_worker_key=self.presence.key_of(name), force=details is not None
            )
            if result is None:
                continue
            self.presence.bury(name)
            moved, requeued = result
            if moved or requeued:
                log.warning(
                    "Worker %s is gone: put %d event(s) back on the intake and %d back on the "
                    "queue",
                    printable(name),
                    moved,
                    requeued,
                )
        # Held in Redis but unknown here: a claim whose reply was lost in a Redis blip.
        orphans = [job_id for job_id in self.store.held_ids(self.name) if job_id not in self.held]
        if orphans:
            released = self.store.release(self.name, orphans)
            log.warning("Put %d job(s) this worker lost track of back on the queue", released)
        self.failure_log.flush(time.monotonic())

    def _redis_failed(self, exc: redis.RedisError) -> None:
        if is_wrong_type(exc) and repair(self.store, [self.name]):
            return  # a key of another type (written by hand) moved aside: go on
        if self._redis_down_since is None:
            self._redis_down_since = time.monotonic()
            refused = refusal(exc)
            if refused is not None:  # the URL or the server must change: said as such
                log.error(
                    "%s; %d outcome(s) kept in memory until it takes the connection, retrying",
                    refused,
                    len(self._done),
                )
            else:
                log.warning(
                    "Redis (INTERCOM_EVENTS_REDIS_URL) does not answer (%s: %s); %d "
                    "outcome(s) kept in memory until it does, retrying",
                    type(exc).__name__,
                    exc,
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
        self.release(unsent)
        deadline = time.monotonic() + self.grace
        while self.held and self._stopping < 2 and time.monotonic() < deadline:
            self._take_outcomes(timeout=0.2)
            if self._done:
                try:
                    self.settler.settle(self._done)
                    self._done = []
                except redis.RedisError as exc:
                    self._redis_failed(exc)
        if self._done:
            with contextlib.suppress(redis.RedisError):
                self.settler.settle(self._done)
                self._done = []
        self.release([job_id for job_id in self.held if job_id not in unsent])
        self.failure_log.flush(time.monotonic(), force=True)
        for _ in self._threads:
            self._inbox.put(None)
        try:
            self.presence.leave()
            if not self.held:
                self.store.reclaim(
                    self.name, rq_worker_key=self.presence.key_of(self.name), force=True
                )
        except redis.RedisError as exc:
            log.error(
                "Could not unregister worker %s (%s): the next worker will put back what it "
                "held once its registration expires",
                self.name,
                exc,
            )

    def release(self, job_ids: list[str]) -> None:
        """Put held jobs back at the head of the queue (logged, never raised)."""
        if not job_ids:
            return
        try:
            released = self.store.release(self.name, job_ids)
        except redis.RedisError as exc:
            log.error(
                "Could not put %d event job(s) back on the queue (%s): worker %s still holds "
                "them, and the next worker puts them back once its registration expires",
                len(job_ids),
                exc,
                self.name,
            )
            return
        for job_id in job_ids:
            self.held.pop(job_id, None)
        if released:
            log.info("Put %d unfinished event job(s) back on the queue", released)
