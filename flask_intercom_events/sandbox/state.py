"""What the emulator holds: contacts, received events and summaries, counters, request log.

Thread-safe: every method takes the state's lock (re-entrant, so the API handler can hold it
across a whole request). No I/O: the clock is passed in by the caller.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import threading
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from .faults import Fault, FaultPlan
from .ratelimit import RateWindows
from .settings import Settings
from .validation import MAX_METADATA_KEYS, CheckedEvent, CheckedSummary, EventWarning


@dataclass(frozen=True)
class Contact:
    """A contact events can be sent for. ``id`` is Intercom's id (made up when not given)."""

    id: str
    user_id: str | None = None
    email: str | None = None

    @classmethod
    def make(
        cls, *, user_id: str | None = None, email: str | None = None, id: str | None = None
    ) -> Contact:
        """A contact from any of its identifiers; raises ``ValueError`` when given none."""
        for name, value in (("user_id", user_id), ("email", email), ("id", id)):
            if value is not None and (not isinstance(value, str) or not value):
                raise ValueError(f"contact {name} must be a non-empty string, got {value!r}")
        if user_id is None and email is None and id is None:
            raise ValueError("a contact needs at least one of user_id, email or id")
        if id is None:
            # Stable and Intercom-shaped (24 hex digits), so a reset keeps the same ids.
            id = hashlib.sha1(f"{user_id}\0{email}".encode()).hexdigest()[:24]
        return cls(id=id, user_id=user_id, email=email)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Contact:
        """A contact from ``{"user_id": ..., "email": ..., "id": ...}`` (any of them)."""
        unknown = sorted(set(data) - {"user_id", "email", "id"})
        if unknown:
            raise ValueError(f"unknown contact field(s) {', '.join(unknown)}")
        return cls.make(user_id=data.get("user_id"), email=data.get("email"), id=data.get("id"))

    def to_dict(self) -> dict[str, str | None]:
        """JSON form."""
        return {"id": self.id, "user_id": self.user_id, "email": self.email}


@dataclass(frozen=True)
class ReceivedEvent:
    """An event the emulator stored (duplicates are counted, not stored).

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
    ``warnings``: warnings on stored events and summaries.
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
        }


def _decode(raw: bytes) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(raw)
    return body


class SandboxState:
    """Everything the emulator knows and has received, behind one lock."""

    def __init__(self, settings: Settings, contacts: Iterable[Contact] = ()) -> None:
        self.lock = threading.RLock()
        self._changed = threading.Condition(self.lock)
        self._settings = settings
        self.faults = FaultPlan(settings.seed)
        self._ids = random.Random(settings.seed)
        self.windows = RateWindows()
        self._declared: list[Contact] = []
        self._contact_by: dict[str, dict[str, Contact]] = {"id": {}, "user_id": {}, "email": {}}
        self._events: list[ReceivedEvent] = []
        self._events_of: dict[str, list[ReceivedEvent]] = {}
        self._summaries: list[ReceivedSummary] = []
        self._summaries_of: dict[str, list[ReceivedSummary]] = {}
        self._seen: set[tuple[str, str, int]] = set()
        self._names: set[str] = set()
        self._log: deque[RequestRecord] = deque(maxlen=settings.log_size)
        self._counts: Counter[str] = Counter()
        self._by_status: Counter[int] = Counter()
        self._faults: Counter[str] = Counter()
        for contact in contacts:
            self.add_contact(contact)

    # -- settings and contacts -------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        """The settings in force."""
        return self._settings

    def configure(self, **changes: Any) -> Settings:
        """Change settings at run time (checked as a whole); returns the new settings."""
        with self.lock:
            settings = self._settings.replace(**changes)
            if "seed" in changes:
                self.faults.reseed(settings.seed)
                self._ids.seed(settings.seed)
            if settings.log_size != self._settings.log_size:
                self._log = deque(self._log, maxlen=settings.log_size)
            self._settings = settings
            return settings

    def add_contact(self, contact: Contact) -> Contact:
        """Declare ``contact``; later lookups by any of its identifiers find it."""
        with self.lock:
            self._declared.append(contact)
            self._index(contact)
            return contact

    def _index(self, contact: Contact) -> None:
        self._contact_by["id"][contact.id] = contact
        if contact.user_id is not None:
            self._contact_by["user_id"][contact.user_id] = contact
        if contact.email is not None:
            self._contact_by["email"][contact.email.lower()] = contact

    def find_contact(
        self, *, user_id: str | None = None, email: str | None = None, id: str | None = None
    ) -> Contact | None:
        """The contact known by ``id``, else ``user_id``, else ``email`` (case-insensitive)."""
        with self.lock:
            for kind, value in (("id", id), ("user_id", user_id), ("email", email)):
                if value is not None:
                    found = self._contact_by[kind].get(value.lower() if kind == "email" else value)
                    if found is not None:
                        return found
            return None

    def contact_for(
        self, *, user_id: str | None = None, email: str | None = None, id: str | None = None
    ) -> Contact | None:
        """The contact an event is about; ``None`` means ``404 User Not Found``.

        Unless contacts are required, an unknown contact is created on first sight.
        """
        with self.lock:
            found = self.find_contact(user_id=user_id, email=email, id=id)
            if found is not None or self._settings.require_contacts:
                return found
            return self.create_contact(user_id=user_id, email=email, id=id)

    def create_contact(
        self, *, user_id: str | None = None, email: str | None = None, id: str | None = None
    ) -> Contact:
        """A contact created by an event (forgotten by :meth:`reset`, unlike declared ones)."""
        contact = Contact.make(user_id=user_id, email=email, id=id)
        with self.lock:
            self._index(contact)
        return contact

    @property
    def contacts(self) -> list[Contact]:
        """Every contact known: declared ones and, unless required, those events created."""
        with self.lock:
            return list(self._contact_by["id"].values())

    # -- recording -------------------------------------------------------------------------

    def new_request_id(self) -> str:
        """A fresh request id, UUID-shaped (repeatable under a seed)."""
        with self.lock:
            return str(uuid.UUID(int=self._ids.getrandbits(128), version=4))

    def is_new_name(self, event_name: str) -> bool:
        """``True`` when no stored event has this (stored) name yet."""
        with self.lock:
            return event_name not in self._names

    @property
    def name_count(self) -> int:
        """How many distinct event names are stored."""
        with self.lock:
            return len(self._names)

    def store_event(
        self,
        checked: CheckedEvent,
        contact: Contact,
        *,
        raw: bytes,
        warnings: tuple[EventWarning, ...],
        request_id: str,
        now: float,
    ) -> ReceivedEvent | None:
        """Store an accepted event; a duplicate (same contact, name and ``created_at``) is
        counted and not stored, and gives ``None``."""
        key = (contact.id, checked.event_name, checked.created_at)
        with self.lock:
            if key in self._seen:
                self._counts["duplicates"] += 1
                return None
            self._seen.add(key)
            self._names.add(checked.event_name)
            event = ReceivedEvent(
                event_name=checked.event_name,
                created_at=checked.created_at,
                intercom_user_id=contact.id,
                user_id=checked.user_id,
                email=checked.email,
                id=checked.id,
                raw=raw,
                warnings=warnings,
                request_id=request_id,
                received_at=now,
            )
            self._events.append(event)
            self._events_of.setdefault(contact.id, []).append(event)
            self._counts["warnings"] += len(warnings)
            return event

    def store_summary(
        self,
        checked: CheckedSummary,
        contact: Contact,
        *,
        raw: bytes,
        warnings: tuple[EventWarning, ...],
        request_id: str,
        now: float,
    ) -> ReceivedSummary:
        """Store an accepted event summary."""
        summary = ReceivedSummary(
            user_id=checked.user_id,
            intercom_user_id=contact.id,
            event_name=checked.event_name,
            count=checked.count,
            first=checked.first,
            last=checked.last,
            raw=raw,
            warnings=warnings,
            request_id=request_id,
            received_at=now,
        )
        with self.lock:
            self._summaries.append(summary)
            self._summaries_of.setdefault(contact.id, []).append(summary)
            self._counts["warnings"] += len(warnings)
            return summary

    def record_request(
        self,
        *,
        method: str,
        target: str,
        status: int | None,
        fault: Fault | None,
        request_id: str,
        now: float,
    ) -> None:
        """Count one answered (or dropped) API request and log it."""
        with self.lock:
            self._counts["requests"] += 1
            if status is None:
                self._counts["dropped"] += 1
            else:
                self._by_status[status] += 1
            if status == 429:
                self._counts["rate_limited"] += 1
            if fault is not None:
                self._faults[fault.kind.value] += 1
            self._log.append(
                RequestRecord(
                    method=method,
                    target=target,
                    status=status,
                    fault=str(fault) if fault is not None else None,
                    request_id=request_id,
                    received_at=now,
                )
            )
            self._changed.notify_all()

    # -- reading ---------------------------------------------------------------------------

    def events_of(self, contact: Contact) -> list[ReceivedEvent]:
        """The events stored for ``contact``, in arrival order."""
        with self.lock:
            return list(self._events_of.get(contact.id, ()))

    def summaries_of(self, contact: Contact) -> list[ReceivedSummary]:
        """The summaries stored for ``contact``, in arrival order."""
        with self.lock:
            return list(self._summaries_of.get(contact.id, ()))

    @property
    def events(self) -> list[ReceivedEvent]:
        """Every stored event, in arrival order."""
        with self.lock:
            return list(self._events)

    @property
    def summaries(self) -> list[ReceivedSummary]:
        """Every stored summary, in arrival order."""
        with self.lock:
            return list(self._summaries)

    @property
    def requests(self) -> list[RequestRecord]:
        """The latest API requests (at most ``log_size``), oldest first."""
        with self.lock:
            return list(self._log)

    @property
    def stats(self) -> Stats:
        """A snapshot of the counts."""
        with self.lock:
            return Stats(
                requests=self._counts["requests"],
                by_status=dict(self._by_status),
                events=len(self._events),
                duplicates=self._counts["duplicates"],
                rate_limited=self._counts["rate_limited"],
                summaries=len(self._summaries),
                dropped=self._counts["dropped"],
                faults=dict(self._faults),
                warnings=self._counts["warnings"],
            )

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Block until ``predicate()`` holds (checked after each request); ``False`` on
        timeout."""
        with self._changed:
            return self._changed.wait_for(predicate, timeout)

    def reset(self) -> None:
        """Forget what was received, the counts, the rate windows, the script, and contacts
        that events created; keep the settings and the declared contacts."""
        with self.lock:
            self._events.clear()
            self._events_of.clear()
            self._summaries.clear()
            self._summaries_of.clear()
            self._seen.clear()
            self._names.clear()
            self._log.clear()
            self._counts.clear()
            self._by_status.clear()
            self._faults.clear()
            self.windows.clear()
            self.faults.clear()
            self.faults.reseed(self._settings.seed)
            self._ids.seed(self._settings.seed)
            for index in self._contact_by.values():
                index.clear()
            for contact in self._declared:
                self._index(contact)
            self._changed.notify_all()
