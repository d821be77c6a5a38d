"""The emulator's settings: tokens, contacts mode, rate limit, latency and fault rates,
contacts' visibility delay."""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: The token the emulator accepts when none is given.
DEFAULT_TOKEN = "sandbox-token"

_TIME_FIELDS = ("rate_window", "latency", "jitter", "stall_seconds", "contact_visibility_delay")
_RATE_FIELDS = ("error_rate", "throttle_rate", "stall_rate", "drop_rate")


@dataclass(frozen=True)
class Settings:
    """How the emulator behaves; change them at run time with :meth:`replace`.

    - ``tokens``: bearer tokens accepted with full (read and write) scope.
    - ``read_only_tokens``: valid tokens lacking write scope: ``403 forbidden`` on POST.
    - ``require_contacts``: ``False`` accepts events for any contact (creating it on first
      sight); ``True`` answers ``404 User Not Found`` unless the contact was declared.
    - ``rate_limit``: calls per token per window (``None`` or ``0``: unlimited, and then no
      ``X-RateLimit-*`` headers); ``rate_window``: window length in seconds, windows aligned
      to multiples of it in Unix time.
    - ``latency``: seconds added to every API response, plus up to ``jitter`` more, at random.
    - ``error_rate``, ``throttle_rate``, ``stall_rate``, ``drop_rate``: chance per API request
      of an injected ``error_status`` (5xx, 408 or 409) error, an injected ``429``, a stall
      (the request is handled, its answer held ``stall_seconds``) and a dropped connection
      (closed without an answer, the request not handled). Their sum must not pass 1.
    - ``seed``: seeds the random draws (faults, jitter, request ids) for repeatable runs.
    - ``max_event_names``: distinct event names a workspace may have (Intercom: 120); a new
      one past it gets ``422``. ``None`` or ``0``: no limit.
    - ``log_size``: how many requests the request log keeps, and how many duplicates are
      kept (counts stay exact).
    - ``contact_visibility_delay``: seconds during which a contact just created by
      ``POST /contacts`` is still not found by the events endpoints (``404``), as Intercom's
      eventually consistent search index may answer just after a create. ``0``: at once.
    """

    # Never in a repr: a test's failure output or a log line must not show them.
    tokens: tuple[str, ...] = field(default=(DEFAULT_TOKEN,), repr=False)
    read_only_tokens: tuple[str, ...] = field(default=(), repr=False)
    require_contacts: bool = False
    rate_limit: int | None = 1666
    rate_window: float = 10.0
    latency: float = 0.0
    jitter: float = 0.0
    error_rate: float = 0.0
    error_status: int = 500
    throttle_rate: float = 0.0
    stall_rate: float = 0.0
    stall_seconds: float = 30.0
    drop_rate: float = 0.0
    seed: int | None = None
    max_event_names: int | None = 120
    log_size: int = 10_000
    contact_visibility_delay: float = 0.0

    def __post_init__(self) -> None:
        # Lists from JSON or callers become tuples, so settings stay hashable and frozen.
        object.__setattr__(self, "tokens", _tokens("tokens", self.tokens))
        object.__setattr__(
            self, "read_only_tokens", _tokens("read_only_tokens", self.read_only_tokens)
        )
        for name in ("rate_limit", "max_event_names"):
            value = getattr(self, name)
            if value is not None and (not _is_int(value) or value < 0):
                raise ValueError(f"{name} must be a non-negative integer or None, got {value!r}")
            if value == 0:
                object.__setattr__(self, name, None)
        for name in _TIME_FIELDS:
            value = getattr(self, name)
            if not _is_number(value) or value < 0:
                raise ValueError(f"{name} must be a non-negative number of seconds, got {value!r}")
        if self.rate_window <= 0:
            raise ValueError(f"rate_window must be more than 0 seconds, got {self.rate_window!r}")
        for name in _RATE_FIELDS:
            value = getattr(self, name)
            if not _is_number(value) or not 0 <= value <= 1:
                raise ValueError(f"{name} must be a probability from 0 to 1, got {value!r}")
        total = sum(getattr(self, name) for name in _RATE_FIELDS)
        if total > 1 + 1e-9:
            raise ValueError(
                f"error_rate + throttle_rate + stall_rate + drop_rate must not pass 1, "
                f"got {total:g}"
            )
        if not _is_int(self.error_status) or not (
            500 <= self.error_status <= 599 or self.error_status in (408, 409)
        ):
            raise ValueError(f"error_status must be 5xx, 408 or 409, got {self.error_status!r}")
        if self.seed is not None and not _is_int(self.seed):
            raise ValueError(f"seed must be an integer or None, got {self.seed!r}")
        if not isinstance(self.require_contacts, bool):
            raise ValueError(
                f"require_contacts must be true or false, got {self.require_contacts!r}"
            )
        if not _is_int(self.log_size) or self.log_size < 1:
            raise ValueError(f"log_size must be a positive integer, got {self.log_size!r}")

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied and checked; unknown names raise ``ValueError``."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ValueError(
                f"unknown setting(s) {', '.join(unknown)}; known: "
                f"{', '.join(f.name for f in dataclasses.fields(self))}"
            )
        return dataclasses.replace(self, **changes)

    def update(self, changes: Mapping[str, Any]) -> Settings:
        """:meth:`replace` with a mapping, e.g. a decoded JSON object."""
        return self.replace(**changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON form, as ``GET /_sandbox/settings`` shows it: each list of tokens as its
        count and :func:`fingerprint` list, never the tokens themselves (anyone who can reach
        the emulator can read its control routes, and under ``flask intercom sandbox`` the
        token is the app's own)."""
        data = dataclasses.asdict(self)
        for name in ("tokens", "read_only_tokens"):
            tokens = getattr(self, name)
            data[name] = {"count": len(tokens), "fingerprints": [fingerprint(t) for t in tokens]}
        return data

    @property
    def all_tokens(self) -> frozenset[str]:
        """Every token the emulator authenticates, whatever its scope."""
        return frozenset(self.tokens) | frozenset(self.read_only_tokens)


def fingerprint(token: str) -> str:
    """A token's public name: ``sha256:`` and the first 12 hex digits of its SHA-256, enough
    to tell which token is meant, useless to authenticate with."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()[:12]


def _tokens(name: str, value: object) -> tuple[str, ...]:
    # The messages name types and positions only: a value here may be a real token.
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ValueError(f"{name} must be a list of strings, got a {type(value).__name__}")
    for index, token in enumerate(value):
        if not isinstance(token, str) or not token:
            raise ValueError(
                f"{name} must hold non-empty strings; item {index} is "
                f"{'empty' if token == '' else 'a ' + type(token).__name__}"
            )
    return tuple(value)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
