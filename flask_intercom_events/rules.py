"""The primitive rules of an Intercom data event, shared by the event model's modules.

Strings that have a UTF-8 form and fit Intercom's 255 characters, 64-bit integers, event
names, Unix seconds, and how a message names a field and shows a value. Pure Python, no I/O:
each check raises :class:`~flask_intercom_events.errors.InvalidEventError` naming the field
and the rule, and returns the value as it is sent.
"""

from __future__ import annotations

import math
from datetime import datetime

from .errors import InvalidEventError

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "MAX_STRING_LENGTH",
    "MILLISECONDS_FROM",
    "check_event_name",
    "check_int64",
    "check_length",
    "check_utf8",
    "escape",
    "label",
    "show",
    "to_seconds",
    "utf8_error_at",
]

#: The longest string Intercom stores with an event: the only documented bound of the API,
#: Intercom Help Center article 175 ("strings up to 255 characters"). Applied to the event
#: name, user_id, email, id, metadata string values and rich-link values.
MAX_STRING_LENGTH = 255
#: Unix seconds at or past this (year 5138) can only be a millisecond timestamp.
MILLISECONDS_FROM = 100_000_000_000
#: Intercom stores numbers in 64 bits: integers outside this range cannot be kept as sent.
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# Past this many bits an integer is described, not printed: Python refuses to print one of
# more than 4,300 digits (ValueError), and a message of hundreds of digits helps nobody.
_PRINTED_BITS = 128
_SHOWN_CHARACTERS = 80


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
    position = utf8_error_at(text)
    if position is None:
        return
    raise InvalidEventError(
        f"{where} {found} ({escape(text[position])} at position {position}), which is not "
        "valid UTF-8 and cannot be sent to Intercom: decode the bytes it came from as UTF-8 "
        "(errors='replace' if they may be broken)",
        field=field_name,
    )


def utf8_error_at(text: str) -> int | None:
    """The position of the first character of ``text`` that has no UTF-8 form (a lone
    surrogate), or ``None`` when ``text`` can be encoded as UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        return error.start
    return None


def check_int64(value: int, where: str, field_name: str) -> None:
    """Refuse an integer outside the 64-bit range Intercom stores numbers in."""
    if not INT64_MIN <= value <= INT64_MAX:
        raise InvalidEventError(
            f"{where} holds {show(value)}, outside the 64-bit integers Intercom stores numbers "
            f"as ({INT64_MIN} to {INT64_MAX}): send a number that large as a string",
            field=field_name,
        )


def check_length(text: str, where: str, field_name: str, *, sent: str | None = None) -> None:
    """Refuse a string Intercom would not store whole: over :data:`MAX_STRING_LENGTH`.

    ``sent`` is the string as it will be sent when that differs from the caller's (an event
    name once lower-cased), so the count is the one Intercom sees.
    """
    length = len(text if sent is None else sent)
    if length > MAX_STRING_LENGTH:
        how = " once lower-cased" if sent is not None and len(sent) != len(text) else ""
        raise InvalidEventError(
            f"{where} is {length} characters long{how}; Intercom stores at most "
            f"{MAX_STRING_LENGTH} (Intercom Help Center, article 175): shorten it",
            field=field_name,
        )


def escape(text: str) -> str:
    """``text`` with lone surrogates written as ``\\udce9``, so it can be shown or logged."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def check_event_name(name: object, field_name: str = "event_name") -> str:
    """``name`` as Intercom should receive it (lower-cased), or :class:`InvalidEventError`.

    The rule of an event's name and of a summary's (``field_name``
    ``"event_summaries.event_name"``): Intercom folds case and stores ``.`` and ``$`` as ``-``,
    so a name is sent lower-cased and those are refused, with the name to use instead.
    """
    where = field_name  # the field is its own name in messages: "event_summaries.event_name"
    if not isinstance(name, str) or not name.strip():
        kind = f"{type(name).__name__} " if not isinstance(name, str) else ""
        raise InvalidEventError(
            f"{where} must be a non-empty string, got {kind}{show(name)}", field=field_name
        )
    check_utf8(name, where, field_name)
    if name != name.strip():
        raise InvalidEventError(
            f"{where} {show(name)} has leading or trailing whitespace; strip it",
            field=field_name,
        )
    for character in ".$":
        if character in name:
            suggestion = name.replace(".", "-").replace("$", "-").lower()
            raise InvalidEventError(
                f"{where} {show(name)} contains {character!r}, which Intercom would store as "
                f"'-'; use {show(suggestion)} instead",
                field=field_name,
            )
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise InvalidEventError(
            f"{where} {show(name)} contains a control character", field=field_name
        )
    lowered = name.lower()
    check_length(name, where, field_name, sent=lowered)
    return lowered


def to_seconds(value: object, field_name: str) -> int:
    """Unix seconds from an int, an integral float or an aware datetime; refuse the rest.

    Seconds from ``0`` to :data:`MILLISECONDS_FROM` (excluded): a negative time is a mistake,
    and a larger one is a millisecond timestamp or a number no date can mean.
    """
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
            f"got {type(value).__name__} {show(value)}",
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
        seconds = int(value)
    if seconds < 0:
        raise InvalidEventError(
            f"{where} must not be negative: Unix seconds count from 1970-01-01 UTC, "
            f"got {show(seconds)}",
            field=field_name,
        )
    if seconds > INT64_MAX:
        raise InvalidEventError(
            f"{where} {show(seconds)} is outside the 64-bit integers Intercom stores numbers "
            f"as (at most {INT64_MAX}), and far past any date: give Unix seconds",
            field=field_name,
        )
    if seconds >= MILLISECONDS_FROM:
        raise InvalidEventError(_far_ahead(where, value, seconds), field=field_name)
    return seconds


def _far_ahead(where: str, value: object, seconds: int) -> str:
    if isinstance(value, datetime):
        return (
            f"{where} {value.isoformat()} is in the year 5138 or later: refused as a mistake, "
            f"since Unix seconds from {MILLISECONDS_FROM} on are what millisecond timestamps "
            "look like"
        )
    if seconds // 1000 < MILLISECONDS_FROM:
        return (
            f"{where} {seconds} looks like milliseconds; Intercom expects Unix seconds: "
            f"use {seconds // 1000}"
        )
    return (
        f"{where} {seconds} is too large for Unix seconds, even read as milliseconds (Unix "
        f"seconds from {MILLISECONDS_FROM} on are past the year 5138): give Unix seconds"
    )


def label(field_name: str) -> str:
    """How a message names a field: ``"metadata.price"`` -> ``"metadata key 'price'"``."""
    if field_name.startswith("metadata."):
        return f"metadata key {field_name.removeprefix('metadata.')!r}"
    return field_name


def show(value: object) -> str:
    """``repr(value)`` for a message, with huge integers described and long text cut."""
    if isinstance(value, int) and value.bit_length() > _PRINTED_BITS:
        sign = "a negative " if value < 0 else "an "
        return f"{sign}integer of {value.bit_length()} bits"
    if isinstance(value, str) and len(value) > _SHOWN_CHARACTERS:
        return f"{value[: _SHOWN_CHARACTERS - 20]!r}... ({len(value)} characters)"
    try:
        shown = repr(value)
    except Exception:
        # A refusal must never fail on a value it only shows: a container holding an int too
        # long to print, or a caller's __repr__ that raises.
        return f"a {type(value).__name__}"
    if len(shown) > _SHOWN_CHARACTERS:
        return f"{shown[: _SHOWN_CHARACTERS - 3]}..."
    return shown
