"""The access token never leaves the Authorization header: not in what an upstream echoes back
(messages, error fields, the worker's log, ``flask intercom send``, Redis), nor in the locals of
the frames a crash reporter records. Against hostile servers of the tests' own."""

from __future__ import annotations

import base64
import contextlib
import html
import json
import logging
import socket
import time
import zlib
from collections import deque
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
import redis

from flask_intercom_events import (
    IntercomAPIError,
    NetworkError,
    NetworkTimeoutError,
    NotFoundError,
    RateLimitInfo,
    ServerError,
)
from flask_intercom_events.client import IntercomClient
from flask_intercom_events.events import Event, Identity
from flask_intercom_events.responses import Redactor
from flask_intercom_events.sandbox import Sandbox

from .apps import make_app
from .hostile import HostileServer, Peer, Received, response
from .workers import make_deployments

# "/" and "+" as in a base64 token: JSON may escape the one, a URL the other.
TOKEN = "dG9rOlNlY3JldA/Zq+9x=s3cr3t-leak"
BEARER = f"Bearer {TOKEN}"
NOW = int(time.time())


def event() -> Event:
    return Event("invited-friend", NOW, Identity(user_id="42"), {})


def pieces(token: str = TOKEN, size: int = 8) -> set[str]:
    """Every run of ``size`` characters of the token: no part of it may leak either."""
    return {token[start : start + size] for start in range(len(token) - size + 1)}


def leaks(text: str) -> list[str]:
    """The pieces of the token in ``text``, in any case (an upstream may change it)."""
    folded = text.casefold()
    return sorted(piece for piece in pieces() if piece.casefold() in folded)


def everything_built_from(error: IntercomAPIError) -> str:
    """Every text the error carries: what the worker logs, stores in Redis, the CLI prints."""
    texts = [str(error), repr(error), error.message, json.dumps(error.to_dict())]
    texts += [str(error.code), str(error.request_id)]
    for detail in error.errors:
        texts += [detail.code, detail.message, str(detail.field)]
    return "\n".join(texts)


def echoing(status: int, body: Any, **kwargs: Any) -> Any:
    """An answer function: ``status`` with ``body(request)`` (the request's head echoed)."""

    def answer(peer: Peer, request: Received) -> bool:
        peer.send(response(status, body(request), **kwargs))
        return True

    return answer


def authorization(request: Received) -> str:
    return f"Authorization: {request.headers['authorization']}"


ECHOES: dict[str, tuple[int, Any, dict[str, Any]]] = {
    "500 text echoing the header first": (
        500,
        lambda r: f"proxy error; {authorization(r)}\n".encode() + r.head,
        {"content_type": "text/plain"},
    ),
    "502 html echoing the bare token": (
        502,
        lambda r: f"<p>bad gateway for {r.headers['authorization'][7:]}</p>".encode(),
        {"content_type": "text/html"},
    ),
    "500 where the token crosses the excerpt's cut": (
        500,
        lambda r: b"x" * 185 + r.headers["authorization"][7:].encode(),
        {"content_type": "text/plain"},
    ),
    "503 JSON that is not an error.list, token escaped": (
        503,
        lambda r: json.dumps({"error": f"denied {authorization(r)}"}).replace("/", "\\/").encode(),
        {},
    ),
    "500 error.list echoing it in every field": (
        500,
        lambda r: json.dumps(
            {
                "type": "error.list",
                "request_id": r.headers["authorization"][7:],
                "errors": [
                    {
                        "code": f"bad_{r.headers['authorization'][7:]}",
                        "message": f"header {authorization(r)} refused",
                        "field": r.headers["authorization"],
                    },
                    {"code": "again", "message": r.headers["authorization"][7:]},
                ],
            }
        ).encode(),
        {},
    ),
    "400 error.list with another bearer credential": (
        400,
        lambda r: json.dumps(
            {
                "type": "error.list",
                "request_id": None,
                "errors": [{"code": "x", "message": "Authorization: Bearer someone-elses-token"}],
            }
        ).encode(),
        {"headers": {"X-Request-Id": "req-1"}},
    ),
    "500 html echoing it lower- and upper-cased": (
        500,
        lambda r: (
            f"<pre>auth={r.headers['authorization'].lower()} "
            f"upper={r.headers['authorization'][7:].upper()} "
            f"url={quote(r.headers['authorization'][7:], safe='').lower()}</pre>"
        ).encode(),
        {"content_type": "text/html"},
    ),
    "502 error.list echoing it case-changed in every field": (
        502,
        lambda r: json.dumps(
            {
                "type": "error.list",
                "request_id": r.headers["authorization"][7:].swapcase(),
                "errors": [
                    {
                        "code": r.headers["authorization"][7:].upper(),
                        "message": f"token {r.headers['authorization'][7:].lower()} refused",
                        "field": r.headers["authorization"][7:].title(),
                    }
                ],
            }
        ).encode(),
        {},
    ),
    "302 echoing it in the Location": (
        302,
        lambda r: b"moved",
        {"headers": {"Location": f"https://{TOKEN.lower()}.example/?t={quote_plus(TOKEN)}"}},
    ),
    "500 echoing it in X-Request-Id": (
        500,
        lambda r: b'{"type": "error.list", "errors": []}',
        {"headers": {"X-Request-Id": TOKEN}},
    ),
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"Authorization: {BEARER}\r\nHost: x", "Authorization: Bearer <redacted>\r\nHost: x"),
        (f"token {TOKEN} refused", "token <redacted> refused"),
        (json.dumps({"echo": TOKEN}).replace("/", "\\/"), '{"echo": "<redacted>"}'),
        (f"?access_token={quote(TOKEN, safe='')}&x=1", "?access_token=<redacted>&x=1"),
        (f"?access_token={quote_plus(TOKEN)}", "?access_token=<redacted>"),
        ("authorization: bearer someone-else, next", "authorization: bearer <redacted>, next"),
        ('{"h": "Bearer abc\\" x"}', '{"h": "Bearer <redacted>\\" x"}'),  # JSON stays JSON
        ("Bearer+abc&y=2", "Bearer <redacted>&y=2"),
        ("Bearer <redacted>", "Bearer <redacted>"),
        ("nothing secret here", "nothing secret here"),
        # In any case: a proxy may lower- or upper-case what it echoes.
        (f"token {TOKEN.lower()} refused", "token <redacted> refused"),
        (f"TOKEN {TOKEN.upper()}!", "TOKEN <redacted>!"),
        (f"t={TOKEN.swapcase()}", "t=<redacted>"),
        (f"?access_token={quote(TOKEN, safe='').lower()}", "?access_token=<redacted>"),
        (json.dumps(TOKEN.upper()).replace("/", "\\/"), '"<redacted>"'),
    ],
)
def test_redactor_table(text: str, expected: str) -> None:
    assert Redactor(TOKEN).text(text) == expected
    assert TOKEN not in repr(Redactor(TOKEN))


ODD_TOKEN = "tok&en<with>\"quotes'/+=%"


@pytest.mark.parametrize(
    "form",
    [
        ODD_TOKEN,
        json.dumps(ODD_TOKEN)[1:-1],
        html.escape(ODD_TOKEN),
        html.escape(ODD_TOKEN).replace("&#x27;", "&#39;"),
        html.escape(ODD_TOKEN, quote=False),
        quote(ODD_TOKEN, safe=""),
        quote_plus(ODD_TOKEN),
        html.escape(ODD_TOKEN).upper(),
    ],
    ids=["as-is", "json", "html", "html-decimal", "html-text", "url", "form", "html-upper"],
)
def test_redactor_knows_every_form_of_a_token_with_odd_characters(form: str) -> None:
    assert Redactor(ODD_TOKEN).text(f"<p>echo: {form}</p>") == "<p>echo: <redacted></p>"


@pytest.mark.parametrize("case", ECHOES)
def test_an_echoed_token_is_redacted_from_every_error_field(case: str) -> None:
    status, body, options = ECHOES[case]
    with HostileServer(echoing(status, body, **options)) as server:
        client = IntercomClient(TOKEN, base_url=server.url, timeout=(2, 5))
        with pytest.raises(IntercomAPIError) as caught:
            client.create_event(event())
        client.close()
    [request] = server.received
    assert request.headers["authorization"] == BEARER  # the server did see it
    error = caught.value
    assert error.status == status
    said = everything_built_from(error)
    assert leaks(said) == []
    assert "someone-elses-token" not in said
    if case != "500 echoing it in X-Request-Id":
        assert "<redacted>" in said


def test_the_redacted_excerpt_still_shows_the_body() -> None:
    body = lambda r: f"proxy error; {authorization(r)}; upstream down".encode()  # noqa: E731
    with HostileServer(echoing(500, body, content_type="text/plain")) as server:
        client = IntercomClient(TOKEN, base_url=server.url, timeout=(2, 5))
        with pytest.raises(IntercomAPIError) as caught:
            client.create_event(event())
    assert caught.value.message == (
        "Whatever; body: 'proxy error; Authorization: Bearer <redacted>; upstream down' "
        "(text/plain)"
    )


# --- what is data stays as sent: redaction is for messages only ---------------------------------


@pytest.mark.parametrize(
    "token",
    ["event_name", "EVENT.LIST", '"contact"', "External_Id", "error.list"],
)
def test_a_token_found_in_an_answer_never_changes_the_data(token: str) -> None:
    # Tokens that are words of Intercom's own answers: redacting them from a body before it
    # is read changed it (an empty list, a contact that was not JSON, an error.list that
    # was not one any more), and a redaction in any case would change more.
    with Sandbox(tokens=[token], contacts=[]) as emulator:
        client = IntercomClient(token, base_url=emulator.url, timeout=(2, 5))
        contact = client.create_contact(external_id="42")
        assert (contact["type"], contact["external_id"]) == ("contact", "42")
        assert client.create_event(event()).status == 202
        [stored] = client.list_events(user_id="42")
        assert (stored["event_name"], stored["user_id"]) == ("invited-friend", "42")
        with pytest.raises(NotFoundError) as caught:
            client.create_event(Event("invited-friend", NOW, Identity(user_id="ghost"), {}))
        client.close()
    error = caught.value
    assert (error.status, error.code, error.message) == (404, "not_found", "User Not Found")
    # The texts built from it, though, never hold the token.
    assert token.casefold() not in everything_built_from(error).casefold()


def test_headers_are_read_as_sent_whatever_the_token() -> None:
    token = "16661666"
    reset = NOW + 7

    def answer(peer: Peer, request: Received) -> bool:
        headers = {
            "X-RateLimit-Limit": token,
            "X-RateLimit-Remaining": token,
            "X-RateLimit-Reset": str(reset),
        }
        peer.send(response(202, headers=headers))
        return True

    with HostileServer(answer) as server:
        client = IntercomClient(token, base_url=server.url, timeout=(2, 5))
        result = client.create_event(event())
        client.close()
    assert result.rate_limit == RateLimitInfo(limit=16661666, remaining=16661666, reset=reset)


def test_a_success_that_is_not_json_shows_no_echoed_token() -> None:
    # A captive portal's page, echoing the headers it got, answered as a 200.
    body = lambda r: f"<html>Welcome! {r.headers['authorization'].lower()}</html>".encode()  # noqa: E731
    with HostileServer(echoing(200, body, content_type="text/html")) as server:
        client = IntercomClient(TOKEN, base_url=server.url, timeout=(2, 5))
        with pytest.raises(NetworkError) as caught:
            client.create_contact(external_id="42")
        client.close()
    error = caught.value
    assert "a body that is not JSON: '<html>Welcome! bearer <redacted></html>'" in str(error)
    assert leaks(everything_built_from(error)) == []
    assert found_in_frames(error) == []


def test_a_next_page_elsewhere_names_no_echoed_token() -> None:
    def answer(peer: Peer, request: Received) -> bool:
        page = {"type": "event.list", "events": [], "pages": {"next": f"https://{TOKEN}.evil/"}}
        peer.send(response(200, json.dumps(page).encode()))
        return True

    with HostileServer(answer) as server:
        client = IntercomClient(TOKEN, base_url=server.url, timeout=(2, 5))
        with pytest.raises(IntercomAPIError, match="refusing to send the access token") as caught:
            client.list_events(user_id="42")
        client.close()
    assert "pages.next points to https://<redacted>" in caught.value.message
    assert leaks(everything_built_from(caught.value)) == []


def test_flask_intercom_send_prints_no_echoed_token(tmp_path: Path) -> None:
    answer = echoing(
        400,
        lambda r: json.dumps(
            {
                "type": "error.list",
                "request_id": "r-1",
                "errors": [{"code": "parameter_invalid", "message": authorization(r)}],
            }
        ).encode(),
    )
    with HostileServer(answer) as server:
        app = make_app(tmp_path, INTERCOM_ACCESS_TOKEN=TOKEN, INTERCOM_API_BASE_URL=server.url)
        result = app.test_cli_runner().invoke(
            args=["intercom", "send", "invited-friend", "--user-id", "42"]
        )
    assert result.exit_code == 1
    assert "Intercom refused it" in result.output
    assert "Authorization: Bearer <redacted>" in result.output
    assert leaks(result.output) == []


@pytest.fixture
def deployments(tmp_path: Path) -> Iterator[Any]:
    yield from make_deployments(tmp_path)


def redis_texts(url: str) -> Iterator[str]:
    """Every key and value in Redis, as text, zlib-compressed values (RQ's job data) opened."""
    connection: Any = redis.Redis.from_url(url)  # bytes in, bytes out
    values: list[bytes] = []
    for key in connection.scan_iter():
        values.append(key)
        kind = connection.type(key)
        if kind == b"string":
            values.append(connection.get(key) or b"")
        elif kind == b"hash":
            for field, value in connection.hgetall(key).items():
                values += [field, value]
        elif kind == b"list":
            values += connection.lrange(key, 0, -1)
        elif kind == b"set":
            values += connection.smembers(key)
        elif kind == b"zset":
            values += [member for member, _ in connection.zrange(key, 0, -1, withscores=True)]
        elif kind == b"stream":
            for _, entry in connection.xrange(key):
                for field, value in entry.items():
                    values += [field, value]
    connection.close()
    for value in values:
        yield value.decode("latin-1")
        for packed in (value, _base64(value)):
            with contextlib.suppress(zlib.error):
                yield zlib.decompress(packed).decode("latin-1")


def _base64(value: bytes) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        return b""


WORKER_ECHOES = {
    # A 400 fails at once: the failure record (reason, message, code, request_id) lands in
    # RQ's failed registry, and the worker logs it.
    "400 error.list": (
        400,
        lambda r: json.dumps(
            {
                "type": "error.list",
                "request_id": r.headers["authorization"][7:],
                "errors": [{"code": "parameter_invalid", "message": authorization(r)}],
            }
        ).encode(),
        "parameter_invalid",
    ),
    # A 500 is retried first: its error goes into the job's last_error and the log line of
    # each retry, then into the failure.
    "500 echoing it case-changed": (
        500,
        lambda r: (
            f"upstream said: {r.headers['authorization'][7:].lower()} / "
            f"{r.headers['authorization'][7:].upper()}"
        ).encode(),
        "upstream said: <redacted> / <redacted>",
    ),
}


@pytest.mark.parametrize("case", WORKER_ECHOES)
def test_the_worker_logs_and_stores_no_echoed_token(
    redis_url: str, deployments: Any, tmp_path: Path, case: str
) -> None:
    status, body, expected = WORKER_ECHOES[case]
    with HostileServer(echoing(status, body, content_type="text/plain")) as server:
        setup = deployments(
            redis_url, server.url, INTERCOM_ACCESS_TOKEN=TOKEN, INTERCOM_EVENTS_MAX_ATTEMPTS=2
        )
        setup.track(2)
        worker = setup.start_worker("--burst")
        assert worker.wait(60) == 0, worker.log()
    assert len(server.received) == (2 if status == 400 else 4)
    assert setup.status().failed == 2
    stored = "\n".join(redis_texts(redis_url))
    assert expected in stored
    assert leaks(stored) == []
    assert leaks(worker.log()) == []
    if status == 500:
        assert "retry in" in worker.log()
        assert expected in worker.log()
    else:
        assert "Authorization: Bearer <redacted>" in stored


# --- what a crash reporter records: every frame's locals -------------------------------------

SAFE_TYPES = (int, float, bool, type(None))
OPENED_MODULES = ("requests", "urllib3", "http", "socket", "ssl", "email")


def found_in_frames(error: BaseException) -> list[str]:
    """Where a sentry-style crash reporter would see the token: it records the locals of every
    frame of the error and of its causes and contexts, walking containers and exceptions and
    showing other objects by ``repr``; here, objects of the HTTP libraries (requests, urllib3,
    http.client...) are opened too, as their attributes hold copies of the headers."""
    found: list[str] = []
    seen: set[int] = set()

    def visit(value: Any, where: str, depth: int) -> None:
        if id(value) in seen or depth > 15 or isinstance(value, SAFE_TYPES):
            return
        seen.add(id(value))
        if isinstance(value, (str, bytes, bytearray)):
            text = value if isinstance(value, str) else bytes(value).decode("latin-1")
            if leaks(text):
                found.append(where)
            return
        if isinstance(value, BaseException):
            visit_exception(value, where, depth)
            return
        if isinstance(value, Mapping):
            try:
                items = list(value.items())
            except NotImplementedError:  # urllib3's pool container refuses to be iterated
                items = list(vars(value).items())
            for key, item in items:
                visit(key, f"{where}[key]", depth + 1)
                visit(item, f"{where}[{key!r}]", depth + 1)
            return
        if isinstance(value, (list, tuple, set, frozenset, deque)):
            for index, item in enumerate(list(value)):
                visit(item, f"{where}[{index}]", depth + 1)
            return
        module = type(value).__module__.split(".")[0]
        if module in OPENED_MODULES and hasattr(value, "__dict__"):
            visit(vars(value), f"{where}.__dict__", depth + 1)
        visit(repr(value), f"repr({where})", depth + 1)

    def visit_exception(exc: BaseException, where: str, depth: int) -> None:
        visit(str(exc), f"str({where})", depth + 1)
        visit(exc.args, f"{where}.args", depth + 1)
        visit(vars(exc), f"{where}.__dict__", depth + 1)
        tb = exc.__traceback__
        while tb is not None:
            code = tb.tb_frame.f_code
            visit(dict(tb.tb_frame.f_locals), f"{where}: {code.co_filename}:{code.co_name}", depth)
            tb = tb.tb_next
        for link in ("__cause__", "__context__"):
            chained = getattr(exc, link)
            if chained is not None:
                visit(chained, f"{where}.{link}", depth + 1)

    visit(error, "error", 0)
    return found


def _dropping(peer: Peer, request: Received) -> bool:
    return False  # close without an answer


def _silent(peer: Peer, request: Received) -> bool:
    peer.stopping.wait(30)  # never answer
    return False


def _trickling(peer: Peer, request: Received) -> bool:
    peer.send(b"HTTP/1.1 500 X\r\nContent-Length: 100\r\n\r\n")
    peer.trickle(b"{" * 100, 0.2)  # each byte within the read timeout, until the deadline
    return False


def _trickling_redirect(peer: Peer, request: Received) -> bool:
    # Read in the transport's response hook, inside requests' Session.send: its frames too.
    peer.send(b"HTTP/1.1 302 Found\r\nLocation: /x\r\nContent-Length: 100\r\n\r\n")
    peer.trickle(b"x" * 100, 0.2)
    return False


def _failing(peer: Peer, request: Received) -> bool:
    peer.send(response(500, b'{"type": "error.list", "errors": [{"code": "x", "message": "y"}]}'))
    return True


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (_dropping, NetworkError),
        (_silent, NetworkTimeoutError),
        (_trickling, NetworkTimeoutError),
        (_trickling_redirect, NetworkTimeoutError),
        (_failing, ServerError),
        (None, NetworkError),  # connection refused
    ],
    ids=[
        "dropped",
        "read-timeout",
        "deadline-mid-body",
        "deadline-mid-redirect",
        "http-500",
        "refused",
    ],
)
def test_no_frame_a_crash_reporter_records_holds_the_token(
    answer: Any, expected: type[IntercomAPIError], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    if answer is None:
        with socket.create_server(("127.0.0.1", 0)) as closed:
            url = f"http://127.0.0.1:{closed.getsockname()[1]}"
        server = None
    else:
        server = HostileServer(answer).__enter__()
        url = server.url
    try:
        client = IntercomClient(TOKEN, base_url=url, timeout=(2, 0.5))
        with pytest.raises(expected) as caught:
            client.create_event(event())
    finally:
        if server is not None:
            server.stop()
    error = caught.value
    assert type(error) is expected
    if answer not in (_failing, _trickling, _trickling_redirect):
        assert error.__cause__ is not None
    assert found_in_frames(error) == []
    assert leaks(caplog.text) == []
