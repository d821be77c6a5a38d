"""What ``flask intercom status`` and the metrics read about a queue, and how it is told.

A :class:`Snapshot` is read at one instant (``backlog.read_status``: the same few Redis calls
whatever the backlog, a million failed events included) plus the rate window and this
machine's spool, which is counted even when Redis does not answer. :func:`report` gives its
JSON form, :func:`lines` its text, :func:`problems` what ``status --check`` exits on.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import redis

from .backlog import QueueStatus, read_status, recount_failed
from .config import Settings
from .key_types import describe, is_wrong_type, wrong_types
from .presence import Presence
from .printable import printable
from .ratelimit import BudgetState, RateBudget
from .redis_errors import refusal
from .spool import Spool
from .store import DeliveryStore

__all__ = [
    "EVENT_NAME_LIMIT",
    "EVENT_NAME_WARNING",
    "EXIT_CODES",
    "Problem",
    "Snapshot",
    "connect_reader",
    "duration",
    "lines",
    "problems",
    "read_snapshot",
    "report",
]

#: Active event names Intercom allows a workspace; a new one past that is refused (422).
EVENT_NAME_LIMIT = 120
#: From this many names delivered, ``status`` warns.
EVENT_NAME_WARNING = 100

#: ``status --check`` exit codes, most severe first (the first that applies is returned).
EXIT_CODES = {
    "redis_down": 3,
    "no_worker": 4,
    "too_old": 5,
    "failed": 6,
}


def connect_reader(url: str) -> redis.Redis:
    """A Redis client for reading status: quick to say Redis is down, no retries."""
    return redis.Redis.from_url(url, socket_timeout=5.0, socket_connect_timeout=2.0)


@contextmanager
def delivery_store(settings: Settings, queue_name: str | None = None) -> Iterator[DeliveryStore]:
    """The app's delivery queue on a fresh reading connection, closed on the way out."""
    connection = connect_reader(settings.redis_url)
    try:
        yield DeliveryStore(
            connection, queue_name or settings.queue, failure_ttl=settings.failure_ttl
        )
    finally:
        connection.close()


@dataclass(frozen=True)
class Snapshot:
    """A queue at one instant: ``status`` and ``budget`` are ``None`` when Redis did not
    answer (``error`` then says why); ``spooled`` is this machine's spool of the queue's
    destination (its Redis and queue, and the files of the old naming), always counted;
    ``spooled_other`` what the same directory holds for other destinations (other apps)."""

    queue: str
    now: float
    spooled: int
    spool_dir: str
    rate_window: float
    status: QueueStatus | None = None
    budget: BudgetState | None = None
    error: str | None = None
    spooled_other: int = 0

    @property
    def alive(self) -> int:
        """Workers alive (their registration with RQ not expired)."""
        return sum(1 for w in self.status.workers if w.alive) if self.status else 0

    @property
    def oldest_age(self) -> float | None:
        """Seconds the oldest waiting event has waited since its ``created_at``."""
        return self.status.oldest_age(self.now) if self.status else None

    @property
    def eta(self) -> float | None:
        """Seconds until what waits or is in flight is sent at the current drain rate
        (``0`` when nothing waits, ``None`` when nothing is being delivered)."""
        if self.status is None:
            return None
        left = self.status.waiting + self.status.in_flight
        if left == 0:
            return 0.0
        rate = self.status.drain_rate
        return left / rate if rate > 0 else None


def _wrong_types(store: DeliveryStore, exc: redis.RedisError) -> str | None:
    if not is_wrong_type(exc):
        return None
    with suppress(redis.RedisError):
        wrong = wrong_types(store)
        if wrong:
            return (
                f"Redis refused to read the queue: {describe(wrong)} (written by another "
                "tool? a worker renames such a key aside; or rename it yourself)"
            )
    return f"Redis refused to read the queue: {exc}"


def read_snapshot(
    settings: Settings,
    store: DeliveryStore,
    *,
    reader: str = "status",
    recount: bool = False,
    now: float | None = None,
) -> Snapshot:
    """Read ``store``'s queue; a Redis failure is kept in :attr:`Snapshot.error`."""
    moment = time.time() if now is None else now
    spool = Spool.for_redis(settings.spool_dir, settings.redis_url, store.name)
    base: dict[str, Any] = {
        "queue": store.name,
        "now": moment,
        "spooled": spool.count(),
        "spooled_other": spool.count_others(),
        "spool_dir": str(spool.directory),
        "rate_window": settings.rate_window,
    }
    try:
        if recount:
            recount_failed(store)
        found = read_status(store, Presence(store.connection, store.name, reader, ttl=1), now=now)
        budget = None
        if settings.access_token:
            budget = RateBudget(
                store.connection,
                settings.access_token,
                allowance=settings.window_budget,
                window=settings.rate_window,
            ).state()
    except redis.RedisError as exc:
        error = (
            refusal(exc)
            or _wrong_types(store, exc)
            or f"Redis (INTERCOM_EVENTS_REDIS_URL) did not answer: {exc or type(exc)}"
        )
        return Snapshot(**base, error=error)
    return Snapshot(**base, status=found, budget=budget)


def duration(seconds: float) -> str:
    """``seconds`` for a person: ``"45 s"``, ``"12 min 5 s"``, ``"3 h 20 min"``, ``"2 d 4 h"``."""
    whole = round(seconds)
    if seconds < 10:
        return f"{seconds:.1f} s"
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def _utc(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def report(snapshot: Snapshot) -> dict[str, Any]:
    """The JSON form of ``snapshot`` (``status --json``)."""
    base: dict[str, Any] = {
        "queue": snapshot.queue,
        "spooled": snapshot.spooled,
        "spooled_other_destinations": snapshot.spooled_other,
        "spool_dir": snapshot.spool_dir,
    }
    found, budget = snapshot.status, snapshot.budget
    if found is None:
        return {**base, "error": snapshot.error}
    return {
        **base,
        "error": None,
        "queued": found.waiting,
        "queued_detail": {"intake": found.intake, "moving": found.moving, "rq_queue": found.queued},
        "oldest_created_at": found.oldest_created_at,
        "oldest_tracked_at": found.oldest_tracked_at,
        "oldest_age_seconds": _rounded(snapshot.oldest_age, 1),
        "drain_rate": round(found.drain_rate, 3),
        "eta_seconds": _rounded(snapshot.eta, 1),
        "in_flight": found.in_flight,
        "stranded": found.stranded,
        "started": found.started,
        "scheduled": found.scheduled,
        "scheduled_by_reason": found.scheduled_by_reason,
        "next_retry_in": _rounded(found.next_retry_in),
        "failed": found.failed,
        "failed_by_reason": found.failed_by_reason,
        "event_names": {"delivered": found.event_names, "limit": EVENT_NAME_LIMIT},
        "counters": found.counters,
        "workers_alive": snapshot.alive,
        "workers": [{"name": w.name, "alive": w.alive, **w.details} for w in found.workers],
        "rate_window": None if budget is None else _budget_report(budget, snapshot.rate_window),
    }


def _budget_report(budget: BudgetState, window: float) -> dict[str, Any]:
    return {
        "allowance": budget.allowance,
        "used": budget.used,
        "remaining": budget.remaining,
        "window_seconds": window,
        "resets_in": round(budget.resets_in, 3),
        "blocked_for": round(budget.blocked_for, 3),
        "intercom_limit": budget.intercom_limit,
        "paused": None
        if budget.paused_since is None
        else {
            "since": budget.paused_since,
            "reason": budget.paused_reason,
            "probe_in": _rounded(budget.probe_in),
        },
    }


def lines(snapshot: Snapshot) -> list[str]:
    """The text of ``flask intercom status``."""
    spool = f"  spooled     {snapshot.spooled:>8}   (this machine: {snapshot.spool_dir})"
    if snapshot.spooled_other:
        spool += (
            f"; {snapshot.spooled_other} more for other destinations (another Redis, "
            "database or queue: other apps', left for them)"
        )
    found = snapshot.status
    if found is None:
        return [f"Queue {snapshot.queue!r}: {snapshot.error}", spool]
    out = [f"Queue {snapshot.queue!r}"]
    oldest = snapshot.oldest_age
    waited = "" if oldest is None else f"; the oldest has waited {duration(oldest)}"
    out.append(
        f"  queued      {found.waiting:>8}   (intake {found.intake}, moving {found.moving}, "
        f"RQ queue {found.queued}){waited}"
    )
    eta = snapshot.eta
    if found.waiting + found.in_flight == 0:
        when = "nothing to send"
    elif eta is None:
        when = "no ETA: nothing was delivered in the last minute"
    else:
        when = f"ETA {duration(eta)}"
    out.append(f"  drain rate  {found.drain_rate:>8.1f}   events/s; {when}")
    out.append(f"  in flight   {found.in_flight:>8}")
    if found.stranded:
        out.append(
            f"  stranded    {found.stranded:>8}   (counted above: held or moving at gone "
            "workers, put back at a live worker's next beat)"
        )
    out.append(f"  scheduled   {found.scheduled:>8}{_scheduled_detail(found)}")
    out.append(f"  failed      {found.failed:>8}")
    out.extend(f"    {count:>8}  {reason}" for reason, count in found.failed_by_reason.items())
    out.append(spool)
    names = f"  event names {found.event_names} of {EVENT_NAME_LIMIT}"
    if found.event_names >= EVENT_NAME_WARNING:
        names += (
            f" (warning: Intercom refuses new event names past {EVENT_NAME_LIMIT}; archive "
            "unused ones in Intercom, Settings > Data > Events)"
        )
    out.append(names)
    counters = ", ".join(f"{k} {v}" for k, v in sorted(found.counters.items())) or "none yet"
    out.append(f"  counters    {counters}")
    if snapshot.budget is not None:
        out.extend(_budget_lines(snapshot.budget, snapshot.rate_window, snapshot.now))
    alive = [w for w in found.workers if w.alive]
    gone = len(found.workers) - len(alive)
    out.append(f"  workers     {len(alive)} alive" + (f", {gone} gone" if gone else ""))
    for info in alive:
        details = info.details
        out.append(
            f"    {printable(info.name)}: {details.get('in_flight', '?')} in flight of "
            f"{details.get('concurrency', '?')}, "
            f"{float(details.get('delivery_rate', 0) or 0):.1f} events/s"
            + (" (paused)" if details.get("paused") else "")
        )
    return out


def _scheduled_detail(found: QueueStatus) -> str:
    if not found.scheduled:
        return ""
    parts = [f"{n} × {r}" for r, n in found.scheduled_by_reason.items()]  # noqa: RUF001
    if found.next_retry_in is not None:
        parts.append(f"next in {duration(found.next_retry_in)}")
    return f"   ({', '.join(parts)})" if parts else ""


def _budget_lines(budget: BudgetState, window: float, now: float) -> list[str]:
    out = [
        f"  rate        {budget.used} of {budget.allowance} calls used in this {window:g} s "
        f"window, resets in {budget.resets_in:.1f} s"
    ]
    if budget.intercom_limit is not None and budget.intercom_limit < budget.allowance + 1:
        out[0] += f" (Intercom's limit: {budget.intercom_limit})"
    if budget.blocked_for > 0:
        out.append(
            f"              every worker holds off {budget.blocked_for:.1f} s: Intercom said "
            "this window is spent (a 429, X-RateLimit-Remaining: 0 or Retry-After)"
        )
    if budget.paused_since is not None:
        probe = "" if budget.probe_in is None else f", next probe in {duration(budget.probe_in)}"
        out.append(
            f"  paused      delivery paused since {_utc(budget.paused_since)} "
            f"({duration(max(now - budget.paused_since, 0))} ago): "
            f"{budget.paused_reason or 'Intercom refused the access token'}{probe}"
        )
    return out


@dataclass(frozen=True)
class Problem:
    """Something ``status --check`` reports: ``kind`` (a key of :data:`EXIT_CODES`) and a
    sentence."""

    kind: str
    message: str

    @property
    def exit_code(self) -> int:
        """The exit code of this problem."""
        return EXIT_CODES[self.kind]


def problems(
    snapshot: Snapshot, *, max_age: float | None = None, fail_on_failed: bool = False
) -> list[Problem]:
    """What is wrong with ``snapshot`` for monitoring, most severe first."""
    found = snapshot.status
    if found is None:
        return [Problem("redis_down", f"{snapshot.error}; {snapshot.spooled} event(s) spooled")]
    out: list[Problem] = []
    if found.pending and not snapshot.alive:
        out.append(
            Problem(
                "no_worker",
                f"{found.pending} event(s) wait and no worker is alive: start "
                "`flask intercom worker`",
            )
        )
    oldest = snapshot.oldest_age
    if max_age is not None and oldest is not None and oldest > max_age:
        out.append(
            Problem(
                "too_old",
                f"the oldest waiting event has waited {duration(oldest)}, more than "
                f"--max-age {duration(max_age)}",
            )
        )
    if fail_on_failed and found.failed:
        reasons = ", ".join(f"{n} × {r}" for r, n in found.failed_by_reason.items())  # noqa: RUF001
        out.append(
            Problem(
                "failed",
                f"{found.failed} failed event(s)"
                + (f" ({reasons})" if reasons else "")
                + ": see `flask intercom failed`",
            )
        )
    return out
