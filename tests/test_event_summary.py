"""EventSummary: the ``event_summaries`` object of ``POST /events/summaries``, checked with the
event's own name and seconds rules, and sent by ``IntercomClient.submit_summaries``."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from flask_intercom_events import Event, Identity, IntercomClient, InvalidEventError
from flask_intercom_events.events import EventSummary
from flask_intercom_events.sandbox import Sandbox

NOW = int(time.time()) - 60
INT64_MAX = 2**63 - 1
GOOD: dict[str, Any] = {"event_name": "placed-order", "count": 3, "first": NOW - 60, "last": NOW}


def summary(**changes: Any) -> EventSummary:
    return EventSummary(**{**GOOD, **changes})


def test_a_summary_holds_what_is_sent() -> None:
    built = EventSummary("Placed-Order", 3, NOW - 60, NOW)

    assert built.event_name == "placed-order"  # lower-cased like an event's name
    assert json.dumps(built.to_json()) == json.dumps(
        {"event_name": "placed-order", "count": 3, "first": NOW - 60, "last": NOW}
    )


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        pytest.param({"first": NOW, "last": NOW}, {"first": NOW, "last": NOW}, id="one-second"),
        pytest.param({"count": INT64_MAX}, {"count": INT64_MAX}, id="count-int64-max"),
        pytest.param(
            {
                "first": datetime.fromtimestamp(NOW - 60, timezone(timedelta(hours=2))),
                "last": datetime.fromtimestamp(NOW, timezone.utc),
            },
            {"first": NOW - 60, "last": NOW},
            id="aware-datetimes",
        ),
        pytest.param({"first": float(NOW)}, {"first": NOW}, id="integral-float"),
        pytest.param({"first": 0, "last": 0}, {"first": 0, "last": 0}, id="epoch"),
    ],
)
def test_a_summary_takes_what_an_event_takes(
    changes: dict[str, Any], expected: dict[str, int]
) -> None:
    built = summary(**changes)
    for key, value in expected.items():
        assert getattr(built, key) == value
        assert type(getattr(built, key)) is int


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"event_name": ""}, "event_name", "must be a non-empty string"),
        ({"event_name": 7}, "event_name", "must be a non-empty string, got int 7"),
        ({"event_name": "a.b"}, "event_name", "use 'a-b' instead"),
        ({"event_name": "n" * 256}, "event_name", "256 characters long"),
        ({"event_name": "Jos\udce9"}, "event_name", "lone surrogate"),
        ({"count": 0}, "count", "must be a positive integer"),
        ({"count": -1}, "count", "must be a positive integer"),
        ({"count": "3"}, "count", "must be a positive integer"),
        ({"count": True}, "count", "must be a positive integer"),
        ({"count": 1.0}, "count", "must be a positive integer"),
        ({"count": 2**63}, "count", f"of at most {INT64_MAX}"),
        ({"first": 1.5}, "first", "whole Unix seconds"),
        ({"first": -1}, "first", "must not be negative"),
        ({"last": 1_700_000_500_000}, "last", "looks like milliseconds"),
        ({"last": 10**30}, "last", "outside the 64-bit integers"),
        ({"first": datetime(2024, 1, 1)}, "first", "naive datetime"),
        ({"first": NOW + 1}, "first", "is after event_summaries.last"),
    ],
)
def test_a_summary_is_refused_naming_the_field_and_rule(
    changes: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(InvalidEventError) as info:
        summary(**changes)
    assert message in str(info.value)
    assert info.value.field == f"event_summaries.{field}"
    assert str(info.value).startswith(f"event_summaries.{field}")


@pytest.mark.parametrize("name", ["a.b", "", "  x", "bell\x07", "n" * 256, "İ" * 200, 42])
def test_the_name_rule_is_the_events_own(name: Any) -> None:
    with pytest.raises(InvalidEventError) as for_event:
        Event(name, NOW, Identity(user_id="1"))
    with pytest.raises(InvalidEventError) as for_summary:
        summary(event_name=name)
    assert str(for_summary.value) == f"event_summaries.{for_event.value}"


@pytest.mark.parametrize("value", [1.5, -1, 10**12, 10**30, "1", None, datetime(2024, 1, 1)])
def test_the_seconds_rule_is_created_ats_own(value: Any) -> None:
    with pytest.raises(InvalidEventError) as for_event:
        Event("a", value, Identity(user_id="1"))
    with pytest.raises(InvalidEventError) as for_summary:
        summary(first=value)
    assert str(for_summary.value) == f"event_summaries.first{str(for_event.value)[10:]}"


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ([GOOD], "event_summaries", "must be a mapping with keys event_name, count, first, last"),
        ({**GOOD, "extra": 1}, "event_summaries", "unknown key(s) 'extra'"),
        ({"event_name": "x", "count": 1}, "event_summaries.first", "missing 'first', 'last'"),
        ({**GOOD, "count": 0}, "event_summaries.count", "positive integer"),
    ],
)
def test_from_json_refuses_what_is_not_a_summary(data: Any, field: str, message: str) -> None:
    with pytest.raises(InvalidEventError) as info:
        EventSummary.from_json(data)
    assert message in str(info.value)
    assert info.value.field == field


def test_from_json_and_to_json_round_trip() -> None:
    built = EventSummary.from_json({**GOOD, "event_name": "Placed-Order"})
    assert built == summary()
    assert EventSummary.from_json(json.loads(json.dumps(built.to_json()))) == built


def test_a_summary_is_frozen() -> None:
    built = summary()
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.count = 4  # type: ignore[misc]


# --- sent by the client ---------------------------------------------------------------------


@pytest.fixture
def client(emulator: Sandbox) -> Iterator[IntercomClient]:
    with IntercomClient("test-token", base_url=emulator.url, timeout=(2, 2)) as client:
        yield client


@pytest.mark.parametrize(
    "given",
    [
        pytest.param(EventSummary("Placed-Order", 3, NOW - 60, NOW), id="EventSummary"),
        pytest.param(
            {"event_name": "Placed-Order", "count": 3, "first": NOW - 60, "last": NOW},
            id="mapping",
        ),
    ],
)
def test_submit_summaries_sends_the_summary(
    emulator: Sandbox, client: IntercomClient, given: Any
) -> None:
    result = client.submit_summaries("42", given)

    assert result.status == 200
    [received] = emulator.summaries
    assert received.body == {
        "user_id": "42",
        "event_summaries": {
            "event_name": "placed-order",
            "count": 3,
            "first": NOW - 60,
            "last": NOW,
        },
    }
    assert emulator.warnings == []


@pytest.mark.parametrize(
    ("user_id", "field", "message"),
    [
        ("u" * 256, "user_id", "256 characters long"),
        ("Jos\udce9", "user_id", "lone surrogate"),
        (" 42", "user_id", "leading or trailing whitespace"),
    ],
)
def test_submit_summaries_checks_user_id_with_the_identity_rule(
    client: IntercomClient, emulator: Sandbox, user_id: str, field: str, message: str
) -> None:
    with pytest.raises(InvalidEventError, match=message) as info:
        client.submit_summaries(user_id, GOOD)
    assert info.value.field == field
    assert emulator.stats.requests == 0
