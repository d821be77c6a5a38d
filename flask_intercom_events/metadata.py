"""Event metadata: the value types Intercom takes and the rules for keys and values.

Pure Python, no Flask. :func:`check_metadata` turns what a caller gives into what is sent, or
raises :class:`~flask_intercom_events.errors.InvalidEventError` naming the key and the rule.
The types and their rules are those of the API notes' metadata table: strings (http(s) links
included), numbers, dates on keys ending in ``_date``, rich links and monetary amounts; at most
:data:`MAX_METADATA_KEYS` keys, none differing from another only in case.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias
from urllib.parse import urlsplit

from .errors import InvalidEventError
from .rules import (
    INT64_MAX,
    check_int64,
    check_length,
    check_utf8,
    escape,
    label,
    show,
    to_seconds,
)

__all__ = [
    "MAX_METADATA_KEYS",
    "MetadataInput",
    "MetadataValue",
    "Money",
    "RichLink",
    "check_metadata",
]

#: Intercom stores at most this many metadata keys per event and ignores the rest.
MAX_METADATA_KEYS = 10

_FORBIDDEN_KEY_CHARACTERS = frozenset(".$~`!@#%^&*'{}|\\\"\x00")
_CURRENCY = re.compile(r"[A-Za-z]{3}")


@dataclass(frozen=True)
class Money:
    """A monetary amount: ``amount`` a positive integer in cents, ``currency`` three letters.

    ``Money(34999, "eur")`` is €349.99. The currency is stored lower-case, as Intercom shows it.
    """

    amount: int
    currency: str

    def __post_init__(self) -> None:
        _check_money(self.amount, self.currency, "Money")
        object.__setattr__(self, "currency", self.currency.lower())

    def to_json(self) -> dict[str, Any]:
        """The JSON object Intercom expects: ``{"amount": ..., "currency": ...}``."""
        return {"amount": self.amount, "currency": self.currency}


@dataclass(frozen=True)
class RichLink:
    """A link with a label: ``url`` an http(s) URL, ``value`` the text shown for it."""

    url: str
    value: str

    def __post_init__(self) -> None:
        _check_rich_link(self.url, self.value, "RichLink")

    def to_json(self) -> dict[str, Any]:
        """The JSON object Intercom expects: ``{"url": ..., "value": ...}``."""
        return {"url": self.url, "value": self.value}


#: What a metadata value is once an event is built (datetimes have become Unix seconds).
MetadataValue: TypeAlias = "str | int | float | Money | RichLink"
#: What a caller may give as a metadata value (checked and converted when the event is built).
MetadataInput: TypeAlias = "str | int | float | datetime | Money | RichLink | Mapping[str, Any]"


def _check_key(key: object) -> str:
    if not isinstance(key, str):
        raise InvalidEventError(
            f"metadata keys must be strings, got {type(key).__name__} {show(key)}", field="metadata"
        )
    # Checked first: the key is part of the field name, which must be valid UTF-8 itself.
    check_utf8(
        key,
        f"metadata key {key!r}",
        f"metadata.{escape(key)}",
        found="has a lone surrogate in its name",
    )
    if not key.strip():
        raise InvalidEventError("metadata keys must not be empty or blank", field="metadata")
    bad = sorted({c for c in key if c in _FORBIDDEN_KEY_CHARACTERS})
    if bad:
        shown = " ".join(repr(c) for c in bad)
        raise InvalidEventError(
            f"metadata key {key!r} contains {shown}; Intercom does not allow . $ ~ ` ! @ # % "
            "^ & * ' { } | \\ \" or NUL in keys: use letters, digits, '_' or '-'",
            field=f"metadata.{key}",
        )
    if any(ord(c) < 32 or ord(c) == 127 for c in key):
        raise InvalidEventError(
            f"metadata key {key!r} contains a control character", field=f"metadata.{key}"
        )
    return key


def check_metadata(metadata: object) -> dict[str, MetadataValue]:
    """The metadata as it is sent (datetimes as Unix seconds, plain dicts as values), or refuse."""
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise InvalidEventError(
            f"metadata must be a mapping of keys to values, got {type(metadata).__name__}",
            field="metadata",
        )
    if len(metadata) > MAX_METADATA_KEYS:
        keys = list(metadata)
        eleventh = show(keys[MAX_METADATA_KEYS])
        raise InvalidEventError(
            f"metadata has {len(keys)} keys; Intercom keeps only the first "
            f"{MAX_METADATA_KEYS} and silently drops the rest (here {eleventh} onwards): "
            "send fewer keys",
            field="metadata",
        )
    checked: dict[str, MetadataValue] = {}
    seen: dict[str, str] = {}
    for raw_key, raw_value in metadata.items():
        key = _check_key(raw_key)
        folded = key.lower()
        if folded in seen:
            raise InvalidEventError(
                f"metadata keys {seen[folded]!r} and {key!r} differ only in case; Intercom "
                "treats keys case-insensitively: keep one",
                field=f"metadata.{key}",
            )
        seen[folded] = key
        checked[key] = _check_value(key, raw_value)
    return checked


def _check_value(key: str, value: object) -> MetadataValue:
    field_name = f"metadata.{key}"
    is_date_key = key.lower().endswith("_date")
    if is_date_key:
        if isinstance(value, (str, Money, RichLink, Mapping)) or value is None:
            raise InvalidEventError(
                f"metadata key {key!r} ends in '_date', so its value must be a date: Unix "
                f"seconds (int) or a timezone-aware datetime, got {type(value).__name__} "
                f"{show(value)}; rename the key if it is not a date",
                field=field_name,
            )
        return to_seconds(value, field_name)
    if isinstance(value, datetime):
        raise InvalidEventError(
            f"metadata key {key!r} holds a datetime, but Intercom only reads dates on keys "
            f"ending in '_date': rename it, e.g. {key + '_date'!r}",
            field=field_name,
        )
    if isinstance(value, (Money, RichLink)):
        return value
    if isinstance(value, bool):
        raise InvalidEventError(
            f"metadata key {key!r} holds a bool, which is not an Intercom metadata type; "
            f"send it as a string ({str(value).lower()!r}) or a number ({int(value)}) "
            "if that is what you mean",
            field=field_name,
        )
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidEventError(
                f"metadata key {key!r} holds {value!r}; numbers must be finite", field=field_name
            )
        if isinstance(value, int):
            check_int64(value, label(field_name), field_name)
        return value
    if isinstance(value, str):
        _check_string(value, field_name)
        return value
    if isinstance(value, Mapping):
        return _from_plain_dict(key, value)
    kind = "None" if value is None else type(value).__name__
    raise InvalidEventError(
        f"metadata key {key!r} holds {kind}, which Intercom cannot store: use a string, a "
        "number, a link, a datetime on a '_date' key, Money(amount, currency) or "
        "RichLink(url, value); nested objects and lists are not allowed",
        field=field_name,
    )


def _from_plain_dict(key: str, value: Mapping[Any, Any]) -> Money | RichLink:
    keys = set(value)
    if keys == {"url", "value"}:
        _check_rich_link(value["url"], value["value"], f"metadata.{key}")
        return RichLink(value["url"], value["value"])
    if keys == {"amount", "currency"}:
        _check_money(value["amount"], value["currency"], f"metadata.{key}")
        return Money(value["amount"], value["currency"])
    shown = ", ".join(sorted(map(show, keys)))
    raise InvalidEventError(
        f"metadata key {key!r} holds an object with keys [{shown}]; the only "
        "objects Intercom takes are a rich link {'url', 'value'} and money "
        "{'amount', 'currency'} (no other nesting)",
        field=f"metadata.{key}",
    )


def _check_string(value: str, field_name: str) -> None:
    where = label(field_name)
    check_utf8(value, where, field_name)
    check_length(value, where, field_name)
    if value.lower().startswith(("http://", "https://")):
        _check_url(value, field_name)


def _check_url(url: str, field_name: str) -> None:
    try:
        host = urlsplit(url).hostname
    except ValueError:
        host = None
    if not host:
        raise InvalidEventError(
            f"{label(field_name)}: {show(url)} is not a valid http(s) link: it needs a host",
            field=field_name,
        )


def _check_rich_link(url: object, value: object, field_name: str) -> None:
    where = label(field_name)
    if not isinstance(url, str) or not url.lower().startswith(("http://", "https://")):
        raise InvalidEventError(
            f"{where}: a rich link's url must be an http or https URL, got {show(url)}",
            field=field_name,
        )
    check_utf8(url, f"{where}: a rich link's url", field_name)
    _check_url(url, field_name)
    if not isinstance(value, str) or not value.strip():
        raise InvalidEventError(
            f"{where}: a rich link's value must be a non-empty string, got {show(value)}",
            field=field_name,
        )
    check_utf8(value, f"{where}: a rich link's value", field_name)
    check_length(value, f"{where}: a rich link's value", field_name)


def _check_money(amount: object, currency: object, field_name: str) -> None:
    where = label(field_name)
    if (
        isinstance(amount, bool)
        or not isinstance(amount, int)
        or not 0 < amount <= INT64_MAX  # Intercom stores the amount in 64 bits
    ):
        raise InvalidEventError(
            f"{where}: a money amount must be a positive integer in cents of at most "
            f"{INT64_MAX} (34999 for 349.99), got {show(amount)}",
            field=field_name,
        )
    if isinstance(currency, str):
        check_utf8(currency, f"{where}: a currency", field_name)
    if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency):
        raise InvalidEventError(
            f"{where}: a currency must be a three-letter code such as 'eur', got {show(currency)}",
            field=field_name,
        )
