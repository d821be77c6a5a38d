"""The deadlines' watchdog, on real sockets (a socketpair stands for a connection)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from flask_intercom_events.deadlines import Deadlines


@dataclass(eq=False)
class Connection:
    """What the watchdog needs of a connection: its ``sock``."""

    sock: socket.socket


@pytest.fixture
def pair() -> Iterator[tuple[Connection, socket.socket]]:
    ours, theirs = socket.socketpair()
    yield Connection(ours), theirs
    ours.close()
    theirs.close()


def wait_for(predicate: Callable[[], bool], timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def usable(connection: Connection, theirs: socket.socket) -> bool:
    theirs.sendall(b"?")
    connection.sock.settimeout(10)
    return connection.sock.recv(1) == b"?"


def test_a_read_blocked_past_the_deadline_ends(pair: tuple[Connection, socket.socket]) -> None:
    connection, _ = pair
    deadlines = Deadlines()
    call = deadlines.start(0.2)
    deadlines.attach(connection)
    connection.sock.settimeout(60)
    assert connection.sock.recv(1) == b""  # woken by the shutdown, not by the 60-s timeout
    assert deadlines.finish(call) is True


def test_a_call_in_time_leaves_its_connection_alone(
    pair: tuple[Connection, socket.socket],
) -> None:
    connection, theirs = pair
    deadlines = Deadlines()
    call = deadlines.start(2.0)  # a loaded machine's stall between two lines takes less
    deadlines.attach(connection)
    assert deadlines.finish(call) is False
    time.sleep(2.3)  # past the deadline it no longer has
    assert usable(connection, theirs)
    assert call.connections == []


def test_attaching_after_the_deadline_shuts_at_once(
    pair: tuple[Connection, socket.socket],
) -> None:
    connection, _ = pair
    deadlines = Deadlines()
    call = deadlines.start(0)
    assert wait_for(lambda: call.expired)
    deadlines.attach(connection)  # e.g. a connect that ended after the deadline
    connection.sock.settimeout(60)
    assert connection.sock.recv(1) == b""
    assert deadlines.finish(call) is True


def test_a_connection_a_later_call_took_is_not_shut_by_an_earlier_one(
    pair: tuple[Connection, socket.socket],
) -> None:
    # Call A read its answer and gave the connection back to the pool, where call B (another
    # thread) took it, before A finished: A's deadline must not cut B's request.
    connection, theirs = pair
    deadlines = Deadlines()
    first = deadlines.start(0.3)
    deadlines.attach(connection)
    taken = threading.Event()
    done = threading.Event()

    def later_call() -> None:
        second = deadlines.start(60)
        deadlines.attach(connection)
        taken.set()
        done.wait(30)
        deadlines.finish(second)

    thread = threading.Thread(target=later_call)
    thread.start()
    assert taken.wait(30)
    assert wait_for(lambda: first.expired)
    assert usable(connection, theirs)
    assert deadlines.finish(first) is True
    done.set()
    thread.join(30)


def test_without_a_call_attach_does_nothing(pair: tuple[Connection, socket.socket]) -> None:
    connection, theirs = pair
    Deadlines().attach(connection)
    assert usable(connection, theirs)


@pytest.mark.parametrize(
    "gone",
    [None, 7, "no socket"],
    ids=["none", "an-int", "a-str"],
)
def test_a_response_whose_connection_is_gone_attaches_nothing(
    pair: tuple[Connection, socket.socket], gone: object
) -> None:
    # A response already given back to the pool has no connection any more (requests reads
    # a redirect's body and releases it), and a session's own adapter may keep anything
    # there: nothing to watch, and nothing that may stop the watchdog of the other calls.
    connection, _ = pair
    deadlines = Deadlines()
    call = deadlines.start(0.2)
    deadlines.attach(gone)
    deadlines.attach(connection)
    connection.sock.settimeout(60)
    assert connection.sock.recv(1) == b""  # the watchdog still shut the real one
    assert deadlines.finish(call) is True
    later = deadlines.start(0.2)
    deadlines.attach(gone)
    assert wait_for(lambda: later.expired)
    assert deadlines.finish(later) is True


def test_the_watchdog_thread_goes_when_idle() -> None:
    deadlines = Deadlines(idle=0.05)
    assert not deadlines.watching
    deadlines.finish(deadlines.start(10))
    assert deadlines.watching
    # The finished call is dropped when the watchdog next looks: at its deadline (10 s), or
    # sooner, when a call due earlier wakes it.
    deadlines.finish(deadlines.start(0))
    assert wait_for(lambda: not deadlines.watching)
    deadlines.finish(deadlines.start(10))  # and it comes back with the next call
    assert deadlines.watching
