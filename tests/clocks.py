"""Clocks for the emulator's rate windows in tests: exact windows, whatever the machine's speed."""

from __future__ import annotations

import time

from flask_intercom_events.sandbox import Sandbox


class Clock:
    """A settable clock for exact rate windows."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def pin_mid_window(sandbox: Sandbox) -> int:
    """Stop ``sandbox``'s clock in the middle of the current 10-s rate window (windows are
    aligned to multiples of 10 s), so that every call counts in that one window however
    slow the machine; returns the window's ``X-RateLimit-Reset`` (Unix seconds)."""
    start = int(time.time()) // 10 * 10
    sandbox.clock = Clock(start + 5.0)
    return start + 10
