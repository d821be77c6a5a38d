"""What the emulator holds: its settings, the declared contacts, and one received-state value.

Everything the API changes (events, summaries, duplicates, counts, the request log, rate
windows, the fault script, contacts that events or ``POST /contacts`` created) lives in one
:class:`~.received.Received` value, which :meth:`SandboxState.reset` replaces whole:
nothing can be forgotten by a reset, nor survive one by mistake. The lock is private: other
modules call the methods below, each of which is atomic. No I/O: the clock is passed in.
"""

from __future__ import annotations

import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from .contacts import Contact, ContactBook, NewContact
from .faults import Fault
from .ratelimit import RateDecision
from .received import Admission, Received, Verdict
from .records import Duplicate, ReceivedEvent, ReceivedSummary, RequestRecord, Stats
from .settings import Settings
from .validation import CheckedEvent, CheckedSummary, EventWarning


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
        self._received = Received.fresh(settings, self._declared)

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
        """Every contact known: declared ones, those ``POST /contacts`` created and, unless
        contacts are required, those events created."""
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

    def admit(self, path: str) -> Admission:
        """Start an API request to ``path``: its request id (UUID-shaped, repeatable under a
        seed), its fault (the script first, then the rates) and its latency."""
        with self._lock:
            received, settings = self._received, self._settings
            return Admission(
                settings=settings,
                request_id=str(uuid.UUID(int=received.ids.getrandbits(128), version=4)),
                fault=received.faults.next(settings, path),
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
            user_id, email, id = checked.user_id, checked.email, checked.id
            contact = received.contacts.find(user_id=user_id, email=email, id=id)
            if contact is None and settings.require_contacts:
                return Verdict.NO_CONTACT
            if contact is not None and not received.visible(contact, now):
                return Verdict.NO_CONTACT
            limit = settings.max_event_names
            if (
                limit is not None
                and checked.event_name not in received.names
                and len(received.names) >= limit
            ):
                return Verdict.TOO_MANY_NAMES
            if contact is None:
                contact = received.contacts.add(Contact.make(user_id=user_id, email=email, id=id))
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
            elif not received.visible(contact, now):
                return None
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
        self,
        now: float,
        *,
        user_id: str | None = None,
        email: str | None = None,
        id: str | None = None,
    ) -> tuple[Contact, list[ReceivedEvent], list[ReceivedSummary]] | None:
        """A contact with its stored events and summaries, in arrival order; ``None`` when
        no contact is known by the identifier given (or not yet visible at ``now``)."""
        with self._lock:
            received = self._received
            contact = received.contacts.find(user_id=user_id, email=email, id=id)
            if contact is None or not received.visible(contact, now):
                return None
            return (
                contact,
                list(received.events_of.get(contact.id, ())),
                list(received.summaries_of.get(contact.id, ())),
            )

    def create_contact(
        self, new: NewContact, settings: Settings, now: float
    ) -> tuple[Contact, bool]:
        """Create the contact ``POST /contacts`` asks for; ``(contact, True)`` when one with
        its ``external_id`` exists already (that one, nothing created).

        The new contact is found by events once ``settings.contact_visibility_delay`` has
        passed; it is declared from then on, until :meth:`reset` forgets it with the rest of
        what was received.
        """
        with self._lock:
            received = self._received
            if new.external_id is not None:
                existing = received.contacts.with_external_id(new.external_id)
                if existing is not None:
                    return existing, True
            contact = Contact(
                # Intercom-shaped (24 hex digits), repeatable under a seed.
                id=f"{received.ids.getrandbits(96):024x}",
                user_id=new.external_id,
                email=new.email,
                role=new.role,
            )
            received.contacts.add(contact)
            if settings.contact_visibility_delay:
                received.visible_at[contact.id] = now + settings.contact_visibility_delay
            received.counts["contacts_created"] += 1
            return contact, False

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
                contacts_created=received.counts["contacts_created"],
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
        that events or ``POST /contacts`` created; keep the settings and the declared
        contacts."""
        with self._lock:
            self._received = Received.fresh(self._settings, self._declared)
            self._changed.notify_all()
