"""How one configuration value is read: flags, bounded numbers, delays, texts, Redis URLs.

Pure: no I/O. Values come as ``app.config.from_prefixed_env()`` makes them from the environment
(JSON: numbers, booleans, lists) or as plain strings, and are taken as meant; a value that
cannot be raises :class:`~flask_intercom_events.errors.ConfigurationError` naming the key.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from .errors import ConfigurationError

__all__ = ["DAY", "Keys", "as_number", "check_redis_url", "pair_from_text", "show"]

DAY = 24 * 3600
_DIGITS = re.compile(r"[0-9]+")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class Keys:
    """Reads the keys of one configuration; short names are ``INTERCOM_EVENTS_`` ones."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self._config = config

    def get(self, key: str, default: Any) -> Any:
        value = self._config.get(key)
        return default if value is None else value

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        key = f"INTERCOM_EVENTS_{name}"
        value = self.get(key, default)
        if value not in choices:
            raise ConfigurationError(
                f"{key} is {value!r}; it must be one of {', '.join(map(repr, choices))}"
            )
        return str(value)

    def text(self, name: str, default: str) -> str:
        key = f"INTERCOM_EVENTS_{name}"
        value = self.get(key, default)
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # from_prefixed_env() reads FLASK_..._QUEUE=2024 as a number
        if not isinstance(value, str) or not value.strip():
            raise ConfigurationError(f"{key} must be a non-empty string, got {value!r}")
        return value.strip()

    def flag(self, name: str, default: bool) -> bool:
        key = f"INTERCOM_EVENTS_{name}"
        value = self.get(key, default)
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):  # FLASK_..._STRICT=1
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ConfigurationError(f"{key} must be true or false (or 1 or 0), got {value!r}")

    def seconds(self, name: str, default: float, low: float, high: float) -> float:
        """A duration from ``low`` (excluded when it is 0: a duration is more than nothing)
        to ``high`` (included)."""
        return float(self._bounded(name, default, low, high, whole=False, what=""))

    def whole(
        self, name: str, default: int, low: int, high: int, *, what: str = "a whole number"
    ) -> int:
        """A whole number from ``low`` to ``high`` (an integral float, such as ``1e4`` from
        the environment, counts); ``what`` names it in the message."""
        return int(self._bounded(name, default, low, high, whole=True, what=what))

    def _bounded(
        self, name: str, default: float, low: float, high: float, *, whole: bool, what: str
    ) -> float:
        key = f"INTERCOM_EVENTS_{name}"
        value = self.get(key, default)
        number = as_number(value)
        if number is not None and whole and not float(number).is_integer():
            number = None
        closed = low > 0 or whole
        if number is None or not (number >= low if closed else number > low) or number > high:
            kind = what or "a number of seconds"
            bounds = (
                f"from {show(low)} to {show(high)}"
                if closed
                else f"more than 0 and at most {show(high)}"
            )
            raise ConfigurationError(f"{key} must be {kind} {bounds}, got {value!r}")
        return number

    def delays(self, name: str, default: tuple[float, ...]) -> tuple[float, ...]:
        key = f"INTERCOM_EVENTS_{name}"
        value = self.get(key, default)
        items: Any = value
        if isinstance(value, str):
            items = [item for item in value.replace(" ", "").split(",") if item]
        elif as_number(value) is not None:
            items = [value]  # FLASK_..._NOT_FOUND_RETRIES=60: one retry, a minute later
        if isinstance(items, (list, tuple)) and len(items) <= 20:
            delays = [as_number(item) for item in items]
            if all(delay is not None and 0 <= delay <= DAY for delay in delays):
                return tuple(float(delay) for delay in delays if delay is not None)
        raise ConfigurationError(
            f"{key} must be a list of at most 20 delays, each 0 to 86,400 seconds (e.g. "
            f'[60, 300, 900] or "60,300,900"; empty: no retry), got {value!r}'
        )


def as_number(value: object) -> float | None:
    """A finite number from a number or its text; ``None`` otherwise (booleans included)."""
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return value if math.isfinite(value) else None
    except OverflowError:  # an int too large for a float
        return None


def show(number: float) -> str:
    """A bound as a message shows it: ``86,400``, ``0.5``."""
    return f"{int(number):,}" if float(number).is_integer() else f"{number:g}"


def pair_from_text(value: object) -> object:
    """``(3.05, 10.0)`` from the text ``"3.05, 10"`` of a plain environment variable (where
    ``from_prefixed_env()`` would give a list for ``[3.05, 10]``); other values as they are."""
    if isinstance(value, str):
        parts = [as_number(part) for part in value.split(",")]
        if None in parts:
            return value
        return parts[0] if len(parts) == 1 else tuple(parts)
    return value


def check_redis_url(value: object) -> str:
    """The URL, checked the way redis-py's ``from_url`` will read it (host, port, db and its
    numeric query arguments). No message shows the URL: it may hold a password."""
    key = "INTERCOM_EVENTS_REDIS_URL"
    if not isinstance(value, str) or not value.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigurationError(f"{key} must be a redis://, rediss:// or unix:// URL")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:  # a port out of range or not a number, a broken [IPv6] host
        parts, port = urlsplit(""), 0
    if port == 0:
        raise ConfigurationError(
            f"{key} has a port that is not a number from 1 to 65535 "
            "(redis://[[user]:password@]host[:port][/db])"
        )
    query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
    whole = ("db", "socket_read_size", "max_connections", "health_check_interval", "protocol")
    for name in whole:
        if name in query and not _DIGITS.fullmatch(query[name]):
            raise ConfigurationError(f"{key} has a {name}= that is not a whole number")
    for name in ("socket_timeout", "socket_connect_timeout", "timeout"):
        if name in query and as_number(query[name]) is None:
            raise ConfigurationError(f"{key} has a {name}= that is not a number of seconds")
    if parts.scheme == "unix":
        if not unquote(parts.path):
            raise ConfigurationError(f"{key} needs the socket's path: unix:///path/to/redis.sock")
    elif "db" not in query and not _DIGITS.fullmatch(unquote(parts.path).strip("/") or "0"):
        # redis-py would silently use database 0 for anything but digits.
        raise ConfigurationError(
            f"{key} has a database that is not a whole number: end it with /0, /1..."
        )
    return value
