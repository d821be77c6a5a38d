"""Same-second claims within one process, for ``eager`` delivery (which has no Redis).

Intercom keeps one event per (contact, name, ``created_at``): in ``rq`` delivery the workers
give distinct events distinct seconds through claims in Redis (:mod:`.collecting`). Eager
delivery sends from the web process itself, so its claims live here: distinct events of one
contact and name tracked in the same second by this process all count. Two eager processes do
not see each other's claims (``rq`` delivery is the one for more than one process).
"""

from __future__ import annotations

import threading
import time

from .collecting import contact_digest
from .events import Event
from .rules import MILLISECONDS_FROM

__all__ = ["LocalSeconds"]


class LocalSeconds:
    """Claims of (contact and name, second) by event uuid, each kept ``ttl`` seconds; an
    event moves at most ``most`` seconds later (past that it is collapsed)."""

    def __init__(self, most: int, ttl: float = 3600) -> None:
        self.most = most
        self.ttl = ttl
        self._held: dict[tuple[str, int], tuple[str, float]] = {}
        self._lock = threading.Lock()
        self._next_prune = 0.0

    def second_for(self, event: Event) -> int | None:
        """The second ``event`` is sent at: the first from its ``created_at`` on that no
        different event of its contact and name holds; ``None`` if every one is taken."""
        digest = contact_digest(event.to_payload())
        now = time.monotonic()
        with self._lock:
            if now >= self._next_prune:
                self._prune(now)
            for second in range(event.created_at, event.created_at + self.most + 1):
                if second >= MILLISECONDS_FROM:
                    return None
                holder = self._held.get((digest, second))
                if holder is None or holder[0] == event.uuid or holder[1] <= now:
                    self._held[(digest, second)] = (event.uuid, now + self.ttl)
                    return second
        return None

    def _prune(self, now: float) -> None:
        self._held = {key: held for key, held in self._held.items() if held[1] > now}
        self._next_prune = now + min(self.ttl, 60.0)
