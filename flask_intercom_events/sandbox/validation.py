"""What the emulator accepts, refuses and warns about in a request body (pure, no I/O).

Refusals are what Intercom answers with ``400``: :class:`Refusal` carries the status and the
``error.list`` entries. Things Intercom silently accepts but that are mistakes (a millisecond
``created_at``, ``.``/``$`` or upper case in an event name, metadata keys past the tenth,
strings over :data:`MAX_STRING_LENGTH` characters...) are accepted the way Intercom stores
them and reported as :class:`EventWarning` entries, so tests can assert there are none.

This module is written from the API notes, independently of the package's own event model:
it is the oracle the package is tested against, so it must not share its code.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeGuard
from urllib.parse import urlsplit

#: Intercom keeps this many metadata keys, in send order, and ignores the rest.
MAX_METADATA_KEYS = 10
#: Longest string Intercom stores: 255 characters, the only string bound Intercom documents
#: (Help Center, article 175, for metadata strings). Like the package's event model, the
#: emulator applies it to every string stored with the event: the event name, ``user_id``,
#: ``email``, ``id``, metadata string values (links included) and rich-link values; not to
#: rich-link URLs, currencies or metadata keys, for which nothing is documented.
MAX_STRING_LENGTH = 255
#: A ``created_at`` this large is milliseconds: as seconds it would be past the year 5000.
MILLISECONDS_FROM = 100_000_000_000

_IDENTIFIERS = ("user_id", "id", "email")
_EVENT_FIELDS = frozenset({"event_name", "created_at", "metadata", *_IDENTIFIERS})
_SUMMARY_FIELDS = frozenset({"event_name", "count", "first", "last"})
_FORBIDDEN_KEY_CHARACTERS = re.compile("[.$~`!@#%^&*'{}|\\\\\"\x00]")


@dataclass(frozen=True)
class ErrorItem:
    """One entry of an ``error.list`` body."""

    code: str
    message: str
    field: str | None = None

    def to_dict(self) -> dict[str, str]:
        """The entry as Intercom sends it (``field`` only when there is one)."""
        item = {"code": self.code, "message": self.message}
        if self.field is not None:
            item["field"] = self.field
        return item


class Refusal(Exception):
    """A request the emulator answers with an error status and an ``error.list`` body."""

    def __init__(self, status: int, *errors: ErrorItem) -> None:
        super().__init__("; ".join(error.message for error in errors))
        self.status = status
        self.errors = errors


@dataclass(frozen=True)
class EventWarning:
    """A mistake Intercom accepts silently; recorded on what the emulator received.

    ``code`` is one of ``created_at_milliseconds``, ``event_name_case``,
    ``event_name_characters``, ``metadata_keys_ignored``, ``metadata_key_characters``,
    ``metadata_key_case``, ``metadata_date``, ``string_too_long``, ``unknown_parameter``,
    ``content_type``, ``accept_header``, ``intercom_version_missing``.
    """

    code: str
    message: str
    field: str | None = None

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def to_dict(self) -> dict[str, str | None]:
        """JSON form, as the control endpoints show it."""
        return {"code": self.code, "message": self.message, "field": self.field}


@dataclass(frozen=True)
class CheckedEvent:
    """A ``POST /events`` body that Intercom would accept, in the form Intercom stores it.

    ``event_name`` is lower-cased with ``.``/``$`` turned into ``-``; ``metadata`` keeps the
    first :data:`MAX_METADATA_KEYS` keys.
    """

    event_name: str
    created_at: int
    user_id: str | None
    email: str | None
    id: str | None
    metadata: dict[str, Any]
    warnings: tuple[EventWarning, ...] = ()


@dataclass(frozen=True)
class CheckedSummary:
    """A ``POST /events/summaries`` body that Intercom would accept."""

    user_id: str
    event_name: str
    count: int
    first: int
    last: int
    warnings: tuple[EventWarning, ...] = ()


@dataclass
class _Findings:
    errors: list[ErrorItem] = field(default_factory=list)
    warnings: list[EventWarning] = field(default_factory=list)

    def invalid(self, message: str, field: str) -> None:
        self.errors.append(ErrorItem("parameter_invalid", message, field))

    def missing(self, message: str, field: str) -> None:
        self.errors.append(ErrorItem("parameter_not_found", message, field))

    def warn(self, code: str, message: str, field: str | None = None) -> None:
        self.warnings.append(EventWarning(code, message, field))


def stored_event_name(name: str) -> str:
    """The name Intercom keeps for ``name``: case-folded, with ``.`` and ``$`` as ``-``."""
    return name.lower().replace(".", "-").replace("$", "-")


def is_integer(value: object) -> TypeGuard[int]:
    """``True`` for a JSON integer (``bool`` is not one)."""
    return isinstance(value, int) and not isinstance(value, bool)


def type_name(value: object) -> str:
    """The JSON name of a decoded value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def refuse_non_object(body: object) -> Mapping[str, Any]:
    """``body`` if it is a JSON object, else the ``400 parameter_invalid`` refusal."""
    if not isinstance(body, Mapping):
        raise Refusal(
            400,
            ErrorItem(
                "parameter_invalid",
                f"The request body must be a JSON object, got {type_name(body)}",
            ),
        )
    return body


def check_event(body: object) -> CheckedEvent:
    """Check a decoded ``POST /events`` body; raise :class:`Refusal` where Intercom would."""
    data = refuse_non_object(body)
    found = _Findings()
    event_name = _check_event_name(data, found)
    created_at = _check_created_at(data, found)
    user_id = _check_identifier(data, "user_id", found)
    contact_id = _check_identifier(data, "id", found)
    email = _check_identifier(data, "email", found)
    if not any(key in data for key in _IDENTIFIERS):
        found.missing("One of user_id, id or email is required to identify the contact", "user_id")
    metadata = _check_metadata(data.get("metadata", {}), found) if "metadata" in data else {}
    for key in data:
        if key not in _EVENT_FIELDS:
            found.warn("unknown_parameter", f"Intercom ignores the unknown parameter {key!r}", key)
    if found.errors or event_name is None or created_at is None:
        raise Refusal(400, *found.errors)
    return CheckedEvent(
        event_name=event_name,
        created_at=created_at,
        user_id=user_id,
        email=email,
        id=contact_id,
        metadata=metadata,
        warnings=tuple(found.warnings),
    )


def check_summaries(body: object) -> CheckedSummary:
    """Check a decoded ``POST /events/summaries`` body; raise :class:`Refusal` where due."""
    data = refuse_non_object(body)
    found = _Findings()
    user_id = _check_identifier(data, "user_id", found)
    if "user_id" not in data:
        found.missing("user_id is required", "user_id")
    summary = data.get("event_summaries")
    event_name: str | None = None
    numbers: dict[str, int] = {}
    if "event_summaries" not in data:
        found.missing("event_summaries is required", "event_summaries")
    elif not isinstance(summary, Mapping):
        found.invalid(
            f"event_summaries must be an object, got {type_name(summary)}", "event_summaries"
        )
    else:
        event_name = _check_event_name(summary, found, prefix="event_summaries.")
        for key in ("count", "first", "last"):
            where = f"event_summaries.{key}"
            if key not in summary:
                found.missing(f"{where} is required", where)
            elif not is_integer(summary[key]) or summary[key] < 0:
                found.invalid(
                    f"{where} must be a non-negative integer, got {summary[key]!r}", where
                )
            else:
                numbers[key] = summary[key]
        if numbers.get("count") == 0:
            found.invalid("event_summaries.count must be at least 1", "event_summaries.count")
        if "first" in numbers and "last" in numbers and numbers["first"] > numbers["last"]:
            found.invalid("event_summaries.first must not be after last", "event_summaries.first")
        for key in ("first", "last"):
            if numbers.get(key, 0) >= MILLISECONDS_FROM:
                found.warn(
                    "created_at_milliseconds",
                    f"event_summaries.{key} {numbers[key]} looks like milliseconds; Intercom "
                    "reads Unix seconds",
                    f"event_summaries.{key}",
                )
        for key in summary:
            if key not in _SUMMARY_FIELDS:
                found.warn(
                    "unknown_parameter",
                    f"Intercom ignores the unknown parameter event_summaries.{key}",
                    f"event_summaries.{key}",
                )
    if found.errors or user_id is None or event_name is None:
        raise Refusal(400, *found.errors)
    return CheckedSummary(
        user_id=user_id,
        event_name=event_name,
        count=numbers["count"],
        first=numbers["first"],
        last=numbers["last"],
        warnings=tuple(found.warnings),
    )


def _check_event_name(data: Mapping[str, Any], found: _Findings, prefix: str = "") -> str | None:
    where = f"{prefix}event_name"
    if "event_name" not in data:
        found.missing(f"{where} is required", where)
        return None
    name = data["event_name"]
    if not isinstance(name, str):
        found.invalid(f"{where} must be a string, got {type_name(name)}", where)
        return None
    if not name.strip():
        found.invalid(f"{where} must not be empty", where)
        return None
    if name != name.lower():
        found.warn(
            "event_name_case",
            f"event name {name!r} has upper case; Intercom names are case-insensitive and it "
            f"is stored as {stored_event_name(name)!r}",
            where,
        )
    if "." in name or "$" in name:
        found.warn(
            "event_name_characters",
            f"event name {name!r} contains '.' or '$', which Intercom stores as '-' "
            f"({stored_event_name(name)!r})",
            where,
        )
    _check_length(name, where, found)
    return stored_event_name(name)


def _check_created_at(data: Mapping[str, Any], found: _Findings) -> int | None:
    if "created_at" not in data:
        found.missing("created_at is required", "created_at")
        return None
    value = data["created_at"]
    if not is_integer(value):
        found.invalid(
            f"created_at must be an integer (Unix seconds), got {type_name(value)} {value!r}",
            "created_at",
        )
        return None
    if value < 0:
        found.invalid(f"created_at must not be negative, got {value}", "created_at")
        return None
    if value >= MILLISECONDS_FROM:
        found.warn(
            "created_at_milliseconds",
            f"created_at {value} looks like milliseconds; Intercom reads Unix seconds and "
            "stores a date tens of thousands of years ahead",
            "created_at",
        )
    return int(value)


def _check_identifier(data: Mapping[str, Any], key: str, found: _Findings) -> str | None:
    if key not in data:
        return None
    value = data[key]
    if not isinstance(value, str):
        found.invalid(f"{key} must be a string, got {type_name(value)}", key)
        return None
    if not value:
        found.invalid(f"{key} must not be empty", key)
        return None
    _check_length(value, key, found)
    return value


def _check_length(value: str, where: str, found: _Findings) -> None:
    if len(value) > MAX_STRING_LENGTH:
        found.warn(
            "string_too_long",
            f"{where} is {len(value)} characters long; Intercom keeps strings of at most "
            f"{MAX_STRING_LENGTH}",
            where,
        )


def _check_metadata(metadata: object, found: _Findings) -> dict[str, Any]:
    if not isinstance(metadata, Mapping):
        found.invalid(f"metadata must be an object, got {type_name(metadata)}", "metadata")
        return {}
    folded: dict[str, str] = {}
    for key, value in metadata.items():
        where = f"metadata.{key}"
        if not key or _FORBIDDEN_KEY_CHARACTERS.search(key):
            found.warn(
                "metadata_key_characters",
                f"metadata key {key!r} is empty or has a character Intercom does not allow "
                "in keys (. $ ~ ` ! @ # % ^ & * ' { } | \\ \" or NUL)",
                where,
            )
        if key.lower() in folded:
            found.warn(
                "metadata_key_case",
                f"metadata keys {folded[key.lower()]!r} and {key!r} differ only in case; "
                "Intercom keys are case-insensitive",
                where,
            )
        folded.setdefault(key.lower(), key)
        _check_metadata_value(key, value, where, found)
    keys = list(metadata)
    if len(keys) > MAX_METADATA_KEYS:
        ignored = keys[MAX_METADATA_KEYS:]
        found.warn(
            "metadata_keys_ignored",
            f"metadata has {len(keys)} keys; Intercom keeps the first {MAX_METADATA_KEYS} and "
            f"ignores {', '.join(repr(key) for key in ignored)}",
            "metadata",
        )
        return {key: metadata[key] for key in keys[:MAX_METADATA_KEYS]}
    return dict(metadata)


def _check_metadata_value(key: str, value: object, where: str, found: _Findings) -> None:
    if isinstance(value, bool) or value is None or isinstance(value, list):
        found.invalid(
            f"{where} is {type_name(value)}, which is not an Intercom metadata type "
            "(string, number, date, link, rich link or money)",
            where,
        )
        return
    if isinstance(value, Mapping):
        _check_nested(value, where, found)
        return
    if isinstance(value, str):
        _check_length(value, where, found)
    if key.lower().endswith("_date"):
        if not is_integer(value) or value < 0:
            found.warn(
                "metadata_date",
                f"{where} ends in '_date' but holds {value!r}; Intercom reads a date as whole "
                "Unix seconds",
                where,
            )
        elif value >= MILLISECONDS_FROM:
            found.warn(
                "metadata_date", f"{where} {value} looks like milliseconds, not Unix seconds", where
            )


def _check_nested(value: Mapping[str, Any], where: str, found: _Findings) -> None:
    keys = set(value)
    if keys == {"url", "value"}:
        url, text = value["url"], value["value"]
        if not isinstance(url, str) or not _is_http_url(url):
            found.invalid(f"{where}.url must be an http or https URL, got {url!r}", where)
        if not isinstance(text, str):
            found.invalid(f"{where}.value must be a string, got {type_name(text)}", where)
        else:
            _check_length(text, f"{where}.value", found)
    elif keys == {"amount", "currency"}:
        amount, currency = value["amount"], value["currency"]
        if not is_integer(amount) or amount <= 0:
            found.invalid(
                f"{where}.amount must be a positive integer (cents), got {amount!r}", where
            )
        if not isinstance(currency, str) or not currency:
            found.invalid(f"{where}.currency must be a currency code, got {currency!r}", where)
    else:
        found.invalid(
            f"{where} is an object with keys {sorted(keys)}; the only objects Intercom takes "
            "are a rich link {url, value} and money {amount, currency}",
            where,
        )


def _is_http_url(text: str) -> bool:
    try:
        parts = urlsplit(text)
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.netloc)
