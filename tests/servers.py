"""Small TCP servers of the tests' own, on 127.0.0.1: a Redis that answers what a script
says (or nothing), and a proxy that makes a real Redis slow."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TypeVar

#: Given the bytes of one command as received, the reply to send (``None``: no reply).
Script = Callable[[bytes], "bytes | None"]
L = TypeVar("L", bound="_Listener")


class _Listener:
    """Accepts connections on a free port and serves each in a thread of its own."""

    def __init__(self) -> None:
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(64)
        self.port: int = self._socket.getsockname()[1]
        self._closing = threading.Event()
        self._connections: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                conn, _ = self._socket.accept()
            except OSError:
                return
            with self._lock:
                self._connections.append(conn)
                thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
                self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self._closing.set()
        with contextlib.suppress(OSError):  # wakes the acceptor, left blocked in accept()
            self._socket.shutdown(socket.SHUT_RDWR)
        self._socket.close()
        self._acceptor.join(5)
        with self._lock:
            for conn in self._connections:
                conn.close()
            threads = list(self._threads)
        for thread in threads:
            thread.join(5)

    def __enter__(self: L) -> L:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class ScriptedRedis(_Listener):
    """Reads each command and answers what ``script`` says: a Redis gone wrong. Records the
    commands it received, per connection (``commands``)."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.commands: list[list[bytes]] = []
        super().__init__()

    def _serve(self, conn: socket.socket) -> None:
        received: list[bytes] = []
        with self._lock:
            self.commands.append(received)
        while not self._closing.is_set():
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            received.append(data)
            reply = self.script(data)
            if reply is not None:
                try:
                    conn.sendall(reply)
                except OSError:
                    return


class LatencyProxy(_Listener):
    """Forwards to a real Redis, holding each reply ``latency`` seconds before passing it on
    (settable while it runs): a Redis that answers, slowly."""

    def __init__(self, target_port: int, latency: float = 0.0) -> None:
        self.target_port = target_port
        self.latency = latency
        self.replies = 0  # replies passed on, all connections together
        super().__init__()

    def _serve(self, conn: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        with self._lock:
            self._connections.append(upstream)
        try:
            while not self._closing.is_set():
                ready, _, _ = select.select([conn, upstream], [], [], 0.5)
                for side in ready:
                    data = side.recv(65536)
                    if not data:
                        return
                    if side is conn:
                        upstream.sendall(data)
                    else:
                        time.sleep(self.latency)  # one request in flight per connection
                        conn.sendall(data)
                        with self._lock:
                            self.replies += 1
        except OSError:
            return
        finally:
            upstream.close()


def answer_client_commands(reply: bytes | None) -> Script:
    """A script answering redis-py's connection set-up as a Redis 7 does (``HELLO 3``: a map
    with ``proto`` 3; ``CLIENT SETINFO``: ``+OK``) and every other command with ``reply``."""

    def script(data: bytes) -> bytes | None:
        if b"HELLO" in data.upper():
            return b"%1\r\n$5\r\nproto\r\n:3\r\n"
        if b"CLIENT" in data.upper():
            return b"+OK\r\n"
        return reply

    return script
