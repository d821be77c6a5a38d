"""Contacts the emulator knows, and how an event's identifiers find one (pure, no I/O)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any


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


class ContactBook:
    """Contacts indexed by each identifier: ``id``, ``user_id``, ``email`` (case-insensitive).

    This is what makes "the same contact" for de-duplication: an event's contact is the one
    its ``id``, else its ``user_id``, else its ``email`` finds. A declared contact is thus
    one contact whichever of its identifiers an event gives. Without declared contacts the
    emulator cannot know that ``user_id`` 42 and ``ada@example.com`` are one person: the
    first event naming an unknown contact creates one holding the identifiers that event
    gave, so two events are one contact's only when an identifier they give was given
    together with the other's before (events never add identifiers to a contact).

    Not thread-safe on its own: the emulator's state guards it.
    """

    def __init__(self) -> None:
        self._by_id: dict[str, Contact] = {}
        self._by_user_id: dict[str, Contact] = {}
        self._by_email: dict[str, Contact] = {}

    def add(self, contact: Contact) -> Contact:
        """Index ``contact`` under each of its identifiers; returns it."""
        self._by_id[contact.id] = contact
        if contact.user_id is not None:
            self._by_user_id[contact.user_id] = contact
        if contact.email is not None:
            self._by_email[contact.email.lower()] = contact
        return contact

    def find(
        self, *, user_id: str | None = None, email: str | None = None, id: str | None = None
    ) -> Contact | None:
        """The contact known by ``id``, else ``user_id``, else ``email``."""
        if id is not None and id in self._by_id:
            return self._by_id[id]
        if user_id is not None and user_id in self._by_user_id:
            return self._by_user_id[user_id]
        if email is not None:
            return self._by_email.get(email.lower())
        return None

    def copy(self) -> ContactBook:
        """A book of the same contacts, changed independently from then on."""
        book = ContactBook()
        book._by_id = dict(self._by_id)
        book._by_user_id = dict(self._by_user_id)
        book._by_email = dict(self._by_email)
        return book

    def __iter__(self) -> Iterator[Contact]:
        return iter(list(self._by_id.values()))

    def __len__(self) -> int:
        return len(self._by_id)
