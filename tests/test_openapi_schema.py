"""Every body the client POSTs, as the emulator received it, against Intercom's OpenAPI 2.11.

The schemas come from ``tests/data/intercom-openapi/events-2.11.resolved.json`` (a copy of
Intercom's own description; its README says where from). Version 2.11 types metadata values
as strings only; the API takes strings, numbers, dates (Unix seconds), rich links
``{url, value}`` and money ``{amount, currency}`` (INTERCOM_API_NOTES.md), so metadata's
``additionalProperties`` is widened to exactly those types and nothing else is changed.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from flask_intercom_events.client import IntercomClient
from flask_intercom_events.events import Event, Identity, Money, RichLink
from flask_intercom_events.sandbox import Sandbox

SCHEMA_FILE = Path(__file__).parent / "data" / "intercom-openapi" / "events-2.11.resolved.json"
NOW = int(time.time())

#: What a metadata value may be, per Intercom's documentation (2.11's schema says string only).
METADATA_VALUE: dict[str, Any] = {
    "anyOf": [
        {"type": "string"},
        {"type": "number"},
        {
            "title": "Rich Link",
            "type": "object",
            "properties": {"url": {"type": "string"}, "value": {"type": "string"}},
            "required": ["url", "value"],
            "additionalProperties": False,
        },
        {
            "title": "Monetary Amount",
            "type": "object",
            "properties": {
                "amount": {"type": "integer", "minimum": 1},
                "currency": {"type": "string"},
            },
            "required": ["amount", "currency"],
            "additionalProperties": False,
        },
    ]
}


@pytest.fixture(scope="module")
def openapi() -> dict[str, Any]:
    """The resolved 2.11 schemas."""
    document: dict[str, Any] = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    return document


@pytest.fixture(scope="module")
def event_schema(openapi: dict[str, Any]) -> dict[str, Any]:
    """``create_data_event_request`` with metadata widened to the documented types."""
    schema: dict[str, Any] = copy.deepcopy(openapi["schemas"]["create_data_event_request"])
    metadata = schema["properties"]["metadata"]
    assert metadata["additionalProperties"] == {"type": "string"}, "the 2.11 file changed"
    metadata["additionalProperties"] = METADATA_VALUE
    return schema


@pytest.fixture(scope="module")
def summaries_schema(openapi: dict[str, Any]) -> dict[str, Any]:
    """``create_data_event_summaries_request`` as published."""
    schema: dict[str, Any] = openapi["schemas"]["create_data_event_summaries_request"]
    return schema


@pytest.fixture
def client(emulator: Sandbox) -> Iterator[IntercomClient]:
    with IntercomClient("test-token", base_url=emulator.url) as client:
        yield client


def validate(body: Any, schema: dict[str, Any]) -> None:
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(body), key=lambda error: list(error.path))
    assert not errors, "\n".join(
        f"{'/'.join(map(str, error.path)) or '<body>'}: {error.message}" for error in errors
    )


EVENTS: dict[str, Event] = {
    "no metadata": Event("signed-up", NOW, Identity(user_id="42")),
    "by email": Event("signed-up", NOW, Identity(email="ada@example.com")),
    "by intercom id": Event("signed-up", NOW, Identity(id="5f7c9e2b1a2b3c4d5e6f7a8b")),
    "every identity": Event(
        "signed-up", NOW, Identity(user_id="42", email="ada@example.com", id="5f7c9e2b1a2b3c4d")
    ),
    "string": Event("invited-friend", NOW, Identity(user_id="42"), {"invite_code": "ADDAFRIEND"}),
    "integer": Event("ordered-items", NOW, Identity(user_id="42"), {"items": 3}),
    "float": Event("loaded-page", NOW, Identity(user_id="42"), {"load": 3.67}),
    "date": Event.create(
        "booked-call",
        identity=Identity(user_id="42"),
        created_at=NOW,
        metadata={"call_date": datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)},
    ),
    "link": Event(
        "read-article", NOW, Identity(user_id="42"), {"article": "https://example.org/ab1de.html"}
    ),
    "rich link": Event(
        "read-article",
        NOW,
        Identity(user_id="42"),
        {"article": RichLink("https://example.org/ab1de.html", "the dude abides")},
    ),
    "money": Event("updated-plan", NOW, Identity(user_id="42"), {"price": Money(34999, "eur")}),
    "ten keys of every type": Event(
        "checked-out",
        NOW,
        Identity(user_id="42"),
        {
            "plan": "pro",
            "seats": 5,
            "ratio": 0.25,
            "renewal_date": NOW + 86400,
            "receipt": "https://example.org/r/1",
            "invoice": RichLink("https://example.org/i/1", "Invoice 1"),
            "price": Money(34999, "eur"),
            "tax": Money(6650, "EUR"),
            "note": "é" * 255,
            "coupon": "",
        },
    ),
}


@pytest.mark.parametrize("name", list(EVENTS))
def test_event_body_matches_the_schema(
    name: str, emulator: Sandbox, client: IntercomClient, event_schema: dict[str, Any]
) -> None:
    client.create_event(EVENTS[name])

    [received] = emulator.events
    assert received.body == EVENTS[name].to_payload()
    validate(received.body, event_schema)
    assert emulator.warnings == []


@pytest.mark.parametrize(
    "summaries",
    [
        {"event_name": "placed-order", "count": 1, "first": NOW, "last": NOW},
        {"event_name": "Logged-In", "count": 250, "first": NOW - 86400 * 400, "last": NOW},
    ],
)
def test_summaries_body_matches_the_schema(
    summaries: dict[str, Any],
    emulator: Sandbox,
    client: IntercomClient,
    summaries_schema: dict[str, Any],
) -> None:
    client.submit_summaries("42", summaries)

    [received] = emulator.summaries
    validate(received.body, summaries_schema)
    assert received.body["user_id"] == "42"
    assert received.body["event_summaries"]["count"] == summaries["count"]


# --- the check itself can fail ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"event_name": "x", "created_at": "2026-01-01", "user_id": "42"}, "created_at"),
        ({"event_name": "x", "created_at": NOW}, "<body>"),  # no identity
        ({"event_name": "x", "created_at": NOW, "user_id": 42}, "user_id"),
        ({"event_name": "x", "created_at": NOW, "id": "c", "metadata": {"a": [1]}}, "metadata/a"),
        (
            {"event_name": "x", "created_at": NOW, "id": "c", "metadata": {"a": {"url": "u"}}},
            "metadata/a",
        ),
        (
            {
                "event_name": "x",
                "created_at": NOW,
                "id": "c",
                "metadata": {"a": {"amount": 0, "currency": "eur"}},
            },
            "metadata/a",
        ),
        ({"event_name": "x", "created_at": NOW, "id": "c", "metadata": {"a": True}}, "metadata/a"),
    ],
)
def test_widened_schema_still_refuses_bad_bodies(
    body: dict[str, Any], where: str, event_schema: dict[str, Any]
) -> None:
    with pytest.raises(AssertionError, match=rf"(?m)^{where}: "):
        validate(body, event_schema)


def test_published_schema_refuses_what_the_api_notes_allow(openapi: dict[str, Any]) -> None:
    # Why the widening exists: 2.11 as published takes string metadata only.
    published = openapi["schemas"]["create_data_event_request"]
    validate(EVENTS["string"].to_payload(), published)
    with pytest.raises(AssertionError, match=r"(?m)^metadata/price: "):
        validate(EVENTS["money"].to_payload(), published)


def test_summaries_schema_refuses_bad_counts(summaries_schema: dict[str, Any]) -> None:
    with pytest.raises(AssertionError, match=r"(?m)^event_summaries/count: "):
        validate(
            {"user_id": "42", "event_summaries": {"event_name": "x", "count": "3"}},
            summaries_schema,
        )
