"""IntercomClient: configuration checks here; everything on the wire against the emulator."""

from __future__ import annotations

import ast
import json
import logging
import pickle
import re
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

import flask_intercom_events
from flask_intercom_events.client import (
    AU_BASE_URL,
    DEFAULT_POOL_SIZE,
    DEFAULT_TIMEOUT,
    EU_BASE_URL,
    US_BASE_URL,
    IntercomClient,
    parse_rate_limit,
    parse_retry_after,
)
from flask_intercom_events.errors import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ConflictError,
    IntercomAPIError,
    InvalidEventError,
    NetworkError,
    NetworkTimeoutError,
    NotFoundError,
    RateLimitedError,
    RateLimitInfo,
    RequestTimeoutError,
    ServerError,
    UnprocessableEntityError,
)
from flask_intercom_events.events import Event, Identity, Money
from flask_intercom_events.extension import state_of
from flask_intercom_events.sandbox import Sandbox

from .apps import make_app
from .clocks import pin_mid_window

TOKEN = "dG9rOnNlY3JldC10b2tlbi1mb3ItdGVzdHM="
# Nothing listens on the discard port: a call that reached the network would fail with a
# NetworkError, so an InvalidEventError proves the arguments were refused before any request.
NOWHERE = "http://127.0.0.1:9"


# --- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (US_BASE_URL, "https://api.intercom.io"),
        (EU_BASE_URL, "https://api.eu.intercom.io"),
        (AU_BASE_URL, "https://api.au.intercom.io"),
        ("https://api.intercom.io/", "https://api.intercom.io"),
        ("https://proxy.example.com:8443/intercom/", "https://proxy.example.com:8443/intercom"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://127.45.6.7:8080/", "http://127.45.6.7:8080"),
        ("http://localhost:5000", "http://localhost:5000"),
        ("http://LOCALHOST", "http://LOCALHOST"),
        ("http://[::1]:8080", "http://[::1]:8080"),
    ],
)
def test_base_url_accepted(given: str, expected: str) -> None:
    assert IntercomClient(TOKEN, base_url=given).base_url == expected


@pytest.mark.parametrize(
    ("given", "words"),
    [
        ("http://api.intercom.io", ["http://", "https://", "loopback"]),
        ("http://10.0.0.8:8080", ["http://", "loopback"]),
        ("http://192.168.1.10", ["http://", "loopback"]),
        ("http://[::2]:8080", ["http://", "loopback"]),
        ("http://localhost.example.com", ["http://", "loopback"]),
        ("http://127.0.0.1.nip.io", ["http://", "loopback"]),
        ("ftp://api.intercom.io", ["https://"]),
        ("api.intercom.io", ["https://"]),
        ("https://", ["https://"]),
        ("", ["URL"]),
        ("   ", ["URL"]),
        ("https://user:secret@api.intercom.io", ["credentials"]),
        ("https://api.intercom.io/?region=eu", ["query"]),
        ("https://api.intercom.io:notaport", ["not a valid URL"]),
    ],
)
def test_base_url_refused(given: str, words: list[str]) -> None:
    with pytest.raises(ConfigurationError) as caught:
        IntercomClient(TOKEN, base_url=given)
    message = str(caught.value)
    assert "INTERCOM_API_BASE_URL" in message
    assert "base_url" in message
    for word in words:
        assert word in message


@pytest.mark.parametrize("token", ["", "   ", "\n", "tok en", "tok\nen", "tøken", None, 12345])
def test_unusable_token_refused(token: Any) -> None:
    with pytest.raises(ConfigurationError, match="INTERCOM_ACCESS_TOKEN") as caught:
        IntercomClient(token)
    if isinstance(token, str) and token.strip():
        assert token not in str(caught.value)
        assert token not in repr(caught.value)


def test_token_surrounding_whitespace_is_stripped() -> None:
    # A secrets file usually ends in a newline; the token itself is still good.
    client = IntercomClient(f"  {TOKEN}\n")
    assert TOKEN not in repr(client)


def test_repr_shows_url_and_version_never_the_token() -> None:
    client = IntercomClient(TOKEN, base_url=EU_BASE_URL, api_version="2.11")
    assert (
        repr(client) == "IntercomClient(base_url='https://api.eu.intercom.io', api_version='2.11')"
    )
    assert TOKEN not in str(client)
    assert TOKEN not in repr(vars(client))


def test_client_cannot_be_pickled() -> None:
    with pytest.raises(TypeError, match="access token"):
        pickle.dumps(IntercomClient(TOKEN))


@pytest.mark.parametrize(
    ("timeout", "expected"),
    [
        (DEFAULT_TIMEOUT, (3.05, 10.0)),
        ((1, 2), (1.0, 2.0)),
        (0.5, (0.5, 0.5)),
        ([2, 4], (2.0, 4.0)),
        (120, (120.0, 120.0)),
    ],
)
def test_timeout_accepted(timeout: Any, expected: tuple[float, float]) -> None:
    assert IntercomClient(TOKEN, timeout=timeout).timeout == expected


def test_default_timeout_is_short() -> None:
    connect, read = IntercomClient(TOKEN).timeout
    assert connect <= 5
    assert read <= 15


@pytest.mark.parametrize(
    "timeout",
    [None, 0, -1, (1, None), (None, 1), (0, 5), float("inf"), (1, 2, 3), "10", True, 121, 1e308],
)
def test_timeout_refused(timeout: Any) -> None:
    with pytest.raises(ConfigurationError, match="timeout"):
        IntercomClient(TOKEN, timeout=timeout)


@pytest.mark.parametrize("version", ["", "2 11", "2.11\n", None, 2.11, "2.17", "latest"])
def test_api_version_refused(version: Any) -> None:
    with pytest.raises(ConfigurationError, match="INTERCOM_API_VERSION"):
        IntercomClient(TOKEN, api_version=version)


def test_own_session_pool_is_sized_for_concurrency() -> None:
    client = IntercomClient(TOKEN, pool_size=64)
    for url in ("https://api.intercom.io/events", "http://127.0.0.1/events"):
        adapter: Any = client.session.get_adapter(url)
        assert adapter.poolmanager.connection_pool_kw["maxsize"] == 64
        assert adapter.max_retries.total == 0


@pytest.mark.parametrize("pool_size", [0, -3, True, 2.5, None])
def test_pool_size_refused(pool_size: Any) -> None:
    with pytest.raises(ConfigurationError, match="pool_size"):
        IntercomClient(TOKEN, pool_size=pool_size)


def test_injected_session_is_used_and_left_open() -> None:
    session = requests.Session()
    with IntercomClient(TOKEN, session=session) as client:
        assert client.session is session
    # The caller's session keeps its adapters: the client closed nothing of it.
    assert session.adapters


def test_session_must_be_a_requests_session() -> None:
    with pytest.raises(ConfigurationError, match=r"requests\.Session"):
        IntercomClient(TOKEN, session=object())  # type: ignore[arg-type]


def test_from_settings_takes_the_apps_configuration(tmp_path: Path) -> None:
    app = make_app(
        tmp_path,
        INTERCOM_ACCESS_TOKEN=TOKEN,
        INTERCOM_API_BASE_URL=EU_BASE_URL,
        INTERCOM_API_VERSION="2.10",
        INTERCOM_API_TIMEOUT=[2, 4],
    )
    with IntercomClient.from_settings(state_of(app).settings, pool_size=5) as client:
        assert (client.base_url, client.api_version, client.timeout) == (
            EU_BASE_URL,
            "2.10",
            (2.0, 4.0),
        )
        adapter: Any = client.session.get_adapter(EU_BASE_URL)
        assert adapter.poolmanager.connection_pool_kw["maxsize"] == 5
    with IntercomClient.from_settings(state_of(app).settings) as client:
        adapter = client.session.get_adapter(EU_BASE_URL)
        assert adapter.poolmanager.connection_pool_kw["maxsize"] == DEFAULT_POOL_SIZE


def test_from_settings_without_a_token_says_which_key(tmp_path: Path) -> None:
    app = make_app(tmp_path, INTERCOM_ACCESS_TOKEN=None)
    with pytest.raises(ConfigurationError, match="INTERCOM_ACCESS_TOKEN is not set"):
        IntercomClient.from_settings(state_of(app).settings)


def test_only_the_wire_modules_import_requests() -> None:
    # config.py is pure; only transport.py (and client.py, for type hints) name requests.
    package = Path(flask_intercom_events.__file__).parent
    importers = set()
    for module in package.glob("*.py"):
        tree = ast.parse(module.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                node.body = []
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            if any(name.split(".")[0] in ("requests", "urllib3") for name in names):
                importers.add(module.name)
    assert importers == {"transport.py"}


# --- arguments refused before any request ----------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "exactly one of user_id, email or intercom_user_id"),
        ({"user_id": "u1", "email": "a@example.com"}, r"got user_id, email"),
        ({"user_id": "u1", "intercom_user_id": "abc"}, "exactly one"),
        ({"user_id": ""}, "user_id must not be empty"),
        ({"email": "  "}, "email must not be empty"),
        ({"user_id": 42}, "user_id must be a string"),
        ({"user_id": "u1", "per_page": 0}, "per_page must be a positive integer"),
        ({"user_id": "u1", "per_page": True}, "per_page must be a positive integer"),
        ({"user_id": "u1", "summary": "yes"}, "summary must be True or False"),
    ],
)
def test_list_events_arguments_refused(kwargs: dict[str, Any], match: str) -> None:
    client = IntercomClient(TOKEN, base_url=NOWHERE)
    with pytest.raises(InvalidEventError, match=match):
        client.list_events(**kwargs)


GOOD_SUMMARY: dict[str, Any] = {
    "event_name": "invited-friend",
    "count": 3,
    "first": 1_700_000_000,
    "last": 1_700_000_500,
}


@pytest.mark.parametrize(
    ("user_id", "summaries", "field", "match"),
    [
        ("", GOOD_SUMMARY, "user_id", "user_id must not be empty"),
        (314159, GOOD_SUMMARY, "user_id", "user_id must be a string"),
        ("u1", [GOOD_SUMMARY], "event_summaries", "must be a mapping"),
        ("u1", {**GOOD_SUMMARY, "extra": 1}, "event_summaries", "unknown key"),
        ("u1", {"event_name": "x", "count": 1}, "event_summaries.first", "missing 'first', 'last'"),
        ("u1", {**GOOD_SUMMARY, "event_name": ""}, "event_summaries.event_name", "non-empty"),
        ("u1", {**GOOD_SUMMARY, "event_name": 7}, "event_summaries.event_name", "non-empty"),
        ("u1", {**GOOD_SUMMARY, "event_name": "a.b"}, "event_summaries.event_name", "'-'"),
        ("u1", {**GOOD_SUMMARY, "count": 0}, "event_summaries.count", "positive integer"),
        ("u1", {**GOOD_SUMMARY, "count": "3"}, "event_summaries.count", "positive integer"),
        ("u1", {**GOOD_SUMMARY, "count": True}, "event_summaries.count", "positive integer"),
        ("u1", {**GOOD_SUMMARY, "first": 1.5}, "event_summaries.first", "Unix seconds"),
        ("u1", {**GOOD_SUMMARY, "last": -1}, "event_summaries.last", "Unix seconds"),
        (
            "u1",
            {**GOOD_SUMMARY, "last": 1_700_000_500_000},
            "event_summaries.last",
            "milliseconds",
        ),
        (
            "u1",
            {**GOOD_SUMMARY, "first": 1_700_000_600},
            "event_summaries.first",
            "is after",
        ),
    ],
)
def test_submit_summaries_arguments_refused(
    user_id: Any, summaries: Any, field: str, match: str
) -> None:
    client = IntercomClient(TOKEN, base_url=NOWHERE)
    with pytest.raises(InvalidEventError, match=match) as caught:
        client.submit_summaries(user_id, summaries)
    assert caught.value.field == field


# --- header parsing --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("7", 7.0),
        (" 2.5 ", 2.5),
        ("-3", 0.0),
        ("soon", None),
        ("nan", None),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),  # now is 07:28:00
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),  # already past
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    now = 1445412480.0  # Wed, 21 Oct 2015 07:28:00 GMT
    assert parse_retry_after(value, now=now) == expected


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, RateLimitInfo()),
        (
            {"X-RateLimit-Limit": "167", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "17"},
            RateLimitInfo(limit=167, remaining=0, reset=17),
        ),
        ({"X-RateLimit-Limit": "lots", "X-RateLimit-Remaining": " 5 "}, RateLimitInfo(None, 5)),
    ],
)
def test_parse_rate_limit(headers: dict[str, str], expected: RateLimitInfo) -> None:
    assert parse_rate_limit(headers) == expected


# --- on the wire, against the emulator -------------------------------------------------------

EMULATOR_TOKEN = "test-token"
NOW = int(time.time())


def event(
    name: str = "invited-friend",
    *,
    ago: int = 0,
    identity: Identity | None = None,
    metadata: dict[str, Any] | None = None,
) -> Event:
    """An event for user 42 (unless told otherwise), ``ago`` seconds old."""
    return Event(name, NOW - ago, identity or Identity(user_id="42"), metadata or {})


@pytest.fixture
def sent() -> list[requests.PreparedRequest]:
    """The requests as ``requests`` put them on the wire, filled by ``recording_session``."""
    return []


@pytest.fixture
def recording_session(sent: list[requests.PreparedRequest]) -> Iterator[requests.Session]:
    """A plain ``requests.Session`` whose response hook keeps each request that was sent."""
    session = requests.Session()

    def keep(response: requests.Response, *args: Any, **kwargs: Any) -> None:
        sent.append(response.request)

    session.hooks["response"].append(keep)
    yield session
    session.close()


@pytest.fixture
def client(emulator: Sandbox, recording_session: requests.Session) -> Iterator[IntercomClient]:
    with IntercomClient(
        EMULATOR_TOKEN, base_url=emulator.url, session=recording_session, timeout=(2, 2)
    ) as client:
        yield client


def test_create_event_posts_the_payload_with_every_header(
    emulator: Sandbox, client: IntercomClient, sent: list[requests.PreparedRequest]
) -> None:
    tracked = event(metadata={"plan": "pro", "price": Money(34999, "eur")})

    result = client.create_event(tracked)

    assert result.status == 202
    [received] = emulator.events
    assert received.body == tracked.to_payload()
    assert received.user_id == "42"
    # The emulator warns when Content-Type, Accept or Intercom-Version is missing or wrong.
    assert emulator.warnings == []
    [request] = sent
    assert request.method == "POST"
    assert request.url == emulator.url + "/events"
    assert json.loads(request.body or b"") == tracked.to_payload()
    assert request.headers["Authorization"] == f"Bearer {EMULATOR_TOKEN}"
    assert request.headers["Intercom-Version"] == "2.11"
    assert request.headers["Accept"] == "application/json"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"].startswith("flask-intercom-events/")


def test_create_event_result_carries_the_rate_limit_headers(
    emulator: Sandbox, client: IntercomClient
) -> None:
    emulator.configure(rate_limit=5)
    reset = pin_mid_window(emulator)

    first = client.create_event(event(ago=1))
    second = client.create_event(event(ago=2))

    assert first.rate_limit.limit == 5
    assert first.rate_limit.remaining == 4
    assert second.rate_limit.remaining == 3
    assert first.rate_limit.reset == second.rate_limit.reset == reset
    assert first.elapsed > 0


def test_get_sends_no_content_type_and_the_chosen_version(
    emulator: Sandbox, recording_session: requests.Session, sent: list[requests.PreparedRequest]
) -> None:
    client = IntercomClient(
        EMULATOR_TOKEN, base_url=emulator.url, api_version="2.10", session=recording_session
    )
    client.create_event(event())

    client.list_events(user_id="42")

    post, get = sent
    assert post.headers["Intercom-Version"] == "2.10"
    assert get.method == "GET"
    assert get.headers["Intercom-Version"] == "2.10"
    assert get.headers["Accept"] == "application/json"
    assert get.headers["Authorization"] == f"Bearer {EMULATOR_TOKEN}"
    assert "Content-Type" not in get.headers


def test_every_call_has_connect_and_read_timeouts(emulator: Sandbox) -> None:
    # A stall longer than the read timeout must end the call, not hang it.
    client = IntercomClient(EMULATOR_TOKEN, base_url=emulator.url, timeout=(1, 0.3))
    emulator.script("stall:30")
    started = time.monotonic()
    with pytest.raises(NetworkTimeoutError):
        client.create_event(event())
    assert time.monotonic() - started < 10


def test_trailing_slash_in_base_url(emulator: Sandbox) -> None:
    client = IntercomClient(EMULATOR_TOKEN, base_url=emulator.url + "/")
    assert client.create_event(event()).status == 202
    assert [record.target for record in emulator.requests] == ["/events"]


def test_duplicate_is_accepted_like_any_event(emulator: Sandbox, client: IntercomClient) -> None:
    same = event()
    assert client.create_event(same).status == 202
    assert client.create_event(same).status == 202
    assert emulator.stats.events == 1
    assert emulator.stats.duplicates == 1


@pytest.mark.parametrize(
    "identity",
    [{"user_id": "42"}, {"email": "ada@example.com"}, {"id": "5f7c9e2b1a2b3c4d5e6f7a8b"}],
)
def test_create_event_for_each_identity_kind(
    emulator: Sandbox, client: IntercomClient, identity: dict[str, str]
) -> None:
    client.create_event(event(identity=Identity(**identity)))
    [received] = emulator.events
    assert {key: received.body[key] for key in identity} == identity
    assert not {"user_id", "email", "id"} - set(identity) & set(received.body)


def test_submit_summaries(
    emulator: Sandbox, client: IntercomClient, sent: list[requests.PreparedRequest]
) -> None:
    result = client.submit_summaries(
        "42", {"event_name": "Placed-Order", "count": 3, "first": NOW - 60, "last": NOW}
    )

    assert result.status == 200
    [summary] = emulator.summaries
    assert summary.body == {
        "user_id": "42",
        "event_summaries": {
            "event_name": "placed-order",
            "count": 3,
            "first": NOW - 60,
            "last": NOW,
        },
    }
    assert (summary.user_id, summary.event_name, summary.count) == ("42", "placed-order", 3)
    assert emulator.warnings == []
    assert sent[0].url == emulator.url + "/events/summaries"
    assert sent[0].headers["Content-Type"] == "application/json"


# --- listing and pagination ------------------------------------------------------------------


def test_list_events_follows_every_page(
    emulator: Sandbox, client: IntercomClient, sent: list[requests.PreparedRequest]
) -> None:
    for age in range(7):
        client.create_event(event(f"did-thing-{age}", ago=age * 60))
    del sent[:]

    listed = client.list_events(user_id="42", per_page=3)

    assert [item["event_name"] for item in listed] == [f"did-thing-{age}" for age in range(7)]
    assert all(item["user_id"] == "42" for item in listed)
    assert [request.method for request in sent] == ["GET", "GET", "GET"]
    assert sent[0].url == f"{emulator.url}/events?type=user&user_id=42&per_page=3"
    assert "page=2" in (sent[1].url or "")
    assert "page=3" in (sent[2].url or "")
    # Every page went with the token: only to the emulator, which accepted them all.
    assert emulator.stats.by_status == {202: 7, 200: 3}


def test_list_events_single_page(emulator: Sandbox, client: IntercomClient) -> None:
    client.create_event(event())
    [only] = client.list_events(user_id="42")
    assert (only["event_name"], only["created_at"]) == ("invited-friend", NOW)
    assert emulator.stats.by_status[200] == 1


def test_list_events_by_email_and_by_intercom_user_id(
    emulator: Sandbox, client: IntercomClient, sent: list[requests.PreparedRequest]
) -> None:
    client.create_event(event(identity=Identity(user_id="42", email="ada+intercom@example.com")))
    [contact] = emulator.contacts

    by_email = client.list_events(email="ada+intercom@example.com")
    by_id = client.list_events(intercom_user_id=contact.id)

    assert by_email == by_id
    assert [item["event_name"] for item in by_email] == ["invited-friend"]
    assert "email=ada%2Bintercom%40example.com" in (sent[1].url or "")
    assert f"intercom_user_id={contact.id}" in (sent[2].url or "")


def test_list_events_summary(emulator: Sandbox, client: IntercomClient) -> None:
    for age in range(3):
        client.create_event(event("logged-in", ago=age))
    client.create_event(event("upgraded-plan"))

    summaries = client.list_events(user_id="42", summary=True)

    assert [(item["name"], item["count"]) for item in summaries] == [
        ("logged-in", 3),
        ("upgraded-plan", 1),
    ]
    assert "summary=true" in emulator.requests[-1].target


def test_list_events_unknown_contact_is_not_found(client: IntercomClient) -> None:
    with pytest.raises(NotFoundError) as caught:
        client.list_events(user_id="nobody")
    assert (caught.value.status, caught.value.code) == (404, "not_found")


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",  # another host
        "evil.example:{port}",  # another host, same port
        "127.0.0.1:1",  # same host, another port
        "localhost:{port}",  # same machine, another name: still another origin
    ],
)
def test_next_page_on_another_origin_is_refused(
    emulator: Sandbox, host: str, recording_session: requests.Session
) -> None:
    # The emulator builds pages.next from the Host header it receives: a Host naming another
    # origin makes it answer a next link there, as a hostile or misconfigured server would.
    port = emulator.url.rsplit(":", 1)[1]
    client = IntercomClient(EMULATOR_TOKEN, base_url=emulator.url, session=recording_session)
    for age in range(3):
        client.create_event(event(ago=age))
    recording_session.headers["Host"] = host.format(port=port)

    with pytest.raises(IntercomAPIError, match="another origin") as caught:
        client.list_events(user_id="42", per_page=2)

    assert "INTERCOM_API_BASE_URL" in str(caught.value)
    assert EMULATOR_TOKEN not in str(caught.value)
    # The first page was read; the second was never requested.
    assert [record.method for record in emulator.requests] == ["POST"] * 3 + ["GET"]


def test_next_page_on_the_same_origin_is_followed_by_name(emulator: Sandbox) -> None:
    # base_url by name: the emulator's next links name the same host, so they are followed.
    port = emulator.url.rsplit(":", 1)[1]
    client = IntercomClient(EMULATOR_TOKEN, base_url=f"http://localhost:{port}")
    for age in range(3):
        client.create_event(event(ago=age))
    assert len(client.list_events(user_id="42", per_page=1)) == 3
    assert [record.method for record in emulator.requests] == ["POST"] * 3 + ["GET"] * 3


# --- errors ----------------------------------------------------------------------------------


INJECTED_ERRORS: list[tuple[str, type[IntercomAPIError], int, str]] = [
    ("500", ServerError, 500, "server_error"),
    ("502", ServerError, 502, "server_error"),
    ("503", ServerError, 503, "server_error"),
    ("504", ServerError, 504, "server_error"),
    ("408", RequestTimeoutError, 408, "request_timeout"),
    ("409", ConflictError, 409, "conflict"),
    ("429", RateLimitedError, 429, "rate_limit_exceeded"),
]


@pytest.mark.parametrize("case", INJECTED_ERRORS, ids=[case[0] for case in INJECTED_ERRORS])
@pytest.mark.parametrize("call", ["create_event", "submit_summaries", "list_events"])
def test_injected_error_statuses(
    emulator: Sandbox,
    client: IntercomClient,
    case: tuple[str, type[IntercomAPIError], int, str],
    call: str,
) -> None:
    fault, error_class, status, code = case
    emulator.script(fault)

    with pytest.raises(IntercomAPIError) as caught:
        _call(client, call)

    error = caught.value
    assert type(error) is error_class
    assert (error.status, error.code) == (status, code)
    assert error.message
    [record] = emulator.requests
    assert error.request_id == record.request_id
    assert error.errors[0].code == code
    assert error.method == ("GET" if call == "list_events" else "POST")
    assert error.path == {"create_event": "/events", "submit_summaries": "/events/summaries"}.get(
        call, "/events"
    )


def _call(client: IntercomClient, call: str) -> object:
    if call == "create_event":
        return client.create_event(event())
    if call == "submit_summaries":
        return client.submit_summaries(
            "42", {"event_name": "logged-in", "count": 1, "first": NOW, "last": NOW}
        )
    return client.list_events(user_id="42")


def test_rate_limited_carries_the_window(emulator: Sandbox, client: IntercomClient) -> None:
    emulator.configure(rate_limit=1)
    reset = pin_mid_window(emulator)
    client.create_event(event(ago=1))

    with pytest.raises(RateLimitedError) as caught:
        client.create_event(event(ago=2))

    error = caught.value
    assert (error.status, error.code) == (429, "rate_limit_exceeded")
    assert error.message == "Exceeded rate limit of 1 in 10_seconds"
    assert error.rate_limit.limit == 1
    assert error.rate_limit.remaining == 0
    assert error.rate_limit.reset == reset
    # Intercom documents no Retry-After; the emulator sends none.
    assert error.retry_after is None


def test_injected_429_has_rate_limit_headers(emulator: Sandbox, client: IntercomClient) -> None:
    emulator.script("429")
    with pytest.raises(RateLimitedError) as caught:
        client.create_event(event())
    assert caught.value.rate_limit.limit == 1666
    assert caught.value.rate_limit.remaining == 0
    assert caught.value.rate_limit.reset is not None


def test_invalid_token_is_an_authentication_error(emulator: Sandbox) -> None:
    client = IntercomClient("not-the-token", base_url=emulator.url)
    with pytest.raises(AuthenticationError) as caught:
        client.create_event(event())
    error = caught.value
    assert (error.status, error.code, error.message) == (
        401,
        "unauthorized",
        "Access Token Invalid",
    )
    assert error.request_id == emulator.requests[0].request_id
    assert emulator.events == []


def test_token_without_write_scope_is_an_authentication_error(
    emulator: Sandbox, client: IntercomClient
) -> None:
    client.create_event(event())
    emulator.configure(read_only_tokens=("read-only-token",))
    reader = IntercomClient("read-only-token", base_url=emulator.url)

    with pytest.raises(AuthenticationError) as caught:
        reader.create_event(event("other-thing"))

    assert (caught.value.status, caught.value.code) == (403, "forbidden")
    # Reading needs no write scope.
    assert [item["event_name"] for item in reader.list_events(user_id="42")] == ["invited-friend"]


def test_unknown_contact_is_not_found(emulator: Sandbox, client: IntercomClient) -> None:
    emulator.configure(require_contacts=True)
    emulator.add_contact(user_id="7")
    assert client.create_event(event(identity=Identity(user_id="7"))).status == 202

    with pytest.raises(NotFoundError) as caught:
        client.create_event(event(identity=Identity(user_id="8")))

    assert (caught.value.status, caught.value.code) == (404, "not_found")
    assert caught.value.message == "User Not Found"


def test_too_many_event_names_is_unprocessable(emulator: Sandbox, client: IntercomClient) -> None:
    emulator.configure(max_event_names=1)
    client.create_event(event("first-name"))

    with pytest.raises(UnprocessableEntityError) as caught:
        client.create_event(event("second-name"))

    assert caught.value.status == 422
    assert caught.value.message == "Cannot have more than 1 active event names"


@dataclass(frozen=True)
class RawPayload:
    """A payload the event model would never build, to make Intercom answer ``400``."""

    body: dict[str, Any]

    def to_payload(self) -> dict[str, Any]:
        return self.body


def test_refused_body_is_a_bad_request_with_every_entry(
    emulator: Sandbox, client: IntercomClient
) -> None:
    bad = RawPayload({"event_name": "", "created_at": "yesterday", "user_id": "42"})

    with pytest.raises(BadRequestError) as caught:
        client.create_event(bad)  # type: ignore[arg-type]

    error = caught.value
    assert error.status == 400
    assert error.code == "parameter_invalid"
    assert [(detail.code, detail.field) for detail in error.errors] == [
        ("parameter_invalid", "event_name"),
        ("parameter_invalid", "created_at"),
    ]
    assert error.message == error.errors[0].message
    assert error.request_id == emulator.requests[0].request_id


def test_error_body_that_is_not_an_error_list(emulator: Sandbox, client: IntercomClient) -> None:
    # A request head over 64 KiB is refused by the emulator's HTTP layer with 431 and a plain
    # {"error": ...} body: no error.list to read, so the message shows the body, truncated.
    with pytest.raises(IntercomAPIError) as caught:
        client.list_events(user_id="x" * 70_000)

    error = caught.value
    assert type(error) is IntercomAPIError
    assert error.status == 431
    assert error.code is None
    assert error.errors == ()
    assert "request head larger than" in error.message
    assert len(error.message) < 400


def test_dropped_connection_is_a_network_error(emulator: Sandbox, client: IntercomClient) -> None:
    emulator.script("drop")

    with pytest.raises(NetworkError) as caught:
        client.create_event(event())

    error = caught.value
    assert type(error) is NetworkError
    assert error.status is None
    assert (error.method, error.path) == ("POST", "/events")
    assert isinstance(error.__cause__, requests.ConnectionError)
    assert emulator.stats.dropped == 1
    assert emulator.events == []


def test_stall_past_the_read_timeout_is_a_network_timeout(emulator: Sandbox) -> None:
    client = IntercomClient(EMULATOR_TOKEN, base_url=emulator.url, timeout=(1, 0.2))
    emulator.script("stall:30")  # longer than the wait below: "handled after" would show

    with pytest.raises(NetworkTimeoutError) as caught:
        client.create_event(event())

    assert caught.value.status is None
    assert "0.2 s to read" in caught.value.message
    # The emulator handled the request before stalling: a retry would be a harmless duplicate.
    # (It may read the request only after the client gave up, on a loaded machine.)
    emulator.wait_for_events(1, timeout=10)
    assert emulator.stats.events == 1


def test_nothing_listening_is_a_network_error() -> None:
    client = IntercomClient(EMULATOR_TOKEN, base_url=NOWHERE)
    with pytest.raises(NetworkError) as caught:
        client.create_event(event())
    assert type(caught.value) is NetworkError
    assert "127.0.0.1:9" in caught.value.message


def test_one_attempt_per_call(emulator: Sandbox, client: IntercomClient) -> None:
    emulator.script("503", "drop")
    with pytest.raises(ServerError):
        client.create_event(event())
    with pytest.raises(NetworkError):
        client.create_event(event())
    assert emulator.stats.requests == 2
    assert client.create_event(event()).status == 202
    assert emulator.stats.requests == 3


# --- the token stays secret ------------------------------------------------------------------

SECRET = "test-token"


def _everything_said(error: BaseException) -> str:
    """Every text an error carries: str, repr, the chained cause's, and its formatted traceback."""
    texts = [str(error), repr(error)]
    cause = error.__cause__
    while cause is not None:
        texts += [str(cause), repr(cause)]
        for request in (getattr(cause, "request", None),):
            if request is not None:
                texts.append(repr(dict(request.headers)))
        cause = cause.__cause__ or cause.__context__
    texts.append("".join(traceback.format_exception(error)))
    return "\n".join(texts)


@pytest.mark.parametrize("fault", ["500", "429", "409", "drop", "stall:2", "ok"])
def test_token_absent_from_errors_and_logs(
    emulator: Sandbox, caplog: pytest.LogCaptureFixture, fault: str
) -> None:
    caplog.set_level(logging.DEBUG)  # the root logger: urllib3's records included
    client = IntercomClient(SECRET, base_url=emulator.url, timeout=(1, 0.3))
    emulator.script(fault)
    texts = [repr(client), str(client)]

    try:
        if fault == "ok":
            client.list_events(user_id="x" * 70_000)
        else:
            client.create_event(event())
    except IntercomAPIError as error:
        texts.append(_everything_said(error))
    else:
        pytest.fail("the call was expected to fail")

    texts += [record.getMessage() for record in caplog.records]
    texts += [caplog.text]
    assert any(record.name == "urllib3.connectionpool" for record in caplog.records)
    for text in texts:
        assert SECRET not in text


def test_one_debug_line_per_call(
    emulator: Sandbox, client: IntercomClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="flask_intercom_events.client")
    emulator.script("ok", "503")
    client.create_event(event())
    with pytest.raises(ServerError):
        client.create_event(event())

    lines = [r for r in caplog.records if r.name == "flask_intercom_events.client"]
    assert len(lines) == 2
    assert all(record.levelno == logging.DEBUG for record in lines)
    assert re.fullmatch(r"POST /events -> 202 in \d+\.\d ms", lines[0].getMessage())
    assert re.fullmatch(r"POST /events -> 503 in \d+\.\d ms", lines[1].getMessage())


def test_list_events_log_line_has_no_query(
    emulator: Sandbox, client: IntercomClient, caplog: pytest.LogCaptureFixture
) -> None:
    # The query names the contact (it can be an email): the log line keeps to the path.
    caplog.set_level(logging.DEBUG, logger="flask_intercom_events.client")
    client.create_event(event(identity=Identity(user_id="ada-lovelace")))
    client.list_events(user_id="ada-lovelace")
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("GET")]
    assert re.fullmatch(r"GET /events -> 200 in \d+\.\d ms", line)


def test_proxy_and_ca_bundle_environment_is_read_once_when_built(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "api.eu.intercom.io")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/corporate.pem")
    us = IntercomClient("tok", base_url="https://api.intercom.io")
    eu = IntercomClient("tok", base_url="https://api.eu.intercom.io")
    assert us.session.proxies.get("https") == "http://proxy.internal:3128"
    assert eu.session.proxies == {}  # NO_PROXY honoured
    assert us.session.verify == "/etc/ssl/corporate.pem"
    assert us.session.trust_env is False
    us.close()
    eu.close()
