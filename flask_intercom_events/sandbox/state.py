"""What the emulator holds: its settings, the declared contacts, and one received-state value.

Everything the API changes (events, summaries, counts, the request log, rate windows, the
fault script, contacts that events created) lives in one :class:`_Received` value, which
:meth:`SandboxState.reset` replaces whole: nothing can be forgotten by a reset, nor survive
one by mistake. The lock is private: other modules call the methods below, each of which is
atomic. No I/O: the clock is passed in by the caller.
"""

from __future__ import annotations

import enum
import random
import threading
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .contacts import Contact, ContactBook
from .faults import Fault, FaultPlan
from .ratelimit import RateDecision, RateWindows
from .records import Duplicate, ReceivedEvent, ReceivedSummary, RequestRecord, Stats
from .settings import Settings
from .validation import CheckedEvent, CheckedSummary, EventWarning

#: A stored event's identity: (contact id, event name as stored, ``created_at``).
EventKey = tuple[str, str, int]


class Verdict(enum.Enum):
    """What became of a ``POST /events`` body that passed validation."""

    STORED = "stored"
    DUPLICATE = "duplicate"
    NO_CONTACT = "no_contact"
    TOO_MANY_NAMES = "too_many_names"


@dataclass(frozen=True)
class Admission:
    """What one API request gets on arrival: the settings in force, its request id, its
    fault, and the latency to add."""

    settings: Settings
    request_id: str
    fault: Fault
    delay: float


@dataclass
class _Received:
    """Everything received since the start or the last reset (replaced whole by a reset)."""

    contacts: ContactBook
    faults: FaultPlan
    ids: random.Random
    log: deque[RequestRecord]
    duplicates: deque[Duplicate]
    windows: RateWindows = field(default_factory=RateWindows)
    events: list[ReceivedEvent] = field(default_factory=list)
    events_of: dict[str, list[ReceivedEvent]] = field(default_factory=dict)
    summaries: list[ReceivedSummary] = field(default_factory=list)
    summaries_of: dict[str, list[ReceivedSummary]] = field(default_factory=dict)
    stored: dict[EventKey, ReceivedEvent] = field(default_factory=dict)
    names: set[str] = field(default_factory=set)
    counts: Counter[str] = field(default_factory=Counter)
    by_status: Counter[int] = field(default_factory=Counter)
    faults_seen: Counter[str] = field(default_factory=Counter)

    @classmethod
    def fresh(cls, settings: Settings, declared: ContactBook) -> _Received:
        """Nothing received yet: only the declared contacts are known."""
        return cls(
            contacts=declared.copy(),
            faults=FaultPlan(settings.seed),
            ids=random.Random(settings.seed),
            log=deque(maxlen=settings.log_size),
            duplicates=deque(maxlen=settings.log_size),
        )


class SandboxState:
    """Everything the emulator knows and has received; each method is atomic."""

    def __init__(self, settings: Settings, contacts: Iterable[Contact] = ()) -> None:
        # Re-entrant: wait_for() predicates read the state while its condition holds the lock.
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._settings = settings
        # Every token ever configured: a control answer hides a token even after it was
        # replaced, since what was received under it may still hold it.
        self._secrets = set(settings.all_tokens)
        self._declared = ContactBook()
        for contact in contacts:
            self._declared.add(contact)
        self._received = _Received.fresh(settings, self._declared)

    # -- settings, contacts, script ----------------------------------------------------------

    @property
    def settings(self) -> Settings:
        """The settings in force."""
        return self._settings

    def configure(self, **changes: Any) -> Settings:
        """Change settings at run time (checked as a whole); returns the new settings."""
        with self._lock:
            settings = self._settings.replace(**changes)
            received = self._received
            if "seed" in changes:
                received.faults.reseed(settings.seed)
                received.ids.seed(settings.seed)
            if settings.log_size != self._settings.log_size:
                received.log = deque(received.log, maxlen=settings.log_size)
                received.duplicates = deque(received.duplicates, maxlen=settings.log_size)
            self._settings = settings
            self._secrets |= settings.all_tokens
            return settings

    @property
    def secrets(self) -> frozenset[str]:
        """Every token configured since the start (replaced ones included)."""
        with self._lock:
            return frozenset(self._secrets)

    def add_contact(self, contact: Contact) -> Contact:
        """Declare ``contact`` (kept by :meth:`reset`); events for it are then accepted."""
        with self._lock:
            self._declared.add(contact)
            return self._received.contacts.add(contact)

    def find_contact(
        self, *, user_id: str | None = None, email: str | None = None, id: str | None = None
    ) -> Contact | None:
        """The contact known by ``id``, else ``user_id``, else ``email`` (case-insensitive)."""
        with self._lock:
            return self._received.contacts.find(user_id=user_id, email=email, id=id)

    @property
    def contacts(self) -> list[Contact]:
        """Every contact known: declared ones and, unless required, those events created."""
        with self._lock:
            return list(self._received.contacts)

    def extend_script(self, faults: Iterable[Fault]) -> list[Fault]:
        """Queue faults for the next API requests; returns what is queued."""
        with self._lock:
            self._received.faults.extend(faults)
            return self._received.faults.pending

    def clear_script(self) -> None:
        """Drop what is left of the fault script."""
        with self._lock:
            self._received.faults.clear()

    @property
    def script(self) -> list[Fault]:
        """What is left of the fault script, next first."""
        with self._lock:
            return self._received.faults.pending

    # -- one API request -----------------------------------------------------------------------

    def admit(self) -> Admission:
        """Start an API request: its request id (UUID-shaped, repeatable under a seed), its
        fault (the script first, then the rates) and its latency."""
        with self._lock:
            received, settings = self._received, self._settings
            return Admission(
                settings=settings,
                request_id=str(uuid.UUID(int=received.ids.getrandbits(128), version=4)),
                fault=received.faults.next(settings),
                delay=received.faults.latency(settings),
            )

    def count_call(self, token: str, now: float, limit: int, width: float) -> RateDecision:
        """Count one call by ``token`` in its rate window; every call counts, refused too."""
        with self._lock:
            return self._received.windows.hit(token, now, limit, width)

    def accept_event(
        self,
        checked: CheckedEvent,
        settings: Settings,
        *,
        raw: bytes,
        warnings: tuple[EventWarning, ...],
        request_id: str,
        now: float,
    ) -> Verdict:
        """Decide on a valid event under ``settings`` (the request's) and store it unless it
        is a duplicate.

        In Intercom's order: the contact (unknown and contacts required: ``NO_CONTACT``;
        else unknown ones are created), the active event names (a new name past the limit:
        ``TOO_MANY_NAMES``), then the event's identity (contact, name as stored,
        ``created_at``): a duplicate is counted and kept apart (the latest ``log_size``), not
        stored. The contact is the one its identifiers find (see :class:`ContactBook`), so
        one declared contact named by ``user_id`` in one event and by ``email`` or ``id`` in
        another is one contact.
        """
        with self._lock:
            received = self._received
            identity = {"user_id": checked.user_id, "email": checked.email, "id": checked.id}
            contact = received.contacts.find(**identity)
            if contact is None and settings.require_contacts:
                return Verdict.NO_CONTACT
            limit = settings.max_event_names
            if (
                limit is not None
                and checked.event_name not in received.names
                and len(received.names) >= limit
            ):
                return Verdict.TOO_MANY_NAMES
            if contact is None:
                contact = received.contacts.add(Contact.make(**identity))
            key = (contact.id, checked.event_name, checked.created_at)
            stored = received.stored.get(key)
            if stored is not None:
                received.counts["duplicates"] += 1
                received.duplicates.append(Duplicate(raw, stored, request_id, now))
                return Verdict.DUPLICATE
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
            received.stored[key] = event
            received.names.add(checked.event_name)
            received.events.append(event)
            received.events_of.setdefault(contact.id, []).append(event)
            received.counts["warnings"] += len(warnings)
            return Verdict.STORED

    def accept_summary(
        self,
        checked: CheckedSummary,
        settings: Settings,
        *,
        raw: bytes,
        warnings: tuple[EventWarning, ...],
        request_id: str,
        now: float,
    ) -> ReceivedSummary | None:
        """Store a valid event summary; ``None`` when its contact is unknown and contacts
        are required (unless they are, an unknown contact is created)."""
        with self._lock:
            received = self._received
            contact = received.contacts.find(user_id=checked.user_id)
            if contact is None:
                if settings.require_contacts:
                    return None
                contact = received.contacts.add(Contact.make(user_id=checked.user_id))
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
            received.summaries.append(summary)
            received.summaries_of.setdefault(contact.id, []).append(summary)
            received.counts["warnings"] += len(warnings)
            return summary

    def history(
        self, *, user_id: str | None = None, email: str | None = None, id: str | None = None
    ) -> tuple[Contact, list[ReceivedEvent], list[ReceivedSummary]] | None:
        """A contact with its stored events and summaries, in arrival order; ``None`` when
        no contact is known by the identifier given."""
        with self._lock:
            received = self._received
            contact = received.contacts.find(user_id=user_id, email=email, id=id)
            if contact is None:
                return None
            return (
                contact,
                list(received.events_of.get(contact.id, ())),
                list(received.summaries_of.get(contact.id, ())),
            )

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
        """Count one answered (or dropped) API request and log it; wakes :meth:`wait_for`."""
        with self._lock:
            received = self._received
            received.counts["requests"] += 1
            if status is None:
                received.counts["dropped"] += 1
            else:
                received.by_status[status] += 1
            if status == 429:
                received.counts["rate_limited"] += 1
            if fault is not None:
                received.faults_seen[fault.kind.value] += 1
            received.log.append(
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

    # -- reading -------------------------------------------------------------------------------

    @property
    def events(self) -> list[ReceivedEvent]:
        """Every stored event, in arrival order."""
        with self._lock:
            return list(self._received.events)

    @property
    def duplicates(self) -> list[Duplicate]:
        """The latest duplicates (at most ``log_size``; ``stats.duplicates`` counts them
        all), oldest first."""
        with self._lock:
            return list(self._received.duplicates)

    @property
    def summaries(self) -> list[ReceivedSummary]:
        """Every stored summary, in arrival order."""
        with self._lock:
            return list(self._received.summaries)

    @property
    def warnings(self) -> list[EventWarning]:
        """Every warning on stored events and summaries, in arrival order of each."""
        with self._lock:
            received = self._received
            items: list[ReceivedEvent | ReceivedSummary] = [
                *received.events,
                *received.summaries,
            ]
        return [warning for item in items for warning in item.warnings]

    @property
    def requests(self) -> list[RequestRecord]:
        """The latest API requests (at most ``log_size``), oldest first."""
        with self._lock:
            return list(self._received.log)

    @property
    def stats(self) -> Stats:
        """A snapshot of the counts."""
        with self._lock:
            received = self._received
            return Stats(
                requests=received.counts["requests"],
                by_status=dict(received.by_status),
                events=len(received.events),
                duplicates=received.counts["duplicates"],
                rate_limited=received.counts["rate_limited"],
                summaries=len(received.summaries),
                dropped=received.counts["dropped"],
                faults=dict(received.faults_seen),
                warnings=received.counts["warnings"],
            )

    def snapshot(
        self,
    ) -> tuple[list[ReceivedEvent], list[ReceivedSummary], list[Duplicate], Stats]:
        """Events, summaries, duplicates and counts read at one instant."""
        with self._lock:
            return self.events, self.summaries, self.duplicates, self.stats

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Block until ``predicate()`` holds (checked after each request); ``False`` on
        timeout."""
        with self._changed:
            return self._changed.wait_for(predicate, timeout)

    def reset(self) -> None:
        """Forget what was received, the counts, the rate windows, the script, and contacts
        that events created; keep the settings and the declared contacts."""
        with self._lock:
            self._received = _Received.fresh(self._settings, self._declared)
            self._changed.notify_all()
