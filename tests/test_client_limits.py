"""Slow or huge answers: every call has a deadline (connect + read timeouts + a margin) that
holds even while headers or a body trickle in, and reads a bounded number of bytes. Against
servers of the tests' own that trickle, flood, or never finish.

No timed assertion: the bounds are loose (a trickle lasts 40 s; the call must end well before)
and each test also checks the mechanism (the server saw the client hang up; what it managed
to send)."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from flask_intercom_events import NetworkError, NetworkTimeoutError, ServerError
from flask_intercom_events.client import IntercomClient
from flask_intercom_events.events import Event, Identity
from flask_intercom_events.transport import (
    DEADLINE_MARGIN,
    MAX_ERROR_BODY,
    MAX_PAGE_BODY,
    MAX_POST_BODY,
)

from .hostile import HostileServer, Peer, Received, response

TOKEN = "test-token"
NOW = int(time.time())
#: How long the hostile servers below keep trickling: the time a call took before the fix.
TRICKLE_SECONDS = 40.0
EVERY = 0.25
MIB = 1024 * 1024
HUGE = 30 * MIB


def event() -> Event:
    return Event("invited-friend", NOW, Identity(user_id="42"), {})


def timed(call: Callable[[], Any]) -> tuple[BaseException, float]:
    started = time.monotonic()
    with pytest.raises(NetworkError) as caught:
        call()
    return caught.value, time.monotonic() - started


# --- the deadline ----------------------------------------------------------------------------

TRICKLE = int(TRICKLE_SECONDS / EVERY)


def trickling_headers(peer: Peer, request: Received) -> bool:
    peer.send(b"HTTP/1.1 202 Accepted\r\n")
    peer.trickle(b"X-Slow: " + b"a" * TRICKLE + b"\r\n\r\n", EVERY)
    return False


def trickling_body(status: int) -> Callable[[Peer, Received], bool]:
    def answer(peer: Peer, request: Received) -> bool:
        peer.send(f"HTTP/1.1 {status} X\r\nContent-Length: {TRICKLE}\r\n\r\n".encode())
        peer.trickle(b"{" * TRICKLE, EVERY)
        return False

    return answer


@pytest.mark.parametrize(
    ("answer", "call"),
    [
        (trickling_headers, "create_event"),
        (trickling_headers, "list_events"),
        (trickling_body(202), "create_event"),
        (trickling_body(200), "list_events"),
        (trickling_body(500), "create_event"),
    ],
    ids=["headers-post", "headers-get", "body-202", "body-200-page", "body-500"],
)
def test_a_trickling_answer_is_cut_at_the_deadline(
    serve: Callable[..., HostileServer], answer: Any, call: str
) -> None:
    # Each byte comes well within the 1-s read timeout: only a deadline per call ends it.
    server = serve(answer)
    client = IntercomClient(TOKEN, base_url=server.url, timeout=(0.5, 1))
    error, seconds = timed(
        lambda: (
            client.create_event(event())
            if call == "create_event"
            else client.list_events(user_id="42")
        )
    )
    assert type(error) is NetworkTimeoutError
    assert "within the deadline of 2.5 s (0.5 s to connect, 1 s to read, and 1 s more)" in str(
        error
    )
    # The mechanism: the client shut the connection; the server's trickle stopped there.
    assert server.wait_gone(timeout=TRICKLE_SECONDS)
    [peer] = server.peers
    assert peer.trickled < TRICKLE / 2
    assert seconds < TRICKLE_SECONDS / 2  # loose: it took 40 s before
    client.close()


@pytest.fixture
def certificate(tmp_path: Path) -> Path:
    """A self-signed certificate for 127.0.0.1 (key and certificate in one file)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not on PATH")
    pem = tmp_path / "server.pem"
    subject = ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
    files = ["-keyout", str(pem), "-out", str(pem)]
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            *subject,
            *files,
        ],
        check=True,
        capture_output=True,
    )
    return pem


@pytest.mark.parametrize(
    "answer", [trickling_headers, trickling_body(202)], ids=["headers", "body"]
)
def test_the_deadline_holds_over_tls(
    certificate: Path, monkeypatch: pytest.MonkeyPatch, answer: Any
) -> None:
    # The watchdog shuts the socket under an ssl.SSLSocket being read by another thread.
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(certificate)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certificate))
    with HostileServer(answer, tls=tls) as server:
        client = IntercomClient(TOKEN, base_url=server.url, timeout=(0.5, 1))
        error, seconds = timed(lambda: client.create_event(event()))
        assert type(error) is NetworkTimeoutError
        assert "within the deadline of 2.5 s" in str(error)
        assert server.wait_gone(timeout=TRICKLE_SECONDS)
        assert server.peers[0].trickled < TRICKLE / 2
    assert seconds < TRICKLE_SECONDS / 2
    client.close()


def test_the_deadline_is_connect_plus_read_plus_a_margin() -> None:
    assert DEADLINE_MARGIN == 1.0
    client = IntercomClient(TOKEN, timeout=(3.05, 10))
    assert client.deadline == pytest.approx(14.05)


def test_the_next_call_after_a_cut_uses_a_new_connection(
    serve: Callable[..., HostileServer],
) -> None:
    calls: list[int] = []

    def answer(peer: Peer, request: Received) -> bool:
        calls.append(1)
        if len(calls) == 1:
            return trickling_body(202)(peer, request)
        peer.send(response(202))
        return True

    server = serve(answer)
    client = IntercomClient(TOKEN, base_url=server.url, timeout=(0.5, 0.5))
    with pytest.raises(NetworkTimeoutError):
        client.create_event(event())
    assert client.create_event(event()).status == 202
    assert client.create_event(event()).status == 202
    first, second = server.peers  # two connections: the cut one was not reused
    assert first.gone.wait(TRICKLE_SECONDS)
    assert not second.gone.is_set()  # kept alive for the third call
    client.close()


def test_an_injected_session_gets_the_deadline_on_the_body(
    serve: Callable[..., HostileServer],
) -> None:
    # Its adapters are the caller's: the deadline holds from the answer's headers on.
    server = serve(trickling_body(202))
    with requests.Session() as session:
        client = IntercomClient(TOKEN, base_url=server.url, timeout=(0.5, 1), session=session)
        error, seconds = timed(lambda: client.create_event(event()))
    assert type(error) is NetworkTimeoutError
    assert server.wait_gone(timeout=TRICKLE_SECONDS)
    assert seconds < TRICKLE_SECONDS / 2


# --- bytes read ------------------------------------------------------------------------------


def flooding(status: int, *, declared: bool, total: int | None = HUGE) -> Any:
    """``status`` and a body of ``total`` bytes (``None``: endless); ``declared``: with its
    ``Content-Length``, else chunked or, endless, until the connection closes."""

    def answer(peer: Peer, request: Received) -> bool:
        head = f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
        if declared and total is not None:
            peer.send(f"{head}Content-Length: {total}\r\n\r\n".encode())
            peer.stream(total + peer.sent)
        else:
            peer.send(f"{head}Connection: close\r\n\r\n".encode())
            peer.stream(None if total is None else total + peer.sent)
        return False

    return answer


@pytest.mark.parametrize(
    ("status", "call", "limit"),
    [
        (202, "create_event", MAX_POST_BODY),
        (200, "list_events", MAX_PAGE_BODY),
    ],
    ids=["post-202", "get-200"],
)
@pytest.mark.parametrize("declared", [True, False], ids=["declared", "undeclared"])
def test_a_huge_success_body_is_not_read(
    serve: Callable[..., HostileServer], status: int, call: str, limit: int, declared: bool
) -> None:
    server = serve(flooding(status, declared=declared))
    client = IntercomClient(TOKEN, base_url=server.url, timeout=(2, 5))
    error, _ = timed(
        lambda: (
            client.create_event(event())
            if call == "create_event"
            else client.list_events(user_id="42")
        )
    )
    assert type(error) is NetworkError
    assert f"larger than {limit // 1024:,} KiB" in str(error)
    assert server.wait_gone(timeout=30)
    [peer] = server.peers
    # What the server could send before the client hung up: the bytes read, and what the
    # client's receive buffer took (the server's send buffer is small). Before: all 30 MiB.
    assert peer.sent < limit + 2 * MIB
    client.close()


@pytest.mark.parametrize("declared", [True, False], ids=["declared", "undeclared"])
def test_a_huge_error_body_is_cut_and_the_status_kept(
    serve: Callable[..., HostileServer], declared: bool
) -> None:
    server = serve(flooding(500, declared=declared))
    client = IntercomClient(TOKEN, base_url=server.url, timeout=(2, 5))
    with pytest.raises(ServerError) as caught:
        client.create_event(event())
    assert caught.value.status == 500
    assert f"larger than {MAX_ERROR_BODY // 1024} KiB" in caught.value.message
    assert server.wait_gone(timeout=30)
    assert server.peers[0].sent < MAX_ERROR_BODY + 2 * MIB
    client.close()


@pytest.mark.parametrize("status", [200, 500])
def test_a_body_that_never_ends(serve: Callable[..., HostileServer], status: int) -> None:
    server = serve(flooding(status, declared=False, total=None))
    client = IntercomClient(TOKEN, base_url=server.url, timeout=(2, 5))
    with pytest.raises(NetworkError if status == 200 else ServerError) as caught:
        client.list_events(user_id="42")
    assert "larger than" in str(caught.value)
    assert server.wait_gone(timeout=30)
    assert server.peers[0].sent < MAX_PAGE_BODY + 2 * MIB
    client.close()


def test_bodies_within_the_limits_are_read_and_the_connection_kept(
    serve: Callable[..., HostileServer],
) -> None:
    page = b'{"type": "event.list", "events": [], "filler": "' + b"x" * (MAX_POST_BODY * 2) + b'"}'

    def answer(peer: Peer, request: Received) -> bool:
        if request.method == "POST":
            peer.send(response(202, b"x" * MAX_POST_BODY))
        else:
            peer.send(response(200, page))
        return True

    server = serve(answer)
    with IntercomClient(TOKEN, base_url=server.url, timeout=(2, 5)) as client:
        assert client.create_event(event()).status == 202
        assert client.list_events(user_id="42") == []
        assert client.create_event(event()).status == 202
    assert len(server.peers) == 1
