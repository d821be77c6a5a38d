"""Reading and checking the extension's configuration keys, once, in ``init_app``.

Pure: no I/O and no HTTP library. The client's own argument checks (token, base URL, version,
timeouts, pool size) live here too, so a bad key and a bad constructor argument are refused by
the same rule with the same sentence.
"""

from __future__ import annotations

import contextlib
import ipaddress
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigurationError

__all__ = [
    "AU_BASE_URL",
    "DEFAULT_API_VERSION",
    "DEFAULT_BASE_URL",
    "DEFAULT_POOL_SIZE",
    "DEFAULT_TIMEOUT",
    "DELIVERY_MODES",
    "EU_BASE_URL",
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
DEFAULT_API_VERSION = "2.11"
#: ``(connect, read)`` seconds. Short on purpose: a worker retries, a hung call only blocks.
DEFAULT_TIMEOUT: tuple[float, float] = (3.05, 10.0)
#: Connections kept per host; at least the number of requests a process has in flight.
DEFAULT_POOL_SIZE = 32

DELIVERY_MODES = ("rq", "eager", "disabled")

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

# Printable ASCII without spaces: what an Intercom token is made of. Anything else is a
# copy-paste accident, and ``requests`` would echo the header value (the token) in its error.
_TOKEN_CHARACTERS = re.compile(r"[\x21-\x7e]+")
_API_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class Settings:
    """The checked configuration of one app. ``repr`` never shows the access token."""

    access_token: str | None = field(repr=False)
    api_base_url: str
    api_version: str
    api_timeout: tuple[float, float]
    delivery: str
    redis_url: str
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
        delivery = _choice(
            config, "INTERCOM_EVENTS_DELIVERY", "disabled" if testing else "rq", DELIVERY_MODES
        )
        token = config.get("INTERCOM_ACCESS_TOKEN")
        if token is not None:
            token = check_token(token)
        if token is None and delivery != "disabled":
            raise ConfigurationError(
                f"INTERCOM_ACCESS_TOKEN is not set, and INTERCOM_EVENTS_DELIVERY is "
                f"{delivery!r}: set the token (e.g. the environment variable "
                "FLASK_INTERCOM_ACCESS_TOKEN with app.config.from_prefixed_env()), or set "
                "INTERCOM_EVENTS_DELIVERY to 'disabled' to send nothing"
            )
        spool_dir = config.get("INTERCOM_EVENTS_SPOOL_DIR") or os.path.join(
            instance_path, "intercom-events-spool"
        )
        if not isinstance(spool_dir, (str, os.PathLike)):
            raise ConfigurationError(
                "INTERCOM_EVENTS_SPOOL_DIR must be a directory path, "
                f"got {type(spool_dir).__name__}"
            )
        return cls(
            access_token=token,
            api_base_url=check_base_url(config.get("INTERCOM_API_BASE_URL", DEFAULT_BASE_URL)),
            api_version=_string(config, "INTERCOM_API_VERSION", DEFAULT_API_VERSION),
            api_timeout=_timeout(config.get("INTERCOM_API_TIMEOUT", DEFAULT_TIMEOUT)),
            delivery=delivery,
            redis_url=_redis_url(config.get("INTERCOM_EVENTS_REDIS_URL", DEFAULT_REDIS_URL)),
            redis_timeout=_positive(config, "INTERCOM_EVENTS_REDIS_TIMEOUT", 0.5),
            queue=_string(config, "INTERCOM_EVENTS_QUEUE", DEFAULT_QUEUE),
            strict=_flag(config, "INTERCOM_EVENTS_STRICT", debug or testing),
            rate_limit=int(_positive(config, "INTERCOM_EVENTS_RATE_LIMIT", DEFAULT_RATE_LIMIT)),
            spool_dir=os.fspath(spool_dir),
            rate_window=_positive(config, "INTERCOM_EVENTS_RATE_WINDOW", DEFAULT_RATE_WINDOW),
            max_attempts=_positive_int(
                config, "INTERCOM_EVENTS_MAX_ATTEMPTS", DEFAULT_MAX_ATTEMPTS
            ),
            max_retry_time=_positive(
                config, "INTERCOM_EVENTS_MAX_RETRY_TIME", DEFAULT_MAX_RETRY_TIME
            ),
            retry_delay=_positive(config, "INTERCOM_EVENTS_RETRY_DELAY", DEFAULT_RETRY_DELAY),
            retry_max_delay=_positive(
                config, "INTERCOM_EVENTS_RETRY_MAX_DELAY", DEFAULT_RETRY_MAX_DELAY
            ),
            not_found_retries=_delays(
                config, "INTERCOM_EVENTS_NOT_FOUND_RETRIES", DEFAULT_NOT_FOUND_RETRIES
            ),
            worker_concurrency=_positive_int(
                config, "INTERCOM_EVENTS_WORKER_CONCURRENCY", DEFAULT_WORKER_CONCURRENCY
            ),
            worker_ttl=_positive(config, "INTERCOM_EVENTS_WORKER_TTL", DEFAULT_WORKER_TTL),
            failure_ttl=_positive_int(config, "INTERCOM_EVENTS_FAILURE_TTL", DEFAULT_FAILURE_TTL),
        )


def _choice(config: Mapping[str, Any], key: str, default: str, choices: tuple[str, ...]) -> str:
    value = config.get(key, default)
    if value not in choices:
        raise ConfigurationError(
            f"{key} is {value!r}; it must be one of {', '.join(map(repr, choices))}"
        )
    return str(value)


def _string(config: Mapping[str, Any], key: str, default: str) -> str:
    value = config.get(key, default)
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"{key} must be a non-empty string, got {value!r}")
    return value.strip()


def _flag(config: Mapping[str, Any], key: str, default: bool) -> bool:
    value = config.get(key, default)
    if isinstance(value, bool):
        return value
    # from_prefixed_env() turns "true"/"false" into booleans, but plain env strings happen.
    if isinstance(value, str) and value.strip().lower() in {"1", "true", "yes", "on"}:
        return True
    if isinstance(value, str) and value.strip().lower() in {"0", "false", "no", "off"}:
        return False
    raise ConfigurationError(f"{key} must be true or false, got {value!r}")


def _positive(config: Mapping[str, Any], key: str, default: float) -> float:
    value = config.get(key, default)
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value)
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigurationError(f"{key} must be a positive number, got {value!r}")
    return float(value)


def _positive_int(config: Mapping[str, Any], key: str, default: int) -> int:
    value = config.get(key, default)
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{key} must be a positive whole number, got {value!r}")
    return value


def _delays(config: Mapping[str, Any], key: str, default: tuple[float, ...]) -> tuple[float, ...]:
    value = config.get(key, default)
    items: object = value
    if isinstance(value, str):
        items = [item for item in value.replace(" ", "").split(",") if item] if value else []
    delays: list[float] = []
    if isinstance(items, (list, tuple)):
        for item in items:
            number = item
            if isinstance(item, str):
                with contextlib.suppress(ValueError):
                    number = float(item)
            if (
                isinstance(number, bool)
                or not isinstance(number, (int, float))
                or not math.isfinite(number)
                or number < 0
            ):
                break
            delays.append(float(number))
        else:
            return tuple(delays)
    raise ConfigurationError(
        f'{key} must be a list of delays in seconds (e.g. [60, 300, 900] or "60,300,900"; '
        f"empty: no retry), got {value!r}"
    )


def _timeout(value: object) -> tuple[float, float]:
    key = "INTERCOM_API_TIMEOUT"
    pair = (value, value) if isinstance(value, (int, float)) else value
    if (
        not isinstance(pair, (tuple, list))
        or len(pair) != 2
        or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 120 for v in pair
        )
    ):
        raise ConfigurationError(
            f"{key} must be seconds (0 to 120) or a (connect, read) pair of them, got {value!r}"
        )
    return float(pair[0]), float(pair[1])


def _redis_url(value: object) -> str:
    key = "INTERCOM_EVENTS_REDIS_URL"
    if not isinstance(value, str) or urlsplit(value).scheme not in ("redis", "rediss", "unix"):
        # The value is not echoed: a Redis URL may hold a password.
        raise ConfigurationError(f"{key} must be a redis://, rediss:// or unix:// URL")
    return value


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
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise ConfigurationError(f"{setting} {url!r} is not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in ("https", "http") or not host:
        raise ConfigurationError(
            f"{setting} must be an https:// URL with a host, such as {US_BASE_URL!r}, "
            f"{EU_BASE_URL!r} or {AU_BASE_URL!r}; got {url!r}"
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
    """The ``Intercom-Version`` to send; :class:`ConfigurationError` unless it can be one."""
    if not isinstance(version, str) or not _API_VERSION.fullmatch(version):
        raise ConfigurationError(
            "INTERCOM_API_VERSION (api_version) must be an Intercom API version such as "
            f"{DEFAULT_API_VERSION!r}, got {version!r}"
        )
    return version


def check_timeout(timeout: object) -> tuple[float, float]:
    """``(connect, read)`` seconds from a pair or one number for both, each positive."""
    pair = timeout if isinstance(timeout, tuple) and len(timeout) == 2 else (timeout, timeout)
    seconds: list[float] = []
    for value in pair:
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or value <= 0
        ):
            raise ConfigurationError(
                "timeout must be a positive number of seconds or a (connect, read) pair of "
                f"them, got {timeout!r}; waiting forever is never an option"
            )
        seconds.append(float(value))
    return seconds[0], seconds[1]


def check_pool_size(pool_size: object) -> int:
    """The connections a client's own pool keeps: a positive integer."""
    if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
        raise ConfigurationError(
            f"pool_size must be a positive integer (connections kept open), got {pool_size!r}"
        )
    return pool_size
