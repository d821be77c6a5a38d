"""Contacts: what the emulator knows of them, how an event's identifiers find one, and
``POST /contacts`` as Intercom checks and answers it (pure, no I/O).

``POST /contacts`` follows ``api.intercom.io.yaml`` (2.11, operationId ``CreateContact``):
``role`` (``user`` or ``lead``; a user when not given), ``external_id``, ``email``, and the
other documented fields (``phone``, ``name``, ``avatar``, ``signed_up_at``, ``last_seen_at``,
``owner_id``, ``unsubscribed_from_emails``, ``custom_attributes``), each of its documented
type or ``null``; other fields are ignored. At least one of ``role``, ``external_id`` and
``email`` is required, and a user needs an ``external_id`` or an ``email`` (Intercom's 2.1
reference). The answer is the ``contact`` schema's required fields and a few more.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .validation import ErrorItem, Refusal, is_integer, refuse_non_object, type_name

#: The roles a contact may have.
ROLES = ("user", "lead")
#: ``workspace_id`` of every contact the emulator answers (it is one workspace).
WORKSPACE_ID = "sandbox"

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")
# The other documented fields of create_contact_request, and what each must be when not null.
_OPTIONAL = {
    "phone": "string",
    "name": "string",
    "avatar": "string",
    "signed_up_at": "integer",
    "last_seen_at": "integer",
    "owner_id": "integer",
    "unsubscribed_from_emails": "boolean",
    "custom_attributes": "object",
}


# Required fields of the contact schema that a new contact has no value for yet.
_NEVER_YET = (
    "last_replied_at",
    "last_contacted_at",
    "last_email_opened_at",
    "last_email_clicked_at",
    "language_override",
    "browser",
    "browser_version",
    "browser_language",
    "os",
)
_LOCATION = ("country", "region", "city", "country_code", "continent_code")


@dataclass(frozen=True)
class Contact:
    """A contact events can be sent for. ``id`` is Intercom's id (made up when not given);
    ``user_id`` is what Intercom calls ``external_id``; ``role`` is ``user`` or ``lead``."""

    id: str
    user_id: str | None = None
    email: str | None = None
    role: str = "user"

    @classmethod
    def make(
        cls,
        *,
        user_id: str | None = None,
        email: str | None = None,
        id: str | None = None,
        role: str = "user",
    ) -> Contact:
        """A contact from any of its identifiers; raises ``ValueError`` when given none."""
        for name, value in (("user_id", user_id), ("email", email), ("id", id)):
            if value is not None and (not isinstance(value, str) or not value):
                raise ValueError(f"contact {name} must be a non-empty string, got {value!r}")
        if user_id is None and email is None and id is None:
            raise ValueError("a contact needs at least one of user_id, email or id")
        if role not in ROLES:
            raise ValueError(f"contact role must be user or lead, got {role!r}")
        if id is None:
            # Stable and Intercom-shaped (24 hex digits), so a reset keeps the same ids.
            id = hashlib.sha1(f"{user_id}\0{email}".encode()).hexdigest()[:24]
        return cls(id=id, user_id=user_id, email=email, role=role)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Contact:
        """A contact from ``{"user_id": ..., "email": ..., "id": ..., "role": ...}`` (any of
        the identifiers; ``role`` defaults to ``user``)."""
        unknown = sorted(set(data) - {"user_id", "email", "id", "role"})
        if unknown:
            raise ValueError(f"unknown contact field(s) {', '.join(unknown)}")
        return cls.make(
            user_id=data.get("user_id"),
            email=data.get("email"),
            id=data.get("id"),
            role=data.get("role", "user"),
        )

    def to_dict(self) -> dict[str, str | None]:
        """JSON form."""
        return {"id": self.id, "user_id": self.user_id, "email": self.email, "role": self.role}


class ContactBook:
    """Contacts indexed by each identifier: ``id``, ``user_id``, ``email`` (case-insensitive).

    This is what makes "the same contact" for de-duplication: an event's contact is the one
    its ``id``, else its ``user_id``, else its ``email`` finds. A declared contact is thus
    one contact whichever of its identifiers an event gives. Without declared contacts the
    emulator cannot know that ``user_id`` 42 and ``ada@example.com`` are one person: the
    first event naming an unknown contact creates one holding the identifiers that event
    gave, so two events are one contact's only when an identifier they give was given
    together with the other's before (events never add identifiers to a contact).

    A lead is found by its ``id`` only (the only way to address a Lead) and, for conflicts,
    by its ``user_id``. An email already taken stays with the contact that had it first.

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
        if contact.email is not None and contact.role == "user":
            self._by_email.setdefault(contact.email.lower(), contact)
        return contact

    def find(
        self, *, user_id: str | None = None, email: str | None = None, id: str | None = None
    ) -> Contact | None:
        """The contact an event names: known by ``id``, else ``user_id``, else ``email``."""
        if id is not None and id in self._by_id:
            return self._by_id[id]
        if user_id is not None:
            found = self._by_user_id.get(user_id)
            if found is not None and found.role == "user":
                return found
        if email is not None:
            return self._by_email.get(email.lower())
        return None

    def with_external_id(self, external_id: str) -> Contact | None:
        """The contact, user or lead, holding ``external_id`` (``user_id``), if any."""
        return self._by_user_id.get(external_id)

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


@dataclass(frozen=True)
class NewContact:
    """A ``POST /contacts`` body Intercom would accept. ``fields`` holds the other documented
    fields as sent (``null`` ones left out)."""

    role: str
    external_id: str | None
    email: str | None
    fields: dict[str, Any] = field(default_factory=dict)


def check_new_contact(body: object) -> NewContact:
    """Check a decoded ``POST /contacts`` body; raise :class:`Refusal` (400) where due."""
    data = refuse_non_object(body)
    errors: list[ErrorItem] = []
    role = data.get("role", "user")
    if role not in ROLES:
        errors.append(
            ErrorItem("parameter_invalid", f"role must be user or lead, got {role!r}", "role")
        )
    external_id = _identifier(data, "external_id", errors)
    email = _identifier(data, "email", errors)
    if email is not None and not _EMAIL.fullmatch(email):
        errors.append(
            ErrorItem("parameter_invalid", f"email {email!r} is not an email address", "email")
        )
        email = None
    fields: dict[str, Any] = {}
    for name, kind in _OPTIONAL.items():
        value = data.get(name)
        if value is None:
            continue
        if not _is(kind, value):
            errors.append(
                ErrorItem(
                    "parameter_invalid",
                    f"{name} must be {kind} or null, got {type_name(value)}",
                    name,
                )
            )
        else:
            fields[name] = value
    if not errors and not {"role", "external_id", "email"} & set(data):
        errors.append(
            ErrorItem("parameter_not_found", "One of role, external_id or email is required")
        )
    elif not errors and role == "user" and external_id is None and email is None:
        errors.append(ErrorItem("parameter_not_found", "A user needs an external_id or an email"))
    if errors:
        raise Refusal(400, *errors)
    return NewContact(role=role, external_id=external_id, email=email, fields=fields)


def contact_object(contact: Contact, new: NewContact, created_at: int) -> dict[str, Any]:
    """The ``contact`` object ``POST /contacts`` answers for a contact just created."""
    fields = new.fields
    avatar = fields.get("avatar")
    answer: dict[str, Any] = {
        "type": "contact",
        "id": contact.id,
        "workspace_id": WORKSPACE_ID,
        "external_id": contact.user_id,
        "role": contact.role,
        "email": contact.email,
        "email_domain": contact.email.partition("@")[2] if contact.email else None,
        "phone": fields.get("phone"),
        "formatted_phone": fields.get("phone"),
        "name": fields.get("name"),
        "avatar": None if avatar is None else {"type": "avatar", "image_url": avatar},
        "owner_id": fields.get("owner_id"),
        "social_profiles": {"type": "list", "data": []},
        "has_hard_bounced": False,
        "marked_email_as_spam": False,
        "unsubscribed_from_emails": fields.get("unsubscribed_from_emails", False),
        "created_at": created_at,
        "updated_at": created_at,
        "signed_up_at": fields.get("signed_up_at"),
        "last_seen_at": fields.get("last_seen_at"),
    }
    answer.update(dict.fromkeys(_NEVER_YET))
    answer["location"] = {"type": "location", **dict.fromkeys(_LOCATION)}
    answer["custom_attributes"] = fields.get("custom_attributes", {})
    for name in ("tags", "notes", "companies"):
        answer[name] = {
            "type": "list",
            "data": [],
            "url": f"/contacts/{contact.id}/{name}",
            "total_count": 0,
            "has_more": False,
        }
    return answer


def _identifier(data: Mapping[str, Any], name: str, errors: list[ErrorItem]) -> str | None:
    value = data.get(name)
    if name not in data:
        return None
    if not isinstance(value, str) or not value:
        shown = "empty" if value == "" else type_name(value)
        errors.append(
            ErrorItem("parameter_invalid", f"{name} must be a non-empty string, got {shown}", name)
        )
        return None
    return value


def _is(kind: str, value: object) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return is_integer(value)
    if kind == "boolean":
        return isinstance(value, bool)
    return isinstance(value, Mapping)
