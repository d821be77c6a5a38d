"""The Intercom emulator, over real HTTP: what it accepts, refuses, warns about and counts.

The wire is spoken with ``requests`` directly (not the package's client), so these tests pin
the emulator to the API notes on their own.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests

from flask_intercom_events.sandbox import KNOWN_API_VERSIONS, Sandbox

from .clocks import Clock, pin_mid_window

TOKEN = "test-token"
NOW = int(time.time()) - 60
DAY = 24 * 3600
HEADERS = {
    "Authorization": f"Bearer {TOKEN}",
    "Accept": "application/json",
    "Intercom-Version": "2.11",
}
SCHEMA_FILE = Path(__file__).parent / "data" / "intercom-openapi" / "events-2.11.resolved.json"


def body(*remove: str, **changes: Any) -> dict[str, Any]:
    """A valid ``POST /events`` body, with ``changes`` applied and ``remove`` keys left out."""
    data: dict[str, Any] = {"event_name": "invited-friend", "created_at": NOW, "user_id": "42"}
    data.update(changes)
    for key in remove:
        del data[key]
    return data


def post(
    url: str,
    data: Any = None,
    *,
    path: str = "/events",
    token: str | None = TOKEN,
    headers: dict[str, str] | None = None,
) -> requests.Response:
    """POST ``data`` as JSON (bytes as they are) with the usual Intercom headers."""
    sent = {**HEADERS, "Content-Type": "application/json", **(headers or {})}
    if token is None:
        del sent["Authorization"]
    else:
        sent["Authorization"] = f"Bearer {token}"
    if isinstance(data, bytes):
        payload = data
    else:
        payload = json.dumps(body() if data is None else data).encode()
    return requests.post(url + path, data=payload, headers=sent, timeout=5)


def get(url: str, query: str, token: str = TOKEN) -> requests.Response:
    """GET ``/events?query``."""
    return requests.get(
        f"{url}/events?{query}",
        headers={**HEADERS, "Authorization": f"Bearer {token}"},
        timeout=5,
    )


def assert_error(
    response: requests.Response, status: int, code: str, field: str | None = None
) -> None:
    """``response`` is an Intercom ``error.list`` with ``code`` (and ``field``) first."""
    assert response.status_code == status, response.text
    error = response.json()
    assert error["type"] == "error.list"
    assert isinstance(error["request_id"], str)
    assert error["request_id"] == response.headers["X-Request-Id"]
    assert error["errors"][0]["code"] == code
    assert error["errors"][0]["message"]
    if field is not None:
        assert error["errors"][0]["field"] == field


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """An emulator with declared contacts, two tokens and a read-only one."""
    with Sandbox(
        tokens=[TOKEN, "second-token"],
        read_only_tokens=["reader-token"],
        contacts=[{"user_id": "42", "email": "Ada@Example.com"}, {"id": "lead-1"}],
    ) as running:
        yield running


# -- POST /events: accepted ------------------------------------------------------------------


def test_valid_event_is_accepted_and_stored_as_sent(emulator: Sandbox) -> None:
    sent = body(email="ada@example.com", metadata={"invite_code": "ADDAFRIEND", "seats": 3})

    response = post(emulator.url, sent)

    assert response.status_code == 202
    assert response.content == b""
    [received] = emulator.events
    assert received.body == sent
    assert (received.event_name, received.created_at) == ("invited-friend", NOW)
    assert (received.user_id, received.email, received.id) == ("42", "ada@example.com", None)
    assert received.metadata == {"invite_code": "ADDAFRIEND", "seats": 3}
    assert received.warnings == ()
    assert received.request_id == response.headers["X-Request-Id"]
    assert emulator.warnings == []
    assert emulator.stats.by_status == {202: 1}
    assert emulator.stats.events == 1


@pytest.mark.parametrize(
    "metadata",
    [
        pytest.param({"source": "desktop"}, id="string"),
        pytest.param({"load": 3.67, "seats": 3, "zero": 0}, id="numbers"),
        pytest.param({"contact_date": 1392036272}, id="date"),
        pytest.param({"article": "https://example.org/ab1de.html"}, id="link"),
        pytest.param(
            {"article": {"url": "https://example.org/ab1de.html", "value": "the dude abides"}},
            id="rich-link",
        ),
        pytest.param({"price": {"amount": 34999, "currency": "eur"}}, id="money"),
        pytest.param({f"key_{n}": n for n in range(10)}, id="ten-keys"),
        pytest.param({"note": "x" * 255}, id="255-characters"),
        pytest.param({}, id="empty"),
    ],
)
def test_every_documented_metadata_type_is_accepted_without_warning(
    emulator: Sandbox, metadata: dict[str, Any]
) -> None:
    response = post(emulator.url, body(metadata=metadata))

    assert response.status_code == 202, response.text
    [received] = emulator.events
    assert received.metadata == metadata
    assert emulator.warnings == []


@pytest.mark.parametrize(
    "identity",
    [{"user_id": "42"}, {"email": "ada@example.com"}, {"id": "5f0c1d2e3a4b5c6d7e8f9a0b"}],
    ids=["user_id", "email", "id"],
)
def test_any_one_identifier_is_enough(emulator: Sandbox, identity: dict[str, str]) -> None:
    response = post(emulator.url, {**body("user_id"), **identity})

    assert response.status_code == 202
    assert emulator.stats.events == 1


# -- POST /events: refused -------------------------------------------------------------------

NOT_JSON = object()

REFUSALS = [
    pytest.param(b"{not json", "parameter_invalid", None, id="not-json"),
    pytest.param(b'{"event_name": "a", "created_at": NaN}', "parameter_invalid", None, id="nan"),
    pytest.param(b"\xff\xfe", "parameter_invalid", None, id="not-utf8"),
    pytest.param(b"[" * 5000 + b"]" * 5000, "parameter_invalid", None, id="deep-nesting"),
    pytest.param([body()], "parameter_invalid", None, id="array-body"),
    pytest.param("invited-friend", "parameter_invalid", None, id="string-body"),
    pytest.param(body("event_name"), "parameter_not_found", "event_name", id="no-event_name"),
    pytest.param(body("created_at"), "parameter_not_found", "created_at", id="no-created_at"),
    pytest.param(body("user_id"), "parameter_not_found", "user_id", id="no-identifier"),
    pytest.param(body(event_name=7), "parameter_invalid", "event_name", id="name-number"),
    pytest.param(body(event_name=""), "parameter_invalid", "event_name", id="name-empty"),
    pytest.param(body(created_at="1700000000"), "parameter_invalid", "created_at", id="ts-str"),
    pytest.param(body(created_at=1.7e9), "parameter_invalid", "created_at", id="ts-float"),
    pytest.param(body(created_at=True), "parameter_invalid", "created_at", id="ts-bool"),
    pytest.param(body(created_at=None), "parameter_invalid", "created_at", id="ts-null"),
    pytest.param(body(created_at=-1), "parameter_invalid", "created_at", id="ts-negative"),
    pytest.param(body(user_id=42), "parameter_invalid", "user_id", id="user_id-number"),
    pytest.param(body(user_id=""), "parameter_invalid", "user_id", id="user_id-empty"),
    pytest.param(body(email=None), "parameter_invalid", "email", id="email-null"),
    pytest.param(body(id=["x"]), "parameter_invalid", "id", id="id-list"),
    pytest.param(body(metadata=[1]), "parameter_invalid", "metadata", id="metadata-list"),
    pytest.param(body(metadata="a=b"), "parameter_invalid", "metadata", id="metadata-str"),
    pytest.param(body(metadata=None), "parameter_invalid", "metadata", id="metadata-null"),
    pytest.param(body(metadata={"ok": True}), "parameter_invalid", "metadata.ok", id="bool"),
    pytest.param(body(metadata={"x": None}), "parameter_invalid", "metadata.x", id="null"),
    pytest.param(body(metadata={"x": [1, 2]}), "parameter_invalid", "metadata.x", id="list"),
    pytest.param(body(metadata={"x": {"a": 1}}), "parameter_invalid", "metadata.x", id="object"),
    pytest.param(
        body(metadata={"x": {"url": "https://a.example", "value": "v", "more": 1}}),
        "parameter_invalid",
        "metadata.x",
        id="rich-link-extra-key",
    ),
    pytest.param(
        body(metadata={"x": {"url": "ftp://a.example/f", "value": "v"}}),
        "parameter_invalid",
        "metadata.x",
        id="rich-link-not-http",
    ),
    pytest.param(
        body(metadata={"x": {"url": "https://a.example", "value": 3}}),
        "parameter_invalid",
        "metadata.x",
        id="rich-link-value-number",
    ),
    pytest.param(
        body(metadata={"p": {"amount": 0, "currency": "eur"}}),
        "parameter_invalid",
        "metadata.p",
        id="money-zero",
    ),
    pytest.param(
        body(metadata={"p": {"amount": 349.99, "currency": "eur"}}),
        "parameter_invalid",
        "metadata.p",
        id="money-float",
    ),
    pytest.param(
        body(metadata={"p": {"amount": True, "currency": "eur"}}),
        "parameter_invalid",
        "metadata.p",
        id="money-bool",
    ),
    pytest.param(
        body(metadata={"p": {"amount": 100, "currency": ""}}),
        "parameter_invalid",
        "metadata.p",
        id="money-no-currency",
    ),
    pytest.param(
        body(metadata={"p": {"amount": 100}}), "parameter_invalid", "metadata.p", id="money-half"
    ),
]


@pytest.mark.parametrize(("sent", "code", "field"), REFUSALS)
def test_invalid_event_is_refused_with_400(
    emulator: Sandbox, sent: Any, code: str, field: str | None
) -> None:
    response = post(emulator.url, sent)

    assert_error(response, 400, code, field)
    assert emulator.events == []
    assert emulator.stats.by_status == {400: 1}


def test_every_mistake_in_a_body_is_listed(emulator: Sandbox) -> None:
    response = post(emulator.url, {"created_at": "now", "user_id": 1, "metadata": {"a": None}})

    assert response.status_code == 400
    fields = [error["field"] for error in response.json()["errors"]]
    assert fields == ["event_name", "created_at", "user_id", "metadata.a"]


# -- POST /events: accepted like Intercom, with warnings ---------------------------------------

ELEVEN_KEYS = {f"key_{n:02}": n for n in range(12)}

WARNINGS = [
    pytest.param(body(created_at=NOW * 1000), ["created_at_milliseconds"], {}, id="milliseconds"),
    pytest.param(
        body(event_name="Invited-Friend"),
        ["event_name_case"],
        {"event_name": "invited-friend"},
        id="upper-case",
    ),
    pytest.param(
        body(event_name="invited.friend$x"),
        ["event_name_characters"],
        {"event_name": "invited-friend-x"},
        id="dot-dollar",
    ),
    pytest.param(
        body(metadata=ELEVEN_KEYS),
        ["metadata_keys_ignored"],
        {"metadata": {f"key_{n:02}": n for n in range(10)}},
        id="twelve-keys",
    ),
    pytest.param(body(metadata={"note": "x" * 256}), ["string_too_long"], {}, id="long-value"),
    pytest.param(body(user_id="u" * 300), ["string_too_long"], {}, id="long-user_id"),
    pytest.param(
        body(metadata={"a": {"url": "https://a.example", "value": "v" * 256}}),
        ["string_too_long"],
        {},
        id="long-rich-link-value",
    ),
    pytest.param(body(metadata={"a.b": 1}), ["metadata_key_characters"], {}, id="key-dot"),
    pytest.param(
        body(metadata={"Plan": "pro", "plan": "free"}), ["metadata_key_case"], {}, id="key-case"
    ),
    pytest.param(
        body(metadata={"signup_date": "yesterday"}), ["metadata_date"], {}, id="date-string"
    ),
    pytest.param(
        body(metadata={"signup_date": NOW * 1000}), ["metadata_date"], {}, id="date-millis"
    ),
    pytest.param(body(metdata={"a": 1}), ["unknown_parameter"], {}, id="unknown-key"),
]


@pytest.mark.parametrize(("sent", "codes", "stored"), WARNINGS)
def test_silent_mistakes_are_accepted_and_warned(
    emulator: Sandbox, sent: dict[str, Any], codes: list[str], stored: dict[str, Any]
) -> None:
    response = post(emulator.url, sent)

    assert response.status_code == 202, response.text
    [received] = emulator.events
    assert [warning.code for warning in received.warnings] == codes
    assert all(warning.message for warning in received.warnings)
    assert emulator.stats.warnings == len(codes)
    assert received.body == sent
    for name, value in stored.items():
        assert getattr(received, name) == value


LONG = 256  # one past the 255 characters of Intercom Help Center article 175


@pytest.mark.parametrize(
    ("sent", "field"),
    [
        (body(event_name="e" * LONG), "event_name"),
        (body(user_id="u" * LONG), "user_id"),
        (body(email="a" * (LONG - 12) + "@example.com"), "email"),
        (body(id="i" * LONG), "id"),
        (body(metadata={"note": "x" * LONG}), "metadata.note"),
        (body(metadata={"link": "https://example.org/" + "p" * LONG}), "metadata.link"),
        (
            body(metadata={"a": {"url": "https://a.example", "value": "v" * LONG}}),
            "metadata.a.value",
        ),
    ],
    ids=["name", "user_id", "email", "id", "string", "link", "rich-link-value"],
)
def test_string_too_long_for_every_string_the_model_bounds(
    emulator: Sandbox, sent: dict[str, Any], field: str
) -> None:
    response = post(emulator.url, sent)

    assert response.status_code == 202
    assert [(warning.code, warning.field) for warning in emulator.warnings] == [
        ("string_too_long", field)
    ]


@pytest.mark.parametrize(
    "sent",
    [
        body(event_name="e" * 255, user_id="u" * 255, metadata={"note": "x" * 255}),
        body(metadata={"a": {"url": "https://a.example/" + "p" * LONG, "value": "v"}}),
        body(metadata={"price": {"amount": 1, "currency": "c" * LONG}}),
        body(metadata={"k" * LONG: 1}),
    ],
    ids=["255-characters", "rich-link-url", "currency", "key"],
)
def test_no_string_too_long_for_strings_the_model_does_not_bound(
    emulator: Sandbox, sent: dict[str, Any]
) -> None:
    assert post(emulator.url, sent).status_code == 202
    assert emulator.warnings == []


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({"Content-Type": "text/plain"}, "content_type"),
        ({"Accept": "*/*"}, "accept_header"),
    ],
    ids=["content-type", "accept"],
)
def test_header_mistakes_are_warned(
    emulator: Sandbox, headers: dict[str, str], code: str | None
) -> None:
    assert post(emulator.url, headers=headers).status_code == 202
    assert [warning.code for warning in emulator.warnings] == ([code] if code else [])


def test_missing_intercom_version_is_warned(emulator: Sandbox) -> None:
    response = requests.post(
        emulator.url + "/events",
        json=body(),
        headers={"Authorization": f"Bearer {TOKEN}", "Accept": "application/json"},
        timeout=5,
    )

    assert response.status_code == 202
    assert [warning.code for warning in emulator.warnings] == ["intercom_version_missing"]


# -- Intercom-Version ------------------------------------------------------------------------

#: Every version Intercom names (API notes, "Added facts"; the 2.11 and 2.16 OpenAPI enums).
VERSIONS = [
    *(f"1.{minor}" for minor in range(5)),
    *(f"2.{minor}" for minor in range(17)),
    "Unstable",
    "Preview",
]


def test_known_versions_are_the_ones_intercom_names() -> None:
    assert list(KNOWN_API_VERSIONS) == VERSIONS
    # The 2.11 OpenAPI file's own enum (tests/data) is a subset.
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))["schemas"]["intercom_version"]
    assert set(schema["enum"]) <= set(KNOWN_API_VERSIONS)


@pytest.mark.parametrize("version", VERSIONS)
def test_every_known_version_is_accepted(emulator: Sandbox, version: str) -> None:
    assert post(emulator.url, headers={"Intercom-Version": version}).status_code == 202
    listed = requests.get(
        f"{emulator.url}/events?type=user&user_id=42",
        headers={**HEADERS, "Intercom-Version": version},
        timeout=5,
    )
    assert listed.status_code == 200
    assert emulator.warnings == []


@pytest.mark.parametrize(
    "version", ["2.17", "3.0", "1.5", "2.011", "v2.11", "2", "preview", "unstable", "latest", ""]
)
@pytest.mark.parametrize("path", ["/events", "/events/summaries", "/events?type=user&user_id=42"])
def test_unknown_version_is_refused_with_400(emulator: Sandbox, version: str, path: str) -> None:
    headers = {**HEADERS, "Intercom-Version": version, "Content-Type": "application/json"}
    method = "GET" if "?" in path else "POST"
    sent = {"user_id": "42", "event_summaries": GOOD_SUMMARY} if "summaries" in path else body()

    response = requests.request(method, emulator.url + path, json=sent, headers=headers, timeout=5)

    assert_error(response, 400, "intercom_version_invalid")
    assert response.json()["errors"][0]["message"] == "The requested version could not be found"
    assert emulator.events == []
    assert emulator.summaries == []


def test_the_token_is_checked_before_the_version(emulator: Sandbox) -> None:
    response = post(emulator.url, token="nobody", headers={"Intercom-Version": "9.9"})
    assert_error(response, 401, "unauthorized")


# -- tokens --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token", "Basic dGVzdC10b2tlbjo=", "Bearer ", TOKEN],
    ids=["missing", "wrong", "basic", "empty", "no-scheme"],
)
def test_bad_token_is_refused_with_401(emulator: Sandbox, authorization: str | None) -> None:
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    response = requests.post(emulator.url + "/events", json=body(), headers=headers, timeout=5)

    assert_error(response, 401, "unauthorized")
    assert response.json()["errors"][0]["message"] == "Access Token Invalid"
    assert "X-RateLimit-Limit" not in response.headers
    assert emulator.events == []


def test_every_configured_token_is_accepted(sandbox: Sandbox) -> None:
    assert post(sandbox.url, token=TOKEN).status_code == 202
    assert post(sandbox.url, body(created_at=NOW - 1), token="second-token").status_code == 202
    assert sandbox.stats.events == 2


def test_read_only_token_can_read_but_not_write(sandbox: Sandbox) -> None:
    assert_error(post(sandbox.url, token="reader-token"), 403, "forbidden")
    assert_error(
        post(sandbox.url, {"user_id": "42"}, path="/events/summaries", token="reader-token"),
        403,
        "forbidden",
    )
    assert get(sandbox.url, "type=user&user_id=42", token="reader-token").status_code == 200
    assert sandbox.events == []
    assert sandbox.stats.by_status == {403: 2, 200: 1}


# -- contacts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("identity", "status"),
    [
        ({"user_id": "42"}, 202),
        ({"email": "ada@example.com"}, 202),
        ({"email": "ADA@EXAMPLE.COM"}, 202),
        ({"id": "lead-1"}, 202),
        ({"user_id": "43"}, 404),
        ({"email": "bob@example.com"}, 404),
        ({"id": "lead-2"}, 404),
        ({"user_id": "43", "email": "ada@example.com"}, 202),
    ],
    ids=lambda value: json.dumps(value) if isinstance(value, dict) else str(value),
)
def test_declared_contacts_only(sandbox: Sandbox, identity: dict[str, str], status: int) -> None:
    response = post(sandbox.url, {**body("user_id"), **identity})

    assert response.status_code == status
    if status == 404:
        assert_error(response, 404, "not_found")
        assert response.json()["errors"][0]["message"] == "User Not Found"
    assert sandbox.stats.events == (1 if status == 202 else 0)


def test_contact_declared_at_run_time_is_then_accepted(sandbox: Sandbox) -> None:
    for attempt in range(3):
        assert post(sandbox.url, body(user_id="late")).status_code == 404, attempt

    contact = sandbox.add_contact(user_id="late")

    assert post(sandbox.url, body(user_id="late")).status_code == 202
    [received] = sandbox.events
    assert received.intercom_user_id == contact.id
    assert sandbox.stats.by_status == {404: 3, 202: 1}


def test_accept_all_contacts_creates_each_contact_once(emulator: Sandbox) -> None:
    post(emulator.url, body(user_id="a", email="a@example.com"))
    post(emulator.url, body(email="a@example.com", created_at=NOW - 1))
    post(emulator.url, body(user_id="b"))

    assert sorted(contact.user_id or "" for contact in emulator.contacts) == ["a", "b"]
    first, second, _ = emulator.events
    assert first.intercom_user_id == second.intercom_user_id


# -- de-duplication ----------------------------------------------------------------------------


def test_duplicate_is_answered_202_counted_and_not_stored(emulator: Sandbox) -> None:
    responses = [post(emulator.url, body(metadata={"try": n})) for n in range(3)]

    assert [response.status_code for response in responses] == [202, 202, 202]
    [stored] = emulator.events
    assert stored.metadata == {"try": 0}
    assert emulator.stats.duplicates == 2
    assert emulator.stats.by_status == {202: 3}


@pytest.mark.parametrize(
    ("second", "duplicate"),
    [
        (body(), True),
        (body(event_name="INVITED-FRIEND"), True),
        (body(event_name="invited.friend"), True),
        (body(created_at=NOW + 1), False),
        (body(event_name="invited-friends"), False),
        (body(user_id="43"), False),
    ],
    ids=["same", "case", "dot", "other-second", "other-name", "other-contact"],
)
def test_duplicate_key_is_contact_name_and_created_at(
    emulator: Sandbox, second: dict[str, Any], duplicate: bool
) -> None:
    post(emulator.url, body())
    post(emulator.url, second)

    assert emulator.stats.duplicates == int(duplicate)
    assert emulator.stats.events == (1 if duplicate else 2)


def test_five_distinct_events_of_one_name_in_one_second_are_one_stored_and_four_duplicates(
    emulator: Sandbox,
) -> None:
    sent = [body(metadata={"invite_code": f"CODE-{n}"}) for n in range(5)]

    answers = [post(emulator.url, item) for item in sent]

    assert [answer.status_code for answer in answers] == [202] * 5
    [stored] = emulator.events
    assert stored.body == sent[0]
    assert emulator.stats.duplicates == 4
    assert [duplicate.body for duplicate in emulator.duplicates] == sent[1:]
    assert {duplicate.stored for duplicate in emulator.duplicates} == {stored}
    assert [duplicate.request_id for duplicate in emulator.duplicates] == [
        answer.headers["X-Request-Id"] for answer in answers[1:]
    ]
    shown = requests.get(emulator.url + "/_sandbox/duplicates", timeout=5).json()
    assert shown["count"] == 4
    assert [item["body"] for item in shown["duplicates"]] == sent[1:]
    assert {item["duplicate_of"]["request_id"] for item in shown["duplicates"]} == {
        answers[0].headers["X-Request-Id"]
    }


def test_one_event_delivered_three_times_is_stored_once(emulator: Sandbox) -> None:
    answers = [post(emulator.url, body()) for _ in range(3)]

    assert [answer.status_code for answer in answers] == [202] * 3
    assert len(emulator.events) == 1
    assert emulator.stats.duplicates == 2
    assert [duplicate.body for duplicate in emulator.duplicates] == [body(), body()]


@pytest.mark.parametrize(
    "again",
    [
        {"email": "ada@example.com"},
        {"email": "ADA@EXAMPLE.COM"},
        {"user_id": "42", "email": "ada@example.com"},
        "intercom-id",
    ],
    ids=["email", "email-case", "both", "intercom-id"],
)
def test_a_declared_contact_is_one_contact_whichever_identifier_names_it(
    sandbox: Sandbox, again: dict[str, str] | str
) -> None:
    [ada, _] = sandbox.contacts
    identity = {"id": ada.id} if again == "intercom-id" else again
    assert isinstance(identity, dict)

    first = post(sandbox.url, body())
    second = post(sandbox.url, {**body("user_id"), **identity})

    assert (first.status_code, second.status_code) == (202, 202)
    assert len(sandbox.events) == 1
    [duplicate] = sandbox.duplicates
    assert duplicate.stored.intercom_user_id == ada.id
    assert duplicate.body == {**body("user_id"), **identity}


def test_without_declared_contacts_the_identifiers_given_name_the_contact(
    emulator: Sandbox,
) -> None:
    # Nothing says user 42 and ada@example.com are one person: two contacts, two events.
    post(emulator.url, body())
    post(emulator.url, body("user_id", email="ada@example.com"))
    assert emulator.stats.duplicates == 0
    # An event naming both makes one contact of them; later events by either are its.
    post(emulator.url, body(user_id="7", email="bob@example.com"))
    post(emulator.url, body("user_id", email="BOB@example.com"))
    post(emulator.url, body(user_id="7"))

    assert len(emulator.events) == 3
    assert emulator.stats.duplicates == 2
    assert len(emulator.contacts) == 3


def test_duplicates_kept_are_bounded_but_counted_exactly(emulator: Sandbox) -> None:
    emulator.configure(log_size=2)
    for n in range(6):
        post(emulator.url, body(metadata={"try": n}))

    assert emulator.stats.duplicates == 5
    assert [duplicate.body["metadata"] for duplicate in emulator.duplicates] == [
        {"try": 4},
        {"try": 5},
    ]
    assert requests.get(emulator.url + "/_sandbox/duplicates", timeout=5).json()["count"] == 5

    emulator.reset()

    assert emulator.duplicates == []
    assert post(emulator.url, body()).status_code == 202
    assert emulator.stats.duplicates == 0


def test_duplicates_count_against_the_rate_limit(emulator: Sandbox) -> None:
    emulator.configure(rate_limit=2)
    reset = pin_mid_window(emulator)

    answers = [post(emulator.url) for _ in range(3)]

    assert [answer.status_code for answer in answers] == [202, 202, 429]
    assert {answer.headers["X-RateLimit-Reset"] for answer in answers} == {str(reset)}
    assert emulator.stats.duplicates == 1


# -- active event names ------------------------------------------------------------------------


def test_new_event_name_past_the_limit_is_refused_with_422(emulator: Sandbox) -> None:
    emulator.configure(max_event_names=2)
    assert post(emulator.url, body(event_name="one")).status_code == 202
    assert post(emulator.url, body(event_name="two")).status_code == 202

    refused = post(emulator.url, body(event_name="three"))

    assert_error(refused, 422, "422")
    assert refused.json()["errors"][0]["message"] == "Cannot have more than 2 active event names"
    assert post(emulator.url, body(event_name="one", created_at=NOW - 5)).status_code == 202


def test_120_active_event_names_counted_as_intercom_stores_them(emulator: Sandbox) -> None:
    assert emulator.settings.max_event_names == 120
    for n in range(120):
        assert post(emulator.url, body(event_name=f"did-thing-{n}", created_at=NOW - n)).ok

    # Other spellings of a name it has are that name (case-insensitive, . and $ as -).
    for again in ("DID-THING-0", "did.thing.1", "Did$Thing$2"):
        assert post(emulator.url, body(event_name=again, created_at=NOW - 999)).status_code == 202
    refusals = [
        post(emulator.url, body(event_name=name)) for name in ("did-thing-120", "Brand.New")
    ]

    for refused in refusals:
        assert_error(refused, 422, "422")
        assert refused.json()["errors"][0]["message"] == (
            "Cannot have more than 120 active event names"
        )
    stored = {event.event_name for event in emulator.events}
    assert stored == {f"did-thing-{n}" for n in range(120)}
    assert len(emulator.events) == 123
    assert emulator.stats.by_status == {202: 123, 422: 2}


def test_only_stored_events_make_a_name_active(sandbox: Sandbox) -> None:
    sandbox.configure(max_event_names=1)
    assert post(sandbox.url, body(event_name="a", user_id="nobody")).status_code == 404
    assert_error(post(sandbox.url, body(event_name="b", created_at=-1)), 400, "parameter_invalid")

    assert post(sandbox.url, body(event_name="c")).status_code == 202
    assert post(sandbox.url, body(event_name="C", created_at=NOW - 1)).status_code == 202
    assert post(sandbox.url, body(event_name="a")).status_code == 422


# -- rate limit ------------------------------------------------------------------------------


def test_rate_limit_headers_429_and_refill_at_reset() -> None:
    clock = Clock(1_700_000_003.5)
    with Sandbox(tokens=[TOKEN, "second-token"], rate_limit=3, clock=clock) as sandbox:
        answers = [post(sandbox.url, body(created_at=NOW - n)) for n in range(4)]

        assert [answer.status_code for answer in answers] == [202, 202, 202, 429]
        assert [answer.headers["X-RateLimit-Remaining"] for answer in answers] == [
            "2",
            "1",
            "0",
            "0",
        ]
        assert {answer.headers["X-RateLimit-Limit"] for answer in answers} == {"3"}
        assert {answer.headers["X-RateLimit-Reset"] for answer in answers} == {"1700000010"}
        assert_error(answers[3], 429, "rate_limit_exceeded")
        assert answers[3].json()["errors"][0]["message"] == "Exceeded rate limit of 3 in 10_seconds"
        # Refused and unauthorized calls: the first counts, the second does not.
        assert post(sandbox.url, b"{").status_code == 429
        assert post(sandbox.url, token="nobody").status_code == 401
        # Another token has a budget of its own.
        other = post(sandbox.url, body(created_at=NOW - 9), token="second-token")
        assert other.headers["X-RateLimit-Remaining"] == "2"

        clock.now = 1_700_000_010.0
        refilled = post(sandbox.url, body(created_at=NOW - 10))

        assert refilled.status_code == 202
        assert refilled.headers["X-RateLimit-Remaining"] == "2"
        assert refilled.headers["X-RateLimit-Reset"] == "1700000020"
        assert sandbox.stats.rate_limited == 2
        assert sandbox.stats.events == 5


def test_short_real_window_refills(emulator: Sandbox) -> None:
    # A 1-s window: 3 calls land in one on a loaded machine too (the rounding of fractional
    # windows' ends is test_sandbox_logic's).
    emulator.configure(rate_limit=2, rate_window=1.0)
    # A 429 once 3 calls land in one 1-s window: post until one does.
    deadline = time.monotonic() + 10
    sent = 0
    while post(emulator.url, body(created_at=NOW - 1000 - sent)).status_code != 429:
        sent += 1
        assert time.monotonic() < deadline, f"no 429 after {sent} calls in 10 s"
    sent_at = time.time()
    reset = post(emulator.url, body(created_at=NOW - 99)).headers["X-RateLimit-Reset"]
    answered_at = time.time()

    time.sleep(1.1)  # past the window that held the last call

    assert post(emulator.url, body(created_at=NOW - 100)).status_code == 202
    # The end of the 1-s window that held the call, in whole seconds.
    assert sent_at < int(reset) <= answered_at + 1


def test_unlimited_sends_no_rate_headers(emulator: Sandbox) -> None:
    emulator.configure(rate_limit=0)
    answers = [post(emulator.url, body(created_at=NOW - n)) for n in range(20)]

    assert {answer.status_code for answer in answers} == {202}
    assert "X-RateLimit-Limit" not in answers[0].headers


# -- GET /events -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def openapi() -> dict[str, Any]:
    """Intercom's 2.11 schemas (tests/data/intercom-openapi, copied from Intercom's repo)."""
    if not SCHEMA_FILE.is_file():
        pytest.fail(f"Intercom's OpenAPI reference is missing: expected {SCHEMA_FILE}")
    schemas: dict[str, Any] = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))["schemas"]
    return schemas


def test_list_events_newest_first_in_pages(sandbox: Sandbox, openapi: dict[str, Any]) -> None:
    for age in range(5):
        post(sandbox.url, body(event_name=f"did-{age}", created_at=NOW - age * 60))
    post(sandbox.url, body(event_name="long-ago", created_at=NOW - 91 * DAY))
    post(sandbox.url, body(event_name="not-quite", created_at=NOW - 89 * DAY))

    names: list[str] = []
    url: str | None = f"{sandbox.url}/events?type=user&user_id=42&per_page=2"
    pages = 0
    while url:
        page = requests.get(url, headers=HEADERS, timeout=5)
        assert page.status_code == 200
        answer = page.json()
        assert answer["type"] == "event.summary"
        assert (answer["user_id"], answer["email"]) == ("42", "Ada@Example.com")
        assert answer["intercom_user_id"] == sandbox.contacts[0].id
        for item in answer["events"]:
            jsonschema.validate(item, openapi["data_event"])
            assert item["type"] == "event"
        names += [item["event_name"] for item in answer["events"]]
        url = answer["pages"].get("next")
        assert url is None or url.startswith(sandbox.url + "/events?")
        pages += 1

    assert names == [*(f"did-{age}" for age in range(5)), "not-quite"]
    assert pages == 3


def test_list_events_default_page_is_15(emulator: Sandbox) -> None:
    for n in range(16):
        post(emulator.url, body(created_at=NOW - n))

    answer = get(emulator.url, "type=user&user_id=42").json()

    assert len(answer["events"]) == 15
    assert "page=2" in answer["pages"]["next"]


def test_listed_event_looks_like_intercoms(emulator: Sandbox) -> None:
    post(emulator.url, body(email="ada@example.com", metadata={"price": 3}))
    [contact] = emulator.contacts

    [item] = get(emulator.url, f"type=user&intercom_user_id={contact.id}").json()["events"]

    assert item == {
        "type": "event",
        "event_name": "invited-friend",
        "created_at": NOW,
        "user_id": "42",
        "intercom_user_id": contact.id,
        "email": "ada@example.com",
        "metadata": {"price": 3},
    }


def test_summary_counts_every_event_and_submitted_summaries(
    sandbox: Sandbox, openapi: dict[str, Any]
) -> None:
    for n in range(3):
        post(sandbox.url, body(event_name="logged-in", created_at=NOW - n * DAY))
    post(sandbox.url, body(event_name="logged-in", created_at=NOW - 200 * DAY))
    post(sandbox.url, body(event_name="upgraded"))
    summaries = {"event_name": "upgraded", "count": 4, "first": NOW - 300 * DAY, "last": NOW}
    post(sandbox.url, {"user_id": "42", "event_summaries": summaries}, path="/events/summaries")

    answer = get(sandbox.url, "type=user&email=ada%40example.com&summary=true").json()

    jsonschema.validate(answer, openapi["data_event_summary"])
    assert "pages" not in answer
    counted = {item["name"]: item for item in answer["events"]}
    assert {name: item["count"] for name, item in counted.items()} == {
        "logged-in": 4,
        "upgraded": 5,
    }
    assert counted["upgraded"]["first"] == time.strftime(
        "%Y-%m-%dT%H:%M:%S.000+00:00", time.gmtime(NOW - 300 * DAY)
    )
    assert counted["logged-in"]["last"] == time.strftime(
        "%Y-%m-%dT%H:%M:%S.000+00:00", time.gmtime(NOW)
    )


@pytest.mark.parametrize(
    ("query", "status", "code", "field"),
    [
        ("user_id=42", 400, "parameter_not_found", "type"),
        ("type=lead&user_id=42", 400, "parameter_invalid", "type"),
        ("type=user", 400, "parameter_not_found", "user_id"),
        ("type=user&user_id=42&email=ada%40example.com", 400, "parameter_invalid", "email"),
        ("type=user&user_id=", 400, "parameter_invalid", "user_id"),
        ("type=user&user_id=42&per_page=0", 400, "parameter_invalid", "per_page"),
        ("type=user&user_id=42&per_page=ten", 400, "parameter_invalid", "per_page"),
        ("type=user&user_id=42&summary=yes", 400, "parameter_invalid", "summary"),
        ("type=user&user_id=nobody", 404, "not_found", None),
        ("type=user&intercom_user_id=nobody", 404, "not_found", None),
    ],
)
def test_list_events_refusals(
    sandbox: Sandbox, query: str, status: int, code: str, field: str | None
) -> None:
    assert_error(get(sandbox.url, query), status, code, field)


# -- POST /events/summaries ------------------------------------------------------------------


def test_summaries_are_accepted_and_recorded(emulator: Sandbox) -> None:
    sent = {
        "user_id": "42",
        "event_summaries": {
            "event_name": "invited-friend",
            "count": 3,
            "first": NOW - 9,
            "last": NOW,
        },
    }

    response = post(emulator.url, sent, path="/events/summaries")

    assert response.status_code == 200
    assert response.content == b""
    [summary] = emulator.summaries
    assert (summary.user_id, summary.event_name, summary.count) == ("42", "invited-friend", 3)
    assert (summary.first, summary.last) == (NOW - 9, NOW)
    assert summary.body == sent
    assert emulator.warnings == []
    assert emulator.stats.summaries == 1


GOOD_SUMMARY = {"event_name": "invited-friend", "count": 1, "first": NOW, "last": NOW}


@pytest.mark.parametrize(
    ("sent", "code", "field"),
    [
        ({"event_summaries": GOOD_SUMMARY}, "parameter_not_found", "user_id"),
        ({"user_id": 42, "event_summaries": GOOD_SUMMARY}, "parameter_invalid", "user_id"),
        ({"user_id": "42"}, "parameter_not_found", "event_summaries"),
        ({"user_id": "42", "event_summaries": [GOOD_SUMMARY]}, "parameter_invalid", None),
        (
            {"user_id": "42", "event_summaries": {**GOOD_SUMMARY, "count": "3"}},
            "parameter_invalid",
            "event_summaries.count",
        ),
        (
            {"user_id": "42", "event_summaries": {**GOOD_SUMMARY, "count": 0}},
            "parameter_invalid",
            "event_summaries.count",
        ),
        (
            {"user_id": "42", "event_summaries": {**GOOD_SUMMARY, "first": NOW + 1}},
            "parameter_invalid",
            "event_summaries.first",
        ),
        (
            {"user_id": "42", "event_summaries": {"count": 1, "first": NOW, "last": NOW}},
            "parameter_not_found",
            "event_summaries.event_name",
        ),
    ],
    ids=[
        "no-user_id",
        "user_id-number",
        "no-summaries",
        "summaries-list",
        "count-string",
        "count-zero",
        "first-after-last",
        "no-name",
    ],
)
def test_invalid_summaries_are_refused(
    emulator: Sandbox, sent: dict[str, Any], code: str, field: str | None
) -> None:
    assert_error(post(emulator.url, sent, path="/events/summaries"), 400, code, field)
    assert emulator.summaries == []


def test_summaries_for_an_unknown_contact_are_not_found(sandbox: Sandbox) -> None:
    sent = {"user_id": "nobody", "event_summaries": GOOD_SUMMARY}
    assert_error(post(sandbox.url, sent, path="/events/summaries"), 404, "not_found")


# -- routes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/admins", 404),
        ("GET", "/contacts", 405),
        ("DELETE", "/events", 405),
        ("GET", "/events/summaries", 405),
    ],
)
def test_unknown_routes(emulator: Sandbox, method: str, path: str, status: int) -> None:
    response = requests.request(method, emulator.url + path, headers=HEADERS, timeout=5)
    assert response.status_code == status
    assert response.json()["type"] == "error.list"


# -- faults and latency ------------------------------------------------------------------------


def test_scripted_faults_happen_in_order(emulator: Sandbox) -> None:
    emulator.script("500", "429", "drop", "stall:0.5", "503", "408", "409", "ok")

    server_error = post(emulator.url, body(created_at=NOW - 1))
    throttled_at = time.time()
    throttled = post(emulator.url, body(created_at=NOW - 2))
    with pytest.raises(requests.ConnectionError):
        post(emulator.url, body(created_at=NOW - 3))
    with pytest.raises(requests.ReadTimeout):
        requests.post(
            emulator.url + "/events",
            json=body(created_at=NOW - 4),
            headers=HEADERS,
            timeout=(2, 0.1),
        )
    others = [post(emulator.url, body(created_at=NOW - 5 - n)) for n in range(4)]

    assert_error(server_error, 500, "server_error")
    assert_error(throttled, 429, "rate_limit_exceeded")
    assert throttled.headers["X-RateLimit-Remaining"] == "0"
    # The end of the window that held the call: later than the call, whatever came after.
    assert int(throttled.headers["X-RateLimit-Reset"]) > throttled_at
    assert_error(others[0], 503, "server_error")
    assert_error(others[1], 408, "request_timeout")
    assert_error(others[2], 409, "conflict")
    assert others[3].status_code == 202
    # Errors, 429 and drops are not handled; a stall is handled, only its answer is held.
    assert [event.created_at for event in emulator.events] == [NOW - 4, NOW - 8]
    stats = emulator.stats
    assert stats.faults == {"error": 4, "throttle": 1, "drop": 1, "stall": 1}
    assert stats.dropped == 1
    assert stats.rate_limited == 1
    assert [record.fault for record in emulator.requests] == [
        "500",
        "429",
        "drop",
        "stall:0.5",
        "503",
        "408",
        "409",
        None,
    ]
    assert [record.status for record in emulator.requests][:3] == [500, 429, None]


def test_random_faults_are_repeatable_under_a_seed() -> None:
    def statuses(seed: int) -> list[int]:
        with Sandbox(tokens=[TOKEN], error_rate=0.3, throttle_rate=0.2, seed=seed) as sandbox:
            return [post(sandbox.url, body(created_at=NOW - n)).status_code for n in range(40)]

    first, again, other = statuses(7), statuses(7), statuses(8)

    assert first == again
    assert first != other
    assert set(first) == {202, 429, 500}


@pytest.mark.parametrize(
    ("setting", "check"),
    [
        ({"error_rate": 1.0, "error_status": 502}, 502),
        ({"throttle_rate": 1.0}, 429),
        ({"drop_rate": 1.0}, None),
    ],
    ids=["error", "throttle", "drop"],
)
def test_fault_rate_of_one_hits_every_request(
    emulator: Sandbox, setting: dict[str, Any], check: int | None
) -> None:
    emulator.configure(**setting)
    for _ in range(3):
        if check is None:
            with pytest.raises(requests.ConnectionError):
                post(emulator.url)
        else:
            assert post(emulator.url).status_code == check
    assert emulator.events == []
    assert emulator.stats.requests == 3


def test_random_stall_holds_the_answer_for_stall_seconds(emulator: Sandbox) -> None:
    emulator.configure(stall_rate=1.0, stall_seconds=0.3)
    started = time.monotonic()

    response = post(emulator.url)

    assert response.status_code == 202
    assert 0.3 <= time.monotonic() - started < 5  # not the default 30-s stall
    assert emulator.stats.faults == {"stall": 1}


def test_latency_and_jitter(emulator: Sandbox) -> None:
    emulator.configure(latency=0.15)
    started = time.monotonic()
    assert post(emulator.url).status_code == 202
    assert 0.15 <= time.monotonic() - started < 5

    emulator.configure(latency=0.05, jitter=0.1, seed=3)
    for n in range(3):
        started = time.monotonic()
        post(emulator.url, body(created_at=NOW - n - 1))
        assert 0.05 <= time.monotonic() - started < 5

    # The control endpoints skip the latency: with 10 s of it, they still answer well before.
    emulator.configure(latency=10.0, jitter=0.0)
    started = time.monotonic()
    requests.get(emulator.url + "/_sandbox/stats", timeout=15)
    assert time.monotonic() - started < 5


# -- reset ---------------------------------------------------------------------------------


def test_reset_forgets_what_was_received_but_keeps_settings_and_contacts(
    sandbox: Sandbox,
) -> None:
    sandbox.configure(latency=0.01)
    post(sandbox.url)
    post(sandbox.url, body(event_name="X.y"))
    post(sandbox.url, body(user_id="stranger"))
    sandbox.script("500")

    sandbox.reset()

    assert sandbox.events == []
    assert sandbox.warnings == []
    assert sandbox.requests == []
    assert sandbox.stats.requests == 0
    assert sandbox.stats.by_status == {}
    assert sandbox.settings.latency == 0.01
    assert sandbox.script() == []
    # The same event again is new, not a duplicate; the declared contact is still known.
    assert post(sandbox.url).status_code == 202
    assert sandbox.stats.duplicates == 0
    assert sandbox.stats.events == 1


def test_reset_forgets_contacts_events_created_and_the_rate_windows(emulator: Sandbox) -> None:
    reset_at = pin_mid_window(emulator)
    emulator.configure(rate_limit=5)
    for n in range(3):
        post(emulator.url, body(user_id=f"u{n}"))
    assert len(emulator.contacts) == 3

    emulator.reset()

    assert emulator.contacts == []
    answer = post(emulator.url, body(user_id="u0"))
    assert answer.headers["X-RateLimit-Remaining"] == "4"
    assert answer.headers["X-RateLimit-Reset"] == str(reset_at)
    assert emulator.stats.events == 1
