"""A parsed HTTP request and the reply to send: the plain data between server and handlers."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any
from urllib.parse import parse_qs

from .validation import ErrorItem

#: Content-Type of every JSON reply.
JSON = "application/json; charset=utf-8"


@dataclass(frozen=True)
class Request:
    """One HTTP request: ``headers`` maps lower-case names to values."""

    method: str
    target: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    version: str = "HTTP/1.1"

    @cached_property
    def path(self) -> str:
        """The target without its query string."""
        return self.target.partition("?")[0]

    @cached_property
    def query(self) -> dict[str, list[str]]:
        """The query string, decoded (blank values kept)."""
        return parse_qs(self.target.partition("?")[2], keep_blank_values=True)


@dataclass(frozen=True)
class Reply:
    """What to answer: status, headers, body; wait ``delay`` seconds first.

    ``drop`` closes the connection without answering (``status`` is then meaningless).
    """

    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str | None = None
    delay: float = 0.0
    drop: bool = False


def dump_json(data: Any) -> bytes:
    """Compact UTF-8 JSON."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def json_reply(status: int, data: Any, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    """A reply with a JSON body."""
    return Reply(status, dump_json(data), headers, JSON)


def error_reply(
    status: int,
    request_id: str | None,
    errors: Iterable[ErrorItem],
    headers: tuple[tuple[str, str], ...] = (),
) -> Reply:
    """Intercom's error body: ``{"type": "error.list", "request_id", "errors": [...]}``."""
    return json_reply(
        status,
        {
            "type": "error.list",
            "request_id": request_id,
            "errors": [error.to_dict() for error in errors],
        },
        headers,
    )
