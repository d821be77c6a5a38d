"""A small HTTP server of a test's own on 127.0.0.1, for answers the emulator never gives.

The test writes the answer: echo the request's headers, trickle bytes, send far too much, or
never finish. The server reads each request (head and ``Content-Length`` body) on a plain
socket, one thread per connection, and records what it saw::

    def answer(peer: Peer, request: Received) -> bool:
        peer.send(b"HTTP/1.1 500 Oops\\r\\nContent-Length: 2\\r\\n\\r\\nno")
        return True  # keep the connection for the next request

    with HostileServer(answer) as server:
        IntercomClient(TOKEN, base_url=server.url).create_event(event)
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any


@dataclass(frozen=True)
class Received:
    """One request as it arrived: the head's bytes, parsed, and the body."""

    head: bytes
    method: str
    target: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Peer:
    """The server's side of one connection, for the test's answer function."""

    sock: socket.socket
    stopping: threading.Event
    sent: int = 0
    trickled: int = 0
    """Bytes sent by :meth:`trickle`."""
    gone: threading.Event = field(default_factory=threading.Event)
    """Set when the client closed or reset the connection (a send failed or EOF was read)."""

    def send(self, data: bytes) -> bool:
        """Send ``data``; ``False`` (and :attr:`gone` set) once the client has gone."""
        try:
            self.sock.sendall(data)
        except OSError:
            self.gone.set()
            return False
        self.sent += len(data)
        return True

    def trickle(self, data: bytes, every: float) -> bool:
        """Send ``data`` one byte at a time, ``every`` seconds apart, until the client goes."""
        for index in range(len(data)):
            if self.stopping.wait(every) or not self.send(data[index : index + 1]):
                return False
            self.trickled += 1
        return True

    def stream(self, total: int | None, chunk: bytes = b"x" * 16384) -> bool:
        """Send ``chunk`` again and again: ``total`` bytes, or until the client goes (``None``).

        The socket's send buffer is made small first, so :attr:`sent` is close to what the
        client read (plus what its own receive buffer took).
        """
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        while total is None or self.sent < total:
            if self.stopping.is_set():
                return False
            piece = chunk if total is None else chunk[: total - self.sent]
            if not self.send(piece):
                return False
        return True


Answer = Callable[[Peer, Received], bool]
"""Writes the answer to one request; returns whether to keep the connection for another."""


def response(
    status: int,
    body: bytes = b"",
    *,
    reason: str = "Whatever",
    headers: dict[str, str] | None = None,
    content_type: str = "application/json",
) -> bytes:
    """The bytes of a complete HTTP/1.1 answer with a ``Content-Length``."""
    lines = [f"HTTP/1.1 {status} {reason}", f"Content-Type: {content_type}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class HostileServer:
    """Serves ``answer`` on a free port of 127.0.0.1 until stopped.

    Attributes, readable from the test: ``url``, ``received`` (every :class:`Received`),
    ``peers`` (one :class:`Peer` per accepted connection).
    """

    def __init__(self, answer: Answer, *, tls: ssl.SSLContext | None = None) -> None:
        self._answer = answer
        self._tls = tls
        self._listener = socket.create_server(("127.0.0.1", 0))
        scheme = "http" if tls is None else "https"
        self.url = f"{scheme}://127.0.0.1:{self._listener.getsockname()[1]}"
        self.received: list[Received] = []
        self.peers: list[Peer] = []
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> HostileServer:
        self._acceptor.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() below
        with contextlib.suppress(OSError):
            self._listener.close()
        for peer in list(self.peers):
            with contextlib.suppress(OSError):
                peer.sock.shutdown(socket.SHUT_RDWR)
        for thread in [self._acceptor, *self._threads]:
            thread.join(10)

    def wait_gone(self, timeout: float) -> bool:
        """Whether every connection so far was closed by the client within ``timeout``."""
        deadline = time.monotonic() + timeout
        return all(peer.gone.wait(max(0.0, deadline - time.monotonic())) for peer in self.peers)

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            peer = Peer(sock, self._stopping)
            self.peers.append(peer)
            thread = threading.Thread(target=self._serve, args=(peer,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, peer: Peer) -> None:
        buffer = b""
        if self._tls is not None:
            try:
                peer.sock = self._tls.wrap_socket(peer.sock, server_side=True)
            except OSError:
                peer.gone.set()
                return
        with peer.sock:
            while not self._stopping.is_set():
                request, buffer = _read_request(peer, buffer)
                if request is None:
                    return
                self.received.append(request)
                if not self._answer(peer, request):
                    return


def _read_request(peer: Peer, buffer: bytes) -> tuple[Received | None, bytes]:
    while b"\r\n\r\n" not in buffer:
        chunk = _recv(peer)
        if not chunk:
            return None, b""
        buffer += chunk
    head, _, rest = buffer.partition(b"\r\n\r\n")
    request_line, *header_lines = head.decode("latin-1").split("\r\n")
    method, target, _ = request_line.split(" ", 2)
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = _recv(peer)
        if not chunk:
            return None, b""
        rest += chunk
    body, rest = rest[:length], rest[length:]
    return Received(head, method, target, headers, body), rest


def _recv(peer: Peer) -> bytes:
    try:
        chunk = peer.sock.recv(65536)
    except OSError:
        chunk = b""
    if not chunk:
        peer.gone.set()
    return chunk
