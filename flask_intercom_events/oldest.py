"""Which waiting event is the oldest, and what workers that are gone left behind.

The oldest waiting event is at the head of the intake or of RQ's queue. What a worker that
is gone held or was moving (``stranded``) waits too, until a live worker reclaims it at its
next beat: with no live worker, or while a worker killed on another machine still counts as
registered, it is there for a while, often the oldest of all.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .events import tracked_at
from .job_records import decode_line
from .lines import as_text
from .store import DeliveryStore

__all__ = ["Oldest", "Stranded", "oldest_of", "stranded_of"]

#: Records read, at most, for the held jobs of gone workers whose id tells no time.
_READ_AT_MOST = 100


@dataclass(frozen=True)
class Stranded:
    """What gone workers hold or were moving: how many, and ``(id, created_at)`` of the
    events among them that can be the oldest (the heads of their moving lists, their held
    jobs)."""

    count: int
    heads: list[tuple[str, int | None]]
    #: Held job ids whose id tells no time: their records say (read with RQ's queue's head).
    unread: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Oldest:
    """The earliest ``created_at`` and the earliest time of tracking of the waiting events."""

    created_at: int | None
    tracked_at: float | None


def stranded_of(store: DeliveryStore, gone: Sequence[str]) -> Stranded:
    """What the workers named ``gone`` left: a few commands for each, none when none is gone."""
    if not gone:
        return Stranded(0, [])
    keys = store.keys
    with store.connection.pipeline(transaction=False) as pipe:
        for name in gone:
            pipe.llen(keys.moving(name))
            pipe.lindex(keys.moving(name), 0)
            pipe.hkeys(keys.held(name))
        replies: list[Any] = pipe.execute()
    count = 0
    heads: list[tuple[str, int | None]] = []
    unknown: list[str] = []  # held ids that tell no time: their records say
    for at in range(0, len(replies), 3):
        moving, head, held = replies[at : at + 3]
        count += int(moving) + len(held)
        if head is not None:
            heads.extend(_line_head(head))
        for raw in held:
            job_id = as_text(raw)
            if tracked_at(job_id) is None:
                unknown.append(job_id)
            else:
                heads.append((job_id, None))
    return Stranded(count, heads, unknown[:_READ_AT_MOST])


def oldest_of(
    store: DeliveryStore, intake_head: Any, queue_head: Any, stranded: Stranded
) -> Oldest:
    """Of the events at the heads of the intake and of RQ's queue, and of what gone workers
    left: the earliest ``created_at``, and the earliest time one was tracked, read from its
    id (:func:`~.events.tracked_at`), else its ``created_at``."""
    heads: list[tuple[str, int | None]] = list(stranded.heads)
    if intake_head:
        heads.extend(_line_head(intake_head))
    records = stranded.unread + ([as_text(queue_head)] if queue_head else [])
    if records:
        heads.extend(_job_heads(store, records))  # one read
    created = [c for _, c in heads if c is not None]
    since: list[float] = []
    for uuid, c in heads:
        tracked = tracked_at(uuid)
        if tracked is None and c is not None:
            tracked = float(c)
        if tracked is not None:
            since.append(tracked)
    return Oldest(min(created) if created else None, min(since) if since else None)


def _line_head(line: Any) -> list[tuple[str, int | None]]:
    with contextlib.suppress(ValueError):
        uuid, payload = decode_line(line)
        return [(uuid, _seconds(payload.get("created_at")))]
    return []


def _job_heads(store: DeliveryStore, job_ids: list[str]) -> list[tuple[str, int | None]]:
    return [
        (claimed.id, _seconds((claimed.payload or {}).get("created_at")))
        for claimed in store.read_jobs(job_ids)
    ]


def _seconds(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
