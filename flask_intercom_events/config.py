"""Reading and checking the extension's configuration keys, once, in ``init_app``."""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .client import (
    DEFAULT_API_VERSION,
    DEFAULT_BASE_URL,
    DEFAULT_TIMEOUT,
    check_base_url,
    check_token,
)
from .errors import ConfigurationError

__all__ = ["DELIVERY_MODES", "Settings"]

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
    same_second: str = "spread"
    max_spread: int = 60
    auth_probe_every: float = 30.0

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
            auth_probe_every=_positive(config, "INTERCOM_EVENTS_AUTH_PROBE_EVERY", 30.0),
            same_second=_choice(
                config, "INTERCOM_EVENTS_SAME_SECOND", "spread", ("spread", "collapse")
            ),
            max_spread=_positive_int(config, "INTERCOM_EVENTS_MAX_SPREAD", 60),
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
