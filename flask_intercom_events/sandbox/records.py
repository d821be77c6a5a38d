"""What the emulator keeps of what it received: stored events and summaries, duplicates, the
request log, and the counts. Frozen values, safe to hand to any thread."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from .validation import MAX_METADATA_KEYS, EventWarning


@dataclass(frozen=True)
class ReceivedEvent:
    """An event the emulator stored (duplicates are kept apart, see :class:`Duplicate`).

    ``event_name`` and ``metadata`` are as Intercom stores them (lower case, ``.``/``$`` as
    ``-``, the first 10 keys); ``body`` is the JSON object exactly as received (``raw``, its
    bytes); ``warnings`` lists the mistakes Intercom would have accepted silently.
    """

    event_name: str
    created_at: int
    intercom_user_id: str
    user_id: str | None
    email: str | None
    id: str | None
    raw: bytes
    warnings: tuple[EventWarning, ...]
    request_id: str
    received_at: float

    # body and metadata are decoded on first use: a stored event then holds no containers,
    # which keeps garbage-collector pauses short when a long run stores 100,000s of events
    # (a full collection took 0.5 s at 100,000 events holding their dicts).
    @cached_property
    def body(self) -> dict[str, Any]:
        """The JSON object as received."""
        return _decode(self.raw)

    @cached_property
    def metadata(self) -> dict[str, Any]:
        """Metadata as Intercom stores it: the first 10 keys, in send order."""
        sent: dict[str, Any] = self.body.get("metadata", {})
        return dict(itertools.islice(sent.items(), MAX_METADATA_KEYS))

    def to_dict(self) -> dict[str, Any]:
        """JSON form, as ``GET /_sandbox/events`` shows it."""
        return {
            "event_name": self.event_name,
            "created_at": self.created_at,
            "intercom_user_id": self.intercom_user_id,
            "user_id": self.user_id,
            "email": self.email,
            "id": self.id,
            "metadata": self.metadata,
            "body": self.body,
            "warnings": [warning.to_dict() for warning in self.warnings],
            "request_id": self.request_id,
            "received_at": self.received_at,
        }

    def to_api(self) -> dict[str, Any]:
        """The event as ``GET /events`` lists it (Intercom's ``data_event``)."""
        item: dict[str, Any] = {
            "type": "event",
            "event_name": self.event_name,
            "created_at": self.created_at,
        }
        for key, value in (
            ("user_id", self.user_id),
            ("id", self.id),
            ("intercom_user_id", self.intercom_user_id),
            ("email", self.email),
        ):
            if value is not None:
                item[key] = value
        item["metadata"] = self.metadata
        return item


@dataclass(frozen=True)
class Duplicate:
    """An event answered ``202`` but not stored: ``stored`` already has its identity
    (contact, stored event name, ``created_at``). ``raw`` is the duplicate's body as sent."""

    raw: bytes
    stored: ReceivedEvent
    request_id: str
    received_at: float

    @cached_property
    def body(self) -> dict[str, Any]:
        """The duplicate's JSON object as received."""
        return _decode(self.raw)

    def to_dict(self) -> dict[str, Any]:
        """JSON form, as ``GET /_sandbox/duplicates`` shows it."""
        return {
            "body": self.body,
            "request_id": self.request_id,
            "received_at": self.received_at,
            "duplicate_of": self.stored.to_dict(),
        }


@dataclass(frozen=True)
class ReceivedSummary:
    """An accepted ``POST /events/summaries`` body (``raw``: its bytes, as received)."""

    user_id: str
    intercom_user_id: str
    event_name: str
    count: int
    first: int
    last: int
    raw: bytes
    warnings: tuple[EventWarning, ...]
    request_id: str
    received_at: float

    @cached_property
    def body(self) -> dict[str, Any]:
        """The JSON object as received."""
        return _decode(self.raw)

    def to_dict(self) -> dict[str, Any]:
        """JSON form, as ``GET /_sandbox/summaries`` shows it."""
        return {
            "user_id": self.user_id,
            "intercom_user_id": self.intercom_user_id,
            "event_name": self.event_name,
            "count": self.count,
            "first": self.first,
            "last": self.last,
            "body": self.body,
            "warnings": [warning.to_dict() for warning in self.warnings],
            "request_id": self.request_id,
            "received_at": self.received_at,
        }


@dataclass(frozen=True)
class RequestRecord:
    """One API request as the request log keeps it (never the token).

    ``status`` is ``None`` for a dropped connection; ``fault`` names the injected fault.
    """

    method: str
    target: str
    status: int | None
    fault: str | None
    request_id: str
    received_at: float

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "method": self.method,
            "target": self.target,
            "status": self.status,
            "fault": self.fault,
            "request_id": self.request_id,
            "received_at": self.received_at,
        }


@dataclass(frozen=True)
class Stats:
    """Exact counts since the start or the last reset.

    ``requests``: API requests seen (control requests excluded), dropped ones included;
    ``by_status``: responses per HTTP status; ``events``: events stored; ``duplicates``:
    events answered ``202`` but not stored; ``rate_limited``: ``429`` answers, injected ones
    included; ``summaries``: summaries stored; ``dropped``: connections closed unanswered;
    ``faults``: injected faults per kind (``error``, ``throttle``, ``stall``, ``drop``);
    ``warnings``: warnings on stored events and summaries; ``contacts_created``: contacts
    ``POST /contacts`` created.
    """

    requests: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    events: int = 0
    duplicates: int = 0
    rate_limited: int = 0
    summaries: int = 0
    dropped: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    warnings: int = 0
    contacts_created: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON form (statuses as string keys)."""
        return {
            "requests": self.requests,
            "by_status": {str(status): n for status, n in sorted(self.by_status.items())},
            "events": self.events,
            "duplicates": self.duplicates,
            "rate_limited": self.rate_limited,
            "summaries": self.summaries,
            "dropped": self.dropped,
            "faults": dict(sorted(self.faults.items())),
            "warnings": self.warnings,
            "contacts_created": self.contacts_created,
        }


def _decode(raw: bytes) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(raw)
    return body
