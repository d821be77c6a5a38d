"""Which delivery failures are worth retrying, and when: pure functions, no I/O.

The rules come from Intercom's API notes: a network error, a timeout, ``408``, ``409`` and
``5xx`` are transient (capped exponential backoff with jitter), and so is a redirect
(``3xx``, never followed: a wrong base URL, or a proxy or captive portal on the way, nothing
about the event); ``429`` waits for the window to refill (``X-RateLimit-Reset``, or
``Retry-After``); ``404`` means the contact does not exist *yet*, so it is retried a few
times over minutes and then given up; ``400``, ``422`` and any other refusal are final;
``401``/``403`` (the token) and ``407`` (a proxy's credentials) are a configuration problem
that every event would hit: delivery pauses.

Every function here takes what it needs (the clock reading, a random draw) as arguments, so
the tests are tables.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from .errors import (
    IntercomAPIError,
    InvalidEventError,
    ProxyAuthenticationError,
    RedirectError,
)

__all__ = [
    "Action",
    "Attempts",
    "Decision",
    "RetryPolicy",
    "Settlement",
    "Verdict",
    "backoff",
    "classify",
    "classify_error",
    "decide",
    "is_event_name_limit",
    "reason_of",
    "settle",
]


class Verdict(enum.Enum):
    """What a failure says about the event."""

    TRANSIENT = "transient"
    """Network error, timeout, 408, 409, 5xx, a redirect (3xx): retry with backoff."""
    THROTTLED = "throttled"
    """429: retry once the rate window refills."""
    CONTACT_MISSING = "contact_missing"
    """404: the contact may be created in a moment; retry a few times over minutes."""
    REJECTED = "rejected"
    """400, 422, any other refusal, or an invalid event: final."""
    UNAUTHORIZED = "unauthorized"
    """401, 403: the access token is wrong or lacks scope; 407: a proxy on the way refused
    its credentials. Not the event's fault: every event would fail the same way, so delivery
    pauses (the event goes back on the queue)."""

    @property
    def final(self) -> bool:
        """Whether the event goes straight to the failed registry."""
        return self is Verdict.REJECTED


def classify(status: int | None) -> Verdict:
    """The verdict for an HTTP status; ``None`` means no response arrived (network error)."""
    # A success raised as an error is an answer that is not Intercom's (a 200 page where an
    # event gets 202, a body that is not JSON): whatever answered, the call may be retried.
    if status is None or status in (408, 409) or 200 <= status <= 399 or 500 <= status <= 599:
        return Verdict.TRANSIENT
    if status == 429:
        return Verdict.THROTTLED
    if status == 404:
        return Verdict.CONTACT_MISSING
    if status in (401, 403, 407):
        return Verdict.UNAUTHORIZED
    return Verdict.REJECTED


def classify_error(error: BaseException) -> Verdict:
    """The verdict for what a delivery raised.

    :class:`~flask_intercom_events.errors.IntercomAPIError` by its status (``None``: network),
    an invalid event is rejected, and anything else (a bug, a broken hook) is transient: it is
    retried within the limits, then lands in the failed registry with its message.
    """
    if isinstance(error, IntercomAPIError):
        return classify(error.status)
    if isinstance(error, (InvalidEventError, ValueError, TypeError)):
        return Verdict.REJECTED
    return Verdict.TRANSIENT


def reason_of(error: BaseException) -> str:
    """A short, stable label to group failures by: ``"401 unauthorized"``, ``"404 not_found"``,
    ``"500"``, ``"302 redirect"``, ``"network"``, ``"invalid_event"``.

    ``flask intercom status`` counts failures by it and ``requeue-failed --reason`` matches it.
    """
    if isinstance(error, IntercomAPIError):
        if error.status is None:
            return "network"
        if isinstance(error, RedirectError):  # where it points is in the message
            return f"{error.status} redirect"
        if isinstance(error, ProxyAuthenticationError):  # the proxy's words, not Intercom's
            return "407 proxy_authentication_required"
        if is_event_name_limit(error):
            return "422 too_many_event_names"
        return f"{error.status} {error.code}" if error.code else str(error.status)
    if isinstance(error, InvalidEventError):
        return "invalid_event"
    label = getattr(error, "reason", None)  # an error that names its own group
    return label if isinstance(label, str) and label else type(error).__name__


def is_event_name_limit(error: BaseException) -> bool:
    """Whether Intercom refused a new event name: "Cannot have more than 120 active event
    names" (the workspace's limit; the code it answers with varies)."""
    return (
        isinstance(error, IntercomAPIError)
        and error.status == 422
        and "active event names" in (error.message or "")
    )


@dataclass(frozen=True)
class RetryPolicy:
    """The limits of retrying, from the ``INTERCOM_EVENTS_...`` settings.

    - ``max_attempts``: HTTP attempts per event, 429s not counted (``..._MAX_ATTEMPTS``).
    - ``max_retry_time``: seconds from the first attempt after which no retry is scheduled
      (``..._MAX_RETRY_TIME``).
    - ``delay`` and ``max_delay``: the first backoff and its cap, in seconds
      (``..._RETRY_DELAY``, ``..._RETRY_MAX_DELAY``); each transient failure doubles it.
    - ``not_found_delays``: the waits before each retry of a 404, then it fails
      (``..._NOT_FOUND_RETRIES``).
    - ``window``: the rate window in seconds: how long a 429 without headers waits.
    """

    max_attempts: int = 10
    max_retry_time: float = 24 * 3600.0
    delay: float = 1.0
    max_delay: float = 300.0
    not_found_delays: tuple[float, ...] = (60.0, 300.0, 900.0)
    window: float = 10.0
    #: Waits before each retry of an event whose contact the worker just created (or found
    #: existing, 409): Intercom's search is eventually consistent, a few seconds at most.
    created_contact_delays: tuple[float, ...] = (2.0, 5.0, 15.0, 30.0, 60.0)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts!r}")
        for name in ("max_retry_time", "delay", "max_delay", "window"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be more than 0 seconds, got {getattr(self, name)!r}")
        if any(not d >= 0 for d in self.not_found_delays):
            raise ValueError(f"not_found_delays must be >= 0, got {self.not_found_delays!r}")

    @classmethod
    def from_settings(cls, settings: Any) -> RetryPolicy:
        """The policy of a :class:`~flask_intercom_events.config.Settings`."""
        return cls(
            max_attempts=settings.max_attempts,
            max_retry_time=settings.max_retry_time,
            delay=settings.retry_delay,
            max_delay=settings.retry_max_delay,
            not_found_delays=tuple(settings.not_found_retries),
            window=settings.rate_window,
        )


@dataclass(frozen=True)
class Attempts:
    """One event's delivery history, kept in its RQ job's ``meta`` between attempts.

    ``total`` counts HTTP attempts (the one that just failed included), ``throttled`` the
    429s among them, ``not_found`` the 404s; ``first_at`` is the Unix time of the first.
    """

    total: int = 0
    throttled: int = 0
    not_found: int = 0
    first_at: float | None = None
    #: 404s since the worker created the contact (or found it existing).
    after_contact: int = 0

    def after(self, verdict: Verdict, now: float, *, contact_created: bool = False) -> Attempts:
        """The history once one more attempt failed with ``verdict`` at ``now``
        (``contact_created``: the worker created the event's contact just before)."""
        missing = verdict is Verdict.CONTACT_MISSING
        return Attempts(
            total=self.total + 1,
            throttled=self.throttled + (verdict is Verdict.THROTTLED),
            not_found=self.not_found + missing,
            first_at=self.first_at if self.first_at is not None else now,
            after_contact=self.after_contact + missing
            if contact_created or self.after_contact
            else 0,
        )

    def to_meta(self) -> dict[str, Any]:
        """The JSON form stored in ``job.meta["attempts"]``."""
        meta: dict[str, Any] = {"total": self.total}
        for name in ("throttled", "not_found", "after_contact"):
            if getattr(self, name):  # zero counts are left out: read back as 0
                meta[name] = getattr(self, name)
        if self.first_at is not None:
            meta["first_at"] = round(self.first_at, 3)
        return meta

    @classmethod
    def from_meta(cls, data: object) -> Attempts:
        """Read :meth:`to_meta`'s form back; anything unreadable is a fresh history."""
        if not isinstance(data, dict):
            return cls()

        def count(key: str) -> int:
            value = data.get(key)
            return value if isinstance(value, int) and not isinstance(value, bool) else 0

        first = data.get("first_at")
        return cls(
            total=count("total"),
            throttled=count("throttled"),
            not_found=count("not_found"),
            first_at=float(first) if isinstance(first, (int, float)) else None,
            after_contact=count("after_contact"),
        )


@dataclass(frozen=True)
class Decision:
    """Retry in ``delay`` seconds, or give up; ``reason`` says why (for logs and the registry)."""

    retry: bool
    delay: float = 0.0
    reason: str = ""


def backoff(failures: int, policy: RetryPolicy, draw: float) -> float:
    """The wait after the ``failures``-th transient failure: exponential, capped, jittered.

    "Equal jitter": half of ``min(max_delay, delay * 2 ** (failures - 1))`` for sure, the
    other half scaled by ``draw`` (uniform in ``[0, 1)``), so retries of events that failed
    together spread out, yet none comes back at once.
    """
    exponent = min(max(failures - 1, 0), 62)  # 2**62 seconds is already past any cap
    ceiling = min(policy.max_delay, policy.delay * 2.0**exponent)
    return ceiling / 2 + ceiling / 2 * min(max(draw, 0.0), 1.0)


def decide(
    verdict: Verdict,
    attempts: Attempts,
    policy: RetryPolicy,
    *,
    now: float,
    draw: float,
    retry_after: float | None = None,
    window_resets_in: float | None = None,
) -> Decision:
    """Whether and when to retry, given the ``verdict`` of the attempt that just failed.

    ``attempts`` already counts that attempt (see :meth:`Attempts.after`). ``retry_after`` is
    the response's ``Retry-After`` in seconds; ``window_resets_in`` the seconds until the rate
    window refills, given only when the window is known to be spent (a 429, or
    ``X-RateLimit-Remaining: 0``). Neither is ever undercut.
    """
    if verdict is Verdict.UNAUTHORIZED:
        return Decision(False, reason="the access token was refused (fix INTERCOM_ACCESS_TOKEN)")
    if verdict is Verdict.REJECTED:
        return Decision(False, reason="Intercom refused the event; retrying cannot help")
    floor = max(retry_after or 0.0, window_resets_in or 0.0)
    if verdict is Verdict.THROTTLED:
        # Not the event's fault: not counted against max_attempts. A little jitter keeps
        # every waiting event from landing in the same instant of the new window.
        wait = floor if floor > 0 else policy.window
        delay = wait + min(1.0, policy.window / 10) * draw
    elif verdict is Verdict.CONTACT_MISSING and attempts.after_contact:
        # The worker created the contact: Intercom's search catches up within seconds.
        if attempts.after_contact > len(policy.created_contact_delays):
            tries = _times(attempts.after_contact, "try", "tries")
            return Decision(
                False, reason=f"the contact was created but still not found after {tries}"
            )
        delay = max(policy.created_contact_delays[attempts.after_contact - 1], floor)
    elif verdict is Verdict.CONTACT_MISSING:
        if attempts.not_found > len(policy.not_found_delays):
            tries = _times(attempts.not_found, "try", "tries")
            return Decision(False, reason=f"the contact was still not found after {tries}")
        delay = max(policy.not_found_delays[attempts.not_found - 1], floor)
    else:
        delay = max(backoff(attempts.total - attempts.throttled, policy, draw), floor)
    if verdict is not Verdict.THROTTLED and attempts.total - attempts.throttled >= (
        policy.max_attempts
    ):
        return Decision(
            False, reason=f"gave up after {_times(attempts.total, 'attempt', 'attempts')}"
        )
    first = attempts.first_at if attempts.first_at is not None else now
    if now + delay - first > policy.max_retry_time:
        spent = round(now - first)
        return Decision(False, reason=f"gave up after {spent} s of retries (max_retry_time)")
    return Decision(True, delay=delay, reason=f"retry in {delay:.1f} s")


def _times(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


class Action(enum.Enum):
    """What becomes of an event after an attempt."""

    RETRY = "retry"
    """Scheduled again (RQ's scheduled registry)."""
    FAIL = "fail"
    """Given up (RQ's failed registry, with the reason)."""
    PAUSE = "pause"
    """Back on the queue, untouched: the access token (or a proxy's credentials) is
    refused, so delivery pauses."""


@dataclass(frozen=True)
class Settlement:
    """The decision about one failed attempt.

    ``reason`` groups events (``"404 not_found"``, ``"network"``); ``why`` says it in words
    (``"retry in 55.0 s"``, ``"gave up after 10 attempts"``); ``attempts`` is the history to
    keep; ``block_for`` is a wait every worker must honour (after a 429).
    """

    action: Action
    reason: str
    why: str
    delay: float = 0.0
    attempts: Attempts = Attempts()
    block_for: float | None = None


def settle(
    error: BaseException,
    attempts: Attempts,
    policy: RetryPolicy,
    *,
    now: float,
    draw: float,
    retry_after: float | None = None,
    reset_in: float | None = None,
    window_spent: bool = False,
    contact_created: bool = False,
) -> Settlement:
    """What to do with an event whose attempt raised ``error`` (pure).

    ``attempts`` is the history before this attempt; ``retry_after`` and ``reset_in`` come
    from the response's headers, already within sane bounds; ``window_spent`` says the rate
    window is known to be used up (a 429, or ``X-RateLimit-Remaining: 0``);
    ``contact_created``: the worker created the event's contact just before this attempt.
    """
    verdict = classify_error(error)
    reason = reason_of(error)
    if verdict is Verdict.UNAUTHORIZED:
        why = "the access token is refused: delivery pauses until it works again"
        if isinstance(error, ProxyAuthenticationError):
            why = (
                "a proxy on the way to Intercom refused its credentials (407): delivery "
                "pauses until it lets requests through"
            )
        return Settlement(Action.PAUSE, reason, why, attempts=attempts)
    history = attempts.after(verdict, now, contact_created=contact_created)
    block_for = None
    if verdict is Verdict.THROTTLED:
        block_for = max(retry_after or 0.0, reset_in or 0.0) or policy.window
    decision = decide(
        verdict,
        history,
        policy,
        now=now,
        draw=draw,
        retry_after=retry_after,
        window_resets_in=reset_in if window_spent or verdict is Verdict.THROTTLED else None,
    )
    why = decision.reason
    if verdict is Verdict.REJECTED and not isinstance(error, IntercomAPIError):
        # Our side refused it (an invalid payload, a job another tool broke): say so rather
        # than blame Intercom, which never saw it.
        why = f"the event cannot be sent as stored ({type(error).__name__}); retrying cannot help"
    action = Action.RETRY if decision.retry else Action.FAIL
    return Settlement(action, reason, why, decision.delay, history, block_for)
