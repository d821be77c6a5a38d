"""An API that answers a redirect (3xx): a wrong ``INTERCOM_API_BASE_URL``, a proxy or a captive
portal in the way. The client never follows it (the token goes to the configured origin only):
it is a :class:`RedirectError` with its status, its body read within the error-body limit and
the call within its deadline, whether the session is the client's or the caller's. Against
servers of the tests' own."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from flask_intercom_events import IntercomAPIError, NetworkTimeoutError, RedirectError
from flask_intercom_events.client import IntercomClient
from flask_intercom_events.events import Event, Identity
from flask_intercom_events.retry import Verdict, classify_error, reason_of
from flask_intercom_events.transport import MAX_ERROR_BODY

from .apps import make_app
from .hostile import HostileServer, Peer, Received, response
from .workers import make_deployments

TOKEN = "tok-redirect-9f8e7d6c5b4a"
NOW = int(time.time())
MIB = 1024 * 1024
TRICKLE_SECONDS = 40.0
EVERY = 0.25


def event() -> Event:
    return Event("invited-friend", NOW, Identity(user_id="42"), {})


@pytest.fixture
def elsewhere(serve: Callable[..., HostileServer]) -> HostileServer:
    """Where the redirects point: another origin, which must never be asked anything."""
    return serve(lambda peer, request: peer.send(response(200, b"{}")))


class Clients:
    """Makes clients on their own session, or on a session the caller passes in (whose
    response hooks must still run: ``seen`` has the statuses they saw)."""

    def __init__(self, injected: bool) -> None:
        self.injected = injected
        self.seen: list[int] = []
        self.made: list[IntercomClient] = []
        self.sessions: list[requests.Session] = []

    def __call__(self, url: str, timeout: tuple[float, float] = (2, 5)) -> IntercomClient:
        session = None
        if self.injected:
            session = requests.Session()
            session.hooks["response"].append(self._saw)
            self.sessions.append(session)
        self.made.append(IntercomClient(TOKEN, base_url=url, timeout=timeout, session=session))
        return self.made[-1]

    def _saw(self, answer: requests.Response, *args: Any, **kwargs: Any) -> None:
        self.seen.append(answer.status_code)

    def close(self) -> None:
        for client in self.made:
            client.close()
        for session in self.sessions:
            session.close()


@pytest.fixture(params=["own session", "injected session"])
def make_client(request: pytest.FixtureRequest) -> Iterator[Clients]:
    clients = Clients(request.param == "injected session")
    yield clients
    clients.close()


def redirecting(status: int, location: str | None, body: bytes = b"") -> Any:
    headers = {} if location is None else {"Location": location}

    def answer(peer: Peer, request: Received) -> bool:
        peer.send(response(status, body, reason="Moved", headers=headers))
        return True

    return answer


def call(client: IntercomClient, name: str) -> object:
    if name == "create_event":
        return client.create_event(event())
    if name == "create_contact":
        return client.create_contact(external_id="42")
    if name == "submit_summaries":
        return client.submit_summaries(
            "42", {"event_name": "logged-in", "count": 1, "first": NOW, "last": NOW}
        )
    return client.list_events(user_id="42")


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_a_redirect_error_never_followed(
    serve: Callable[..., HostileServer],
    elsewhere: HostileServer,
    make_client: Clients,
    status: int,
) -> None:
    server = serve(redirecting(status, f"{elsewhere.url}/events?x=1", b"<a>moved</a>"))
    client = make_client(server.url)
    with pytest.raises(RedirectError) as caught:
        client.create_event(event())
    error = caught.value
    assert error.status == status
    assert error.location == f"{elsewhere.url}/events?x=1"
    assert str(error).startswith(f"POST /events: HTTP {status}: ")
    said = error.message
    assert f"a redirect to {elsewhere.url}, not followed" in said  # its origin only
    assert "not followed" in said
    assert "INTERCOM_API_BASE_URL" in said
    assert "/events?x=1" not in said  # the path and query are the other host's business
    assert TOKEN not in str(error)
    # Retried like a 5xx: it says nothing about the event.
    assert classify_error(error) is Verdict.TRANSIENT
    assert reason_of(error) == f"{status} redirect"
    assert len(server.received) == 1
    assert elsewhere.received == []  # never followed, the token never sent there
    if make_client.injected:
        assert make_client.seen == [status]  # the session's own hooks saw the answer


@pytest.mark.parametrize(
    "name", ["create_event", "create_contact", "submit_summaries", "list_events"]
)
def test_every_call_answered_by_a_redirect(
    serve: Callable[..., HostileServer], make_client: Clients, name: str
) -> None:
    server = serve(redirecting(302, "https://login.portal.example/?next=/events"))
    client = make_client(server.url)
    with pytest.raises(RedirectError) as caught:
        call(client, name)
    assert caught.value.status == 302
    assert "a redirect to https://login.portal.example:443" in caught.value.message
    assert len(server.received) == 1


@pytest.mark.parametrize(
    ("raw_location", "said"),
    [
        (None, "a redirect without a Location"),
        (b"/v2/events", "a redirect to another path of the same origin"),
        (b"//other.example/events", "a redirect to //other.example,"),
        (b"http://[::1", "a redirect to an unreadable Location"),
        (b"http://h\xff\xfe.example/", "a redirect to http://h"),
        (b"https://" + b"a" * 5000 + b".example/", "a redirect to https://aaaa"),
    ],
    ids=["missing", "relative", "scheme-relative", "bad-ipv6", "not-utf8", "very-long"],
)
def test_a_redirect_with_any_location(
    serve: Callable[..., HostileServer],
    make_client: Clients,
    raw_location: bytes | None,
    said: str,
) -> None:
    def answer(peer: Peer, request: Received) -> bool:
        head = b"HTTP/1.1 302 Found\r\nContent-Length: 0\r\n"
        if raw_location is not None:
            head += b"Location: " + raw_location + b"\r\n"
        peer.send(head + b"\r\n")
        return True

    server = serve(answer)
    client = make_client(server.url)
    with pytest.raises(RedirectError) as caught:
        client.create_event(event())
    assert caught.value.status == 302
    assert said in caught.value.message
    assert len(caught.value.message) < 1000
    assert len(server.received) == 1


def test_a_redirect_read_whole_keeps_its_connection(
    serve: Callable[..., HostileServer], make_client: Clients
) -> None:
    answers = iter([response(302, b"moved", headers={"Location": "/elsewhere"})])

    def answer(peer: Peer, request: Received) -> bool:
        peer.send(next(answers, response(202)))
        return True

    server = serve(answer)
    client = make_client(server.url)
    with pytest.raises(RedirectError):
        client.create_event(event())
    assert client.create_event(event()).status == 202
    assert len(server.peers) == 1  # the redirect's connection was given back and used again


# --- the limits: bytes read, and the deadline ---------------------------------------------------


def huge_redirect(declared: bool) -> Any:
    total = 30 * MIB

    def answer(peer: Peer, request: Received) -> bool:
        head = "HTTP/1.1 302 Found\r\nLocation: /x\r\nContent-Type: text/html\r\n"
        if declared:
            peer.send(f"{head}Content-Length: {total}\r\n\r\n".encode())
        else:
            peer.send(f"{head}Connection: close\r\n\r\n".encode())
        peer.stream(total + peer.sent)
        return False

    return answer


@pytest.mark.parametrize("declared", [True, False], ids=["declared", "undeclared"])
def test_a_huge_redirect_body_is_cut_like_any_error_body(
    serve: Callable[..., HostileServer], make_client: Clients, declared: bool
) -> None:
    server = serve(huge_redirect(declared))
    client = make_client(server.url)
    with pytest.raises(RedirectError) as caught:
        client.create_event(event())
    assert caught.value.status == 302
    assert f"larger than {MAX_ERROR_BODY // 1024} KiB" in caught.value.message
    assert server.wait_gone(timeout=30)
    # Before: requests read all 30 MiB (to prepare the redirect it would not follow).
    assert server.peers[0].sent < MAX_ERROR_BODY + 2 * MIB


def test_a_trickling_redirect_is_cut_at_the_deadline(
    serve: Callable[..., HostileServer], make_client: Clients
) -> None:
    trickle = int(TRICKLE_SECONDS / EVERY)

    def answer(peer: Peer, request: Received) -> bool:
        peer.send(
            f"HTTP/1.1 302 Found\r\nLocation: /x\r\nContent-Length: {trickle}\r\n\r\n".encode()
        )
        peer.trickle(b"x" * trickle, EVERY)
        return False

    server = serve(answer)
    client = make_client(server.url, timeout=(0.5, 1))
    started = time.monotonic()
    with pytest.raises(NetworkTimeoutError) as caught:
        client.create_event(event())
    assert "within the deadline of 2.5 s" in str(caught.value)
    assert server.wait_gone(timeout=TRICKLE_SECONDS)
    assert server.peers[0].trickled < trickle / 2
    assert time.monotonic() - started < TRICKLE_SECONDS / 2


# --- what the user sees: the command line, the worker --------------------------------------


def test_flask_intercom_send_says_redirect_without_a_traceback(
    tmp_path: Path, serve: Callable[..., HostileServer]
) -> None:
    server = serve(redirecting(302, "http://evil.example/events"))
    app = make_app(tmp_path, INTERCOM_ACCESS_TOKEN=TOKEN, INTERCOM_API_BASE_URL=server.url)
    result = app.test_cli_runner().invoke(
        args=["intercom", "send", "invited-friend", "--user-id", "42"]
    )
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "HTTP 302" in result.output
    assert "a redirect to http://evil.example:80" in result.output
    assert "Traceback" not in result.output
    assert TOKEN not in result.output


@pytest.fixture
def deployments(tmp_path: Path) -> Iterator[Any]:
    yield from make_deployments(tmp_path)


def test_the_worker_retries_a_redirect_and_delivers_once_it_stops(
    redis_url: str, deployments: Any, serve: Callable[..., HostileServer]
) -> None:
    # A captive portal for the first answers, then the API again.
    answered: list[int] = []

    def answer(peer: Peer, request: Received) -> bool:
        answered.append(1)
        if len(answered) <= 3:
            peer.send(response(302, b"", headers={"Location": "http://portal.example/login"}))
        else:
            peer.send(response(202))
        return True

    server = serve(answer)
    setup = deployments(redis_url, server.url)
    setup.track(3)
    worker = setup.start_worker("--burst")
    assert worker.wait(60) == 0, worker.log()
    found = setup.status()
    assert (found.pending, found.failed) == (0, 0), worker.log()
    assert len(server.received) == 6  # three redirects, then the three events
    log = worker.log()
    assert "HTTP 302" in log
    assert "a redirect to http://portal.example:80" in log
    assert "retry in" in log
    assert "TypeError" not in log
    assert "Traceback" not in log


def test_a_redirect_error_is_an_api_error() -> None:
    assert issubclass(RedirectError, IntercomAPIError)
