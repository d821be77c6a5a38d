"""HTTP/1.1 as the emulator speaks it: reading requests, writing replies.

The parser reads what clients send to this API: a request line, headers, and a body by
``Content-Length`` or chunked; it answers ``Expect: 100-continue``; connections stay alive
unless the client says otherwise (HTTP/1.0: unless it asks for keep-alive).
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus

from .wire import Reply, Request

#: Largest request head (request line and headers) accepted, in bytes.
MAX_HEAD_BYTES = 64 * 1024
#: Largest request body accepted, in bytes.
MAX_BODY_BYTES = 1024 * 1024

_PHRASES = {status.value: status.phrase for status in HTTPStatus}


class BadRequest(Exception):
    """A request that cannot be read: answered with ``status`` and the connection closed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def read_request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> Request | None:
    """The next request on the connection; ``None`` when the client closed it cleanly."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise BadRequest(400, "the request ended before its headers did") from None
    except asyncio.LimitOverrunError:
        raise BadRequest(431, f"request head larger than {MAX_HEAD_BYTES} bytes") from None
    lines = head.decode("latin-1").lstrip("\r\n").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[0].isalpha():
        raise BadRequest(400, f"malformed request line {lines[0][:100]!r}")
    method, target, version = parts
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise BadRequest(505, f"unsupported HTTP version {version[:20]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise BadRequest(400, f"malformed header line {line[:100]!r}")
        key, value = name.lower(), value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    if headers.get("expect", "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    if "transfer-encoding" in headers:
        if headers["transfer-encoding"].lower() != "chunked" or "content-length" in headers:
            raise BadRequest(400, "only Transfer-Encoding: chunked, without Content-Length")
        body = await _read_chunked(reader)
    else:
        length_text = headers.get("content-length", "0")
        if not length_text.isdigit():
            raise BadRequest(400, f"bad Content-Length {length_text[:30]!r}")
        length = int(length_text)
        if length > MAX_BODY_BYTES:
            raise BadRequest(413, f"body larger than {MAX_BODY_BYTES} bytes")
        body = await reader.readexactly(length) if length else b""
    return Request(method.upper(), target, headers, body, version)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        size_line = await _read_line(reader)
        try:
            size = int(size_line.split(b";")[0].strip(), 16)
        except ValueError:
            raise BadRequest(400, "malformed chunk size") from None
        if size < 0:
            raise BadRequest(400, "malformed chunk size")
        if size == 0:
            while await _read_line(reader) != b"\r\n":
                pass  # trailer fields: ignored
            return b"".join(chunks)
        total += size
        if total > MAX_BODY_BYTES:
            raise BadRequest(413, f"body larger than {MAX_BODY_BYTES} bytes")
        chunks.append(await reader.readexactly(size))
        if await reader.readexactly(2) != b"\r\n":
            raise BadRequest(400, "chunk not followed by CRLF")


async def _read_line(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.readuntil(b"\r\n")
    except asyncio.LimitOverrunError:
        raise BadRequest(400, "chunk line too long") from None


def keep_alive(request: Request) -> bool:
    """Whether the connection stays open after answering ``request``."""
    connection = request.headers.get("connection", "").lower()
    if request.version == "HTTP/1.0":
        return "keep-alive" in connection
    return "close" not in connection


def render(reply: Reply, *, keep_alive: bool, head: bool = False) -> bytes:
    """The reply's bytes on the wire. An answer to ``HEAD`` has the headers a ``GET`` would
    get, ``Content-Length`` included, and no body: bytes after its head would be read as the
    start of the next answer on a kept-alive connection."""
    lines = [f"HTTP/1.1 {reply.status} {_PHRASES.get(reply.status, 'Unknown')}"]
    if reply.content_type is not None:
        lines.append(f"Content-Type: {reply.content_type}")
    lines.append(f"Content-Length: {len(reply.body)}")
    lines.extend(f"{name}: {value}" for name, value in reply.headers)
    lines.append("Connection: keep-alive" if keep_alive else "Connection: close")
    rendered = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return rendered if head else rendered + reply.body
