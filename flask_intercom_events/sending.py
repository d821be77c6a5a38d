"""One attempt at an event, in a sender thread of the worker: never touches Redis.

:func:`send_one` sends a claimed job's event (two calls more when it creates a missing
contact first) and returns an :class:`Outcome` for the worker's main thread to settle.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from flask import Flask

from .config import Settings
from .errors import ConflictError, IntercomAPIError, NotFoundError
from .job_records import ClaimedJob
from .jobs import client_for, deliver
from .retry import reason_of

__all__ = ["JobUnreadableError", "Outcome", "send_one"]


class JobUnreadableError(ValueError):
    """A claimed job cannot be delivered as stored (another tool changed it, or it is not a
    delivery job): it fails with ``reason``, never blamed on Intercom."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class Outcome:
    """What one attempt gave: ``result`` (what :func:`deliver` returned) or ``error``, and
    the seconds it took (``elapsed``; 0 if nothing was sent).

    ``contact`` says what became of the event's missing contact, when the worker tried to
    create it (``"created"``, ``"exists"`` on a 409, or the reason it could not), and
    ``extra_calls`` the calls made beyond the one the claim paid for.
    """

    job: ClaimedJob
    result: dict[str, Any] | None = None
    error: Exception | None = None
    elapsed: float = 0.0
    contact: str | None = None
    extra_calls: int = 0


def send_one(app: Flask, settings: Settings, job: ClaimedJob) -> Outcome:
    """Deliver one claimed job (in a sender thread, in an app context); never raises.

    With ``INTERCOM_EVENTS_CREATE_CONTACTS``, a 404 for an event with a ``user_id`` (never
    one addressed by a Lead's ``id`` alone) creates the contact, then sends the event again
    at once; a contact created once for an event is not created again on its retries.
    """
    started = time.perf_counter()
    payload = job.payload
    try:
        if job.problem is not None or payload is None:
            raise JobUnreadableError(
                f"job {job.id}: {job.problem or 'no event in it'}", reason=job.problem_reason
            )
        with app.app_context():
            try:
                result = deliver(payload, uuid=job.id)
            except NotFoundError:
                if not _may_create_contact(settings, job):
                    raise
                return _create_contact_then_send(settings, job, started)
        return Outcome(job, result=result, elapsed=time.perf_counter() - started)
    except JobUnreadableError as exc:
        return Outcome(job, error=exc)
    except Exception as exc:
        return Outcome(job, error=exc, elapsed=time.perf_counter() - started)


def _may_create_contact(settings: Settings, job: ClaimedJob) -> bool:
    user_id = (job.payload or {}).get("user_id")
    return (
        settings.create_contacts
        and isinstance(user_id, str)
        and "contact" not in job.meta  # created (or tried) on an earlier attempt
    )


def _create_contact_then_send(settings: Settings, job: ClaimedJob, started: float) -> Outcome:
    payload = job.payload or {}
    email = payload.get("email")
    try:
        client_for(settings).create_contact(
            role="user",
            external_id=payload["user_id"],
            email=email if isinstance(email, str) else None,
        )
        contact = "created"
    except ConflictError:
        contact = "exists"  # created meanwhile, or Intercom's search has not caught up
    except IntercomAPIError as exc:
        # Not the event's fault either way: it keeps its 404 and its usual schedule.
        error = NotFoundError(
            f"the contact was not found, and creating it failed: {exc}",
            status=404,
            code="not_found",
        )
        elapsed = time.perf_counter() - started
        return Outcome(job, error=error, elapsed=elapsed, contact=reason_of(exc), extra_calls=1)
    try:
        result = deliver(payload, uuid=job.id)
    except Exception as exc:
        elapsed = time.perf_counter() - started
        return Outcome(job, error=exc, elapsed=elapsed, contact=contact, extra_calls=2)
    elapsed = time.perf_counter() - started
    return Outcome(job, result=result, elapsed=elapsed, contact=contact, extra_calls=2)
