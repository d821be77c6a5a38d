"""How one configuration value is read: flags, bounded numbers, delays, texts, Redis URLs.

Pure: no I/O. Values come as ``app.config.from_prefixed_env()`` makes them from the environment
(JSON: numbers, booleans, lists) or as plain strings, and are taken as meant; a value that
cannot be raises :class:`~flask_intercom_events.errors.ConfigurationError` naming the key.
"""

from __future__ import annotations

import math
import re
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import redis.connection

from .errors import ConfigurationError
from .rules import escape, utf8_error_at

__all__ = [
    "DAY",
    "MAX_DB",
    "Keys",
    "as_number",
    "check_redis_url",
    "check_utf8_text",
    "pair_from_text",
    "show",
]

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
        check_utf8_text(key, value)
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


def check_utf8_text(key: str, value: str, *, secret: bool = False) -> None:
    """Refuse ``value`` unless it has a UTF-8 form. A lone surrogate (what ``os.environ``
    makes of bytes that are not UTF-8) would pass here and fail later, in every push to
    Redis, in the worker, in a log line. A ``secret`` value is not shown, not even in part."""
    position = utf8_error_at(value)
    if position is None:
        return
    shown = "" if secret else f" {value!r}"
    where = f"at position {position}" if secret else f"{escape(value[position])} at position"
    if not secret:
        where += f" {position}"
    raise ConfigurationError(
        f"{key}{shown} holds a character that has no UTF-8 form ({where}): a lone "
        "surrogate, what Python makes of bytes that are not UTF-8 (in an environment "
        "variable, say), which cannot be sent to Redis or Intercom nor written to a log. "
        "Set it in UTF-8"
    )


# Redis' `databases` setting is at most INT_MAX (2**31 - 1), so SELECT takes at most
# INT_MAX - 1; past INT_MAX it answers "value is out of range", below it "DB index is out of
# range" when the server has fewer databases, which only the server can tell (16 by default).
MAX_DB = 2**31 - 2
_FLAG_WORDS = {"0", "1", "true", "false", "yes", "no"}  # what redis-py's to_bool reads as meant
_CLIENT_NAME = re.compile(r"[!-~]+")  # CLIENT SETNAME refuses spaces and anything not ASCII
_TLS_VERSIONS = {
    str(int(each)): each.name for each in ssl.TLSVersion if each >= ssl.TLSVersion.TLSv1
}
_ALL_SCHEMES = ("redis", "rediss", "unix")
_TCP = ("redis", "rediss")
_TLS = ("rediss",)


def _seconds(text: str) -> bool:
    number = as_number(text)
    return number is not None and 0 < number <= 60


def _whole(low: int, high: int) -> Callable[[str], bool]:
    return lambda text: bool(_DIGITS.fullmatch(text)) and low <= int(text) <= high


def _flag(text: str) -> bool:
    return text.lower() in _FLAG_WORDS


def _verify_flags(text: str) -> bool:
    names = text.replace("[", "").replace("]", "").split(",")
    return all(name.strip() in ssl.VerifyFlags.__members__ for name in names)


@dataclass(frozen=True)
class _Argument:
    """A query argument redis-py's ``from_url`` passes to its connection: the rule its text
    must follow to work there, and the schemes whose connection takes it."""

    rule: str
    accepts: Callable[[str], bool]
    schemes: tuple[str, ...] = _ALL_SCHEMES
    parsed: bool = True  # redis-py must turn the text into a number or a flag

    def refusal(self, key: str, name: str, scheme: str) -> str | None:
        """Why ``name=text`` cannot work with ``scheme``, or ``None``."""
        if scheme not in self.schemes:
            only = " and ".join(f"{each}://" for each in self.schemes)
            return (
                f"{key} has a {name}=, which only applies to {only} URLs: redis-py's "
                f"{scheme}:// connection does not take it (every command would fail); leave "
                "it out"
            )
        if self.parsed and name not in redis.connection.URL_QUERY_ARGUMENT_PARSERS:
            return (
                f"{key} has a {name}=, which this redis-py ({redis.__version__}) passes on as "
                f"text instead of reading it (it must be {self.rule}): upgrade redis-py, or "
                "leave it out"
            )
        return None


_TEXT = _Argument("text", bool, parsed=False)
_TLS_TEXT = _Argument("text", bool, _TLS, parsed=False)
#: Every query argument a Redis URL may have, and its rule. redis-py passes any other to its
#: connection as a keyword, which it refuses with a TypeError at the first command.
_ARGUMENTS = {
    "db": _Argument(f"a database number from 0 to {MAX_DB:,}", _whole(0, MAX_DB)),
    "socket_timeout": _Argument("a number of seconds more than 0 and at most 60", _seconds),
    "socket_connect_timeout": _Argument("a number of seconds more than 0 and at most 60", _seconds),
    "health_check_interval": _Argument(
        "a whole number of seconds from 0 to 86,400 (0: no health check)", _whole(0, DAY)
    ),
    "socket_read_size": _Argument("a whole number of bytes from 1 to 16,777,216", _whole(1, 2**24)),
    "max_connections": _Argument(
        "a whole number from 0 to 1,000,000 (0: no limit)", _whole(0, 10**6)
    ),
    "protocol": _Argument("2 or 3 (RESP2 or RESP3)", {"2", "3"}.__contains__),
    "socket_keepalive": _Argument("true or false (1 or 0, yes or no)", _flag, _TCP),
    "retry_on_timeout": _Argument("true or false (1 or 0, yes or no)", _flag),
    "client_name": _Argument(
        "printable ASCII without spaces (as CLIENT SETNAME requires)",
        lambda text: bool(_CLIENT_NAME.fullmatch(text)),
        parsed=False,
    ),
    "username": _TEXT,
    "password": _TEXT,
    "ssl_cert_reqs": _Argument(
        "none, optional or required", {"none", "optional", "required"}.__contains__, _TLS, False
    ),
    "ssl_check_hostname": _Argument("true or false (1 or 0, yes or no)", _flag, _TLS),
    "ssl_min_version": _Argument(
        "a TLS version: " + ", ".join(f"{n} ({v})" for n, v in _TLS_VERSIONS.items()),
        _TLS_VERSIONS.__contains__,
        _TLS,
    ),
    "ssl_include_verify_flags": _Argument(
        "a comma-separated list of ssl.VerifyFlags names", _verify_flags, _TLS
    ),
    "ssl_exclude_verify_flags": _Argument(
        "a comma-separated list of ssl.VerifyFlags names", _verify_flags, _TLS
    ),
    "ssl_keyfile": _TLS_TEXT,
    "ssl_certfile": _TLS_TEXT,
    "ssl_ca_certs": _TLS_TEXT,
    "ssl_ca_path": _TLS_TEXT,
    "ssl_ca_data": _TLS_TEXT,
    "ssl_password": _TLS_TEXT,
    "ssl_ciphers": _TLS_TEXT,
}
# Arguments redis-py takes, that cannot work here: said as such rather than as unknown.
_REFUSED = {
    "timeout": (
        "which redis-py reads only for a BlockingConnectionPool, not used here (every command "
        "would fail with a TypeError): use socket_timeout= and socket_connect_timeout="
    ),
    "retry_on_error": (
        "which cannot be given in the URL (redis-py would read it as a list of letters): "
        "leave it out"
    ),
    **dict.fromkeys(
        ("decode_responses", "encoding", "encoding_errors"),
        "which cannot be given in the URL: RQ and this extension read Redis' replies as "
        "bytes, and send text as UTF-8; leave it out",
    ),
}


def check_redis_url(value: object) -> str:
    """The URL, checked the way redis-py's ``from_url`` will read it (host, port, db, and
    every query argument it passes to its connection, each by its rule), so that nothing
    in it fails later, at the first command. No message shows the URL, nor any part of it:
    it may hold a password."""
    key = "INTERCOM_EVENTS_REDIS_URL"
    if not isinstance(value, str) or not value.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigurationError(f"{key} must be a redis://, rediss:// or unix:// URL")
    check_utf8_text(key, value, secret=True)
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
    # redis-py %-decodes these (and the query) with errors="replace": a broken escape would
    # silently become U+FFFD, a password that can never match.
    encoded = (parts.username, parts.password, parts.hostname, parts.path)
    try:
        for component in encoded:
            unquote(component or "", errors="strict")
        query = parse_qs(parts.query, errors="strict")
    except UnicodeDecodeError:
        raise ConfigurationError(
            f"{key} has a %-escape that is not UTF-8, which redis-py would read as U+FFFD: "
            "escape the UTF-8 bytes of each character (%C3%A9 for é)"
        ) from None
    for name, values in query.items():
        if name in _REFUSED:
            raise ConfigurationError(f"{key} has a {name}=, {_REFUSED[name]}")
        argument = _ARGUMENTS.get(name)
        if argument is None:  # its name is not shown: it might be a piece of the password
            raise ConfigurationError(
                f"{key} has a query argument redis-py would pass to its connection, which "
                "does not take it (every command would fail). The arguments that work: "
                f"{', '.join(f'{known}=' for known in _ARGUMENTS)}"
            )
        if len(values) > 1:
            raise ConfigurationError(
                f"{key} has {name}= twice: redis-py would take the first; give it once"
            )
        refusal = argument.refusal(key, name, parts.scheme)
        if refusal is not None:
            raise ConfigurationError(refusal)
        if not argument.accepts(values[0]):
            raise ConfigurationError(f"{key} has a {name}= that is not {argument.rule}")
    if parts.scheme == "unix":
        if not unquote(parts.path):
            raise ConfigurationError(f"{key} needs the socket's path: unix:///path/to/redis.sock")
    elif "db" not in query:
        path_db = unquote(parts.path).strip("/") or "0"
        if not _DIGITS.fullmatch(path_db):
            # redis-py would silently use database 0 for anything but digits.
            raise ConfigurationError(
                f"{key} has a database that is not a whole number: end it with /0, /1..."
            )
        if int(path_db) > MAX_DB:
            raise ConfigurationError(
                f"{key} has a database number out of range: Redis' SELECT takes a database "
                f"number from 0 to {MAX_DB:,} (a server has 16 by default, its `databases` "
                "setting); end it with /0, /1..."
            )
    return value
