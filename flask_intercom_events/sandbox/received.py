"""The received-state value: everything the emulator received since the start or the last
reset, in one mutable dataclass that :meth:`.state.SandboxState.reset` replaces whole.

Not thread-safe: only :class:`.state.SandboxState` touches it, under its lock.
"""

from __future__ import annotations

import enum
import random
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import NamedTuple

from .contacts import Contact, ContactBook
from .faults import Fault, FaultPlan
from .ratelimit import RateWindows
from .records import Duplicate, ReceivedEvent, ReceivedSummary, RequestRecord
from .settings import Settings

#: A stored event's identity: (contact id, event name as stored, ``created_at``).
EventKey = tuple[str, str, int]


class Verdict(enum.Enum):
    """What became of a ``POST /events`` body that passed validation."""

    STORED = "stored"
    DUPLICATE = "duplicate"
    NO_CONTACT = "no_contact"
    TOO_MANY_NAMES = "too_many_names"


class Admission(NamedTuple):
    """What one API request gets on arrival: the settings in force, its request id, its
    fault, and the latency to add."""

    # A NamedTuple, not a frozen dataclass: one is built per request, in 0.4 us against a
    # frozen dataclass's 0.9 us (measured on the 2-core benchmark machine).

    settings: Settings
    request_id: str
    fault: Fault
    delay: float


@dataclass
class Received:
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
    # When each contact POST /contacts created becomes visible to the events endpoints.
    visible_at: dict[str, float] = field(default_factory=dict)

    def visible(self, contact: Contact, now: float) -> bool:
        """Whether events can find ``contact`` at ``now`` (see ``contact_visibility_delay``)."""
        return now >= self.visible_at.get(contact.id, now)

    @classmethod
    def fresh(cls, settings: Settings, declared: ContactBook) -> Received:
        """Nothing received yet: only the declared contacts are known."""
        return cls(
            contacts=declared.copy(),
            faults=FaultPlan(settings.seed),
            ids=random.Random(settings.seed),
            log=deque(maxlen=settings.log_size),
            duplicates=deque(maxlen=settings.log_size),
        )
