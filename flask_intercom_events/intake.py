"""The hand-off from the web process to the workers: one Redis list per queue.

The request path pays for exactly one Redis command per request (``RPUSH`` of the request's
events, each already encoded into its line) on a connection pool shared by the process, with
short timeouts and no retries. When Redis does not answer, or the push fails in any other way,
the events go to the local :class:`Spool` and a circuit breaker sends the next ones straight
there until a background thread sees Redis answer again and drains the spool. A Redis that
answers, but slower than ``INTERCOM_EVENTS_REDIS_SLOW`` several times in a row, opens the
breaker too (:mod:`.breaker`); the probe closes it when a ping is fast again. Workers move
events from this list into RQ jobs.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .breaker import SlowStreak
from .keys import QueueKeys
from .redis_errors import refusal, safe_reason, safe_traceback
from .spool import Spool, destination_of

__all__ = ["Intake", "intake_key"]

log = logging.getLogger("flask_intercom_events.intake")

_PROBE_EVERY = (0.25, 5.0)  # first and longest pause between probes while Redis is down


def intake_key(queue: str) -> str:
    """The Redis list where tracked events wait for a worker (``keys.py`` names it)."""
    return QueueKeys(queue).intake


def connect(url: str, timeout: float) -> redis.Redis:
    """A client that fails fast: short timeouts and no retries (the caller spools instead)."""
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        retry_on_timeout=False,
        health_check_interval=0,
    )


class Intake:
    """Pushes serialised events to Redis, or to the spool when Redis is unreachable.

    The spool it uses is its own destination's (``redis_url`` and ``queue``) in the directory
    of ``spool``: it spools and drains only the events bound for its Redis and queue (and the
    files of the old naming, :meth:`Spool.files`), whatever other apps share the directory.
    """

    def __init__(
        self,
        redis_url: str,
        queue: str,
        timeout: float,
        spool: Spool,
        *,
        slow: float | None = None,
    ) -> None:
        self.key = intake_key(queue)
        self.spool = spool.for_destination(destination_of(redis_url, queue))
        self.redis = connect(redis_url, timeout)
        self.slowness = SlowStreak(slow)
        self._closed = threading.Event()
        self._reset_process_state()

    def _reset_process_state(self) -> None:
        # Threads and locks do not survive a fork (the redis pool re-makes its connections
        # itself): a child starts afresh, trying Redis again rather than inheriting "down".
        self._pid = os.getpid()
        self._state_lock = threading.Lock()
        self._down = False
        self._recovery: threading.Thread | None = None
        self._drainer: threading.Thread | None = None
        self._spool_checked_at = 0.0

    def __repr__(self) -> str:
        return f"Intake(key={self.key!r}, down={self._down})"

    @property
    def down(self) -> bool:
        """Whether the breaker is open: Redis was unreachable or too slow, pushes go to the
        spool until the background probe sees it answer (fast) again."""
        return self._down

    def push(self, lines: Sequence[bytes]) -> bool:
        """Hand encoded events (one line each, ``lines.encode_line``) to Redis; ``True`` if
        they are in Redis, ``False`` if spooled.

        Never raises for a failure of the push, Redis' or any other (a reply redis-py cannot
        read, a bug): whether such a push got in is unknown, so the lines are spooled (a
        duplicate is harmless, Intercom de-duplicates; a lost event is not). Raises only if
        the spool cannot keep them either (``OSError``: the disk is full or read-only).
        """
        if not lines:
            return True
        if self._pid != os.getpid():
            self._reset_process_state()
        for _ in range(2):
            if not self._down:
                started = time.monotonic()
                try:
                    self.redis.rpush(self.key, *lines)
                except Exception as exc:
                    self._went_down(exc)
                else:
                    if self.slowness.observe(time.monotonic() - started):
                        self._went_slow()
                    self._maybe_drain_spool()
                    return True
            # Spool only while the recovery has not declared Redis back (it takes this lock
            # to do so, then drains): a line spooled here is always drained after.
            with self._state_lock:
                if self._down:
                    self.spool.append(lines)
                    return False
        # Redis flapped between our two tries and the recovery's: keep them anyway.
        with self._state_lock:
            self.spool.append(lines)
            self._ensure_recovery()
        return False

    def close(self) -> None:
        """Stop the background recovery, if any, and close the Redis connections."""
        self._closed.set()
        for thread in (self._recovery, self._drainer):
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout=5)
        self.redis.close()
        self.redis.connection_pool.disconnect()

    def push_lines(self, lines: list[str]) -> None:
        """Push already-serialised events; raises ``redis.RedisError`` on failure."""
        self.redis.rpush(self.key, *lines)

    def drain_spool(self) -> int:
        """Move every event spooled for this intake's destination (and those of the old
        naming) into Redis; returns how many (raises if Redis fails)."""
        moved = self.spool.drain(self.push_lines)
        if moved:
            log.info("Moved %d spooled Intercom event(s) into Redis", moved)
        return moved

    # --- outage handling ------------------------------------------------------------------

    def _went_down(self, exc: Exception) -> None:
        with self._state_lock:
            if not self._down:
                refused = refusal(exc)
                if refused is not None:
                    log.error(
                        "%s; spooling Intercom events to %s until it takes the connection",
                        refused,
                        self.spool.directory,
                    )
                elif isinstance(exc, redis.RedisError):
                    log.warning(
                        "Redis unreachable (%s); spooling Intercom events to %s until it answers",
                        type(exc).__name__,
                        self.spool.directory,
                    )
                else:  # not Redis saying no: redis-py itself, or a bug; worth a traceback
                    # ...but not the exception's own words: a UnicodeEncodeError's repr holds
                    # the whole string it failed on, which may be the Redis password.
                    log.error(
                        "Pushing Intercom events to Redis failed (%s); spooling them to %s "
                        "until Redis answers a probe\n%s",
                        safe_reason(exc),
                        self.spool.directory,
                        safe_traceback(exc),
                    )
            self._down = True
            self._ensure_recovery()

    def _went_slow(self) -> None:
        with self._state_lock:
            if not self._down:
                log.warning(
                    "Redis is slow: %d hand-offs in a row took more than "
                    "INTERCOM_EVENTS_REDIS_SLOW (%g s); spooling Intercom events to %s until "
                    "it answers faster",
                    self.slowness.in_a_row,
                    self.slowness.bound,
                    self.spool.directory,
                )
            self._down = True
            self._ensure_recovery()

    def _ensure_recovery(self) -> None:
        # Called with the state lock held. The recovery thread clears _recovery (under the
        # same lock) only when Redis is up, so an outage always has a thread watching it.
        if self._recovery is None:
            self._recovery = threading.Thread(
                target=self._recover, name="intercom-events-recovery", daemon=True
            )
            self._recovery.start()

    def _recover(self) -> None:
        pause, longest = _PROBE_EVERY
        while not self._closed.wait(pause):
            try:
                started = time.monotonic()
                self.redis.ping()
                if self.slowness.is_slow(time.monotonic() - started):
                    raise _StillSlow
                with self._state_lock:
                    self._down = False  # from now on pushes go to Redis, none to the spool
                self.drain_spool()  # so this drains every line spooled in this process
            except Exception:  # Redis down or slow, the spool unreadable: look again later
                with self._state_lock:
                    self._down = True
                pause = min(pause * 2, longest)
                continue
            with self._state_lock:
                if self._down:  # down again while we drained: keep watching
                    continue
                self._recovery = None
            log.warning("Redis answers again; spooled Intercom events are in Redis")
            return
        with self._state_lock:
            self._recovery = None

    def _maybe_drain_spool(self) -> None:
        # Another process (or an earlier run) may have spooled: look now and then, never on
        # every request, and drain in the background.
        now = time.monotonic()
        if now - self._spool_checked_at < 5.0:
            return
        self._spool_checked_at = now
        if not self.spool.files():
            return
        with self._state_lock:
            if self._drainer is not None and self._drainer.is_alive():
                return
            self._drainer = threading.Thread(
                target=self._drain_quietly, name="intercom-events-spool-drain", daemon=True
            )
            self._drainer.start()

    def _drain_quietly(self) -> None:
        try:
            self.drain_spool()
        except Exception as exc:  # the next look, or the recovery, tries again
            log.warning("Could not drain the Intercom events spool yet: %s", exc)


class _StillSlow(Exception):
    """The probe's ping answered, but slower than INTERCOM_EVENTS_REDIS_SLOW."""
