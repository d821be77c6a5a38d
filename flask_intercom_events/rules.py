"""The primitive rules of an Intercom data event, shared by the event model's modules.

Strings that have a UTF-8 form, event names, Unix seconds, and how a message names a field.
Pure Python, no I/O: each check raises
:class:`~flask_intercom_events.errors.InvalidEventError` naming the field and the rule, and
returns the value as it is sent.
"""

from __future__ import annotations

import math
from datetime import datetime

from .errors import InvalidEventError

__all__ = [
    "MAX_STRING_LENGTH",
    "MILLISECONDS_FROM",
    "check_event_name",
    "check_utf8",
    "escape",
    "label",
    "to_seconds",
]

#: The longest string value Intercom stores in event metadata.
MAX_STRING_LENGTH = 255
#: Unix seconds at or past this (year 5138) can only be a millisecond timestamp.
MILLISECONDS_FROM = 100_000_000_000


def check_utf8(
    text: str, where: str, field_name: str, *, found: str = "contains a lone surrogate"
) -> None:
    """Refuse ``text`` unless it has a UTF-8 form, i.e. holds no lone surrogate.

    Python keeps a lone surrogate (``"\\udce9"``, what ``surrogateescape`` makes of an
    undecodable byte) in a ``str``, but JSON sent as UTF-8 cannot hold one: found only when
    the event is pushed to Redis or sent, it would lose the event, and every other event of the
    request with it. ``where`` is how the message names the string (``"user_id"``), ``found``
    how it says what is wrong with it.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        position = error.start
    else:
        return
    # Raised outside the except block, so the refusal carries no encoding traceback.
    raise InvalidEventError(
        f"{where} {found} ({escape(text[position])} at position {position}), which is not "
        "valid UTF-8 and cannot be sent to Intercom: decode the bytes it came from as UTF-8 "
        "(errors='replace' if they may be broken)",
        field=field_name,
    )


def escape(text: str) -> str:
    """``text`` with lone surrogates written as ``\\udce9``, so it can be shown or logged."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def check_event_name(name: object) -> str:
    """``name`` as Intercom should receive it (lower-cased), or :class:`InvalidEventError`."""
    if not isinstance(name, str):
        raise InvalidEventError(
            f"event_name must be a string, got {type(name).__name__}", field="event_name"
        )
    check_utf8(name, "event_name", "event_name")
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


def to_seconds(value: object, field_name: str) -> int:
    """Unix seconds from an int, an integral float or an aware datetime; refuse the rest."""
    where = label(field_name)
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
    if seconds >= MILLISECONDS_FROM:
        raise InvalidEventError(
            f"{where} {seconds} looks like milliseconds; Intercom expects Unix seconds: "
            f"use {seconds // 1000}",
            field=field_name,
        )
    return seconds


def label(field_name: str) -> str:
    """How a message names a field: ``"metadata.price"`` -> ``"metadata key 'price'"``."""
    if field_name.startswith("metadata."):
        return f"metadata key {field_name.removeprefix('metadata.')!r}"
    return field_name
