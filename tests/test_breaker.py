"""The slowness streak that opens the intake's breaker: pure logic, a table."""

from __future__ import annotations

import pytest

from flask_intercom_events.breaker import SLOW_IN_A_ROW, SlowStreak


@pytest.mark.parametrize(
    ("durations", "trips"),
    [
        ([0.01, 0.01, 0.01], [False, False, False]),
        ([0.1, 0.1, 0.1], [False, False, True]),
        ([0.1, 0.1, 0.01, 0.1, 0.1], [False, False, False, False, False]),
        ([0.1, 0.1, 0.1, 0.1, 0.1, 0.1], [False, False, True, False, False, True]),
        ([0.05, 0.05, 0.05], [False, False, False]),  # at the bound is not over it
    ],
)
def test_only_slow_hand_offs_in_a_row_trip(durations: list[float], trips: list[bool]) -> None:
    streak = SlowStreak(0.05)
    assert [streak.observe(seconds) for seconds in durations] == trips


def test_no_bound_is_never_slow() -> None:
    streak = SlowStreak(None)
    assert not any(streak.observe(60.0) for _ in range(10))
    assert not streak.is_slow(60.0)


def test_three_in_a_row_by_default() -> None:
    assert SLOW_IN_A_ROW == 3
    assert SlowStreak(0.05).in_a_row == 3


@pytest.mark.parametrize(("bound", "in_a_row"), [(0.0, 3), (-1.0, 3), (0.05, 0)])
def test_nonsense_is_refused(bound: float, in_a_row: int) -> None:
    with pytest.raises(ValueError, match="must be"):
        SlowStreak(bound, in_a_row)
