"""One rate budget per access token, shared by every worker on every machine, in Redis.

Intercom counts calls per app in fixed windows (10 s; 1,666 calls for 10,000 a minute) and
says where it stands in every answer: ``X-RateLimit-Limit`` (the window's allowance),
``-Remaining`` and ``-Reset`` (when the window refills, Unix seconds). The budget is a Redis
hash that every worker spends from atomically (Lua, with Redis's own clock so that machines
need not agree on the time):

- its window starts aligned to the window length, then follows the ``Reset`` Intercom
  reports, so the budget's windows are Intercom's windows;
- what is spent in a window is the larger of what the workers took and what Intercom says
  it counted (``Limit - Remaining``): calls from elsewhere with the same token count too;
- calls granted in the last quarter second of a window (a tenth of it, for short windows)
  may reach Intercom once the next window began: they count against both;
- the allowance is ``INTERCOM_EVENTS_RATE_LIMIT`` scaled to the window, lowered to
  ``X-RateLimit-Limit`` when Intercom allows less;
- a ``429`` (or ``Remaining: 0``) blocks every worker until the reset (or ``Retry-After``).

The hash is keyed by a fingerprint of the token (a truncated SHA-256), never the token.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import redis

from .errors import RateLimitInfo

__all__ = ["BUDGET_LUA", "BudgetState", "RateBudget", "budget_key", "seconds_until_reset"]

#: Lua functions shared by every script that spends from a budget (see ``delivery.py``).
#: ``budget_take(key, want, limit, width, now)`` returns ``granted, wait`` (seconds until
#: more can be granted, when fewer than ``want`` were).
BUDGET_LUA = r"""
local function budget_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

-- The current window: its reset time and what was spent in it. Calls granted in the last
-- moments of a window (``late``) may reach Intercom after it refilled: they count in the
-- next window too.
local function budget_window(key, width, now)
  local s = redis.call('HMGET', key, 'reset', 'used', 'blocked', 'limit', 'late')
  local reset = tonumber(s[1])
  local used = tonumber(s[2]) or 0
  local late = tonumber(s[5]) or 0
  if not reset then
    reset = (math.floor(now / width) + 1) * width
    used, late = 0, 0
  elseif now >= reset then
    if now < reset + width then
      used = late
    else
      used = 0
    end
    late = 0
    reset = reset + (math.floor((now - reset) / width) + 1) * width
  end
  return reset, used, tonumber(s[3]) or 0, tonumber(s[4]), late
end

local function budget_save(key, reset, used, late, width)
  redis.call('HSET', key, 'reset', string.format('%.3f', reset), 'used', used, 'late', late)
  redis.call('PEXPIRE', key, math.ceil(width * 1000) * 60)
end

local function budget_take(key, want, limit, width, now)
  local reset, used, blocked, header_limit, late = budget_window(key, width, now)
  if now < blocked then
    return 0, blocked - now
  end
  if header_limit and header_limit < limit then
    limit = header_limit
  end
  local granted = math.max(0, math.min(want, limit - used))
  if reset - now < math.min(0.25, width / 10) then
    late = late + granted
  end
  budget_save(key, reset, used + granted, late, width)
  if granted < want then
    return granted, math.max(reset - now, 0.001)
  end
  return granted, 0
end
"""

_TAKE = (
    BUDGET_LUA
    + r"""
local granted, wait = budget_take(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]),
                                  tonumber(ARGV[3]), budget_now())
return {granted, tostring(wait)}
"""
)

# ARGV: width, header limit (or ''), remaining (or ''), seconds to reset (or ''),
#       block seconds (or ''): block every worker that long from now.
_OBSERVE = (
    BUDGET_LUA
    + r"""
local key, width = KEYS[1], tonumber(ARGV[1])
local header_limit, remaining = tonumber(ARGV[2]), tonumber(ARGV[3])
local reset_in, block_for = tonumber(ARGV[4]), tonumber(ARGV[5])
local now = budget_now()
local reset, used, blocked, _, late = budget_window(key, width, now)
if header_limit then
  redis.call('HSET', key, 'limit', header_limit)
end
if header_limit and remaining and reset_in then
  local reported = now + reset_in
  local spent = header_limit - remaining
  if reported > now then
    if math.abs(reported - reset) <= 0.5 then
      used = math.max(used, spent)
    elseif reported > reset then
      -- Intercom is already in a later window than ours: follow it.
      reset, used, late = reported, spent, 0
    else
      -- Intercom's window ends before ours: adopt its end, keep the larger count.
      reset, used = reported, math.max(used, spent)
    end
    if remaining <= 0 then
      blocked = math.max(blocked, reported)
    end
  end
end
if block_for then
  blocked = math.max(blocked, now + block_for)
end
budget_save(key, reset, used, late, width)
if blocked > now then
  redis.call('HSET', key, 'blocked', string.format('%.3f', blocked))
end
return tostring(math.max(blocked - now, 0))
"""
)

_STATE = (
    BUDGET_LUA
    + r"""
local now = budget_now()
local reset, used, blocked, header_limit = budget_window(KEYS[1], tonumber(ARGV[1]), now)
return {tostring(reset - now), used, tostring(math.max(blocked - now, 0)),
        header_limit or -1}
"""
)


def budget_key(access_token: str) -> str:
    """The Redis key of the budget shared by every worker using ``access_token``.

    Only a fingerprint of the token appears in it.
    """
    digest = hashlib.sha256(b"flask-intercom-events:" + access_token.encode()).hexdigest()
    return f"intercom-events:rate:{digest[:16]}"


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
class BudgetState:
    """A snapshot of a budget (for ``flask intercom status``).

    ``allowance`` is what a window allows (the configured one, or Intercom's when lower),
    ``used`` what is spent in the current window, ``resets_in`` and ``blocked_for`` seconds.
    """

    allowance: int
    used: int
    resets_in: float
    blocked_for: float
    intercom_limit: int | None


class RateBudget:
    """The budget of one access token: ``allowance`` calls per ``window`` seconds.

    Every method is one atomic Redis call.
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
        self._take = connection.register_script(_TAKE)
        self._observe = connection.register_script(_OBSERVE)
        self._state = connection.register_script(_STATE)

    def __repr__(self) -> str:
        return f"RateBudget(key={self.key!r}, allowance={self.allowance}, window={self.window:g})"

    def take(self, want: int) -> tuple[int, float]:
        """Spend up to ``want`` calls now: ``(granted, wait)``, where ``wait`` is the seconds
        until more can be granted (``0`` when all were)."""
        if want <= 0:
            return 0, 0.0
        granted, wait = self._take(keys=[self.key], args=[want, self.allowance, self.window])
        return int(granted), float(wait)

    def observe(
        self,
        info: RateLimitInfo,
        *,
        reset_in: float | None,
        block_for: float | None = None,
    ) -> float:
        """Correct the budget with what Intercom answered; returns seconds every worker is
        now blocked for (``0`` if none).

        ``info`` holds the ``X-RateLimit-*`` values, ``reset_in`` the seconds until the reset
        (see :func:`seconds_until_reset`), ``block_for`` a wait to impose on every worker
        (after a 429: until the reset, or ``Retry-After``).
        """
        args: list[str | float] = [
            self.window,
            _optional(info.limit),
            _optional(info.remaining),
            _optional(reset_in),
            _optional(block_for),
        ]
        return float(self._observe(keys=[self.key], args=args))

    def state(self) -> BudgetState:
        """Where the current window stands."""
        resets_in, used, blocked_for, limit = self._state(keys=[self.key], args=[self.window])
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
        )


def _optional(value: float | None) -> str | float:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return value
