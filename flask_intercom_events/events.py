"""The Intercom data event, its identity and metadata values: pure Python, no Flask.

Every rule of Intercom's Data Events API is checked when a value is built, so an event that
exists is an event Intercom will store exactly as sent. A refusal is an
:class:`~flask_intercom_events.errors.InvalidEventError` whose message names the field or
metadata key and the rule.

Decisions where Intercom would silently rewrite what it receives:

- Event names and metadata keys are case-insensitive on Intercom's side. Event names are
  lower-cased here (``"Invited-Friend"`` is sent as ``"invited-friend"``) so one event name
  never shows up in two spellings; two metadata keys differing only in case are refused.
- ``.`` and ``$`` in a name, which Intercom would store as ``-``, are refused: use ``-``.
- An 11th metadata key, which Intercom would drop, is refused.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, TypeAlias
from urllib.parse import urlsplit

from .errors import InvalidEventError

__all__ = [
    "MAX_METADATA_KEYS",
    "MAX_STRING_LENGTH",
    "Event",
    "Identity",
    "MetadataInput",
    "MetadataValue",
    "Money",
    "RichLink",
]

#: Intercom stores at most this many metadata keys per event and ignores the rest.
MAX_METADATA_KEYS = 10
#: The longest string value Intercom stores in event metadata.
MAX_STRING_LENGTH = 255
#: Unix seconds at or past this (year 5138) can only be a millisecond timestamp.
_MILLISECONDS_FROM = 100_000_000_000

_FORBIDDEN_KEY_CHARACTERS = frozenset(".$~`!@#%^&*'{}|\\\"\x00")
_CURRENCY = re.compile(r"[A-Za-z]{3}")


@dataclass(frozen=True)
class Money:
    """A monetary amount: ``amount`` a positive integer in cents, ``currency`` three letters.

    ``Money(34999, "eur")`` is €349.99. The currency is stored lower-case, as Intercom shows it.
    """

    amount: int
    currency: str

    def __post_init__(self) -> None:
        _check_money(self.amount, self.currency, "Money")
        object.__setattr__(self, "currency", self.currency.lower())

    def to_json(self) -> dict[str, Any]:
        """The JSON object Intercom expects: ``{"amount": ..., "currency": ...}``."""
        return {"amount": self.amount, "currency": self.currency}


@dataclass(frozen=True)
class RichLink:
    """A link with a label: ``url`` an http(s) URL, ``value`` the text shown for it."""

    url: str
    value: str

    def __post_init__(self) -> None:
        _check_rich_link(self.url, self.value, "RichLink")

    def to_json(self) -> dict[str, Any]:
        """The JSON object Intercom expects: ``{"url": ..., "value": ...}``."""
        return {"url": self.url, "value": self.value}


#: What a metadata value is once an event is built (datetimes have become Unix seconds).
MetadataValue: TypeAlias = "str | int | float | Money | RichLink"
#: What a caller may give as a metadata value (checked and converted when the event is built).
MetadataInput: TypeAlias = "str | int | float | datetime | Money | RichLink | Mapping[str, Any]"


@dataclass(frozen=True)
class Identity:
    """Who an event is about: at least one of ``user_id``, ``email`` and ``id``.

    ``user_id`` is your own id for the user, ``email`` works where email uniquely identifies
    users, and ``id`` is Intercom's contact id, the only way to address a Lead.
    """

    user_id: str | None = None
    email: str | None = None
    id: str | None = None

    def __post_init__(self) -> None:
        for name in ("user_id", "email", "id"):
            value = getattr(self, name)
            if value is None:
                continue
            if not isinstance(value, str):
                raise InvalidEventError(
                    f"{name} must be a string, got {type(value).__name__} {value!r}"
                    + (f"; pass str({value!r})" if isinstance(value, int) else ""),
                    field=name,
                )
            if not value.strip():
                raise InvalidEventError(f"{name} must not be empty or blank", field=name)
            if value != value.strip():
                raise InvalidEventError(
                    f"{name} {value!r} has leading or trailing whitespace; strip it", field=name
                )
        if self.user_id is None and self.email is None and self.id is None:
            raise InvalidEventError(
                "an event needs an identity: at least one of user_id, email or id "
                "(id is Intercom's contact id, the only way to address a Lead)",
                field="identity",
            )
        if self.email is not None:
            local, at, domain = self.email.rpartition("@")
            if not at or not local or not domain:
                raise InvalidEventError(
                    f"email {self.email!r} is not an email address", field="email"
                )

    def to_payload(self) -> dict[str, str]:
        """The identity keys that are set, as Intercom names them."""
        payload: dict[str, str] = {}
        if self.user_id is not None:
            payload["user_id"] = self.user_id
        if self.id is not None:
            payload["id"] = self.id
        if self.email is not None:
            payload["email"] = self.email
        return payload


_PAYLOAD_KEYS = frozenset({"event_name", "created_at", "user_id", "id", "email", "metadata"})


@dataclass(frozen=True)
class Event:
    """One Intercom data event, validated when built.

    ``created_at`` is when the event happened, in whole Unix seconds (an ``int``, or a
    timezone-aware :class:`~datetime.datetime`, which is converted). Intercom identifies an
    event by contact, name and ``created_at``, so sending the same event again is harmless.

    ``metadata`` holds at most 10 keys; values are strings (up to 255 characters, http(s) links
    included), numbers, :class:`Money`, :class:`RichLink`, plain dicts with exactly
    ``{"amount", "currency"}`` or ``{"url", "value"}`` (turned into those), and datetimes or
    Unix seconds on keys ending in ``_date``.
    """

    event_name: str
    created_at: int
    identity: Identity
    metadata: Mapping[str, MetadataValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "event_name", _check_event_name(self.event_name))
        object.__setattr__(self, "created_at", _to_seconds(self.created_at, "created_at"))
        if not isinstance(self.identity, Identity):
            raise InvalidEventError(
                f"identity must be an Identity, got {type(self.identity).__name__}",
                field="identity",
            )
        metadata = _check_metadata(self.metadata)
        object.__setattr__(self, "metadata", MappingProxyType(metadata))

    def __hash__(self) -> int:
        return hash((self.event_name, self.created_at, self.identity, *self.metadata.items()))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return (
            self.event_name == other.event_name
            and self.created_at == other.created_at
            and self.identity == other.identity
            and list(self.metadata.items()) == list(other.metadata.items())
        )

    def __repr__(self) -> str:
        return (
            f"Event(event_name={self.event_name!r}, created_at={self.created_at!r}, "
            f"identity={self.identity!r}, metadata={dict(self.metadata)!r})"
        )

    @classmethod
    def create(
        cls,
        event_name: str,
        *,
        identity: Identity,
        metadata: Mapping[str, MetadataInput] | None = None,
        created_at: int | datetime | None = None,
    ) -> Event:
        """Build an event, ``created_at`` defaulting to the current second.

        The typed way in for values that are converted: ``created_at`` and ``_date`` metadata
        as timezone-aware datetimes, money and rich links as plain dicts.
        """
        when: object = int(time.time()) if created_at is None else created_at
        return cls(event_name, when, identity, metadata or {})  # type: ignore[arg-type]

    def to_payload(self) -> dict[str, Any]:
        """The exact JSON body to ``POST /events``."""
        payload: dict[str, Any] = {"event_name": self.event_name, "created_at": self.created_at}
        payload.update(self.identity.to_payload())
        if self.metadata:
            payload["metadata"] = {
                key: value.to_json() if isinstance(value, (Money, RichLink)) else value
                for key, value in self.metadata.items()
            }
        return payload

    @classmethod
    def from_payload(cls, body: Mapping[str, Any]) -> Event:
        """Build an event from the shape of a ``POST /events`` body, validating it fully."""
        if not isinstance(body, Mapping):
            raise InvalidEventError(
                f"an event payload must be a JSON object, got {type(body).__name__}"
            )
        unknown = sorted(str(key) for key in body if key not in _PAYLOAD_KEYS)
        if unknown:
            raise InvalidEventError(
                f"unknown field(s) {', '.join(map(repr, unknown))} in event payload; "
                f"allowed: {', '.join(sorted(_PAYLOAD_KEYS))}",
                field=unknown[0],
            )
        for required in ("event_name", "created_at"):
            if required not in body:
                raise InvalidEventError(f"{required} is required", field=required)
        created_at = body["created_at"]
        if isinstance(created_at, datetime):
            raise InvalidEventError(
                "created_at in a payload must be Unix seconds (int), not a datetime",
                field="created_at",
            )
        metadata = body.get("metadata")
        if metadata is None:
            metadata = {}
        return cls(
            event_name=body["event_name"],
            created_at=created_at,
            identity=Identity(
                user_id=body.get("user_id"), email=body.get("email"), id=body.get("id")
            ),
            metadata=metadata,
        )


# --- rules ---------------------------------------------------------------------------------


def _check_event_name(name: object) -> str:
    if not isinstance(name, str):
        raise InvalidEventError(
            f"event_name must be a string, got {type(name).__name__}", field="event_name"
        )
    if not name.strip():
        raise InvalidEventError("event_name must not be empty", field="event_name")
    if name != name.strip():
        raise InvalidEventError(
            f"event_name {name!r} has leading or trailing whitespace; strip it",
            field="event_name",
        )
    for character in ".$":
        if character in name:
            suggestion = name.replace(".", "-").replace("$", "-").lower()
            raise InvalidEventError(
                f"event_name {name!r} contains {character!r}, which Intercom would store as "
                f"'-'; use {suggestion!r} instead",
                field="event_name",
            )
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise InvalidEventError(
            f"event_name {name!r} contains a control character", field="event_name"
        )
    return name.lower()


def _to_seconds(value: object, field_name: str) -> int:
    """Unix seconds from an int, an integral float or an aware datetime; refuse the rest."""
    where = _label(field_name)
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise InvalidEventError(
                f"{where} is a naive datetime: give it a timezone, e.g. "
                "datetime.now(timezone.utc), so it can be converted to UTC Unix seconds",
                field=field_name,
            )
        seconds = math.floor(value.timestamp())
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidEventError(
            f"{where} must be Unix seconds (int) or a timezone-aware datetime, "
            f"got {type(value).__name__} {value!r}",
            field=field_name,
        )
    elif isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise InvalidEventError(
                f"{where} must be whole Unix seconds, got {value!r}; use int(...)",
                field=field_name,
            )
        seconds = int(value)
    else:
        seconds = value
    if seconds < 0:
        raise InvalidEventError(f"{where} must not be negative, got {seconds}", field=field_name)
    if seconds >= _MILLISECONDS_FROM:
        raise InvalidEventError(
            f"{where} {seconds} looks like milliseconds; Intercom expects Unix seconds: "
            f"use {seconds // 1000}",
            field=field_name,
        )
    return seconds


def _check_key(key: object) -> str:
    if not isinstance(key, str):
        raise InvalidEventError(
            f"metadata keys must be strings, got {type(key).__name__} {key!r}", field="metadata"
        )
    if not key.strip():
        raise InvalidEventError("metadata keys must not be empty or blank", field="metadata")
    bad = sorted({c for c in key if c in _FORBIDDEN_KEY_CHARACTERS})
    if bad:
        shown = " ".join(repr(c) for c in bad)
        raise InvalidEventError(
            f"metadata key {key!r} contains {shown}; Intercom does not allow . $ ~ ` ! @ # % "
            "^ & * ' { } | \\ \" or NUL in keys: use letters, digits, '_' or '-'",
            field=f"metadata.{key}",
        )
    if any(ord(c) < 32 or ord(c) == 127 for c in key):
        raise InvalidEventError(
            f"metadata key {key!r} contains a control character", field=f"metadata.{key}"
        )
    return key


def _check_metadata(metadata: object) -> dict[str, MetadataValue]:
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise InvalidEventError(
            f"metadata must be a mapping of keys to values, got {type(metadata).__name__}",
            field="metadata",
        )
    if len(metadata) > MAX_METADATA_KEYS:
        keys = list(metadata)
        raise InvalidEventError(
            f"metadata has {len(keys)} keys; Intercom keeps only the first "
            f"{MAX_METADATA_KEYS} and silently drops the rest (here {keys[MAX_METADATA_KEYS]!r} "
            "onwards): send fewer keys",
            field="metadata",
        )
    checked: dict[str, MetadataValue] = {}
    seen: dict[str, str] = {}
    for raw_key, raw_value in metadata.items():
        key = _check_key(raw_key)
        folded = key.lower()
        if folded in seen:
            raise InvalidEventError(
                f"metadata keys {seen[folded]!r} and {key!r} differ only in case; Intercom "
                "treats keys case-insensitively: keep one",
                field=f"metadata.{key}",
            )
        seen[folded] = key
        checked[key] = _check_value(key, raw_value)
    return checked


def _check_value(key: str, value: object) -> MetadataValue:
    field_name = f"metadata.{key}"
    is_date_key = key.lower().endswith("_date")
    if is_date_key:
        if isinstance(value, (str, Money, RichLink, Mapping)) or value is None:
            raise InvalidEventError(
                f"metadata key {key!r} ends in '_date', so its value must be a date: Unix "
                f"seconds (int) or a timezone-aware datetime, got {type(value).__name__} "
                f"{value!r}; rename the key if it is not a date",
                field=field_name,
            )
        return _to_seconds(value, field_name)
    if isinstance(value, datetime):
        raise InvalidEventError(
            f"metadata key {key!r} holds a datetime, but Intercom only reads dates on keys "
            f"ending in '_date': rename it, e.g. {key + '_date'!r}",
            field=field_name,
        )
    if isinstance(value, (Money, RichLink)):
        return value
    if isinstance(value, bool):
        raise InvalidEventError(
            f"metadata key {key!r} holds a bool, which is not an Intercom metadata type; "
            f"send it as a string ({str(value).lower()!r}) or a number ({int(value)}) "
            "if that is what you mean",
            field=field_name,
        )
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidEventError(
                f"metadata key {key!r} holds {value!r}; numbers must be finite", field=field_name
            )
        return value
    if isinstance(value, str):
        _check_string(value, field_name)
        return value
    if isinstance(value, Mapping):
        return _from_plain_dict(key, value)
    kind = "None" if value is None else type(value).__name__
    raise InvalidEventError(
        f"metadata key {key!r} holds {kind}, which Intercom cannot store: use a string, a "
        "number, a link, a datetime on a '_date' key, Money(amount, currency) or "
        "RichLink(url, value); nested objects and lists are not allowed",
        field=field_name,
    )


def _from_plain_dict(key: str, value: Mapping[Any, Any]) -> Money | RichLink:
    keys = set(value)
    if keys == {"url", "value"}:
        _check_rich_link(value["url"], value["value"], f"metadata.{key}")
        return RichLink(value["url"], value["value"])
    if keys == {"amount", "currency"}:
        _check_money(value["amount"], value["currency"], f"metadata.{key}")
        return Money(value["amount"], value["currency"])
    raise InvalidEventError(
        f"metadata key {key!r} holds an object with keys {sorted(map(str, keys))}; the only "
        "objects Intercom takes are a rich link {'url', 'value'} and money "
        "{'amount', 'currency'} (no other nesting)",
        field=f"metadata.{key}",
    )


def _check_string(value: str, field_name: str) -> None:
    where = _label(field_name)
    if len(value) > MAX_STRING_LENGTH:
        raise InvalidEventError(
            f"{where} is {len(value)} characters long; Intercom stores at most "
            f"{MAX_STRING_LENGTH}: shorten it",
            field=field_name,
        )
    if value.lower().startswith(("http://", "https://")):
        _check_url(value, field_name)


def _check_url(url: str, field_name: str) -> None:
    try:
        host = urlsplit(url).hostname
    except ValueError:
        host = None
    if not host:
        raise InvalidEventError(
            f"{_label(field_name)}: {url!r} is not a valid http(s) link: it needs a host",
            field=field_name,
        )


def _check_rich_link(url: object, value: object, field_name: str) -> None:
    where = _label(field_name)
    if not isinstance(url, str) or not url.lower().startswith(("http://", "https://")):
        raise InvalidEventError(
            f"{where}: a rich link's url must be an http or https URL, got {url!r}",
            field=field_name,
        )
    _check_url(url, field_name)
    if not isinstance(value, str) or not value.strip():
        raise InvalidEventError(
            f"{where}: a rich link's value must be a non-empty string, got {value!r}",
            field=field_name,
        )
    if len(value) > MAX_STRING_LENGTH:
        raise InvalidEventError(
            f"{where}: a rich link's value is {len(value)} characters long; at most "
            f"{MAX_STRING_LENGTH}",
            field=field_name,
        )


def _check_money(amount: object, currency: object, field_name: str) -> None:
    where = _label(field_name)
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise InvalidEventError(
            f"{where}: a money amount must be a positive integer in cents "
            f"(34999 for 349.99), got {amount!r}",
            field=field_name,
        )
    if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency):
        raise InvalidEventError(
            f"{where}: a currency must be a three-letter code such as 'eur', got {currency!r}",
            field=field_name,
        )


def _label(field_name: str) -> str:
    """How a message names a field: ``"metadata.price"`` -> ``"metadata key 'price'"``."""
    if field_name.startswith("metadata."):
        return f"metadata key {field_name.removeprefix('metadata.')!r}"
    return field_name
