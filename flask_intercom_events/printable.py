"""Text read from Redis shown to an operator (a terminal, a log), never driving it.

An event name, a contact or a worker name in Redis may come from a hand-written or corrupt
record, with control characters in it: an escape sequence that retitles a terminal, clears it
or hides a line. They are shown escaped instead (``\\x1b``), like ``repr`` does, the rest
as it is.
"""

from __future__ import annotations

__all__ = ["printable"]


def printable(text: object) -> str:
    """``text`` with every character that is not printable escaped as ``\\xNN``,
    ``\\uNNNN``."""
    shown = str(text)
    if shown.isprintable():
        return shown
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in shown)


def _escape(ch: str) -> str:
    code = ord(ch)
    return (
        f"\\x{code:02x}"
        if code < 0x100
        else f"\\u{code:04x}"
        if code < 0x10000
        else f"\\U{code:08x}"
    )
