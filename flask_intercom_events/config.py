"""Reading and checking the extension's configuration keys, once, in ``init_app``.

Pure: no I/O and no HTTP library. Every key has a type, a default and, for numbers, bounds a
real deployment never reaches (so a typo such as ``1e308`` is refused here, not a day later in
a worker); a bad value raises :class:`ConfigurationError` naming the key and the rule. Values
arrive as ``app.config.from_prefixed_env()`` makes them (JSON: ``FLASK_INTERCOM_API_VERSION=2.11``
is the float 2.11, ``FLASK_INTERCOM_EVENTS_STRICT=1`` the int 1) or as plain strings, and are
taken as meant. A key set to ``None`` takes its default.

The client's own argument checks (token, base URL, version, timeouts, pool size) live here too,
so a bad key and a bad constructor argument are refused by the same rule.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .config_values import (
    DAY,
    Keys,
    as_number,
    check_redis_url,
    check_utf8_text,
    pair_from_text,
)
from .errors import ConfigurationError

__all__ = [
    "AU_BASE_URL",
    "DEFAULT_API_VERSION",
    "DEFAULT_BASE_URL",
    "DEFAULT_POOL_SIZE",
    "DEFAULT_TIMEOUT",
    "DELIVERY_MODES",
    "EU_BASE_URL",
    "KNOWN_API_VERSIONS",
    "SAME_SECOND_MODES",
    "US_BASE_URL",
    "Settings",
    "check_api_version",
    "check_base_url",
    "check_pool_size",
    "check_timeout",
    "check_token",
]

#: Intercom's default host; it routes each workspace to its region.
US_BASE_URL = "https://api.intercom.io"
#: The host of workspaces hosted in Europe.
EU_BASE_URL = "https://api.eu.intercom.io"
#: The host of workspaces hosted in Australia.
AU_BASE_URL = "https://api.au.intercom.io"
DEFAULT_BASE_URL = US_BASE_URL
#: Every ``Intercom-Version`` Intercom knows; any other is answered 400.
#: Every value ``Intercom-Version`` may take: 1.0-1.4, 2.0-2.16 (the OpenAPI enums of 2.11 and
#: 2.16), and ``Unstable``, since renamed ``Preview`` (both still answered). Exact spelling.
KNOWN_API_VERSIONS: tuple[str, ...] = (
    *(f"1.{minor}" for minor in range(5)),
    *(f"2.{minor}" for minor in range(17)),
    "Unstable",
    "Preview",
)
DEFAULT_API_VERSION = "2.11"
#: ``(connect, read)`` seconds. Short on purpose: a worker retries, a hung call only blocks.
DEFAULT_TIMEOUT: tuple[float, float] = (3.05, 10.0)
#: Connections kept per host; at least the number of requests a process has in flight.
DEFAULT_POOL_SIZE = 32

DELIVERY_MODES = ("rq", "eager", "disabled")
SAME_SECOND_MODES = ("spread", "collapse")

DEFAULT_REDIS_URL = "redis://localhost:6379/0"
DEFAULT_QUEUE = "intercom-events"
DEFAULT_RATE_LIMIT = 10_000
DEFAULT_RATE_WINDOW = 10.0
DEFAULT_MAX_ATTEMPTS = 10
DEFAULT_MAX_RETRY_TIME = 24 * 3600.0
DEFAULT_RETRY_DELAY = 1.0
DEFAULT_RETRY_MAX_DELAY = 300.0
DEFAULT_NOT_FOUND_RETRIES = (60.0, 300.0, 900.0)
DEFAULT_WORKER_CONCURRENCY = 32
DEFAULT_WORKER_TTL = 30.0
DEFAULT_FAILURE_TTL = 365 * 24 * 3600
DEFAULT_REDIS_TIMEOUT = 0.5
DEFAULT_REDIS_SLOW = 0.05
DEFAULT_MAX_SPREAD = 60
DEFAULT_AUTH_PROBE_EVERY = 30.0

# Printable ASCII without spaces: what an Intercom token is made of. Anything else is a
# copy-paste accident, and ``requests`` would echo the header value (the token) in its error.
_TOKEN_CHARACTERS = re.compile(r"[\x21-\x7e]+")
_SPACE_OR_CONTROL = re.compile(r"[\x00-\x20\x7f-\x9f]")


@dataclass(frozen=True)
class Settings:
    """The checked configuration of one app. ``repr`` never shows the access token."""

    access_token: str | None = field(repr=False)
    api_base_url: str
    api_version: str
    api_timeout: tuple[float, float]
    delivery: str
    redis_url: str = field(repr=False)  # it may hold a password
    redis_timeout: float
    queue: str
    strict: bool
    rate_limit: int
    spool_dir: str
    # Delivery by `flask intercom worker` (defaults here too, so a Settings built by hand works).
    rate_window: float = DEFAULT_RATE_WINDOW
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    max_retry_time: float = DEFAULT_MAX_RETRY_TIME
    retry_delay: float = DEFAULT_RETRY_DELAY
    retry_max_delay: float = DEFAULT_RETRY_MAX_DELAY
    not_found_retries: tuple[float, ...] = DEFAULT_NOT_FOUND_RETRIES
    worker_concurrency: int = DEFAULT_WORKER_CONCURRENCY
    worker_ttl: float = DEFAULT_WORKER_TTL
    failure_ttl: int = DEFAULT_FAILURE_TTL
    same_second: str = SAME_SECOND_MODES[0]
    max_spread: int = DEFAULT_MAX_SPREAD
    discard_on_error: bool = True
    create_contacts: bool = False
    metrics_port: int | None = None
    redis_slow: float = DEFAULT_REDIS_SLOW
    auth_probe_every: float = DEFAULT_AUTH_PROBE_EVERY

    @property
    def window_budget(self) -> int:
        """Calls allowed per rate window: ``INTERCOM_EVENTS_RATE_LIMIT`` (per minute) scaled to
        ``INTERCOM_EVENTS_RATE_WINDOW`` seconds, rounded down (10,000 a minute: 1,666 per 10 s).
        """
        return max(1, int(self.rate_limit * self.rate_window / 60))

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], *, testing: bool, debug: bool, instance_path: str
    ) -> Settings:
        """Check every key; the first bad one raises :class:`ConfigurationError` naming it."""
        keys = Keys(config)
        delivery = keys.choice("DELIVERY", "disabled" if testing else "rq", DELIVERY_MODES)
        token = keys.get("INTERCOM_ACCESS_TOKEN", None)
        if isinstance(token, (int, float)) and not isinstance(token, bool):
            raise ConfigurationError(
                "INTERCOM_ACCESS_TOKEN is a number, which no Intercom token is: from the "
                "environment with app.config.from_prefixed_env(), quote it as a JSON string, "
                """FLASK_INTERCOM_ACCESS_TOKEN='"..."'"""
            )
        if token is not None:
            token = check_token(token)
        elif delivery != "disabled":
            raise ConfigurationError(
                f"INTERCOM_ACCESS_TOKEN is not set, and INTERCOM_EVENTS_DELIVERY is "
                f"{delivery!r}: set the token (e.g. the environment variable "
                "FLASK_INTERCOM_ACCESS_TOKEN with app.config.from_prefixed_env()), or set "
                "INTERCOM_EVENTS_DELIVERY to 'disabled' to send nothing"
            )
        spool_dir = keys.get("INTERCOM_EVENTS_SPOOL_DIR", "") or os.path.join(
            instance_path, "intercom-events-spool"
        )
        if isinstance(spool_dir, int) and not isinstance(spool_dir, bool):
            spool_dir = str(spool_dir)
        if isinstance(spool_dir, os.PathLike):
            spool_dir = os.fspath(spool_dir)
        if not isinstance(spool_dir, str):
            raise ConfigurationError(
                "INTERCOM_EVENTS_SPOOL_DIR must be a directory path, "
                f"got {type(spool_dir).__name__}"
            )
        if "\x00" in spool_dir:
            raise ConfigurationError(
                f"INTERCOM_EVENTS_SPOOL_DIR {spool_dir!r} holds a NUL character, which no "
                "path can: set it to a directory path"
            )
        # A name that is not UTF-8 would be a directory, but one no log line nor `flask
        # intercom status` could print.
        check_utf8_text("INTERCOM_EVENTS_SPOOL_DIR", spool_dir)
        # Relative to the instance folder (as Flask-SQLAlchemy takes SQLite paths), not to
        # the working directory: the web process and `flask intercom flush-spool`, started
        # from different directories, must find the same spool.
        spool_dir = os.path.join(instance_path, os.path.expanduser(spool_dir))
        calls = "a whole number of calls a minute"
        rate_limit = keys.whole("RATE_LIMIT", DEFAULT_RATE_LIMIT, 1, 10**9, what=calls)
        rate_window = keys.seconds("RATE_WINDOW", DEFAULT_RATE_WINDOW, 1, 600)
        if rate_limit * rate_window / 60 < 1:
            raise ConfigurationError(
                f"INTERCOM_EVENTS_RATE_LIMIT ({rate_limit} calls a minute) allows less than one "
                f"call per INTERCOM_EVENTS_RATE_WINDOW ({rate_window:g} s): raise it to at "
                f"least {math.ceil(60 / rate_window)}, or lengthen the window"
            )
        retry_max_delay = keys.seconds("RETRY_MAX_DELAY", DEFAULT_RETRY_MAX_DELAY, 0, DAY)
        retry_delay = keys.seconds("RETRY_DELAY", DEFAULT_RETRY_DELAY, 0, 3600)
        if retry_delay > retry_max_delay:
            raise ConfigurationError(
                f"INTERCOM_EVENTS_RETRY_DELAY ({retry_delay:g} s) is more than "
                f"INTERCOM_EVENTS_RETRY_MAX_DELAY ({retry_max_delay:g} s), the cap of the "
                "backoff: lower the one or raise the other"
            )
        redis_timeout = keys.seconds("REDIS_TIMEOUT", DEFAULT_REDIS_TIMEOUT, 0, 60)
        redis_slow = keys.seconds("REDIS_SLOW", min(DEFAULT_REDIS_SLOW, redis_timeout / 2), 0, 60)
        if redis_slow >= redis_timeout:
            raise ConfigurationError(
                f"INTERCOM_EVENTS_REDIS_SLOW ({redis_slow:g} s) must be below "
                f"INTERCOM_EVENTS_REDIS_TIMEOUT ({redis_timeout:g} s): a hand-off is slow "
                "before it times out"
            )
        port = keys.get("INTERCOM_EVENTS_METRICS_PORT", None)
        return cls(
            access_token=token,
            api_base_url=check_base_url(keys.get("INTERCOM_API_BASE_URL", DEFAULT_BASE_URL)),
            api_version=_api_version(keys.get("INTERCOM_API_VERSION", DEFAULT_API_VERSION)),
            api_timeout=check_timeout(
                pair_from_text(keys.get("INTERCOM_API_TIMEOUT", DEFAULT_TIMEOUT)),
                setting="INTERCOM_API_TIMEOUT",
            ),
            delivery=delivery,
            redis_url=check_redis_url(keys.get("INTERCOM_EVENTS_REDIS_URL", DEFAULT_REDIS_URL)),
            redis_timeout=redis_timeout,
            queue=keys.text("QUEUE", DEFAULT_QUEUE),
            strict=keys.flag("STRICT", debug or testing),
            rate_limit=rate_limit,
            spool_dir=spool_dir,
            rate_window=rate_window,
            max_attempts=keys.whole("MAX_ATTEMPTS", DEFAULT_MAX_ATTEMPTS, 1, 1000),
            max_retry_time=keys.seconds("MAX_RETRY_TIME", DEFAULT_MAX_RETRY_TIME, 0, 30 * DAY),
            retry_delay=retry_delay,
            retry_max_delay=retry_max_delay,
            not_found_retries=keys.delays("NOT_FOUND_RETRIES", DEFAULT_NOT_FOUND_RETRIES),
            worker_concurrency=keys.whole(
                "WORKER_CONCURRENCY", DEFAULT_WORKER_CONCURRENCY, 1, 1024
            ),
            worker_ttl=keys.seconds("WORKER_TTL", DEFAULT_WORKER_TTL, 1, DAY),
            failure_ttl=keys.whole("FAILURE_TTL", DEFAULT_FAILURE_TTL, 1, 3650 * DAY),
            same_second=keys.choice("SAME_SECOND", SAME_SECOND_MODES[0], SAME_SECOND_MODES),
            max_spread=keys.whole("MAX_SPREAD", DEFAULT_MAX_SPREAD, 0, 3600),
            discard_on_error=keys.flag("DISCARD_ON_ERROR", True),
            create_contacts=keys.flag("CREATE_CONTACTS", False),
            metrics_port=None if port is None else keys.whole("METRICS_PORT", 0, 1, 65535),
            redis_slow=redis_slow,
            auth_probe_every=keys.seconds("AUTH_PROBE_EVERY", DEFAULT_AUTH_PROBE_EVERY, 0, 3600),
        )


def _api_version(value: object) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        # from_prefixed_env() reads FLASK_INTERCOM_API_VERSION=2.11 as the float 2.11, and
        # 2.10 as 2.1: a float is taken only when it can be one version alone (an int, as
        # from "2", is no version's text).
        meant = [
            version
            for version in KNOWN_API_VERSIONS
            if isinstance(value, float) and as_number(version) == value
        ]
        if len(meant) == 1:
            return meant[0]
        could = f", which could be {' or '.join(map(repr, meant))}" if meant else ""
        example = meant[-1] if meant else DEFAULT_API_VERSION
        raise ConfigurationError(
            f"INTERCOM_API_VERSION is the number {value!r}{could}: give the version as a "
            f"string; from the environment with app.config.from_prefixed_env(), quote it as "
            f"""JSON, e.g. FLASK_INTERCOM_API_VERSION='"{example}"'"""
        )
    return check_api_version(value.strip() if isinstance(value, str) else value)


# --- the client's arguments ------------------------------------------------------------------


def check_token(token: object) -> str:
    """The access token, stripped; :class:`ConfigurationError` if it cannot be one."""
    if not isinstance(token, str):
        raise ConfigurationError(
            f"INTERCOM_ACCESS_TOKEN (access_token) must be a string, got {type(token).__name__}"
        )
    token = token.strip()  # a trailing newline from a secrets file is common and harmless
    if not token:
        raise ConfigurationError(
            "INTERCOM_ACCESS_TOKEN (access_token) is empty: set it to your Intercom app's "
            "access token (Developer Hub > your app > Authentication)"
        )
    if not _TOKEN_CHARACTERS.fullmatch(token):
        raise ConfigurationError(
            "INTERCOM_ACCESS_TOKEN (access_token) contains spaces, control or non-ASCII "
            "characters, which no Intercom token has: copy it again"
        )
    return token


def check_base_url(url: object) -> str:
    """The base URL without a trailing slash; :class:`ConfigurationError` unless it is an
    ``https://`` URL, or ``http://`` on a loopback host, without credentials or query."""
    setting = "INTERCOM_API_BASE_URL (base_url)"
    if not isinstance(url, str) or not url.strip():
        raise ConfigurationError(f"{setting} must be a URL such as {US_BASE_URL!r}, got {url!r}")
    url = url.strip().rstrip("/")
    shown = re.sub(r"//[^/]*@", "//<credentials>@", url)  # never echo a password
    check_utf8_text(setting, shown)
    check_utf8_text(setting, url, secret=True)  # in the credentials: refused, never shown
    if _SPACE_OR_CONTROL.search(url):
        raise ConfigurationError(
            f"{setting} {shown!r} contains spaces or control characters, which no URL can "
            "hold (requests would refuse the host, or send another path): remove them, or "
            "%-escape them in the path"
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise ConfigurationError(f"{setting} {shown!r} is not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in ("https", "http") or not host:
        raise ConfigurationError(
            f"{setting} must be an https:// URL with a host, such as {US_BASE_URL!r}, "
            f"{EU_BASE_URL!r} or {AU_BASE_URL!r}; got {shown!r}"
        )
    if parts.username is not None or parts.password is not None:
        raise ConfigurationError(
            f"{setting} must not hold credentials (user:password@); the access token goes "
            "in INTERCOM_ACCESS_TOKEN"
        )
    if parts.query or parts.fragment:
        raise ConfigurationError(f"{setting} must not have a query or fragment; got {url!r}")
    if scheme == "http" and not _is_loopback(host):
        raise ConfigurationError(
            f"{setting} {url!r} uses plain http://, which would send the access token "
            "unencrypted: use https://. http:// is only allowed on a loopback host "
            "(127.0.0.0/8, ::1 or localhost), e.g. for the sandbox emulator."
        )
    return url


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_api_version(version: object) -> str:
    """The ``Intercom-Version`` to send: one of :data:`KNOWN_API_VERSIONS`."""
    if version not in KNOWN_API_VERSIONS or not isinstance(version, str):
        raise ConfigurationError(
            "INTERCOM_API_VERSION (api_version) must be an Intercom API version: 1.0 to 1.4, "
            f"2.0 to 2.16, 'Unstable' or 'Preview' (default {DEFAULT_API_VERSION!r}); got "
            f"{version!r}"
        )
    return version


def check_timeout(timeout: object, *, setting: str = "timeout") -> tuple[float, float]:
    """``(connect, read)`` seconds from a pair or one number for both, each more than 0 and at
    most 120."""
    single = not isinstance(timeout, (tuple, list))
    pair: Any = (timeout, timeout) if single else timeout
    if len(pair) != 2 or not all(
        as_number(value) is not None and not isinstance(value, str) and 0 < value <= 120
        for value in pair
    ):
        raise ConfigurationError(
            f"{setting} must be seconds (more than 0, at most 120) or a (connect, read) pair "
            f"of them, got {timeout!r}; waiting forever is never an option"
        )
    return float(pair[0]), float(pair[1])


def check_pool_size(pool_size: object) -> int:
    """The connections a client's own pool keeps: a positive integer."""
    if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
        raise ConfigurationError(
            f"pool_size must be a positive integer (connections kept open), got {pool_size!r}"
        )
    return pool_size
