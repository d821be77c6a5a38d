"""Injected faults: a deterministic script first, then seeded random draws (pure, no I/O)."""

from __future__ import annotations

import dataclasses
import enum
import random
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from .settings import Settings


class FaultKind(enum.Enum):
    """What happens to one API request."""

    OK = "ok"
    """Handled normally."""
    ERROR = "error"
    """Answered with an error status (5xx, 408 or 409) and an ``error.list``; not handled."""
    THROTTLE = "throttle"
    """Answered ``429 rate_limit_exceeded`` as if the window were spent; not handled."""
    STALL = "stall"
    """Handled, then its answer held for some seconds (long enough to trip a read timeout)."""
    DROP = "drop"
    """The connection is closed without an answer; the request is not handled."""


@dataclass(frozen=True)
class Fault:
    """One scripted or drawn fault. ``status`` for errors; ``seconds`` for stalls; ``path``:
    a scripted fault meant only for requests to that path (``None``: any request).

    A stall without ``seconds`` holds the answer for the settings' ``stall_seconds``.
    """

    kind: FaultKind
    status: int | None = None
    seconds: float | None = None
    path: str | None = None

    @classmethod
    def parse(cls, text: str | int) -> Fault:
        """Read a script item: ``ok``, ``500`` (any 5xx, or 408, 409), ``429``, ``drop``,
        ``stall`` or ``stall:SECONDS``, each optionally followed by ``@PATH`` to be meant
        for that path only (``409@/contacts``)."""
        fault, at, path = str(text).strip().partition("@")
        if not at:
            return cls._parse(text)
        if not path.startswith("/"):
            raise ValueError(
                f"fault {text!r}: the path after @ must start with /, e.g. 409@/contacts"
            )
        return dataclasses.replace(cls._parse(fault), path=path)

    @classmethod
    def _parse(cls, text: str | int) -> Fault:
        word = str(text).strip().lower()
        if word == "ok":
            return cls(FaultKind.OK)
        if word == "drop":
            return cls(FaultKind.DROP)
        if word == "429":
            return cls(FaultKind.THROTTLE, status=429)
        if word == "stall" or word.startswith("stall:"):
            _, _, seconds = word.partition(":")
            if not seconds:
                return cls(FaultKind.STALL)
            try:
                held = float(seconds)
            except ValueError:
                held = -1.0
            if not 0 <= held < float("inf"):
                raise ValueError(f"fault {text!r}: stall seconds must be a number >= 0")
            return cls(FaultKind.STALL, seconds=held)
        if word.isdigit() and (500 <= int(word) <= 599 or int(word) in (408, 409)):
            return cls(FaultKind.ERROR, status=int(word))
        raise ValueError(
            f"unknown fault {text!r}: use ok, a status (5xx, 408, 409, 429), drop, stall or "
            "stall:SECONDS"
        )

    def __str__(self) -> str:
        where = "" if self.path is None else f"@{self.path}"
        if self.kind in (FaultKind.ERROR, FaultKind.THROTTLE):
            return f"{self.status}{where}"
        if self.kind is FaultKind.STALL and self.seconds is not None:
            return f"stall:{self.seconds:g}{where}"
        return f"{self.kind.value}{where}"


_OK = Fault(FaultKind.OK)


class FaultPlan:
    """Decides each API request's fault and extra latency.

    A request takes the first scripted fault meant for it (one with no path, or its path),
    in order; when none is, it draws from the settings' rates. Not thread-safe on its own.
    """

    def __init__(self, seed: int | None = None) -> None:
        self._script: deque[Fault] = deque()
        self._random = random.Random(seed)

    def reseed(self, seed: int | None) -> None:
        """Restart the random draws from ``seed``."""
        self._random.seed(seed)

    def extend(self, faults: Iterable[Fault]) -> None:
        """Append to the script."""
        self._script.extend(faults)

    def clear(self) -> None:
        """Drop what is left of the script."""
        self._script.clear()

    @property
    def pending(self) -> list[Fault]:
        """What is left of the script, next first."""
        return list(self._script)

    def next(self, settings: Settings, path: str | None = None) -> Fault:
        """The fault for the next API request (to ``path``)."""
        for index, fault in enumerate(self._script):
            if fault.path is None or fault.path == path:
                del self._script[index]
                return fault
        rates = (
            (settings.drop_rate, FaultKind.DROP),
            (settings.stall_rate, FaultKind.STALL),
            (settings.error_rate, FaultKind.ERROR),
            (settings.throttle_rate, FaultKind.THROTTLE),
        )
        if not any(rate for rate, _ in rates):
            return _OK
        draw = self._random.random()
        for rate, kind in rates:
            if draw < rate:
                if kind is FaultKind.ERROR:
                    return Fault(kind, status=settings.error_status)
                if kind is FaultKind.THROTTLE:
                    return Fault(kind, status=429)
                return Fault(kind)
            draw -= rate
        return _OK

    def latency(self, settings: Settings) -> float:
        """Seconds to wait before answering: ``latency`` plus up to ``jitter``."""
        if settings.jitter:
            return settings.latency + self._random.uniform(0, settings.jitter)
        return settings.latency
