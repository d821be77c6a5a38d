"""One rate budget per access token, shared by every worker on every machine, in Redis.

Intercom counts calls per app in fixed windows (10 s; 1,666 calls for 10,000 a minute) and
says where it stands in every answer: ``X-RateLimit-Limit`` (the window's allowance),
``-Remaining`` and ``-Reset`` (when the window refills, Unix seconds). The budget is a Redis
hash every worker spends from atomically (``lua/budget.lua``, on Redis's clock so machines
need not agree on the time):

- its window starts aligned to the window length, then follows the ``Reset`` Intercom
  reports, so the budget's windows are Intercom's windows;
- what is spent in a window is the larger of what the workers took and what Intercom says
  it counted (``Limit - Remaining``): calls from elsewhere with the same token count too;
- calls granted in the last quarter second of a window (a tenth of it, for short windows)
  may reach Intercom once the next window began: they count against both;
- the allowance is ``INTERCOM_EVENTS_RATE_LIMIT`` scaled to the window, lowered to
  ``X-RateLimit-Limit`` when Intercom allows less, for :data:`LIMIT_TRUSTED_FOR` seconds;
- a ``429`` (or ``Remaining: 0``) blocks every worker until the reset (or ``Retry-After``);
- a refused token *pauses* the budget: one probe call every 30 s until one succeeds.

Headers are trusted only within sane bounds (:func:`trusted`): one absurd header must never
stop delivery for years. The hash is keyed by a fingerprint of the token, never the token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import redis

from .errors import RateLimitInfo
from .keys import budget_key
from .scripts import Scripts

__all__ = [
    "LIMIT_TRUSTED_FOR",
    "BudgetState",
    "RateBudget",
    "Trusted",
    "budget_key",
    "seconds_until_reset",
    "trusted",
]

#: Seconds a lower ``X-RateLimit-Limit`` is obeyed after Intercom last reported it.
LIMIT_TRUSTED_FOR = 600.0
#: How far past one window a reported ``X-RateLimit-Reset`` may lie and still be believed.
RESET_MARGIN = 5.0


def seconds_until_reset(
    reset: int | None, *, now: float, server_time: float | None = None
) -> float | None:
    """Seconds from ``now`` until the window refills, from ``X-RateLimit-Reset``.

    ``reset`` is Unix time on Intercom's clock. When the response's ``Date``
    (``server_time``) shows the clocks disagree by more than 2 s, the wait is measured on
    Intercom's clock instead (the ``Date`` header only has whole seconds: below that, the
    local clock is the better ruler). Never negative; ``None`` without a reset.
    """
    if reset is None:
        return None
    if server_time is not None and abs(server_time - now) > 2.0:
        return max(reset - server_time, 0.0)
    return max(reset - now, 0.0)


@dataclass(frozen=True)
class Trusted:
    """What of a response's rate-limit headers is believable: ``info`` (absurd values
    dropped), ``reset_in`` (seconds), ``retry_after`` (capped) and the ``problems`` seen
    (one short sentence each, for a warning)."""

    info: RateLimitInfo
    reset_in: float | None
    retry_after: float | None
    problems: tuple[str, ...] = ()


def trusted(
    info: RateLimitInfo,
    retry_after: float | None,
    *,
    now: float,
    server_time: float | None,
    window: float,
    retry_cap: float,
) -> Trusted:
    """Keep the rate-limit headers only within sane bounds (pure).

    A reset more than one window plus :data:`RESET_MARGIN` ahead (a millisecond value, a
    date years away) is ignored; a limit below 1, a negative remaining or one above the limit
    is ignored; ``Retry-After`` is capped at ``retry_cap`` seconds.
    """
    problems: list[str] = []
    limit, remaining, reset = info.limit, info.remaining, info.reset
    if limit is not None and limit < 1:
        problems.append(f"X-RateLimit-Limit {limit} (a limit must allow a call)")
        limit = None
    if remaining is not None and (remaining < 0 or (limit is not None and remaining > limit)):
        problems.append(f"X-RateLimit-Remaining {remaining} (limit {limit})")
        remaining = None
    reset_in = seconds_until_reset(reset, now=now, server_time=server_time)
    if reset_in is not None and reset_in > window + RESET_MARGIN:
        problems.append(
            f"X-RateLimit-Reset {reset} ({reset_in:.0f} s ahead, more than a {window:g} s window)"
        )
        reset, reset_in = None, None
    if retry_after is not None and retry_after > retry_cap:
        problems.append(f"Retry-After {retry_after:g} s (capped at {retry_cap:g} s)")
        retry_after = retry_cap
    return Trusted(
        RateLimitInfo(limit=limit, remaining=remaining, reset=reset),
        reset_in,
        retry_after,
        tuple(problems),
    )


@dataclass(frozen=True)
class BudgetState:
    """A snapshot of a budget (for ``flask intercom status`` and the metrics).

    ``allowance`` is what a window allows (the configured one, or Intercom's when lower),
    ``used`` what is spent in the current window, ``resets_in`` and ``blocked_for`` seconds;
    ``paused_since`` (Unix time) and ``paused_reason`` say Intercom refuses the token,
    ``probe_in`` when the next probe goes.
    """

    allowance: int
    used: int
    resets_in: float
    blocked_for: float
    intercom_limit: int | None
    paused_since: float | None = None
    paused_reason: str | None = None
    probe_in: float | None = None

    @property
    def remaining(self) -> int:
        """Calls left in the current window."""
        return max(self.allowance - self.used, 0)


class RateBudget:
    """The budget of one access token: ``allowance`` calls per ``window`` seconds.

    Every method is one atomic Redis call. ``now`` arguments (Unix seconds) replace Redis's
    clock, for tests that walk through windows without waiting for them.
    """

    def __init__(
        self, connection: redis.Redis, access_token: str, *, allowance: int, window: float
    ) -> None:
        if allowance < 1:
            raise ValueError(f"allowance must be at least 1 call per window, got {allowance!r}")
        if not window > 0:
            raise ValueError(f"window must be more than 0 seconds, got {window!r}")
        self.connection = connection
        self.key = budget_key(access_token)
        self.allowance = allowance
        self.window = window
        self._scripts = Scripts(connection)

    def __repr__(self) -> str:
        return f"RateBudget(key={self.key!r}, allowance={self.allowance}, window={self.window:g})"

    def take(self, want: int, *, now: float | None = None) -> tuple[int, float]:
        """Spend up to ``want`` calls now: ``(granted, wait)``, where ``wait`` is the seconds
        until more can be granted (``0`` when all were)."""
        if want <= 0:
            return 0, 0.0
        granted, wait = self._scripts.take(
            budget=self.key, want=want, allowance=self.allowance, window=self.window, now=now
        )
        return int(granted), float(wait)

    def observe(
        self,
        info: RateLimitInfo,
        *,
        reset_in: float | None,
        block_for: float | None = None,
        now: float | None = None,
    ) -> float:
        """Correct the budget with what Intercom answered (headers already :func:`trusted`);
        returns seconds every worker is now blocked for (``0`` if none).

        ``reset_in`` is the seconds until the reset, ``block_for`` a wait to impose on every
        worker (after a 429: until the reset, or ``Retry-After``).
        """
        return float(
            self._scripts.observe(
                budget=self.key,
                window=self.window,
                limit=_optional(info.limit),
                remaining=_optional(info.remaining),
                reset_in=_optional(reset_in),
                block_for=_optional(block_for),
                limit_ttl=LIMIT_TRUSTED_FOR,
                now=now,
            )
        )

    def pause(self, reason: str, *, now: float, probe_every: float) -> bool:
        """Intercom refused the token: every worker stops claiming but for one probe call
        every ``probe_every`` seconds. Returns ``True`` if this started the pause."""
        with self.connection.pipeline(transaction=True) as pipe:
            pipe.hsetnx(self.key, "paused", f"{now:.3f}")
            pipe.hset(self.key, mapping={"paused_reason": reason, "probe_at": now + probe_every})
            started, _ = pipe.execute()
        return bool(started)

    def resume(self) -> bool:
        """A call succeeded: the token works. Returns ``True`` if a pause ended."""
        return bool(self.connection.hdel(self.key, "paused", "paused_reason", "probe_at"))

    def state(self, *, now: float | None = None) -> BudgetState:
        """Where the current window stands."""
        resets_in, used, blocked_for, limit, paused, reason, probe_in = self._scripts.budget_state(
            budget=self.key, window=self.window, now=now
        )
        intercom_limit = int(limit) if int(limit) >= 0 else None
        allowance = self.allowance
        if intercom_limit is not None:
            allowance = min(allowance, intercom_limit)
        return BudgetState(
            allowance=allowance,
            used=int(used),
            resets_in=float(resets_in),
            blocked_for=float(blocked_for),
            intercom_limit=intercom_limit,
            paused_since=float(paused) if paused else None,
            paused_reason=_decoded(reason) or None,
            probe_in=float(probe_in) if probe_in else None,
        )


def _optional(value: float | None) -> str | float:
    """A value for a script argument: ``''`` when unknown."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return value


def _decoded(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")
