"""When a Redis that answers is still too slow for the request path: pure logic, no I/O.

A hand-off that takes longer than ``INTERCOM_EVENTS_REDIS_SLOW`` a few times in a row opens
the intake's circuit breaker, exactly as a Redis that does not answer does: the next events go
to the spool, so views stop paying for Redis' latency. The background probe closes it again
once a ping answers within the same bound.
"""

from __future__ import annotations

__all__ = ["SLOW_IN_A_ROW", "SlowStreak"]

#: Hand-offs slower than the bound, one after the other, that open the breaker.
SLOW_IN_A_ROW = 3


class SlowStreak:
    """Counts the hand-offs slower than ``bound`` seconds in a row (``None``: never slow).

    One slow hand-off is a hiccup of a loaded machine; several in a row are a slow Redis.
    Threads share one streak; a race between them only shifts the count by one.
    """

    __slots__ = ("bound", "in_a_row", "streak")

    def __init__(self, bound: float | None, in_a_row: int = SLOW_IN_A_ROW) -> None:
        if bound is not None and bound <= 0:
            raise ValueError(f"the slowness bound must be positive seconds, got {bound!r}")
        if in_a_row < 1:
            raise ValueError(f"in_a_row must be at least 1, got {in_a_row!r}")
        self.bound = bound
        self.in_a_row = in_a_row
        self.streak = 0

    def __repr__(self) -> str:
        return f"SlowStreak(bound={self.bound!r}, streak={self.streak}/{self.in_a_row})"

    def is_slow(self, seconds: float) -> bool:
        """Whether one round trip of ``seconds`` is over the bound."""
        return self.bound is not None and seconds > self.bound

    def observe(self, seconds: float) -> bool:
        """Count one hand-off; ``True`` when it completes a streak (the breaker should open),
        after which the count starts again."""
        if not self.is_slow(seconds):
            self.streak = 0
            return False
        self.streak += 1
        if self.streak < self.in_a_row:
            return False
        self.streak = 0
        return True
