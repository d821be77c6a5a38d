"""The shared rate budget (``ratelimit.py``) against a real Redis."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from flask_intercom_events.errors import RateLimitInfo
from flask_intercom_events.ratelimit import RateBudget, budget_key, seconds_until_reset

TOKEN = "tok_secret_abc123"


@pytest.fixture
def connection(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def budget(connection: redis.Redis, allowance: int = 10, window: float = 60.0) -> RateBudget:
    return RateBudget(connection, TOKEN, allowance=allowance, window=window)


def pinned(found: RateBudget, resets_in: float = 30.0) -> RateBudget:
    """``found`` with its window ending ``resets_in`` seconds from now, as Intercom's headers
    would set it: no test depends on where in a minute it runs."""
    full = RateLimitInfo(limit=found.allowance, remaining=found.allowance, reset=0)
    found.observe(full, reset_in=resets_in)
    return found


#: Slack for the budget's times, kept in Redis to the millisecond.
ROUNDING = 0.002


def wait_for_fresh_window(found: RateBudget) -> None:
    """Sleep until a window has just begun (none of it is "the very end")."""
    left = found.state().resets_in
    if left < 0.8 * found.window:
        time.sleep(left + 0.02)


def wait_for_window_edge(found: RateBudget, within: float) -> None:
    """Sleep until the current window has less than ``within`` seconds left."""
    left = found.state().resets_in
    if left > within:
        time.sleep(left - within / 2)


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


def test_grants_up_to_the_allowance_then_says_how_long_to_wait(connection: redis.Redis) -> None:
    found = pinned(budget(connection, allowance=10, window=60))
    assert found.take(4) == (4, 0.0)
    assert found.take(4) == (4, 0.0)
    before = found.state().resets_in
    granted, wait = found.take(4)
    after = found.state().resets_in
    assert granted == 2
    assert 0 < wait <= 60
    # The wait is the time left in the window, read between the two looks at it.
    assert after - ROUNDING <= wait <= before + ROUNDING
    assert found.take(1)[0] == 0
    assert found.state().used == 10
    assert found.take(0) == (0, 0.0)


def test_one_budget_for_every_worker_of_a_token(redis_url: str) -> None:
    connections = [redis.Redis.from_url(redis_url) for _ in range(8)]
    budgets = [budget(c, allowance=100) for c in connections]
    pinned(budgets[0])  # the one budget they share: its window ends 30 s from now
    granted = [0] * len(budgets)

    def spend(index: int) -> None:
        while True:
            got, _ = budgets[index].take(1)
            if not got:
                return
            granted[index] += got

    threads = [threading.Thread(target=spend, args=(i,)) for i in range(len(budgets))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(granted) == 100
    other_token = RateBudget(connections[0], "another-token", allowance=100, window=60)
    assert other_token.take(5) == (5, 0.0)


def test_the_window_refills(connection: redis.Redis) -> None:
    found = budget(connection, allowance=3, window=1.0)
    wait_for_fresh_window(found)
    found.take(3)
    granted, wait = found.take(1)
    assert granted == 0
    time.sleep(wait + 0.05)
    before = found.state().resets_in
    granted, wait = found.take(5)
    after = found.state().resets_in
    assert granted == 3
    assert after - ROUNDING <= wait <= before + ROUNDING


def test_intercoms_count_wins_when_higher(connection: redis.Redis) -> None:
    found = pinned(budget(connection, allowance=10, window=60))
    found.take(1)
    # Another process spent 7 of Intercom's 10 with the same token, in our window (its
    # reset read just before: the same within a round trip).
    found.observe(RateLimitInfo(limit=10, remaining=2, reset=0), reset_in=found.state().resets_in)
    assert found.state().used == 8
    assert found.take(5)[0] == 2
    # A lower count from Intercom (an older answer) never lowers ours.
    found.observe(RateLimitInfo(limit=10, remaining=9, reset=0), reset_in=found.state().resets_in)
    assert found.state().used == 10


def test_follows_intercoms_windows(connection: redis.Redis) -> None:
    found = pinned(budget(connection, allowance=10, window=60), resets_in=30.0)
    found.take(6)
    # Intercom's window ends in 3 s, not when ours does: ours now ends then, spent 6.
    started = time.monotonic()
    found.observe(RateLimitInfo(limit=10, remaining=4, reset=0), reset_in=3.0)
    state = found.state()
    took = time.monotonic() - started
    assert 3.0 - took - ROUNDING <= state.resets_in <= 3.0 + ROUNDING
    assert state.used == 6
    # Intercom is in a later window than ours (our clock said the window had not ended):
    # follow it, with its count.
    started = time.monotonic()
    found.observe(RateLimitInfo(limit=10, remaining=9, reset=0), reset_in=40.0)
    state = found.state()
    took = time.monotonic() - started
    assert 40.0 - took - ROUNDING <= state.resets_in <= 40.0 + ROUNDING
    assert state.used == 1


def test_a_lower_limit_from_intercom_is_adopted(connection: redis.Redis) -> None:
    found = budget(connection, allowance=1666, window=60)
    found.observe(RateLimitInfo(limit=167, remaining=167, reset=0), reset_in=None)
    state = found.state()
    assert (state.allowance, state.intercom_limit) == (167, 167)
    assert found.take(500)[0] == 167


def test_a_429_blocks_every_worker_until_the_reset(redis_url: str) -> None:
    first = budget(redis.Redis.from_url(redis_url), allowance=100, window=60)
    second = budget(redis.Redis.from_url(redis_url), allowance=100, window=60)
    started = time.monotonic()
    blocked = first.observe(RateLimitInfo(), reset_in=None, block_for=2.0)
    assert blocked == pytest.approx(2.0, abs=ROUNDING)  # measured within one script
    granted, wait = second.take(5)
    blocked_for = second.state().blocked_for
    took = time.monotonic() - started
    assert granted == 0
    assert 2.0 - took - ROUNDING <= wait <= 2.0 + ROUNDING
    assert 2.0 - took - ROUNDING <= blocked_for <= wait + ROUNDING
    time.sleep(wait + 0.05)
    assert second.take(5) == (5, 0.0)


def test_remaining_zero_blocks_until_the_reset(connection: redis.Redis) -> None:
    found = pinned(budget(connection, allowance=100, window=60))
    started = time.monotonic()
    resets_in = found.state().resets_in
    found.observe(RateLimitInfo(limit=100, remaining=0, reset=0), reset_in=resets_in)
    granted, wait = found.take(1)
    took = time.monotonic() - started
    assert granted == 0
    # Blocked until the reset Intercom reported: the time left then, less what went by.
    assert resets_in - took - ROUNDING <= wait <= resets_in + ROUNDING


def test_calls_granted_at_the_very_end_of_a_window_count_in_the_next(
    connection: redis.Redis,
) -> None:
    found = budget(connection, allowance=10, window=1.0)
    for _ in range(5):  # a busy machine may wake us too late for the edge: try again
        wait_for_window_edge(found, within=0.06)
        assert found.take(3)[0] == 3
        if int(connection.hget(found.key, "late") or 0) == 3:
            break
        time.sleep(found.state().resets_in + 0.02)
    else:
        pytest.fail("never managed to take calls in the last tenth of a window")
    time.sleep(found.state().resets_in + 0.05)
    assert found.state().used == 3
    assert found.take(10)[0] == 7


def test_the_token_never_reaches_redis(connection: redis.Redis) -> None:
    found = budget(connection)
    found.take(1)
    found.observe(RateLimitInfo(limit=10, remaining=5, reset=0), reset_in=5.0)
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
