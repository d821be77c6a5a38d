"""Fixed-window rate limiting as Intercom does it: pure arithmetic, the clock passed in."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class RateDecision:
    """The verdict on one call, and what the ``X-RateLimit-*`` headers say about it."""

    allowed: bool
    limit: int
    remaining: int
    reset: int

    def headers(self) -> tuple[tuple[str, str], ...]:
        """``X-RateLimit-Limit``, ``-Remaining`` and ``-Reset`` (absolute Unix seconds)."""
        return (
            ("X-RateLimit-Limit", str(self.limit)),
            ("X-RateLimit-Remaining", str(self.remaining)),
            ("X-RateLimit-Reset", str(self.reset)),
        )


def window_start(now: float, width: float) -> float:
    """Start of the window holding ``now``: windows are aligned to multiples of ``width``.

    Rounded to the microsecond: ``floor(now / 0.2) * 0.2`` is ``...704.8000002`` for
    today's Unix times, and a window end of ``...705.0000002`` must not round up to ``706``.
    """
    return round(math.floor(now / width) * width, 6)


def window_reset(now: float, width: float) -> int:
    """Unix time (whole seconds, rounded up) when the window holding ``now`` refills."""
    return math.ceil(round(window_start(now, width) + width, 6))


def describe_window(width: float) -> str:
    """The window as Intercom's 429 message names it: ``10_seconds``."""
    return f"{width:g}_seconds"


def limit_message(limit: int, width: float) -> str:
    """Intercom's 429 message, e.g. ``Exceeded rate limit of 1666 in 10_seconds``."""
    return f"Exceeded rate limit of {limit} in {describe_window(width)}"


class RateWindows:
    """Calls counted per key (an access token) in the current fixed window.

    Not thread-safe on its own: the emulator's state lock guards it.
    """

    def __init__(self) -> None:
        self._windows: dict[str, tuple[float, int]] = {}

    def hit(self, key: str, now: float, limit: int, width: float) -> RateDecision:
        """Count one call by ``key`` at ``now``; every call counts, refused ones too."""
        start = window_start(now, width)
        began, calls = self._windows.get(key, (start, 0))
        if began != start:
            calls = 0
        calls += 1
        self._windows[key] = (start, calls)
        return RateDecision(
            allowed=calls <= limit,
            limit=limit,
            remaining=max(limit - calls, 0),
            reset=window_reset(now, width),
        )

    def clear(self) -> None:
        """Forget every window (a reset)."""
        self._windows.clear()
