from __future__ import annotations

import base64
import dataclasses
import json
import math
import re
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from flask_intercom_events import Event, Identity, InvalidEventError, Money, RichLink
from flask_intercom_events.events import new_event_uuid, tracked_at

USER = Identity(user_id="314159")
WHEN = 1671028894


def event(**overrides: Any) -> Event:
    fields: dict[str, Any] = {
        "event_name": "invited-friend",
        "created_at": WHEN,
        "identity": USER,
        "metadata": {},
    }
    fields.update(overrides)
    return Event(**fields)


# --- event_name ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("invited-friend", "invited-friend"),
        ("Invited-Friend", "invited-friend"),  # lower-cased: Intercom is case-insensitive
        ("updated_plan", "updated_plan"),
        ("signed up", "signed up"),
        ("ärger-gehabt", "ärger-gehabt"),
    ],
)
def test_event_name_accepted(name: str, expected: str) -> None:
    assert event(event_name=name).event_name == expected


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "must be a non-empty string, got ''"),
        ("   ", "must be a non-empty string, got '   '"),
        (" padded", "leading or trailing whitespace"),
        ("invited.friend", "use 'invited-friend' instead"),
        ("paid$", "use 'paid-' instead"),
        ("Paid.Plan", "use 'paid-plan' instead"),
        ("bell\x07", "control character"),
        (None, "must be a non-empty string, got NoneType None"),
        (42, "must be a non-empty string, got int 42"),
    ],
)
def test_event_name_refused(name: object, message: str) -> None:
    with pytest.raises(InvalidEventError, match="event_name") as info:
        event(event_name=name)
    assert message in str(info.value)
    assert info.value.field == "event_name"


# --- created_at ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (WHEN, WHEN),
        (0, 0),
        (float(WHEN), WHEN),
        (datetime.fromtimestamp(WHEN, timezone.utc), WHEN),
        (datetime.fromtimestamp(WHEN, timezone.utc).replace(microsecond=999_999), WHEN),
        (datetime.fromtimestamp(WHEN, timezone(timedelta(hours=5, minutes=30))), WHEN),
        (99_999_999_999, 99_999_999_999),  # the last value that can still be seconds
    ],
)
def test_created_at_accepted(value: object, expected: int) -> None:
    built = event(created_at=value)
    assert built.created_at == expected
    assert type(built.created_at) is int


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (datetime(2024, 1, 1), "naive datetime"),
        (1671028894.5, "whole Unix seconds"),
        (math.nan, "whole Unix seconds"),
        (math.inf, "whole Unix seconds"),
        ("1671028894", "got str"),
        (None, "got NoneType"),
        (True, "got bool"),
        (1671028894123, "looks like milliseconds; Intercom expects Unix seconds: use 1671028894"),
        (100_000_000_000, "looks like milliseconds"),
        (-1, "must not be negative"),
    ],
)
def test_created_at_refused(value: object, message: str) -> None:
    with pytest.raises(InvalidEventError) as info:
        event(created_at=value)
    assert message in str(info.value)
    assert info.value.field == "created_at"
    assert str(info.value).startswith("created_at")


def test_create_defaults_created_at_to_the_current_second() -> None:
    before = int(datetime.now(timezone.utc).timestamp())
    built = Event.create("signed-up", identity=USER)
    after = int(datetime.now(timezone.utc).timestamp())
    assert before <= built.created_at <= after
    assert type(built.created_at) is int


# --- identity ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("identity", "payload"),
    [
        (Identity(user_id="1"), {"user_id": "1"}),
        (Identity(email="frodo@example.com"), {"email": "frodo@example.com"}),
        (Identity(id="63a0979a5eeebeaf28dd56ba"), {"id": "63a0979a5eeebeaf28dd56ba"}),
        (
            Identity(user_id="1", email="a@b.c", id="x"),
            {"user_id": "1", "id": "x", "email": "a@b.c"},
        ),
    ],
)
def test_identity_payload(identity: Identity, payload: dict[str, str]) -> None:
    body = event(identity=identity).to_payload()
    assert {k: body[k] for k in ("user_id", "id", "email") if k in body} == payload


@pytest.mark.parametrize(
    ("kwargs", "field", "message"),
    [
        ({}, "identity", "at least one of user_id, email or id"),
        ({"user_id": 42}, "user_id", "pass str(42)"),
        ({"user_id": ""}, "user_id", "must not be empty"),
        ({"email": " a@b.c"}, "email", "leading or trailing whitespace"),
        ({"email": "frodo"}, "email", "not an email address"),
        ({"email": "@example.com"}, "email", "not an email address"),
        ({"id": b"abc"}, "id", "must be a string, got bytes"),
    ],
)
def test_identity_refused(kwargs: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(InvalidEventError) as info:
        Identity(**kwargs)
    assert message in str(info.value)
    assert info.value.field == field


def test_event_refuses_an_identity_that_is_not_an_identity() -> None:
    with pytest.raises(InvalidEventError, match="identity must be an Identity"):
        event(identity={"user_id": "1"})


# --- metadata ------------------------------------------------------------------------------

NOW = datetime.fromtimestamp(WHEN, timezone.utc)


@pytest.mark.parametrize(
    ("value", "sent"),
    [
        ("desktop", "desktop"),
        ("x" * 255, "x" * 255),
        ("", ""),
        (3.67, 3.67),
        (-2, -2),
        (0, 0),
        ("https://example.org/ab1de.html", "https://example.org/ab1de.html"),
        ("HTTP://Example.org", "HTTP://Example.org"),
        ("ftp://example.org", "ftp://example.org"),  # not a link to Intercom: a plain string
        (Money(34999, "eur"), {"amount": 34999, "currency": "eur"}),
        (Money(1, "USD"), {"amount": 1, "currency": "usd"}),
        ({"amount": 34999, "currency": "EUR"}, {"amount": 34999, "currency": "eur"}),
        (
            RichLink("https://example.org/a", "the dude"),
            {"url": "https://example.org/a", "value": "the dude"},
        ),
        (
            {"url": "http://example.org/", "value": "v"},
            {"url": "http://example.org/", "value": "v"},
        ),
    ],
)
def test_metadata_value_accepted(value: object, sent: object) -> None:
    body = event(metadata={"thing": value}).to_payload()
    assert body["metadata"] == {"thing": sent}
    assert json.loads(json.dumps(body)) == body


@pytest.mark.parametrize(
    ("key", "value", "sent"),
    [
        ("contact_date", 1392036272, 1392036272),
        ("contact_date", NOW, WHEN),
        ("Contact_DATE", NOW, WHEN),
        ("contact_date", float(WHEN), WHEN),
    ],
)
def test_date_metadata(key: str, value: object, sent: int) -> None:
    assert event(metadata={key: value}).to_payload()["metadata"] == {key: sent}


@pytest.mark.parametrize(
    ("metadata", "field", "message"),
    [
        ({"x": None}, "metadata.x", "holds None"),
        ({"x": True}, "metadata.x", "holds a bool"),
        ({"x": [1, 2]}, "metadata.x", "holds list"),
        ({"x": {1, 2}}, "metadata.x", "holds set"),
        ({"x": object()}, "metadata.x", "holds object"),
        ({"x": b"bytes"}, "metadata.x", "holds bytes"),
        ({"x": math.nan}, "metadata.x", "must be finite"),
        ({"x": math.inf}, "metadata.x", "must be finite"),
        ({"x": "y" * 256}, "metadata.x", "256 characters long; Intercom stores at most 255"),
        ({"x": "https://"}, "metadata.x", "needs a host"),
        ({"x": NOW}, "metadata.x", "rename it, e.g. 'x_date'"),
        ({"x_date": "2024-01-01"}, "metadata.x_date", "ends in '_date'"),
        ({"x_date": 1392036272000}, "metadata.x_date", "looks like milliseconds"),
        ({"x_date": 1392036272.5}, "metadata.x_date", "whole Unix seconds"),
        ({"x_date": datetime(2024, 1, 1)}, "metadata.x_date", "naive datetime"),
        ({"x_date": None}, "metadata.x_date", "ends in '_date'"),
        ({"x_date": True}, "metadata.x_date", "got bool"),
        (
            {"x": {"url": "https://a.b", "value": "v", "extra": 1}},
            "metadata.x",
            "an object with keys",
        ),
        ({"x": {"nested": {"deep": 1}}}, "metadata.x", "no other nesting"),
        ({"x": {}}, "metadata.x", "an object with keys []"),
        ({"x": {"url": "ftp://a.b", "value": "v"}}, "metadata.x", "must be an http or https URL"),
        ({"x": {"url": "https://a.b", "value": ""}}, "metadata.x", "non-empty string"),
        ({"x": {"url": "https://a.b", "value": 3}}, "metadata.x", "non-empty string"),
        ({"x": {"amount": 0, "currency": "eur"}}, "metadata.x", "positive integer in cents"),
        ({"x": {"amount": -5, "currency": "eur"}}, "metadata.x", "positive integer in cents"),
        ({"x": {"amount": 9.99, "currency": "eur"}}, "metadata.x", "positive integer in cents"),
        ({"x": {"amount": True, "currency": "eur"}}, "metadata.x", "positive integer in cents"),
        ({"x": {"amount": 100, "currency": "euro"}}, "metadata.x", "three-letter code"),
        ({"x": {"amount": 100, "currency": "€"}}, "metadata.x", "three-letter code"),
        ({"a.b": 1}, "metadata.a.b", "contains '.'"),
        ({"a$b": 1}, "metadata.a$b", "contains '$'"),
        ({"a b@c": 1}, "metadata.a b@c", "contains '@'"),
        ({"a\x00": 1}, "metadata.a\x00", "NUL"),
        ({"": 1}, "metadata", "must not be empty"),
        ({1: 1}, "metadata", "keys must be strings"),
        ({"Plan": "a", "plan": "b"}, "metadata.plan", "differ only in case"),
        ("not a mapping", "metadata", "must be a mapping"),
    ],
)
def test_metadata_refused(metadata: Any, field: str, message: str) -> None:
    with pytest.raises(InvalidEventError) as info:
        event(metadata=metadata)
    assert message in str(info.value)
    assert info.value.field == field


@pytest.mark.parametrize("character", list(".$~`!@#%^&*'{}|\\\"\x00"))
def test_every_forbidden_key_character_is_refused(character: str) -> None:
    with pytest.raises(InvalidEventError, match="Intercom does not allow"):
        event(metadata={f"key{character}": 1})


def test_ten_metadata_keys_are_fine_the_eleventh_is_refused() -> None:
    ten = {f"k{i}": i for i in range(10)}
    assert len(event(metadata=ten).metadata) == 10
    with pytest.raises(InvalidEventError, match=r"11 keys.*first 10.*'k10' onwards") as info:
        event(metadata={**ten, "k10": 10})
    assert info.value.field == "metadata"


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Money(0, "eur"), "positive integer in cents"),
        (lambda: Money(10, "eu"), "three-letter code"),
        (lambda: Money("10", "eur"), "positive integer in cents"),  # type: ignore[arg-type]
        (lambda: RichLink("example.org", "v"), "must be an http or https URL"),
        (lambda: RichLink("https://example.org", ""), "non-empty string"),
        (lambda: RichLink("https://example.org", "v" * 256), "at most 255"),
    ],
)
def test_value_objects_validate_when_built(build: Any, message: str) -> None:
    with pytest.raises(InvalidEventError, match=message):
        build()


# --- the payload ---------------------------------------------------------------------------


def test_to_payload_is_the_exact_body_in_order() -> None:
    built = Event.create(
        "Updated-Plan",
        identity=Identity(user_id="314159", email="frodo@example.com"),
        created_at=NOW,
        metadata={
            "plan": "pro",
            "price": Money(34999, "EUR"),
            "article": RichLink("https://example.org/ab1de.html", "the dude abides"),
            "renewal_date": NOW + timedelta(days=30),
            "seats": 3,
        },
    )
    assert json.dumps(built.to_payload()) == json.dumps(
        {
            "event_name": "updated-plan",
            "created_at": WHEN,
            "user_id": "314159",
            "email": "frodo@example.com",
            "metadata": {
                "plan": "pro",
                "price": {"amount": 34999, "currency": "eur"},
                "article": {"url": "https://example.org/ab1de.html", "value": "the dude abides"},
                "renewal_date": WHEN + 30 * 86400,
                "seats": 3,
            },
        }
    )


def test_empty_metadata_is_left_out() -> None:
    assert "metadata" not in event().to_payload()


def test_round_trip_through_json() -> None:
    built = event(
        metadata={"price": Money(100, "usd"), "link": RichLink("https://a.b/c", "c"), "n": 1.5}
    )
    again = Event.from_payload(json.loads(json.dumps(built.to_payload())))
    assert again == built
    assert hash(again) == hash(built)
    assert again.metadata["price"] == Money(100, "usd")


def test_event_is_frozen() -> None:
    built = event(metadata={"a": 1})
    with pytest.raises(AttributeError):
        built.event_name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        built.metadata["b"] = 2  # type: ignore[index]


def test_event_keeps_its_own_copy_of_metadata() -> None:
    given: dict[str, Any] = {"a": 1}
    built = event(metadata=given)
    given["a"] = "changed"
    assert built.metadata["a"] == 1


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ([], None, "must be a JSON object"),
        ({"created_at": WHEN, "user_id": "1"}, "event_name", "event_name is required"),
        ({"event_name": "a", "user_id": "1"}, "created_at", "created_at is required"),
        ({"event_name": "a", "created_at": WHEN}, "identity", "at least one of"),
        (
            {"event_name": "a", "created_at": WHEN, "user_id": "1", "type": "event"},
            "type",
            "unknown field",
        ),
        ({"event_name": "a", "created_at": NOW, "user_id": "1"}, "created_at", "not a datetime"),
        ({"event_name": "a", "created_at": "1", "user_id": "1"}, "created_at", "got str"),
        ({"event_name": "a", "created_at": WHEN, "user_id": 1}, "user_id", "must be a string"),
        (
            {"event_name": "a", "created_at": WHEN, "user_id": "1", "metadata": []},
            "metadata",
            "mapping",
        ),
        (
            {"event_name": "a", "created_at": WHEN, "user_id": "1", "metadata": {"x": [1]}},
            "metadata.x",
            "holds list",
        ),
    ],
)
def test_from_payload_validates_like_every_other_way_in(
    body: Any, field: str | None, message: str
) -> None:
    with pytest.raises(InvalidEventError) as info:
        Event.from_payload(body)
    assert message in str(info.value)
    assert info.value.field == field


def test_from_payload_accepts_the_documented_example() -> None:
    body = {
        "event_name": "invited-friend",
        "created_at": 1671028894,
        "user_id": "314159",
        "id": "8a88a590-e1c3-41e2-a502-e0649dbf721c",
        "email": "frodo.baggins@example.com",
        "metadata": {"invite_code": "ADDAFRIEND"},
    }
    assert Event.from_payload(body).to_payload() == body


# --- strings must be valid UTF-8 (lone surrogates) ------------------------------------------

# A lone surrogate is what os.fsdecode, surrogateescape or a broken JSON decoder leave behind.
# Python holds it in a str, but it has no UTF-8 form: the Redis push would fail, so the event
# must be refused when it is built.
JOSE = "Jos\udce9"


@pytest.mark.parametrize(
    ("build", "field", "message"),
    [
        pytest.param(
            lambda: Event.create(JOSE, identity=USER),
            "event_name",
            "event_name contains a lone surrogate (\\udce9 at position 3)",
            id="event-name",
        ),
        pytest.param(
            lambda: Identity(user_id=JOSE),
            "user_id",
            "user_id contains a lone surrogate (\\udce9 at position 3)",
            id="user-id",
        ),
        pytest.param(
            lambda: Identity(email="jos\udce9@example.com"),
            "email",
            "email contains a lone surrogate (\\udce9 at position 3)",
            id="email",
        ),
        pytest.param(
            lambda: Identity(id="\ud800abc"),
            "id",
            "id contains a lone surrogate (\\ud800 at position 0)",
            id="contact-id",
        ),
        pytest.param(
            lambda: Event.create("signed-up", identity=USER, metadata={"name": JOSE}),
            "metadata.name",
            "metadata key 'name' contains a lone surrogate (\\udce9 at position 3), which is "
            "not valid UTF-8",
            id="metadata-value",
        ),
        pytest.param(
            lambda: event(metadata={JOSE: 1}),
            "metadata.Jos\\udce9",
            "metadata key 'Jos\\udce9' has a lone surrogate in its name (\\udce9 at position 3)",
            id="metadata-key",
        ),
        pytest.param(
            lambda: event(metadata={"link": {"url": "https://example.org/\udce9", "value": "v"}}),
            "metadata.link",
            "metadata key 'link': a rich link's url contains a lone surrogate (\\udce9 at "
            "position 20)",
            id="rich-link-url",
        ),
        pytest.param(
            lambda: event(metadata={"link": {"url": "https://example.org/", "value": JOSE}}),
            "metadata.link",
            "metadata key 'link': a rich link's value contains a lone surrogate",
            id="rich-link-value",
        ),
        pytest.param(
            lambda: event(metadata={"price": {"amount": 100, "currency": "eu\udce9"}}),
            "metadata.price",
            "metadata key 'price': a currency contains a lone surrogate (\\udce9 at position 2)",
            id="money-currency",
        ),
        pytest.param(
            lambda: RichLink("https://example.org/", JOSE),
            "RichLink",
            "RichLink: a rich link's value contains a lone surrogate",
            id="RichLink",
        ),
        pytest.param(
            lambda: Money(100, "\udce9ur"),
            "Money",
            "Money: a currency contains a lone surrogate",
            id="Money",
        ),
        pytest.param(
            lambda: Event.from_payload({"event_name": "a", "created_at": WHEN, "user_id": JOSE}),
            "user_id",
            "user_id contains a lone surrogate",
            id="from-payload",
        ),
    ],
)
def test_lone_surrogates_are_refused_where_a_string_can_be(
    build: Any, field: str, message: str
) -> None:
    with pytest.raises(InvalidEventError) as info:
        build()
    assert message in str(info.value)
    assert "not valid UTF-8" in str(info.value)
    assert info.value.field == field
    # The refusal itself can be logged and sent on: its message and field are valid UTF-8.
    str(info.value).encode("utf-8")
    assert info.value.field is not None
    info.value.field.encode("utf-8")
    # Refused by the rule, not by an encoding error escaping from inside.
    assert info.value.__context__ is None


def test_a_string_that_looks_odd_but_is_valid_utf8_is_accepted() -> None:
    # Astral characters are one code point in Python and four bytes in UTF-8: not surrogates.
    built = event(
        event_name="josé-🎉", identity=Identity(user_id="😀"), metadata={"n": "ü\U0010ffff"}
    )
    assert json.dumps(built.to_payload(), ensure_ascii=False).encode("utf-8")


def test_an_unknown_payload_key_with_a_lone_surrogate_is_named_in_valid_utf8() -> None:
    body = {"event_name": "a", "created_at": WHEN, "user_id": "1", "x\udce9": 1}
    with pytest.raises(InvalidEventError, match="unknown field") as info:
        Event.from_payload(body)
    assert info.value.field == "x\\udce9"
    str(info.value).encode("utf-8")


# --- integers Intercom can store (64 bits) --------------------------------------------------

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)


@pytest.mark.parametrize(
    "metadata",
    [
        pytest.param({"n": INT64_MAX}, id="int64-max"),
        pytest.param({"n": INT64_MIN}, id="int64-min"),
        pytest.param({"n": 1e300}, id="large-float"),
        pytest.param({"price": Money(INT64_MAX, "eur")}, id="money-int64-max"),
    ],
)
def test_integers_within_64_bits_are_accepted(metadata: dict[str, Any]) -> None:
    assert event(metadata=metadata).metadata == metadata


@pytest.mark.parametrize(
    ("build", "field", "message"),
    [
        pytest.param(
            lambda: event(metadata={"n": 10**30}),
            "metadata.n",
            "metadata key 'n' holds 1000000000000000000000000000000, outside the 64-bit "
            "integers Intercom stores numbers as",
            id="metadata-number",
        ),
        pytest.param(
            lambda: event(metadata={"n": INT64_MAX + 1}),
            "metadata.n",
            "outside the 64-bit integers",
            id="metadata-int64-max-plus-one",
        ),
        pytest.param(
            lambda: event(metadata={"n": INT64_MIN - 1}),
            "metadata.n",
            "outside the 64-bit integers",
            id="metadata-int64-min-minus-one",
        ),
        pytest.param(
            lambda: Money(2**63, "eur"),
            "Money",
            "Money: a money amount must be a positive integer in cents of at most "
            "9223372036854775807",
            id="Money",
        ),
        pytest.param(
            lambda: event(metadata={"price": {"amount": 2**63, "currency": "eur"}}),
            "metadata.price",
            "metadata key 'price': a money amount must be a positive integer in cents of at most",
            id="money-dict",
        ),
        pytest.param(
            lambda: event(created_at=10**30),
            "created_at",
            "created_at 1000000000000000000000000000000 is outside the 64-bit integers",
            id="created-at",
        ),
        pytest.param(
            lambda: event(created_at=1e30),
            "created_at",
            "outside the 64-bit integers",
            id="created-at-float",
        ),
        pytest.param(
            lambda: event(metadata={"renewal_date": 2**64}),
            "metadata.renewal_date",
            "metadata key 'renewal_date' 18446744073709551616 is outside the 64-bit integers",
            id="date",
        ),
    ],
)
def test_integers_beyond_64_bits_are_refused(build: Any, field: str, message: str) -> None:
    with pytest.raises(InvalidEventError) as info:
        build()
    assert message in str(info.value)
    assert info.value.field == field


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda: event(created_at=10**5000), id="created-at"),
        pytest.param(lambda: event(metadata={"n": -(10**5000)}), id="metadata-number"),
        pytest.param(lambda: Money(10**5000, "eur"), id="Money"),
        pytest.param(lambda: Identity(user_id=10**5000), id="user-id"),  # type: ignore[arg-type]
    ],
)
def test_an_integer_too_long_to_print_is_refused_not_crashed_on(build: Any) -> None:
    # Python refuses to turn an int of more than 4,300 digits into text (ValueError): the
    # message must describe it instead of printing it.
    with pytest.raises(InvalidEventError, match=r"integer of \d+ bits"):
        build()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (1671028894123, "looks like milliseconds; Intercom expects Unix seconds: use 1671028894"),
        (10**15, "too large for Unix seconds, even read as milliseconds"),
        (
            datetime(9999, 1, 1, tzinfo=timezone.utc),
            "9999-01-01T00:00:00+00:00 is in the year 5138 or later",
        ),
    ],
)
def test_seconds_past_the_year_5138_are_refused_with_the_right_reason(
    value: object, message: str
) -> None:
    with pytest.raises(InvalidEventError) as info:
        event(created_at=value)
    assert message in str(info.value)


@pytest.mark.parametrize(
    "metadata",
    [
        pytest.param({"x_date": {"a": 10**5000}}, id="date-key-holding-a-dict"),
        pytest.param({"x": {10**5000: 1}}, id="object-key"),
        pytest.param({"x": {"url": 10**5000, "value": "v"}}, id="rich-link-url"),
        pytest.param({"x": {"amount": 1, "currency": [10**5000]}}, id="currency"),
        pytest.param(
            dict([*((f"x{i}", i) for i in range(10)), (10**5000, 1)]),
            id="eleventh-key-too-long-to-print",
        ),
    ],
)
def test_a_refusal_never_fails_on_the_value_it_shows(metadata: dict[Any, Any]) -> None:
    with pytest.raises(InvalidEventError, match=r"metadata key 'x|metadata has 11 keys"):
        event(metadata=metadata)


# --- strings Intercom stores: at most 255 characters (Help Center, article 175) ------------

LONGEST_EMAIL = "a" * 243 + "@example.com"


def test_strings_of_255_characters_are_accepted_everywhere() -> None:
    assert len(LONGEST_EMAIL) == 255
    built = event(
        event_name="n" * 255,
        identity=Identity(user_id="u" * 255, email=LONGEST_EMAIL, id="i" * 255),
        metadata={"s": "s" * 255, "link": RichLink("https://example.org/", "v" * 255)},
    )
    assert len(built.event_name) == 255


@pytest.mark.parametrize(
    ("build", "field", "message"),
    [
        pytest.param(
            lambda: event(event_name="n" * 256),
            "event_name",
            "event_name is 256 characters long; Intercom stores at most 255 (Intercom Help "
            "Center, article 175)",
            id="event-name",
        ),
        pytest.param(
            # "İ" lower-cases to two characters: the name sent would be 400 long.
            lambda: event(event_name="İ" * 200),
            "event_name",
            "event_name is 400 characters long once lower-cased",
            id="event-name-lower-cased",
        ),
        pytest.param(
            lambda: Identity(user_id="u" * 256),
            "user_id",
            "user_id is 256 characters long; Intercom stores at most 255",
            id="user-id",
        ),
        pytest.param(
            lambda: Identity(email="a" + LONGEST_EMAIL),
            "email",
            "email is 256 characters long; Intercom stores at most 255",
            id="email",
        ),
        pytest.param(
            lambda: Identity(id="i" * 256),
            "id",
            "id is 256 characters long; Intercom stores at most 255",
            id="contact-id",
        ),
        pytest.param(
            lambda: event(metadata={"s": "s" * 256}),
            "metadata.s",
            "metadata key 's' is 256 characters long; Intercom stores at most 255",
            id="metadata-string",
        ),
        pytest.param(
            lambda: RichLink("https://example.org/", "v" * 256),
            "RichLink",
            "RichLink: a rich link's value is 256 characters long; Intercom stores at most 255",
            id="rich-link-value",
        ),
    ],
)
def test_strings_over_255_characters_are_refused(build: Any, field: str, message: str) -> None:
    with pytest.raises(InvalidEventError) as info:
        build()
    assert message in str(info.value)
    assert info.value.field == field


# --- uuid: what tells tracked events apart ------------------------------------------------


def test_every_event_gets_a_uuid_of_its_own_when_built() -> None:
    first = Event.create("signed-up", identity=USER, created_at=WHEN)
    second = Event.create("signed-up", identity=USER, created_at=WHEN)
    built_directly = Event("signed-up", WHEN, USER)

    assert len({first.uuid, second.uuid, built_directly.uuid}) == 3
    for value in (first.uuid, second.uuid, built_directly.uuid):
        assert re.fullmatch(r"[A-Za-z0-9_-]{22}", value)
    # Equality and hash compare what Intercom receives: the uuid is not part of it.
    assert first == second == built_directly
    assert hash(first) == hash(second) == hash(built_directly)


def test_new_event_uuid_is_a_uuid7_in_url_safe_base64_without_padding() -> None:
    before = time.time()
    value = new_event_uuid()
    after = time.time()
    assert len(value) == 22
    assert "=" not in value
    decoded = uuid.UUID(bytes=base64.urlsafe_b64decode(value + "=="))
    assert (decoded.version, decoded.variant) == (7, uuid.RFC_4122)
    assert len({new_event_uuid() for _ in range(1000)}) == 1000
    tracked = tracked_at(value)
    assert tracked is not None
    assert int(before * 1000) / 1000 <= tracked <= after


@pytest.mark.parametrize(
    "value",
    [
        base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode(),  # the ids before
        str(uuid.uuid4()),
        "event-1",
        "A" * 22,
        "!" * 22,
        "",
    ],
)
def test_an_id_new_event_uuid_did_not_make_tells_no_time(value: str) -> None:
    assert tracked_at(value) is None


@pytest.mark.parametrize(
    "value",
    [
        "a",
        "A" * 64,
        "_-",
        "0123456789abcdefghijAB",
        str(uuid.UUID("8a88a590-e1c3-41e2-a502-e0649dbf721c")),  # with dashes, 36 characters
    ],
)
def test_a_given_uuid_is_kept(value: str) -> None:
    assert Event.create("signed-up", identity=USER, uuid=value).uuid == value
    assert event(uuid=value).uuid == value


@pytest.mark.parametrize(
    "value",
    [
        "",
        "a" * 65,
        "has space",
        "a=b",
        "a+b",
        "a/b",
        "é",
        "a\n",
        "\udce9",
        None,
        42,
        b"abc",
    ],
)
def test_a_uuid_that_is_not_1_to_64_url_safe_characters_is_refused(value: object) -> None:
    with pytest.raises(InvalidEventError, match="uuid must be 1 to 64 characters") as info:
        event(uuid=value)
    assert info.value.field == "uuid"
    str(info.value).encode("utf-8")


def test_the_uuid_is_never_sent() -> None:
    built = event(identity=Identity(user_id="1"))
    assert "uuid" not in built.to_payload()
    # The body's id is the Lead's Intercom contact id, never the event's uuid.
    assert "id" not in built.to_payload()
    lead = event(identity=Identity(id="63a0979a5eeebeaf28dd56ba"))
    assert lead.to_payload()["id"] == "63a0979a5eeebeaf28dd56ba"
    assert built.uuid not in json.dumps(built.to_payload())


def test_repr_shows_the_uuid() -> None:
    built = event(uuid="abc_DEF-123")
    assert repr(built).endswith(", uuid='abc_DEF-123')")


def test_replace_keeps_the_uuid() -> None:
    built = event(metadata={"a": 1})
    changed = dataclasses.replace(built, metadata={"a": 2})
    assert changed.uuid == built.uuid
    assert changed != built
    assert dataclasses.replace(built, uuid="other").uuid == "other"


def test_create_and_from_payload_give_a_new_uuid_unless_one_is_given() -> None:
    built = Event.create("signed-up", identity=USER, created_at=WHEN, uuid=None)
    body = built.to_payload()

    again = Event.from_payload(body, uuid=built.uuid)
    fresh = Event.from_payload(body)

    assert again == built
    assert again.uuid == built.uuid
    assert fresh == built
    assert fresh.uuid != built.uuid
    assert Event.from_payload(body, uuid=None).uuid not in (built.uuid, fresh.uuid)


def test_from_payload_refuses_a_uuid_key_in_the_body() -> None:
    body = {"event_name": "a", "created_at": WHEN, "user_id": "1", "uuid": new_event_uuid()}
    with pytest.raises(InvalidEventError, match="unknown field") as info:
        Event.from_payload(body)
    assert info.value.field == "uuid"
