"""The intake line: how a tracked event travels from the web process to the workers.

``<uuid> <payload>``: the event's :attr:`~flask_intercom_events.Event.uuid`, a space, and
the JSON body Intercom receives (``Event.to_payload()``), UTF-8. The request path pushes
lines onto the intake list (or the spool, when Redis is down); workers read them back. A line
of an earlier version is the JSON alone; its uuid is then derived from the line itself, so
the same line read twice is the same event. Pure: no Redis, no RQ.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from .json_text import parse_json

__all__ = ["as_text", "decode_line", "encode_line"]


def encode_line(uuid: str, payload: Mapping[str, Any]) -> bytes:
    """The intake line of an event; raises ``ValueError`` (``UnicodeEncodeError`` included)
    if the payload is not JSON that UTF-8 can carry."""
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return f"{uuid} {body}".encode()


def decode_line(line: bytes | str) -> tuple[str, dict[str, Any]]:
    """``(uuid, payload)`` of an intake line; ``ValueError`` if it is not one."""
    raw = line if isinstance(line, bytes) else line.encode("utf-8", errors="surrogateescape")
    head, space, rest = raw.partition(b" ")
    if raw.startswith(b"{"):
        uuid, body = "v0-" + hashlib.sha256(raw).hexdigest()[:20], raw
    elif space and head and head.replace(b"-", b"").replace(b"_", b"").isalnum():
        uuid, body = head.decode("ascii"), rest
    else:
        raise ValueError("not an event line (<uuid> <JSON object>)")
    payload = parse_json(body)
    if not isinstance(payload, dict):
        raise ValueError("the event is not a JSON object")
    return uuid, payload


def as_text(value: object) -> str:
    """A Redis reply (bytes, or text already) as text; bytes that are not UTF-8 replaced."""
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)
