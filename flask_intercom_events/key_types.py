"""Keys of a queue that hold another type than this project (or RQ) writes there.

Only a hand-made write does that (``SET intercom-events:intercom-events:stats x``), and every
command on the key then fails with Redis's ``WRONGTYPE``, which names no key: taken for an
outage, it stopped delivery and blinded ``status``. :func:`wrong_types` names the keys, and
:func:`move_aside` renames one out of the way (kept, never deleted: it is not ours to delete).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import redis

from .lines import as_text
from .store import DeliveryStore

__all__ = ["describe", "is_wrong_type", "move_aside", "repair", "wrong_types"]

log = logging.getLogger("flask_intercom_events")


def is_wrong_type(exc: BaseException) -> bool:
    """Whether ``exc`` is Redis's refusal of a command on a key of another type."""
    return isinstance(exc, redis.ResponseError) and "WRONGTYPE" in str(exc)


def expected_types(store: DeliveryStore, workers: Sequence[str]) -> dict[str, str]:
    """Each key of ``store``'s queue (and of ``workers``) and the type it holds."""
    keys = store.keys
    expected = {
        keys.intake: "list",
        keys.workers: "set",
        keys.stats: "hash",
        keys.failed_reasons: "hash",
        keys.scheduled_reasons: "hash",
        keys.scheduled_why: "hash",
        keys.event_names: "set",
        store.queue.key: "list",
        store.started.key: "zset",
        store.scheduled.key: "zset",
        store.failed.key: "zset",
    }
    for name in workers:
        expected[keys.moving(name)] = "list"
        expected[keys.held(name)] = "hash"
    return expected


def wrong_types(store: DeliveryStore, workers: Sequence[str] = ()) -> list[tuple[str, str, str]]:
    """``(key, type found, type expected)`` of each key of the queue holding another type
    (the registered workers' keys too, when the set of them can be read)."""
    connection = store.connection
    names = list(workers)
    if connection.type(store.keys.workers) in (b"set", "set", b"none", "none"):
        names += [as_text(n) for n in connection.smembers(store.keys.workers)]
    expected = expected_types(store, sorted(set(names)))
    with connection.pipeline(transaction=False) as pipe:
        for key in expected:
            pipe.type(key)
        found: list[Any] = pipe.execute()
    wrong = []
    for (key, kind), reply in zip(expected.items(), found, strict=True):
        held = as_text(reply)
        if held not in ("none", kind):
            wrong.append((key, held, kind))
    return wrong


def move_aside(store: DeliveryStore, key: str) -> str:
    """Rename ``key`` to ``<key>:wrongtype:<unix time>`` (if that name is free); the new name."""
    aside = f"{key}:wrongtype:{int(time.time())}"
    store.connection.renamenx(key, aside)
    return aside


def describe(wrong: Sequence[tuple[str, str, str]]) -> str:
    """The keys of another type, as a sentence."""
    return "; ".join(
        f"key {key} holds a {held}, where a {kind} belongs" for key, held, kind in wrong
    )


def repair(store: DeliveryStore, workers: Sequence[str]) -> int:
    """Move aside each key of the queue holding another type, logged at ERROR naming both
    names; how many were moved (0 if none, or if Redis does not answer)."""
    try:
        wrong = wrong_types(store, workers)
        for key, held, kind in wrong:
            log.error(
                "Redis key %s held a %s, where this queue keeps a %s (written by another "
                "tool?): renamed to %s, kept there; delivery goes on",
                key,
                held,
                kind,
                move_aside(store, key),
            )
    except redis.RedisError:
        return 0
    return len(wrong)
