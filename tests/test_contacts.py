"""IntercomClient.create_contact: ``POST /contacts`` (operationId CreateContact, version 2.11).

Most tests run against a small server of their own that answers as Intercom does (a contact
object on 200, an ``error.list`` on 409 for a contact that already exists, 401 for another
token), written before the emulator answered ``POST /contacts``; the last one runs against the
emulator.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from flask_intercom_events import (
    AuthenticationError,
    ConflictError,
    InvalidEventError,
    NetworkError,
    ServerError,
)
from flask_intercom_events.arguments import contact_body
from flask_intercom_events.client import IntercomClient
from flask_intercom_events.events import Event, Identity
from flask_intercom_events.sandbox import Sandbox

from .hostile import HostileServer, Peer, Received, response

TOKEN = "contacts-token"
NOWHERE = "http://127.0.0.1:9"  # nothing listens: an InvalidEventError proves nothing was sent


class FakeContacts:
    """What Intercom keeps of contacts, for ``POST /contacts``; ``script`` overrides the next
    answers (raw bytes)."""

    def __init__(self) -> None:
        self.contacts: list[dict[str, Any]] = []
        self.script: list[bytes] = []
        self._ids = (f"6{n:023x}" for n in itertools.count(1))

    def __call__(self, peer: Peer, request: Received) -> bool:
        peer.send(self.script.pop(0) if self.script else self.answer(request))
        return True

    def answer(self, request: Received) -> bytes:
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return error(401, "unauthorized", "Access Token Invalid")
        if (request.method, request.target) != ("POST", "/contacts"):
            return error(404, "not_found", "Resource Not Found")
        body = request.json()
        for contact in self.contacts:
            same = [key for key in ("external_id", "email") if body.get(key) == contact[key]]
            if any(contact[key] is not None for key in same):
                return error(
                    409,
                    "conflict",
                    f"A contact matching those details already exists with id={contact['id']}",
                )
        contact = {
            "type": "contact",
            "id": next(self._ids),
            "workspace_id": "ws1",
            "external_id": body.get("external_id"),
            "role": body.get("role", "user"),
            "email": body.get("email"),
            "custom_attributes": {},
        }
        self.contacts.append(contact)
        return response(200, json.dumps(contact).encode())


def error(status: int, code: str, message: str) -> bytes:
    body = {
        "type": "error.list",
        "request_id": f"req-{status}",
        "errors": [{"code": code, "message": message}],
    }
    return response(status, json.dumps(body).encode())


@pytest.fixture
def intercom() -> Iterator[tuple[FakeContacts, HostileServer]]:
    contacts = FakeContacts()
    with HostileServer(contacts) as server:
        yield contacts, server


@pytest.fixture
def client(intercom: tuple[FakeContacts, HostileServer]) -> Iterator[IntercomClient]:
    with IntercomClient(TOKEN, base_url=intercom[1].url, timeout=(2, 5)) as client:
        yield client


def test_create_a_user_by_external_id(
    intercom: tuple[FakeContacts, HostileServer], client: IntercomClient
) -> None:
    contact = client.create_contact(external_id="42")

    assert contact["type"] == "contact"
    assert contact["external_id"] == "42"
    assert contact["role"] == "user"
    [request] = intercom[1].received
    assert (request.method, request.target) == ("POST", "/contacts")
    assert request.json() == {"role": "user", "external_id": "42"}
    assert request.headers["content-type"] == "application/json"
    assert request.headers["accept"] == "application/json"
    assert request.headers["intercom-version"] == "2.11"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"


def test_create_a_lead_by_email_and_a_user_with_both(
    intercom: tuple[FakeContacts, HostileServer], client: IntercomClient
) -> None:
    lead = client.create_contact(role="lead", email="ada@example.com")
    user = client.create_contact(external_id="7", email="grace@example.com")

    assert (lead["role"], lead["email"], lead["external_id"]) == ("lead", "ada@example.com", None)
    assert user["id"] != lead["id"]
    assert [request.json() for request in intercom[1].received] == [
        {"role": "lead", "email": "ada@example.com"},
        {"role": "user", "external_id": "7", "email": "grace@example.com"},
    ]


def test_an_existing_contact_is_a_conflict_with_intercoms_message(
    client: IntercomClient,
) -> None:
    first = client.create_contact(external_id="42")

    with pytest.raises(ConflictError) as caught:
        client.create_contact(external_id="42")

    error = caught.value
    assert (error.status, error.code, error.request_id) == (409, "conflict", "req-409")
    assert error.message == f"A contact matching those details already exists with id={first['id']}"
    assert (error.method, error.path) == ("POST", "/contacts")


def test_other_errors_as_for_events(intercom: tuple[FakeContacts, HostileServer]) -> None:
    contacts, server = intercom
    contacts.script = [
        error(500, "server_error", "oops"),
        response(200, b"[]"),
        b"not http at all\r\n\r\n",
    ]
    with IntercomClient(TOKEN, base_url=server.url, timeout=(2, 5)) as client:
        with pytest.raises(ServerError):
            client.create_contact(external_id="1")
        with pytest.raises(NetworkError, match="JSON that is not an object"):
            client.create_contact(external_id="1")
        with pytest.raises(NetworkError):
            client.create_contact(external_id="1")
    with (
        IntercomClient("another-token", base_url=server.url) as stranger,
        pytest.raises(AuthenticationError) as caught,
    ):
        stranger.create_contact(external_id="1")
    assert caught.value.message == "Access Token Invalid"


@pytest.mark.parametrize(
    ("kwargs", "field", "match"),
    [
        ({}, "identity", "at least one of external_id or email"),
        ({"role": "admin", "external_id": "1"}, "role", "role must be 'user' or 'lead'"),
        ({"role": "User", "external_id": "1"}, "role", "role must be 'user' or 'lead'"),
        ({"role": None, "external_id": "1"}, "role", "role must be 'user' or 'lead'"),
        ({"external_id": ""}, "external_id", "external_id must not be empty"),
        ({"external_id": "   "}, "external_id", "external_id must not be empty"),
        ({"external_id": " 42"}, "external_id", "leading or trailing whitespace"),
        ({"external_id": "42\n"}, "external_id", "leading or trailing whitespace"),
        ({"external_id": 42}, "external_id", r"must be a string, got int; pass str\(42\)"),
        (
            {"external_id": "x" * 256},
            "external_id",
            "256 characters long; Intercom takes at most 255",
        ),
        ({"external_id": "ab\ud800"}, "external_id", "not valid UTF-8"),
        ({"email": "not-an-email"}, "email", "is not an email address"),
        ({"email": "a@" + "b" * 254}, "email", "256 characters long"),
        ({"external_id": "1", "email": ""}, "email", "email must not be empty"),
    ],
)
def test_arguments_refused_before_anything_is_sent(
    kwargs: dict[str, Any], field: str, match: str
) -> None:
    client = IntercomClient(TOKEN, base_url=NOWHERE)
    with pytest.raises(InvalidEventError, match=match) as caught:
        client.create_contact(**kwargs)
    assert caught.value.field == field


def test_the_longest_identifiers_pass() -> None:
    assert contact_body(role="lead", external_id="x" * 255, email=None) == {
        "role": "lead",
        "external_id": "x" * 255,
    }


# --- against the emulator, now that it answers POST /contacts --------------------------------


def test_against_the_emulator_a_created_contact_receives_events(emulator: Sandbox) -> None:
    emulator.configure(require_contacts=True)
    with IntercomClient("test-token", base_url=emulator.url) as client:
        contact = client.create_contact(external_id="ada", email="ada@example.com")
        assert (contact["type"], contact["external_id"], contact["role"]) == (
            "contact",
            "ada",
            "user",
        )
        with pytest.raises(ConflictError) as caught:
            client.create_contact(external_id="ada")
        assert caught.value.message == (
            f"A contact matching those details already exists with id={contact['id']}"
        )
        event = Event("signed-up", int(time.time()), Identity(user_id="ada"), {})
        assert client.create_event(event).status == 202
    assert [received.user_id for received in emulator.events] == ["ada"]
    assert emulator.warnings == []
