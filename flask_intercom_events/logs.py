"""Log lines that stay readable when 100,000 events fail the same way.

The first few failures of each reason are logged in full; past that, one line per reason
per interval says how many more failed (the failed registry and ``flask intercom failed``
keep every one of them).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from .printable import printable

__all__ = ["FailureLog"]


@dataclass
class _Reason:
    logged: int = 0
    unlogged: int = 0
    window_start: float = 0.0


@dataclass
class FailureLog:
    """Logs failures to ``logger``: ``in_full`` lines per reason, then a count per
    ``interval`` seconds. Not thread-safe (the worker's main thread logs failures)."""

    logger: logging.Logger
    in_full: int = 5
    interval: float = 60.0
    _reasons: dict[str, _Reason] = field(default_factory=dict)

    def failed(self, reason: str, message: str, now: float) -> None:
        """One event failed with ``reason``; ``message`` is its full log line."""
        state = self._reasons.setdefault(reason, _Reason(window_start=now))
        if state.logged < self.in_full:
            state.logged += 1
            suffix = (
                f" (further failures with reason {reason!r} are counted, one line per "
                f"{self.interval:g} s)"
                if state.logged == self.in_full
                else ""
            )
            self.logger.warning("%s%s", printable(message), suffix)  # never raw escapes
            return
        state.unlogged += 1
        self.flush(now, only=reason)

    def flush(self, now: float, *, only: str | None = None, force: bool = False) -> None:
        """Log the counts whose interval is over (all of them with ``force``)."""
        for reason, state in self._reasons.items():
            if only is not None and reason != only:
                continue
            if state.unlogged and (force or now - state.window_start >= self.interval):
                self.logger.warning(
                    "%d more event(s) failed with reason %r in the last %.0f s "
                    "(see `flask intercom failed --reason %s`)",
                    state.unlogged,
                    reason,
                    now - state.window_start,
                    reason.split()[0],
                )
                state.unlogged = 0
                state.window_start = now
