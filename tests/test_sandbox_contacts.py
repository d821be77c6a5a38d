"""The emulator's ``POST /contacts`` (CreateContact, api.intercom.io.yaml 2.11), over HTTP.

A created contact is a declared one: events for it are accepted, after the optional
``contact_visibility_delay`` that models Intercom's eventually consistent search index.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from flask_intercom_events.sandbox import Fault, Sandbox

from .clocks import Clock, pin_mid_window

TOKEN = "test-token"
NOW = int(time.time()) - 60
HEADERS = {
    "Authorization": f"Bearer {TOKEN}",
    "Accept": "application/json",
    "Intercom-Version": "2.11",
}
#: ``components.schemas.contact.required`` in api.intercom.io.yaml (2.11), plus ``type``.
CONTACT_FIELDS = [
    "type", "id", "workspace_id", "external_id", "role", "phone", "name", "avatar",
    "owner_id", "social_profiles", "has_hard_bounced", "marked_email_as_spam",
    "unsubscribed_from_emails", "created_at", "updated_at", "signed_up_at", "last_seen_at",
    "last_replied_at", "last_contacted_at", "last_email_opened_at", "last_email_clicked_at",
    "language_override", "browser", "browser_version", "browser_language", "os", "location",
]  # fmt: skip


def create(url: str, data: Any, *, token: str = TOKEN, **headers: str) -> requests.Response:
    """``POST /contacts`` with the usual Intercom headers."""
    sent = {**HEADERS, "Authorization": f"Bearer {token}", **headers}
    return requests.post(url + "/contacts", json=data, headers=sent, timeout=5)


def event(url: str, **identity: str) -> requests.Response:
    """``POST /events`` of one valid event for ``identity``."""
    sent = {"event_name": "signed-up", "created_at": NOW, **identity}
    return requests.post(url + "/events", json=sent, headers=HEADERS, timeout=5)


def assert_error(response: requests.Response, status: int, code: str) -> dict[str, Any]:
    """``response`` is an ``error.list`` whose first error has ``code``; returns that error."""
    assert response.status_code == status, response.text
    answer = response.json()
    assert answer["type"] == "error.list"
    assert answer["request_id"] == response.headers["X-Request-Id"]
    first: dict[str, Any] = answer["errors"][0]
    assert first["code"] == code
    return first


@pytest.fixture
def strict() -> Iterator[Sandbox]:
    """An emulator that only takes events for declared (or created) contacts."""
    with Sandbox(tokens=[TOKEN], read_only_tokens=["reader-token"], contacts=[]) as running:
        yield running


# -- creating ------------------------------------------------------------------------------


def test_create_a_user_answers_the_contact_object(strict: Sandbox) -> None:
    sent = {
        "role": "user",
        "external_id": "42",
        "email": "ada@example.com",
        "name": "Ada Lovelace",
        "phone": "+353871234567",
        "signed_up_at": 1571672154,
        "custom_attributes": {"paid_subscriber": True},
    }
    before = int(time.time())

    response = create(strict.url, sent)

    assert response.status_code == 200, response.text
    contact = response.json()
    assert [name for name in CONTACT_FIELDS if name not in contact] == []
    assert contact["type"] == "contact"
    assert re.fullmatch("[0-9a-f]{24}", contact["id"])
    assert (contact["role"], contact["external_id"], contact["email"]) == (
        "user",
        "42",
        "ada@example.com",
    )
    assert (contact["name"], contact["phone"]) == ("Ada Lovelace", "+353871234567")
    assert contact["signed_up_at"] == 1571672154
    assert contact["custom_attributes"] == {"paid_subscriber": True}
    assert before <= contact["created_at"] == contact["updated_at"] <= int(time.time()) + 1
    assert contact["location"]["type"] == "location"
    assert response.headers["X-Request-Id"]
    [known] = strict.contacts
    assert (known.id, known.user_id, known.email, known.role) == (
        contact["id"],
        "42",
        "ada@example.com",
        "user",
    )
    assert strict.stats.contacts_created == 1
    assert strict.stats.by_status == {200: 1}


def test_a_created_contact_is_declared_for_events(strict: Sandbox) -> None:
    assert event(strict.url, user_id="42").status_code == 404

    contact = create(strict.url, {"role": "user", "external_id": "42", "email": "a@x.io"}).json()

    assert event(strict.url, user_id="42").status_code == 202
    assert event(strict.url, email="A@X.io").status_code == 202  # the same event: a duplicate
    [stored] = strict.events
    assert stored.intercom_user_id == contact["id"]
    assert strict.stats.duplicates == 1
    listed = requests.get(
        f"{strict.url}/events?type=user&intercom_user_id={contact['id']}",
        headers=HEADERS,
        timeout=5,
    )
    assert [item["event_name"] for item in listed.json()["events"]] == ["signed-up"]


@pytest.mark.parametrize(
    "sent",
    [{"role": "lead"}, {"role": "lead", "email": "visitor@example.com"}],
    ids=["bare", "with-email"],
)
def test_a_lead_is_addressed_by_its_intercom_id_only(strict: Sandbox, sent: dict[str, str]) -> None:
    lead = create(strict.url, sent).json()

    assert (lead["role"], lead["external_id"]) == ("lead", None)
    assert lead["email"] == sent.get("email")
    assert event(strict.url, id=lead["id"]).status_code == 202
    assert event(strict.url, email="visitor@example.com").status_code == 404


def test_a_lead_declared_in_python_is_addressed_by_its_id_only(strict: Sandbox) -> None:
    lead = strict.add_contact(id="lead-1", email="visitor@example.com", role="lead")

    assert event(strict.url, id="lead-1").status_code == 202
    assert event(strict.url, email="visitor@example.com").status_code == 404
    assert lead.to_dict()["role"] == "lead"


def test_without_role_a_contact_is_a_user(strict: Sandbox) -> None:
    assert create(strict.url, {"email": "ada@example.com"}).json()["role"] == "user"
    assert create(strict.url, {"external_id": "7"}).json()["role"] == "user"


def test_contact_ids_are_repeatable_under_a_seed() -> None:
    def ids() -> list[str]:
        with Sandbox(tokens=[TOKEN], seed=5) as sandbox:
            return [create(sandbox.url, {"external_id": str(n)}).json()["id"] for n in range(3)]

    first = ids()
    assert first == ids()
    assert len(set(first)) == 3


# -- conflicts -----------------------------------------------------------------------------


def test_a_second_contact_with_an_external_id_is_a_409_naming_the_first(strict: Sandbox) -> None:
    first = create(strict.url, {"role": "user", "external_id": "42"}).json()

    again = create(strict.url, {"role": "user", "external_id": "42", "email": "b@x.io"})

    error = assert_error(again, 409, "conflict")
    assert error["message"] == (
        f"A contact matching those details already exists with id={first['id']}"
    )
    assert len(strict.contacts) == 1
    assert strict.stats.by_status == {200: 1, 409: 1}


def test_an_external_id_declared_or_seen_in_an_event_is_a_conflict_too() -> None:
    with Sandbox(tokens=[TOKEN], contacts=[{"user_id": "42"}]) as sandbox:
        [declared] = sandbox.contacts
        error = assert_error(create(sandbox.url, {"external_id": "42"}), 409, "conflict")
        assert error["message"].endswith(f"with id={declared.id}")
    with Sandbox(tokens=[TOKEN]) as sandbox:  # contacts not required: events create them
        assert event(sandbox.url, user_id="7").status_code == 202
        assert_error(create(sandbox.url, {"external_id": "7"}), 409, "conflict")


def test_a_second_user_with_an_email_is_no_conflict(strict: Sandbox) -> None:
    # Intercom documents the 409 for "a contact matching those details", and its examples are
    # of external ids; for an email nothing is said, so the emulator makes a second contact
    # and an event by that email still reaches the first one.
    first = create(strict.url, {"role": "user", "email": "ada@example.com"}).json()
    second = create(strict.url, {"role": "user", "email": "ada@example.com"})

    assert second.status_code == 200
    assert second.json()["id"] != first["id"]
    assert event(strict.url, email="ada@example.com").status_code == 202
    assert strict.events[0].intercom_user_id == first["id"]


# -- refused -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "code", "field"),
    [
        (["role", "user"], "parameter_invalid", None),
        ({}, "parameter_not_found", None),
        ({"name": "Ada"}, "parameter_not_found", None),
        ({"role": "user"}, "parameter_not_found", None),
        ({"role": "admin", "email": "a@x.io"}, "parameter_invalid", "role"),
        ({"role": "User", "email": "a@x.io"}, "parameter_invalid", "role"),
        ({"external_id": 42}, "parameter_invalid", "external_id"),
        ({"external_id": ""}, "parameter_invalid", "external_id"),
        ({"email": "not-an-email"}, "parameter_invalid", "email"),
        ({"email": ["a@x.io"]}, "parameter_invalid", "email"),
        ({"email": "a@x.io", "name": 7}, "parameter_invalid", "name"),
        ({"email": "a@x.io", "signed_up_at": "yesterday"}, "parameter_invalid", "signed_up_at"),
        ({"email": "a@x.io", "owner_id": "me"}, "parameter_invalid", "owner_id"),
        (
            {"email": "a@x.io", "unsubscribed_from_emails": "no"},
            "parameter_invalid",
            "unsubscribed_from_emails",
        ),
        ({"email": "a@x.io", "custom_attributes": [1]}, "parameter_invalid", "custom_attributes"),
    ],
    ids=[
        "array-body",
        "empty",
        "no-identity",
        "user-without-identity",
        "role-unknown",
        "role-case",
        "external_id-number",
        "external_id-empty",
        "email-invalid",
        "email-list",
        "name-number",
        "signed_up_at-string",
        "owner_id-string",
        "unsubscribed-string",
        "custom_attributes-list",
    ],
)
def test_a_bad_body_is_refused_with_400(
    strict: Sandbox, sent: Any, code: str, field: str | None
) -> None:
    error = assert_error(create(strict.url, sent), 400, code)

    assert error["message"]
    assert error.get("field") == field
    assert strict.contacts == []


def test_documented_nullable_fields_may_be_null_and_unknown_ones_are_ignored(
    strict: Sandbox,
) -> None:
    sent = {
        "external_id": "42",
        "phone": None,
        "name": None,
        "avatar": None,
        "signed_up_at": None,
        "last_seen_at": None,
        "owner_id": None,
        "unsubscribed_from_emails": None,
        "custom_attributes": None,
        "favourite_colour": "teal",
    }

    contact = create(strict.url, sent).json()

    assert contact["external_id"] == "42"
    assert "favourite_colour" not in contact
    assert contact["custom_attributes"] == {}


def test_not_json_is_refused_with_400(strict: Sandbox) -> None:
    response = requests.post(
        strict.url + "/contacts",
        data=b"{",
        headers={**HEADERS, "Content-Type": "application/json"},
        timeout=5,
    )
    assert_error(response, 400, "parameter_invalid")


# -- the rules of POST /events apply -----------------------------------------------------------


def test_token_scope_version_and_rate_limit_as_for_events(strict: Sandbox) -> None:
    sent = {"external_id": "42"}
    assert_error(create(strict.url, sent, token="nobody"), 401, "unauthorized")
    assert_error(create(strict.url, sent, token="reader-token"), 403, "forbidden")
    assert_error(
        create(strict.url, sent, **{"Intercom-Version": "2.99"}), 400, "intercom_version_invalid"
    )
    assert strict.contacts == []

    strict.reset()  # a fresh rate window (the calls above counted in it)
    strict.configure(rate_limit=2)
    reset = pin_mid_window(strict)
    answers = [create(strict.url, {"external_id": str(n)}) for n in range(3)]

    assert [answer.status_code for answer in answers] == [200, 200, 429]
    assert {answer.headers["X-RateLimit-Reset"] for answer in answers} == {str(reset)}
    assert len(strict.contacts) == 2


def test_only_post_is_allowed(strict: Sandbox) -> None:
    for method in ("GET", "PUT", "DELETE"):
        response = requests.request(method, strict.url + "/contacts", headers=HEADERS, timeout=5)
        assert response.status_code == 405
        assert response.headers["Allow"] == "POST"


# -- eventual consistency: visibility delay and scripted faults ---------------------------------


def test_a_new_contact_is_not_found_by_events_during_the_visibility_delay() -> None:
    clock = Clock(1_700_000_000.0)
    with Sandbox(tokens=[TOKEN], contacts=[], contact_visibility_delay=3.0, clock=clock) as sandbox:
        contact = create(sandbox.url, {"external_id": "42"}).json()

        clock.now += 2.9
        assert event(sandbox.url, user_id="42").status_code == 404
        assert event(sandbox.url, id=contact["id"]).status_code == 404
        assert (
            requests.get(
                f"{sandbox.url}/events?type=user&user_id=42", headers=HEADERS, timeout=5
            ).status_code
            == 404
        )
        # It exists all the same: a second create is a conflict.
        assert_error(create(sandbox.url, {"external_id": "42"}), 409, "conflict")

        clock.now += 0.1
        assert event(sandbox.url, user_id="42").status_code == 202
        assert sandbox.settings.contact_visibility_delay == 3.0


def test_the_visibility_delay_applies_when_contacts_are_not_required_too() -> None:
    clock = Clock(1_700_000_000.0)
    with Sandbox(tokens=[TOKEN], contact_visibility_delay=1.0, clock=clock) as sandbox:
        create(sandbox.url, {"external_id": "42"})
        assert event(sandbox.url, user_id="42").status_code == 404
        clock.now += 1
        assert event(sandbox.url, user_id="42").status_code == 202
        assert len(sandbox.contacts) == 1


def test_a_fault_can_be_scripted_for_contacts_only(strict: Sandbox) -> None:
    strict.script("409@/contacts", "stall:0@/contacts")

    assert event(strict.url, user_id="42").status_code == 404  # not the scripted 409
    conflict = create(strict.url, {"external_id": "42"})
    created = create(strict.url, {"external_id": "42"})

    assert_error(conflict, 409, "conflict")
    assert created.status_code == 200
    assert strict.contacts[0].user_id == "42"
    assert [(record.target, record.fault) for record in strict.requests] == [
        ("/events", None),
        ("/contacts", "409@/contacts"),
        ("/contacts", "stall:0@/contacts"),
    ]
    assert strict.script() == []


def test_control_routes_show_created_contacts_and_reset_forgets_them(strict: Sandbox) -> None:
    created = create(strict.url, {"role": "user", "external_id": "42"}).json()

    shown = requests.get(strict.url + "/_sandbox/contacts", timeout=5).json()["contacts"]
    assert shown == [{"id": created["id"], "user_id": "42", "email": None, "role": "user"}]
    stats = requests.get(strict.url + "/_sandbox/stats", timeout=5).json()
    assert stats["contacts_created"] == 1

    strict.reset()

    assert strict.contacts == []
    assert event(strict.url, user_id="42").status_code == 404
    assert create(strict.url, {"role": "user", "external_id": "42"}).status_code == 200


def test_fault_with_a_path_round_trips() -> None:
    for text in ("409@/contacts", "stall:2@/events", "drop@/events/summaries", "500"):
        assert str(Fault.parse(text)) == text
    with pytest.raises(ValueError, match="path"):
        Fault.parse("500@contacts")
