"""Step 2 of an event's way (see ``store.py``): intake lines become RQ jobs, each event with
its own second.

Intercom keeps one event per (contact, name, ``created_at``): distinct events of one contact
and name in the same second would be collapsed into one. Each event claims the first second
from its ``created_at`` on that no *different* event holds (``seconds.lua``, atomic, shared by
every worker; claims expire). The same event again (same uuid: a re-delivery) gets its own
second back, so Intercom still de-duplicates it. The chosen second is written into the job's
payload before anything is sent, so every retry sends the same ``created_at``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rq.job import Job

from .job_records import DELIVER, ClaimedJob, decode_line, describe, job_data
from .keys import seconds_prefix
from .rules import MILLISECONDS_FROM

if TYPE_CHECKING:  # the store calls this module: for the type checker only
    from .config import Settings
    from .store import DeliveryStore

__all__ = [
    "MAX_COLLECT",
    "Collected",
    "SameSecond",
    "choose_seconds",
    "collapsed_description",
    "collect",
    "contact_digest",
]

#: Events turned from intake lines into RQ jobs at a time.
MAX_COLLECT = 1000


@dataclass(frozen=True)
class SameSecond:
    """How distinct events of one contact and name get distinct seconds: moved at most
    ``most`` seconds later (past that they are collapsed), each claim kept ``ttl`` seconds,
    under ``prefix`` (one per Intercom workspace: :func:`~.keys.seconds_prefix`)."""

    prefix: str
    most: int
    ttl: int = 3600

    @classmethod
    def from_settings(cls, settings: Settings) -> SameSecond | None:
        """The app's rule: ``None`` with ``INTERCOM_EVENTS_SAME_SECOND = "collapse"``."""
        if settings.same_second != "spread" or settings.access_token is None:
            return None
        return cls(seconds_prefix(settings.access_token), most=settings.max_spread)


@dataclass(frozen=True)
class Collected:
    """What :meth:`DeliveryStore.collect` did: jobs enqueued, and the events failed at once
    (``collapsed``: no free second; ``unreadable``: not an event line), as jobs."""

    enqueued: int = 0
    collapsed: list[ClaimedJob] = field(default_factory=list)
    unreadable: int = 0

    @property
    def total(self) -> int:
        """Every line taken off the intake."""
        return self.enqueued + len(self.collapsed) + self.unreadable


def contact_digest(payload: Mapping[str, Any]) -> str:
    """What identifies an event's (contact, name) for Intercom's de-duplication, hashed:
    the ``user_id``, else the Lead's ``id``, else the email (lower-cased), and the name."""
    contact = payload.get("user_id")
    if contact is None:
        contact = payload.get("id")
    if contact is None:
        contact = str(payload.get("email", "")).lower()
    text = f"{contact}\0{payload.get('event_name')}"
    return hashlib.sha256(text.encode("utf-8", errors="surrogateescape")).hexdigest()[:20]


def collect(
    store: DeliveryStore, worker: str, most: int, same_second: SameSecond | None
) -> Collected:
    """Turn up to ``most`` intake lines into queued RQ jobs (lines left in ``worker``'s
    moving list by an earlier try go first). With ``same_second``, an event that finds
    every second up to ``same_second.most`` taken is failed as ``collapsed``."""
    keys = store.keys
    moving = keys.moving(worker)
    lines = store.connection.lrange(moving, 0, -1)
    if not lines:
        if not store.scripts.collect(
            intake=keys.intake, moving=moving, most=min(most, MAX_COLLECT)
        ):
            return Collected()
        lines = store.connection.lrange(moving, 0, -1)
    events: dict[str, dict[str, Any]] = {}
    unreadable: list[tuple[bytes | str, str]] = []
    for line in lines:
        try:
            uuid, payload = decode_line(line)
        except ValueError as exc:
            unreadable.append((line, str(exc)))
            continue
        events.setdefault(uuid, payload)  # a line pushed twice is one event
    moved: dict[str, dict[str, Any]] = {}
    collapsed: list[str] = []
    if same_second is not None and events:
        starts = {
            uuid: (contact_digest(p), p["created_at"])
            for uuid, p in events.items()
            if isinstance(p.get("created_at"), int) and not isinstance(p["created_at"], bool)
        }
        seconds, collapsed = choose_seconds(store, same_second, starts)
        for uuid, second in seconds.items():
            original = starts[uuid][1]
            if second != original:
                moved[uuid] = {"moved_from": original}
                events[uuid] = {**events[uuid], "created_at": second}
    datas = [
        job_data(uuid, payload, failure_ttl=store.failure_ttl, meta=moved.get(uuid))
        for uuid, payload in events.items()
        if uuid not in collapsed
    ]
    failed_now: list[ClaimedJob] = []
    with store.connection.pipeline(transaction=True) as pipe:
        if datas:
            store.queue.enqueue_many(datas, pipeline=pipe)
        for uuid in collapsed:
            job = _create(store, uuid, [events[uuid]], describe(events[uuid]))
            failed_now.append(ClaimedJob(uuid, job, payload=events[uuid]))
            store.fail_now(
                pipe,
                job,
                "collapsed",
                collapsed_description(
                    same_second.most if same_second else 0, events[uuid].get("created_at")
                ),
                {"failure": {"reason": "collapsed", "attempts": 0}},
            )
        for line, problem in unreadable:
            text = line.decode("utf-8", errors="replace") if isinstance(line, bytes) else line
            job = _create(store, None, [text], "unreadable Intercom event line")
            store.fail_now(
                pipe,
                job,
                "unreadable",
                f"unreadable event line: {problem}",
                {"failure": {"reason": "unreadable", "attempts": 0}},
            )
        pipe.delete(moving)
        counted = {"collected": len(lines), "collapsed": len(collapsed)}
        store.scripts.add_counts(
            counters=keys.stats,
            amounts={field: count for field, count in counted.items() if count},
            client=pipe,
        )
        pipe.execute()
    return Collected(len(datas), failed_now, len(unreadable))


def choose_seconds(
    store: DeliveryStore, same_second: SameSecond, starts: Mapping[str, tuple[str, int]]
) -> tuple[dict[str, int], list[str]]:
    """The second of each event (uuid -> (contact-and-name digest, the first second it may
    take)): ``(seconds, collapsed)``, the second each event got, and the uuids that got none
    (every second up to ``same_second.most`` taken, or the next free one past what Intercom
    takes as seconds)."""
    claims = [(uuid, digest, first) for uuid, (digest, first) in starts.items()]
    if not claims:
        return {}, []
    chosen = store.scripts.seconds(
        prefix=same_second.prefix, ttl=same_second.ttl, most=same_second.most, claims=claims
    )
    seconds: dict[str, int] = {}
    collapsed: list[str] = []
    for (uuid, _, _), second in zip(claims, chosen, strict=True):
        if 0 <= second < MILLISECONDS_FROM:
            seconds[uuid] = second
        else:
            collapsed.append(uuid)
    return seconds, collapsed


def collapsed_description(most: int, created_at: object) -> str:
    """Why an event was failed as ``collapsed`` (RQ's ``exc_info``)."""
    return (
        f"no free second within {most} s of created_at {created_at}: Intercom would keep only "
        "one of the events of this contact and name in that second"
    )


def _create(store: DeliveryStore, job_id: str | None, args: list[Any], description: str) -> Job:
    return store.queue.create_job(
        DELIVER,
        args=args,
        job_id=job_id,
        result_ttl=0,
        failure_ttl=store.failure_ttl,
        description=description,
    )
