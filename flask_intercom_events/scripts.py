"""The Lua scripts of the delivery side, each in ``lua/<name>.lua``, loaded once.

Lua is kept to what must be atomic: spending the rate budget while taking jobs, and moving
ids between the lists, sets and registries that say where an event is. Job records
themselves are written with RQ's own API (see ``store.py``). Each ``.lua`` file starts with
a header naming its KEYS and ARGV; :class:`Scripts` calls each through one method with named
arguments. ``budget.lua`` and ``counter.lua`` are libraries of functions, prepended to the
scripts that use them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from importlib import resources
from typing import Any

import redis

__all__ = ["Scripts", "source"]

#: The libraries each script calls functions of.
_LIBRARIES = {
    "take": ("budget",),
    "observe": ("budget",),
    "budget_state": ("budget",),
    "claim": ("budget",),
    "promote": ("counter",),
    "requeue": ("counter",),
    "reclaim": ("counter",),
    "add_counts": ("counter",),
}


@cache
def source(name: str) -> str:
    """The text of script ``name`` as Redis runs it (with the libraries it uses first)."""
    text = resources.files(__package__).joinpath(f"lua/{name}.lua").read_text("utf-8")
    return "\n".join([*(source(library) for library in _LIBRARIES.get(name, ())), text])


def _clock(now: float | None) -> str | float:
    return "" if now is None else now


class Scripts:
    """The scripts registered on one connection (redis-py loads each on first use, by SHA)."""

    def __init__(self, connection: redis.Redis) -> None:
        self._connection = connection
        self._scripts = {
            name: connection.register_script(source(name))
            for name in (
                "take",
                "observe",
                "budget_state",
                "claim",
                "collect",
                "seconds",
                "release",
                "reclaim",
                "promote",
                "requeue",
                "counts",
                "add_counts",
                "status",
            )
        }

    def _run(self, name: str, keys: Sequence[str], args: Sequence[Any], client: Any = None) -> Any:
        return self._scripts[name](keys=list(keys), args=list(args), client=client)

    # --- the rate budget -------------------------------------------------------------------

    def take(
        self, *, budget: str, want: int, allowance: int, window: float, now: float | None = None
    ) -> Any:
        """``{granted, wait}``: spend up to ``want`` calls."""
        return self._run("take", [budget], [want, allowance, window, _clock(now)])

    def observe(
        self,
        *,
        budget: str,
        window: float,
        limit: float | str,
        remaining: float | str,
        reset_in: float | str,
        block_for: float | str,
        limit_ttl: float,
        now: float | None = None,
    ) -> Any:
        """Seconds every worker is blocked for, after correcting the budget ('' = unknown)."""
        return self._run(
            "observe",
            [budget],
            [window, limit, remaining, reset_in, block_for, limit_ttl, _clock(now)],
        )

    def budget_state(self, *, budget: str, window: float, now: float | None = None) -> Any:
        """The budget's current window (see ``budget_state.lua``)."""
        return self._run("budget_state", [budget], [window, _clock(now)])

    # --- moving events ---------------------------------------------------------------------

    def claim(
        self,
        *,
        queue: str,
        held: str,
        budget: str,
        most: int,
        allowance: int,
        window: float,
        probe_every: float,
        now: float | None = None,
    ) -> Any:
        """``{ids, wait, left, paused}``: take job ids off the queue within the budget."""
        return self._run(
            "claim",
            [queue, held, budget],
            [most, allowance, window, probe_every, _clock(now)],
        )

    def collect(self, *, intake: str, moving: str, most: int) -> int:
        """Move up to ``most`` event lines from the intake into a moving list."""
        return int(self._run("collect", [intake, moving], [most]))

    def seconds(
        self, *, prefix: str, ttl: int, most: int, claims: Sequence[tuple[str, str, int]]
    ) -> list[int]:
        """The second each ``(uuid, digest, created_at)`` gets (``-1``: none free)."""
        args: list[Any] = [ttl, most, prefix]
        for claim in claims:
            args.extend(claim)
        return [int(second) for second in self._run("seconds", [], args)]

    def release(
        self, *, held: str, queue: str, started: str, ids: Sequence[str], client: Any = None
    ) -> Any:
        """``[id, execution, ...]`` of the held jobs put back at the head of the queue."""
        return self._run("release", [held, queue, started], ids, client=client)

    def reclaim(
        self,
        *,
        workers: str,
        rq_worker: str,
        old_heartbeat: str,
        held: str,
        moving: str,
        intake: str,
        queue: str,
        started: str,
        stats: str,
        name: str,
        force: bool,
    ) -> Any:
        """``[moved, id, execution, ...]``, or ``[-1]`` while the worker is alive."""
        return self._run(
            "reclaim",
            [workers, rq_worker, old_heartbeat, held, moving, intake, queue, started, stats],
            [name, "1" if force else "0"],
        )

    def promote(
        self,
        *,
        scheduled: str,
        queue: str,
        why: str,
        reasons: str,
        now: float,
        most: int,
    ) -> Any:
        """The ids of due retries moved onto the queue."""
        return self._run("promote", [scheduled, queue, why, reasons], [now, most])

    def requeue(
        self,
        *,
        failed: str,
        queue: str,
        reasons: str,
        pairs: Sequence[tuple[str, str]],
        client: Any = None,
    ) -> Any:
        """The ids of failed jobs moved back onto the queue."""
        args = [part for pair in pairs for part in pair]
        return self._run("requeue", [failed, queue, reasons], args, client=client)

    def add_counts(self, *, counters: str, amounts: Mapping[str, int], client: Any = None) -> Any:
        """Add ``amounts`` (field -> amount) to the hash ``counters``, in ``client`` (a
        pipeline) if given; a field that is not an integer starts again, one at 0 or below
        goes."""
        args = [part for field, amount in amounts.items() for part in (field, amount)]
        if not args:
            return 0
        return self._run("add_counts", [counters], args, client=client)

    def set_status(self, *, jobs: Sequence[str], status: str, client: Any = None) -> Any:
        """Set RQ's status of the jobs (their hashes' keys) whose record still exists."""
        if not jobs:
            return 0
        return self._run("status", jobs, [status], client=client)

    def counts(self, *, keys: Sequence[str], moving_prefix: str, held_prefix: str) -> Any:
        """Every count of a queue at one instant (see ``counts.lua``)."""
        return self._run("counts", keys, [moving_prefix, held_prefix])
