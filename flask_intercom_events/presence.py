"""The worker's one heartbeat: its registration with RQ, as RQ's own workers register.

``rq info`` and rq-dashboard list the worker (``busy`` while events are in flight, else
``idle``) with its counts of delivered and failed events; the key expiring
(``INTERCOM_EVENTS_WORKER_TTL`` without a beat) is how other workers learn it died, and RQ's
``death`` mark how they learn it stopped. The worker's own details (machine, concurrency, in
flight, delivery rate) ride in one extra field of that hash, ``intercom``, which RQ ignores.

Nothing here touches Redis before the first :meth:`Presence.beat`: a worker starts while
Redis is down and registers once it answers.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import redis
import rq

from .json_text import parse_json
from .process import warn_if_evicting

__all__ = ["Presence"]

log = logging.getLogger("flask_intercom_events")

_DETAILS = "intercom"
#: Seconds between two writes of a worker's details between heartbeats (when the number of
#: events it has in flight changes), so that ``status`` shows its load as it is.
MARK_DETAILS_EVERY = 1.0


class Presence:
    """Worker ``name`` of queue ``queue_name`` as RQ's tools see it. Every call raises
    :class:`redis.RedisError` when Redis does not answer."""

    def __init__(self, connection: redis.Redis, queue_name: str, name: str, ttl: int) -> None:
        self.connection = connection
        self.queue_name = queue_name
        self.name = name
        self.ttl = ttl
        self._worker: rq.Worker | None = None
        self._busy: bool | None = None
        self._delivered = 0
        self._failed = 0
        self._in_flight: object = None  # as the details last written say
        self._details_at = 0.0

    def _rq_worker(self, name: str | None = None) -> rq.Worker:
        # rq.Worker reads from Redis when made: made on first use, not when the worker starts.
        if name is not None and name != self.name:
            queue = rq.Queue(self.queue_name, connection=self.connection)
            return rq.Worker([queue], connection=self.connection, name=name)
        if self._worker is None:
            queue = rq.Queue(self.queue_name, connection=self.connection)
            self._worker = rq.Worker([queue], connection=self.connection, name=self.name)
        return self._worker

    def key_of(self, name: str) -> str:
        """The key of worker ``name``'s registration (``rq:worker:<name>``)."""
        return f"{rq.Worker.redis_worker_namespace_prefix}{name}"

    def count(self, *, delivered: int, failed: int) -> None:
        """Add to the counts written with the next beat or change of state."""
        self._delivered += delivered
        self._failed += failed

    def beat(self, *, busy: bool, details: dict[str, Any]) -> None:
        """Register (again, if the registration expired, e.g. Redis restarted without its
        data), refresh the TTL, write the state, counts and ``details``. A registration with
        no birth is one a state written between beats made anew after its data was lost
        (FLUSHDB, a restart): registered again, not left to read as dead for good."""
        worker = self._rq_worker()
        birth, death = self.connection.hmget(worker.key, "birth", "death")
        if birth is None or death is not None:  # at start, or after Redis lost its data
            warn_if_evicting(self.connection, log)
            self.connection.delete(worker.key)  # a registration marked dead is not ours
            worker.register_birth()  # type: ignore[no-untyped-call]
        self._write(busy, details)

    def mark(
        self,
        *,
        busy: bool,
        in_flight: int | None = None,
        details: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        """Write the state (and counts) if it changed since the last write, and ``details()``
        too when the number in flight did, at most once a second: one call, or none."""
        if self._worker is None:
            return
        if (
            details is not None
            and in_flight != self._in_flight
            and time.monotonic() - self._details_at >= MARK_DETAILS_EVERY
        ):
            self._write(busy, details())
        elif busy != self._busy:
            self._write(busy, None)

    def _write(self, busy: bool, details: dict[str, Any] | None) -> None:
        worker = self._rq_worker()
        with self.connection.pipeline() as pipe:
            if details is not None:
                worker.heartbeat(self.ttl, pipeline=pipe)
                pipe.hset(worker.key, _DETAILS, json.dumps(details))
            worker.set_state("busy" if busy else "idle", pipeline=pipe)
            for _ in range(self._delivered):
                worker.increment_successful_job_count(pipeline=pipe)
            for _ in range(self._failed):
                worker.increment_failed_job_count(pipeline=pipe)
            pipe.execute()
        self._busy = busy
        self._delivered = self._failed = 0
        if details is not None:
            self._in_flight = details.get("in_flight")
            self._details_at = time.monotonic()

    def leave(self) -> None:
        """Unregister: the worker stopped."""
        if self._worker is not None:
            self._worker.register_death()  # type: ignore[no-untyped-call]

    def bury(self, name: str) -> None:
        """Unregister worker ``name``, found dead, rather than let RQ's tools show it until
        its registration expires."""
        self._rq_worker(name).register_death()  # type: ignore[no-untyped-call]

    def details(self, names: list[str]) -> dict[str, dict[str, Any] | None]:
        """The ``details`` of each worker, ``None`` for those not alive (no registration, or
        RQ's death mark)."""
        with self.connection.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hmget(self.key_of(name), _DETAILS, "death", "birth")
            found = pipe.execute()
        result: dict[str, dict[str, Any] | None] = {}
        for name, (raw, death, birth) in zip(names, found, strict=True):
            if birth is None or death is not None:
                result[name] = None
                continue
            try:
                loaded = parse_json(raw) if raw else {}
            except ValueError:
                loaded = {}
            result[name] = loaded if isinstance(loaded, dict) else {}
        return result
