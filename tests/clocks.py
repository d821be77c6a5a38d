"""Clocks for the emulator's rate windows in tests: exact windows, whatever the machine's speed."""

from __future__ import annotations

import base64
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


def uuid_made_at(seconds: float, number: int = 0) -> str:
    """An event id as ``new_event_uuid()`` makes it, as if made at Unix time ``seconds``:
    for a backlog that waits since then (its age is read from the ids)."""
    raw = bytearray(int(seconds * 1000).to_bytes(6, "big") + number.to_bytes(10, "big"))
    raw[6] = 0x70 | (raw[6] & 0x0F)
    raw[8] = 0x80 | (raw[8] & 0x3F)
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode("ascii")
