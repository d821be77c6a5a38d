"""A deadline per HTTP call, kept by one watchdog thread that shuts the call's sockets down.

A read timeout bounds each read from a socket, not a call: a server that sends a byte every
few seconds holds a call as long as it likes, in the headers as in the body. So each call of
the transport is :meth:`Deadlines.start`-ed with its deadline; the connections it uses are
:meth:`Deadlines.attach`-ed to it (the transport's connection class does so when it connects
and when it sends a request); when the deadline passes, the watchdog shuts those sockets down,
which ends any read or write in progress at once, and :meth:`Deadlines.finish` tells the call
it expired, whatever came back (a cut-off answer can look complete).

Pure threading, no HTTP library. One watchdog thread per :class:`Deadlines`, started with the
first call and gone after ``idle`` seconds without one; calls that end in time cost a heap
entry, dropped when the watchdog next looks.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import socket
import threading
import time
import weakref
from typing import Any

__all__ = ["Call", "Deadlines"]


class Call:
    """One call's deadline (``time.monotonic()`` seconds) and the connections it used."""

    __slots__ = ("connections", "deadline", "done", "expired")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.connections: list[Any] = []
        self.expired = False
        self.done = False

    def __repr__(self) -> str:
        return f"Call(deadline={self.deadline:.3f}, expired={self.expired}, done={self.done})"


class Deadlines:
    """Deadlines for the calls of one client, from any number of threads (a call belongs to
    the thread that started it)."""

    def __init__(self, *, idle: float = 10.0) -> None:
        self._idle = idle
        self._reset()

    def _reset(self) -> None:
        # Also after a fork: the child has no watchdog thread, and the lock may have been
        # held by it at the time.
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._heap: list[tuple[float, int, Call]] = []
        self._order = itertools.count()
        # Which call uses a connection now: a call past its deadline shuts only the
        # connections no later call has taken from the pool since.
        self._users: weakref.WeakKeyDictionary[Any, Call] = weakref.WeakKeyDictionary()
        self._local = threading.local()
        self._thread: threading.Thread | None = None

    @property
    def watching(self) -> bool:
        """Whether the watchdog thread runs (from the first call until ``idle`` seconds
        without one)."""
        with self._lock:
            return self._thread is not None

    def start(self, seconds: float) -> Call:
        """Start this thread's call, due ``seconds`` from now."""
        if self._pid != os.getpid():
            self._reset()
        call = Call(time.monotonic() + seconds)
        with self._lock:
            heapq.heappush(self._heap, (call.deadline, next(self._order), call))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._watch, name="intercom-deadlines", daemon=True
                )
                self._thread.start()
            elif self._heap[0][2] is call:
                self._wake.notify()
        self._local.call = call
        return call

    def attach(self, connection: Any) -> None:
        """Count ``connection`` (anything with a ``sock``) as used by this thread's call, if
        one is running; shut it at once if the call is already past its deadline.

        ``None`` (a response whose connection went back to the pool) and anything that
        cannot be weakly referenced are no connection to watch: ignored.
        """
        call: Call | None = getattr(self._local, "call", None)
        if call is None or not _watchable(connection):
            return
        with self._lock:
            if call.done:
                return
            self._users[connection] = call
            if not any(known is connection for known in call.connections):
                call.connections.append(connection)
            if call.expired:
                _shut(connection)

    def finish(self, call: Call) -> bool:
        """End this thread's ``call``; whether it went past its deadline (its sockets shut)."""
        self._local.call = None
        with self._lock:
            call.done = True
            call.connections.clear()
            return call.expired

    def _watch(self) -> None:
        with self._lock:
            while True:
                while self._heap and self._heap[0][2].done:
                    heapq.heappop(self._heap)
                if not self._heap:
                    if not self._wake.wait(self._idle) and not self._heap:
                        break
                    continue
                delay = self._heap[0][0] - time.monotonic()
                if delay > 0:
                    self._wake.wait(delay)
                    continue
                _, _, call = heapq.heappop(self._heap)
                call.expired = True
                for connection in call.connections:
                    if self._users.get(connection) is call:
                        _shut(connection)
            self._thread = None


def _watchable(connection: Any) -> bool:
    # The watchdog looks connections up in a WeakKeyDictionary: one that cannot be a key
    # there would raise in the watchdog's thread, and stop it for every call.
    if connection is None:
        return False
    try:
        weakref.ref(connection)
    except TypeError:
        return False
    return True


def _shut(connection: Any) -> None:
    sock = getattr(connection, "sock", None)
    if isinstance(sock, socket.socket):
        # socket.socket's own shutdown, also for an ssl.SSLSocket: its override drops the
        # SSL object under the feet of the thread reading through it.
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
