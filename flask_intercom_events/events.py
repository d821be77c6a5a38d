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
- Strings Intercom stores with the event are at most 255 characters: ``event_name`` (counted
  once lower-cased), ``user_id``, ``email``, ``id``, metadata string values and rich-link
  values. The API reference documents no bound; the only documented one is Intercom Help
  Center article 175 ("strings up to 255 characters", see the API notes' metadata table), and
  it is applied to each of them rather than guessing which ones Intercom truncates.

Decisions where the event could not be stored or sent at all:

- Every string must have a UTF-8 form: a lone surrogate (``"\\udce9"``) is refused when the
  event is built, not found when the event is pushed to Redis.
- Integers are 64-bit, as Intercom stores numbers: from ``-2**63`` to ``2**63 - 1``
  (money amounts positive); floats finite.

The metadata value types and their rules live in :mod:`.metadata`, the rules shared by names,
strings and times in :mod:`.rules`; the public names are re-exported here.
"""

from __future__ import annotations

import base64
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

from .errors import InvalidEventError
from .metadata import (
    MAX_METADATA_KEYS,
    MetadataInput,
    MetadataValue,
    Money,
    RichLink,
    check_metadata,
)
from .rules import (
    INT64_MAX,
    MAX_STRING_LENGTH,
    check_event_name,
    check_length,
    check_utf8,
    escape,
    show,
    to_seconds,
)

__all__ = [
    "MAX_METADATA_KEYS",
    "MAX_STRING_LENGTH",
    "Event",
    "EventSummary",
    "Identity",
    "MetadataInput",
    "MetadataValue",
    "Money",
    "RichLink",
    "new_event_uuid",
    "tracked_at",
]

# What a given uuid may be: new_event_uuid()'s 22 characters, or a str(uuid4()) with dashes,
# or another caller's id of the same alphabet; short enough to keep in Redis for every event.
_UUID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def new_event_uuid() -> str:
    """A new id for a tracked event: 16 bytes laid out as a UUIDv7 (RFC 9562: the time it was
    made, in milliseconds, in the first 48 bits, then 74 random bits), URL-safe base64,
    unpadded.

    22 characters instead of ``str(uuid4())``'s 36, on purpose: it is stored in Redis with
    every waiting event. The time in it tells how long an event has waited
    (:func:`tracked_at`), whatever its ``created_at`` (a backfill's are old).
    """
    raw = bytearray((time.time_ns() // 1_000_000).to_bytes(6, "big") + os.urandom(10))
    raw[6] = 0x70 | (raw[6] & 0x0F)  # version 7
    raw[8] = 0x80 | (raw[8] & 0x3F)  # RFC 9562's variant
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode("ascii")


def tracked_at(uuid: str) -> float | None:
    """When the event of ``uuid`` was tracked (Unix seconds), for an id
    :func:`new_event_uuid` made; ``None`` for any other id (one given, an older random one)."""
    if len(uuid) != 22:
        return None
    try:
        raw = base64.urlsafe_b64decode(uuid + "==")
    except ValueError:  # binascii.Error is one
        return None
    if len(raw) != 16 or raw[6] >> 4 != 7 or raw[8] >> 6 != 2:
        return None
    return int.from_bytes(raw[:6], "big") / 1000


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
                    f"{name} must be a string, got {type(value).__name__} {show(value)}"
                    + (f"; pass str({show(value)})" if isinstance(value, int) else ""),
                    field=name,
                )
            check_utf8(value, name, name)
            if not value.strip():
                raise InvalidEventError(f"{name} must not be empty or blank", field=name)
            if value != value.strip():
                raise InvalidEventError(
                    f"{name} {show(value)} has leading or trailing whitespace; strip it", field=name
                )
            check_length(value, name, name)
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
                    f"email {show(self.email)} is not an email address", field="email"
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

    ``uuid`` tells tracked events apart: each event gets a new one when it is built
    (:func:`new_event_uuid`), and it travels with the event through Redis, the spool and the
    jobs, so a re-delivery of one event (same ``uuid``, same ``created_at``, de-duplicated by
    Intercom) can be told from a different event in the same second. It is never sent to
    Intercom (the body's ``id`` is the Lead's Intercom contact id), and equality and hash
    ignore it: two events are equal when Intercom receives the same body.
    ``dataclasses.replace(event, ...)`` keeps it.
    """

    event_name: str
    created_at: int
    identity: Identity
    metadata: Mapping[str, MetadataValue] = field(default_factory=dict)
    uuid: str = field(default_factory=new_event_uuid, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "event_name", check_event_name(self.event_name))
        object.__setattr__(self, "created_at", to_seconds(self.created_at, "created_at"))
        if not isinstance(self.identity, Identity):
            raise InvalidEventError(
                f"identity must be an Identity, got {type(self.identity).__name__}",
                field="identity",
            )
        metadata = check_metadata(self.metadata)
        object.__setattr__(self, "metadata", MappingProxyType(metadata))
        if not isinstance(self.uuid, str) or not _UUID.fullmatch(self.uuid):
            raise InvalidEventError(
                "uuid must be 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-' (as "
                f"new_event_uuid() makes, or str(uuid4())), got {show(self.uuid)}",
                field="uuid",
            )

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
            f"identity={self.identity!r}, metadata={dict(self.metadata)!r}, uuid={self.uuid!r})"
        )

    @classmethod
    def create(
        cls,
        event_name: str,
        *,
        identity: Identity,
        metadata: Mapping[str, MetadataInput] | None = None,
        created_at: int | datetime | None = None,
        uuid: str | None = None,
    ) -> Event:
        """Build an event, ``created_at`` defaulting to the current second.

        The typed way in for values that are converted: ``created_at`` and ``_date`` metadata
        as timezone-aware datetimes, money and rich links as plain dicts. ``uuid`` is the
        event's own id (``None``: a new one); give one only to rebuild an event tracked before.
        """
        when: object = int(time.time()) if created_at is None else created_at
        return cls(
            event_name,
            when,  # type: ignore[arg-type]
            identity,
            {} if metadata is None else metadata,  # type: ignore[arg-type]
            new_event_uuid() if uuid is None else uuid,
        )

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
    def from_payload(cls, body: Mapping[str, Any], *, uuid: str | None = None) -> Event:
        """Build an event from the shape of a ``POST /events`` body, validating it fully.

        The body holds no uuid (Intercom is never sent one): give the event's ``uuid`` to
        rebuild a tracked event, or ``None`` for a new one. ``to_payload()`` and this round-trip.
        """
        if not isinstance(body, Mapping):
            raise InvalidEventError(
                f"an event payload must be a JSON object, got {type(body).__name__}"
            )
        unknown = sorted(
            escape(key) if isinstance(key, str) else show(key)
            for key in body
            if key not in _PAYLOAD_KEYS
        )
        if unknown:
            hint = "; the uuid is not part of the body: pass uuid=" if "uuid" in unknown else ""
            raise InvalidEventError(
                f"unknown field(s) {', '.join(map(repr, unknown))} in event payload; "
                f"allowed: {', '.join(sorted(_PAYLOAD_KEYS))}{hint}",
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
            uuid=new_event_uuid() if uuid is None else uuid,
        )


_SUMMARY_KEYS = ("event_name", "count", "first", "last")


@dataclass(frozen=True)
class EventSummary:
    """Pre-aggregated counts of one event for a user: ``POST /events/summaries``'s
    ``event_summaries`` object, validated when built.

    ``event_name`` follows the rule of :attr:`Event.event_name` (lower-cased, no ``.`` or
    ``$``, at most 255 characters); ``count`` is a positive integer within 64 bits; ``first``
    and ``last`` are the times of the first and last of those events, in Unix seconds with the
    rule of :attr:`Event.created_at` (an aware datetime is converted), ``first <= last``.
    A refusal's ``field`` is where the value sits in the body: ``"event_summaries.count"``.
    """

    event_name: str
    count: int
    first: int
    last: int

    def __post_init__(self) -> None:
        where = "event_summaries"
        name = check_event_name(self.event_name, f"{where}.event_name")
        object.__setattr__(self, "event_name", name)
        count = self.count
        if isinstance(count, bool) or not isinstance(count, int) or not 0 < count <= INT64_MAX:
            raise InvalidEventError(
                f"{where}.count must be a positive integer of at most {INT64_MAX} (Intercom "
                f"stores numbers in 64 bits), got {show(count)}",
                field=f"{where}.count",
            )
        object.__setattr__(self, "count", int(count))
        first = to_seconds(self.first, f"{where}.first")
        last = to_seconds(self.last, f"{where}.last")
        if first > last:
            raise InvalidEventError(
                f"{where}.first ({first}) is after {where}.last ({last}): first is the time "
                "of the earliest of the events counted",
                field=f"{where}.first",
            )
        object.__setattr__(self, "first", first)
        object.__setattr__(self, "last", last)

    def to_json(self) -> dict[str, Any]:
        """The ``event_summaries`` object as sent: ``{"event_name", "count", "first", "last"}``."""
        return {
            "event_name": self.event_name,
            "count": self.count,
            "first": self.first,
            "last": self.last,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EventSummary:
        """Build a summary from the shape of ``to_json()``, refusing other keys or missing ones."""
        where = "event_summaries"
        if not isinstance(data, Mapping):
            raise InvalidEventError(
                f"{where} must be a mapping with keys {', '.join(_SUMMARY_KEYS)}, "
                f"got {type(data).__name__}",
                field=where,
            )
        unknown = sorted(
            escape(key) if isinstance(key, str) else show(key)
            for key in data
            if key not in _SUMMARY_KEYS
        )
        if unknown:
            raise InvalidEventError(
                f"{where} has unknown key(s) {', '.join(map(repr, unknown))}; "
                f"allowed: {', '.join(_SUMMARY_KEYS)}",
                field=where,
            )
        missing = [key for key in _SUMMARY_KEYS if key not in data]
        if missing:
            raise InvalidEventError(
                f"{where} is missing {', '.join(map(repr, missing))}",
                field=f"{where}.{missing[0]}",
            )
        return cls(data["event_name"], data["count"], data["first"], data["last"])
