"""The shared rate budget (``ratelimit.py``, ``lua/budget.lua``) against a real Redis.

Every call takes an explicit ``now``, so the window arithmetic is walked through as a table
of instants instead of waiting for wall-clock windows.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
import redis

from flask_intercom_events.errors import RateLimitInfo
from flask_intercom_events.ratelimit import (
    LIMIT_TRUSTED_FOR,
    RateBudget,
    budget_key,
    seconds_until_reset,
    trusted,
)

TOKEN = "tok_secret_abc123"
#: An instant at the start of a 10-s (and a 60-s) window.
T = 1_800_000_000.0


def budget(connection: redis.Redis, allowance: int = 10, window: float = 10.0) -> RateBudget:
    return RateBudget(connection, TOKEN, allowance=allowance, window=window)


@pytest.mark.parametrize(
    ("reset", "now", "server_time", "expected"),
    [
        (None, 100.0, None, None),
        (110, 100.0, None, 10.0),
        (110, 100.5, None, 9.5),
        (100, 105.0, None, 0.0),  # already past: never negative
        (110, 100.0, 101.0, 10.0),  # clocks agree within 2 s: local clock (finer)
        (110, 100.0, 160.0, 0.0),  # our clock is a minute slow: Intercom's says it is past
        (210, 100.0, 200.0, 10.0),  # our clock is 100 s slow: measure on Intercom's
    ],
)
def test_seconds_until_reset(
    reset: int | None, now: float, server_time: float | None, expected: float | None
) -> None:
    assert seconds_until_reset(reset, now=now, server_time=server_time) == expected


NOW = 1_000.0


def row(info: RateLimitInfo, retry_after: float | None, *expected: Any) -> Any:
    """One case: the headers, and what of them is kept: the headers, the seconds to the
    reset, Retry-After, and the header said to be out of bounds (if any)."""
    return pytest.param(info, retry_after, expected)


@pytest.mark.parametrize(
    ("info", "retry_after", "expected"),
    [
        # Sane headers pass as they are.
        row(
            RateLimitInfo(1666, 1000, 1005), None, RateLimitInfo(1666, 1000, 1005), 5.0, None, None
        ),
        # A reset years ahead (or a millisecond value) with nothing left would freeze every
        # worker: ignored, and said.
        row(
            RateLimitInfo(10, 0, 99_999_999_999),
            None,
            RateLimitInfo(10, 0, None),
            None,
            None,
            "X-RateLimit-Reset",
        ),
        row(
            RateLimitInfo(10, 0, 1_000_000 * 1000),
            None,
            RateLimitInfo(10, 0, None),
            None,
            None,
            "X-RateLimit-Reset",
        ),
        # Up to one window plus the margin ahead is believed.
        row(RateLimitInfo(10, 0, 1015), None, RateLimitInfo(10, 0, 1015), 15.0, None, None),
        row(
            RateLimitInfo(10, 0, 1016),
            None,
            RateLimitInfo(10, 0, None),
            None,
            None,
            "X-RateLimit-Reset",
        ),
        # A limit of 0 would allow nothing, ever.
        row(
            RateLimitInfo(0, 0, 1005),
            None,
            RateLimitInfo(None, 0, 1005),
            5.0,
            None,
            "X-RateLimit-Limit",
        ),
        row(
            RateLimitInfo(10, -3, 1005),
            None,
            RateLimitInfo(10, None, 1005),
            5.0,
            None,
            "X-RateLimit-Remaining",
        ),
        row(
            RateLimitInfo(10, 50, 1005),
            None,
            RateLimitInfo(10, None, 1005),
            5.0,
            None,
            "X-RateLimit-Remaining",
        ),
        # Retry-After is capped at the retry cap.
        row(RateLimitInfo(), 99_999_999.0, RateLimitInfo(), None, 300.0, "Retry-After"),
        row(RateLimitInfo(), 12.0, RateLimitInfo(), None, 12.0, None),
    ],
)
def test_only_sane_headers_are_trusted(
    info: RateLimitInfo,
    retry_after: float | None,
    expected: tuple[RateLimitInfo, float | None, float | None, str | None],
) -> None:
    kept, reset_in, after, problem = expected
    seen = trusted(info, retry_after, now=NOW, server_time=None, window=10.0, retry_cap=300.0)
    assert (seen.info, seen.reset_in, seen.retry_after) == (kept, reset_in, after)
    if problem is None:
        assert seen.problems == ()
    else:
        assert [p.split()[0] for p in seen.problems] == [problem]


def test_grants_up_to_the_allowance_then_says_how_long_to_wait(connection: redis.Redis) -> None:
    found = budget(connection, allowance=10, window=10)
    assert found.take(4, now=T + 2) == (4, 0.0)
    assert found.take(4, now=T + 3) == (4, 0.0)
    granted, wait = found.take(4, now=T + 4)
    assert (granted, round(wait, 3)) == (2, 6.0)  # the rest of the window
    assert found.take(1, now=T + 5)[0] == 0
    assert found.state(now=T + 5).used == 10
    assert found.take(0) == (0, 0.0)


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        # (now offset, want) -> granted; a window of 10 s and 3 calls.
        ([(1, 3), (2, 1)], [3, 0]),
        ([(1, 3), (10.0, 3)], [3, 3]),  # the next window refills
        ([(1, 2), (25, 3)], [2, 3]),  # two windows later: refilled too
        # Granted in the last quarter second of a window: they may reach Intercom after the
        # reset, so they count in the next window too.
        ([(9.9, 2), (10.1, 3)], [2, 1]),
        ([(9.5, 2), (10.1, 3)], [2, 3]),
    ],
)
def test_the_windows_arithmetic(
    connection: redis.Redis, steps: list[tuple[float, int]], expected: list[int]
) -> None:
    found = budget(connection, allowance=3, window=10)
    assert [found.take(want, now=T + at)[0] for at, want in steps] == expected


def test_one_budget_for_every_worker_of_a_token(redis_url: str) -> None:
    connections = [redis.Redis.from_url(redis_url) for _ in range(8)]
    budgets = [budget(c, allowance=100) for c in connections]
    granted = [0] * len(budgets)

    def spend(index: int) -> None:
        while True:
            got, _ = budgets[index].take(1, now=T + 1)
            if not got:
                return
            granted[index] += got

    threads = [threading.Thread(target=spend, args=(i,)) for i in range(len(budgets))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(granted) == 100
    other_token = RateBudget(connections[0], "another-token", allowance=100, window=10)
    assert other_token.take(5, now=T + 1) == (5, 0.0)


def test_intercoms_count_wins_when_higher(connection: redis.Redis) -> None:
    found = budget(connection, allowance=10, window=10)
    found.take(1, now=T + 1)
    # Another process spent 7 of Intercom's 10 with the same token, in our window.
    found.observe(RateLimitInfo(limit=10, remaining=2, reset=0), reset_in=9.0, now=T + 1)
    assert found.state(now=T + 1).used == 8
    assert found.take(5, now=T + 2)[0] == 2
    # A lower count from Intercom (an older answer) never lowers ours.
    found.observe(RateLimitInfo(limit=10, remaining=9, reset=0), reset_in=7.0, now=T + 3)
    assert found.state(now=T + 3).used == 10


def test_follows_intercoms_windows(connection: redis.Redis) -> None:
    found = budget(connection, allowance=10, window=10)
    found.take(6, now=T + 1)
    # Intercom's window ends in 3 s, not when ours does (9 s): ours now ends then, spent 6.
    found.observe(RateLimitInfo(limit=10, remaining=4, reset=0), reset_in=3.0, now=T + 1)
    state = found.state(now=T + 1)
    assert (round(state.resets_in, 3), state.used) == (3.0, 6)
    # Intercom is in a later window than ours: follow it, with its count.
    found.observe(RateLimitInfo(limit=10, remaining=9, reset=0), reset_in=8.0, now=T + 5)
    state = found.state(now=T + 5)
    assert (round(state.resets_in, 3), state.used) == (8.0, 1)


def test_a_lower_limit_from_intercom_is_obeyed_for_a_while_then_forgotten(
    connection: redis.Redis,
) -> None:
    found = budget(connection, allowance=1666, window=10)
    found.observe(RateLimitInfo(limit=167, remaining=167, reset=0), reset_in=None, now=T)
    state = found.state(now=T + 1)
    assert (state.allowance, state.intercom_limit) == (167, 167)
    assert found.take(500, now=T + 1)[0] == 167
    # Every learned limit expires: a limit Intercom stopped reporting is not obeyed forever.
    later = T + LIMIT_TRUSTED_FOR + 1
    assert found.state(now=later).intercom_limit is None
    assert found.take(500, now=later)[0] == 500


def test_a_429_blocks_every_worker_until_the_reset(redis_url: str) -> None:
    first = budget(redis.Redis.from_url(redis_url), allowance=100)
    second = budget(redis.Redis.from_url(redis_url), allowance=100)
    assert first.observe(RateLimitInfo(), reset_in=None, block_for=2.0, now=T) == 2.0
    granted, wait = second.take(5, now=T + 0.5)
    assert (granted, round(wait, 3)) == (0, 1.5)
    assert second.state(now=T + 0.5).blocked_for == pytest.approx(1.5)
    assert second.take(5, now=T + 2.01) == (5, 0.0)


def test_remaining_zero_blocks_until_the_reset(connection: redis.Redis) -> None:
    found = budget(connection, allowance=100)
    found.observe(RateLimitInfo(limit=100, remaining=0, reset=0), reset_in=4.0, now=T + 1)
    granted, wait = found.take(1, now=T + 2)
    assert (granted, round(wait, 3)) == (0, 3.0)
    assert found.take(1, now=T + 5.01)[0] == 1


def test_a_paused_budget_says_so(connection: redis.Redis) -> None:
    found = budget(connection)
    assert found.pause("401 unauthorized", now=T, probe_every=30) is True
    state = found.state(now=T + 10)
    assert (state.paused_since, state.paused_reason) == (T, "401 unauthorized")
    assert state.probe_in == pytest.approx(20.0)
    assert found.resume() is True
    assert found.resume() is False
    assert found.state(now=T + 10).paused_since is None


def test_the_token_never_reaches_redis(connection: redis.Redis) -> None:
    found = budget(connection)
    found.take(1)
    found.observe(RateLimitInfo(limit=10, remaining=5, reset=0), reset_in=5.0)
    found.pause("401 unauthorized", now=T, probe_every=30)
    assert TOKEN not in found.key
    assert found.key == budget_key(TOKEN)
    assert TOKEN not in repr(found)
    for key in connection.keys("*"):
        assert TOKEN.encode() not in key
        assert all(TOKEN.encode() not in v for v in connection.hgetall(key).values())


@pytest.mark.parametrize(
    ("allowance", "window", "message"),
    [(0, 10.0, "allowance must be at least 1"), (10, 0.0, "window must be more than 0")],
)
def test_refuses_nonsense(
    connection: redis.Redis, allowance: int, window: float, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        RateBudget(connection, TOKEN, allowance=allowance, window=window)
