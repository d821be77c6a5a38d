"""What the worker does with each attempt's outcome (the post-process step of its loop).

:class:`Settler` runs in the worker's main thread (the attempts are ``sending.py``'s): for a
batch of outcomes it asks the pure :func:`~flask_intercom_events.retry.settle` what becomes of
each failed one, records everything in one transaction, corrects the shared rate budget with
the headers it can trust, pauses or resumes delivery when Intercom refuses or accepts the
token, and sends the signals.
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from flask import Flask

from .config import Settings
from .errors import IntercomAPIError, ProxyAuthenticationError, RateLimitedError, RateLimitInfo
from .events import Event
from .job_records import ClaimedJob
from .lines import as_text
from .logs import FailureLog
from .presence import Presence
from .printable import printable
from .ratelimit import RateBudget, Trusted, trusted
from .retry import Action, Attempts, RetryPolicy, Settlement, is_event_name_limit
from .retry import settle as decide_settlement
from .sending import Outcome
from .signals import event_dropped, event_failed
from .store import DeliveryStore, Failure, Retry

__all__ = ["DeliveryObserver", "DeliveryRate", "Settler"]

log = logging.getLogger("flask_intercom_events.worker")


class DeliveryObserver:
    """What the worker reports as it settles outcomes; the base class ignores it all.

    ``flask intercom worker --metrics-port`` passes one that counts for Prometheus. Called
    from the worker's main thread.
    """

    def delivered(self, count: int) -> None:
        """``count`` events were delivered."""

    def retried(self, reason: str) -> None:
        """An event was scheduled for a retry, with ``reason``."""

    def failed(self, reason: str) -> None:
        """An event was failed for good, with ``reason`` (``"collapsed"`` included)."""

    def rate_limited(self) -> None:
        """Intercom answered 429."""

    def requested(self, seconds: float) -> None:
        """One HTTP attempt took ``seconds``."""


class _Worker(Protocol):
    app: Flask
    observer: DeliveryObserver
    settings: Settings
    name: str
    store: DeliveryStore
    budget: RateBudget
    policy: RetryPolicy
    presence: Presence
    failure_log: FailureLog
    held: dict[str, ClaimedJob]
    paused: bool

    def release(self, job_ids: list[str]) -> None: ...


@dataclass
class DeliveryRate:
    """Events delivered per second over the last minute (for ``status``'s drain rate)."""

    span: float = 60.0
    _marks: deque[tuple[float, int]] = field(default_factory=deque)

    def add(self, count: int, now: float) -> None:
        if count:
            self._marks.append((now, count))

    def per_second(self, now: float) -> float:
        while self._marks and now - self._marks[0][0] > self.span:
            self._marks.popleft()
        if not self._marks:
            return 0.0
        return sum(count for _, count in self._marks) / self.span


@dataclass
class _Plan:
    """What a batch of outcomes comes to, before it is recorded."""

    delivered: list[ClaimedJob] = field(default_factory=list)
    retries: list[Retry] = field(default_factory=list)
    failures: list[tuple[Failure, Exception]] = field(default_factory=list)
    refused: list[tuple[ClaimedJob, Exception]] = field(default_factory=list)
    refused_reason: str = ""
    newest: tuple[RateLimitInfo, float | None] | None = None
    block_for: float | None = None


class Settler:
    """Settles the worker's outcomes; see the module docstring."""

    def __init__(self, worker: _Worker, draws: random.Random) -> None:
        self.worker = worker
        self.draws = draws
        self.rate = DeliveryRate()
        self._warned: set[str] = set()
        self._names_reported: set[str] = set()

    def settle(self, outcomes: list[Outcome]) -> None:
        """Record ``outcomes`` (one transaction), then correct the budget and signal."""
        worker = self.worker
        outcomes = self._still_held(outcomes)
        now = time.time()
        plan = _Plan()
        for outcome in outcomes:
            self._plan(outcome, now, plan)
        worker.store.settle(
            worker.name,
            delivered=plan.delivered,
            retries=plan.retries,
            failures=[failure for failure, _ in plan.failures],
        )
        extra = sum(outcome.extra_calls for outcome in outcomes)
        if extra:
            # Creating a contact spends from the same budget as events: charge it.
            worker.budget.take(extra)
        refused = {job.id for job, _ in plan.refused}
        for outcome in outcomes:
            if outcome.job.id not in refused:
                worker.held.pop(outcome.job.id, None)
        worker.presence.count(delivered=len(plan.delivered), failed=len(plan.failures))
        observer = worker.observer
        observer.delivered(len(plan.delivered))
        for retry in plan.retries:
            observer.retried(retry.reason)
        for failure, _ in plan.failures:
            observer.failed(failure.reason)
        for outcome in outcomes:
            if outcome.elapsed:
                observer.requested(outcome.elapsed)
            if isinstance(outcome.error, RateLimitedError):
                observer.rate_limited()
        self.rate.add(len(plan.delivered), time.monotonic())
        if plan.refused:
            self._pause(plan, now)
        elif plan.delivered and worker.paused and worker.budget.resume():
            worker.paused = False
            log.warning("Intercom accepts requests again: delivery resumes")
        for failure, error in plan.failures:
            self._failed(failure, error)
        if plan.newest is not None or plan.block_for is not None:
            info, server_time = plan.newest if plan.newest else (RateLimitInfo(), None)
            reset_in = None
            if info.reset is not None:
                reset_in = max(info.reset - (server_time or time.time()), 0.0)
            worker.budget.observe(info, reset_in=reset_in, block_for=plan.block_for)

    def _still_held(self, outcomes: list[Outcome]) -> list[Outcome]:
        """The outcomes of jobs this worker still holds in Redis (same run). A worker stopped
        past its TTL (SIGSTOP, a paused VM) was reclaimed: what was taken from it is the
        other worker's to settle, not counted twice nor retried again."""
        worker = self.worker
        if not outcomes:
            return outcomes
        held = worker.store.connection.hmget(
            worker.store.keys.held(worker.name), [outcome.job.id for outcome in outcomes]
        )
        kept: list[Outcome] = []
        gone: list[Outcome] = []
        for outcome, execution in zip(outcomes, held, strict=True):
            ours = execution is not None and as_text(execution) == outcome.job.execution
            (kept if ours else gone).append(outcome)
        if gone:
            for outcome in gone:
                worker.held.pop(outcome.job.id, None)
            log.warning(
                "%d outcome(s) of jobs put back while this worker was away (stopped past "
                "INTERCOM_EVENTS_WORKER_TTL?) left to the worker that took them",
                len(gone),
            )
        return kept

    def _plan(self, outcome: Outcome, now: float, plan: _Plan) -> None:
        """Add what becomes of one outcome to ``plan``."""
        job = outcome.job
        if outcome.error is None:
            plan.delivered.append(job)
            seen = self._headers(_rate_limit_of(outcome.result), None, now, outcome.result)
            plan.newest = _newer(plan.newest, seen.info, _server_time(outcome.result))
            return
        error = outcome.error
        api = error if isinstance(error, IntercomAPIError) else None
        seen = self._headers(
            api.rate_limit if api else RateLimitInfo(), api.retry_after if api else None, now
        )
        plan.newest = _newer(plan.newest, seen.info, None)
        settlement = decide_settlement(
            error,
            Attempts.from_meta(job.meta.get("attempts")),
            self.worker.policy,
            now=now,
            draw=self.draws.random(),
            retry_after=seen.retry_after,
            reset_in=seen.reset_in,
            window_spent=seen.info.remaining == 0,
            contact_created=outcome.contact in ("created", "exists"),
        )
        if settlement.block_for is not None:
            plan.block_for = max(plan.block_for or 0.0, settlement.block_for)
        if settlement.action is Action.PAUSE:
            plan.refused.append((job, error))
            plan.refused_reason = settlement.reason
            return
        meta: dict[str, Any] = {
            **{k: v for k, v in job.meta.items() if k not in ("failure", "retry")},
            "attempts": settlement.attempts.to_meta(),
            "last_error": _describe(error),
        }
        if outcome.contact is not None:
            meta["contact"] = outcome.contact
        if settlement.action is Action.RETRY:
            meta["retry"] = {"reason": settlement.reason, "at": now + settlement.delay}
            log.info(
                "Event %s (%s): %s; %s",
                printable(job.id),
                printable(job.event_name),
                _describe(error),
                settlement.why,
            )
            plan.retries.append(Retry(job, now + settlement.delay, meta, settlement.reason))
            return
        meta["failure"] = _failure_record(settlement)
        meta.pop("attempts", None)  # the count is in the record; the rest served retries
        meta.pop("last_error", None)  # the description, in the job's exc_info
        description = f"{settlement.why}: {_describe(error)}"
        plan.failures.append((Failure(job, settlement.reason, description, meta), error))

    def collapsed(self, jobs: list[ClaimedJob]) -> None:
        """Events that found no free second: failed as ``collapsed`` at collect time."""
        now = time.monotonic()
        for job in jobs:
            self.worker.observer.failed("collapsed")
            self.worker.failure_log.failed(
                "collapsed",
                f"Event {job.id} ({job.event_name}) collapsed: every second up to "
                "INTERCOM_EVENTS_MAX_SPREAD after its created_at holds another event of its "
                "contact and name, so Intercom would keep only one",
                now,
            )
            if event_dropped.receivers:
                try:
                    event_dropped.send(
                        self.worker.app,
                        event=_event_of(job),
                        event_name=job.event_name,
                        reason="collapsed",
                        error=None,
                    )
                except Exception:
                    log.exception("An event_dropped receiver raised (the event is in failed)")

    def _headers(
        self,
        info: RateLimitInfo,
        retry_after: float | None,
        now: float,
        result: dict[str, Any] | None = None,
    ) -> Trusted:
        policy = self.worker.policy
        seen = trusted(
            info,
            retry_after,
            now=now,
            server_time=_server_time(result),
            window=policy.window,
            retry_cap=policy.max_delay,
        )
        for problem in seen.problems:
            kind = problem.split()[0]
            if kind not in self._warned:
                self._warned.add(kind)
                log.warning(
                    "Ignoring an out-of-bounds rate-limit header from Intercom: %s. "
                    "Logged once per header by this worker.",
                    problem,
                )
        return seen

    def _pause(self, plan: _Plan, now: float) -> None:
        worker = self.worker
        error = plan.refused[0][1]
        reason = plan.refused_reason
        probe_every = worker.settings.auth_probe_every
        if worker.budget.pause(reason, now=now, probe_every=probe_every):
            if isinstance(error, ProxyAuthenticationError):
                log.critical(
                    "A proxy on the way to Intercom refused its credentials (%s). Delivery "
                    "pauses: events stay queued, and one event is tried every %.0f s; "
                    "delivery resumes by itself once the proxy lets requests through (fix "
                    "its user and password in HTTPS_PROXY, or its access rules).",
                    _describe(error),
                    probe_every,
                )
            else:
                log.critical(
                    "Intercom refused the access token (%s). Delivery pauses: events stay "
                    "queued, and one event is tried every %.0f s; delivery resumes by itself "
                    "once the token works (fix INTERCOM_ACCESS_TOKEN: a valid token with "
                    "write scope).",
                    _describe(error),
                    probe_every,
                )
        worker.paused = True
        worker.release([job.id for job, _ in plan.refused])

    def _failed(self, failure: Failure, error: Exception) -> None:
        job = failure.job
        if is_event_name_limit(error) and job.event_name not in self._names_reported:
            self._names_reported.add(job.event_name)
            log.critical(
                "Intercom refused the new event name %r: the workspace has its 120 active "
                "event names. Archive unused names in Intercom (Settings > Data > Events), or "
                "reuse an existing name; these events are failed with reason %r.",
                job.event_name,
                failure.reason,
            )
        self.worker.failure_log.failed(
            failure.reason,
            f"Event {job.id} ({job.event_name}) failed: {failure.description}",
            time.monotonic(),
        )
        if event_failed.receivers:
            try:
                event_failed.send(
                    self.worker.app, event=_event_of(job), error=error, reason=failure.reason
                )
            except Exception:
                log.exception("An event_failed receiver raised (the failure is recorded)")


def _event_of(job: ClaimedJob) -> Event | None:
    try:
        return Event.from_payload(job.payload, uuid=job.id) if job.payload is not None else None
    except ValueError:
        return None


def _rate_limit_of(result: dict[str, Any] | None) -> RateLimitInfo:
    raw = (result or {}).get("rate_limit") or {}
    return RateLimitInfo(
        limit=raw.get("limit"), remaining=raw.get("remaining"), reset=raw.get("reset")
    )


def _server_time(result: dict[str, Any] | None) -> float | None:
    value = (result or {}).get("server_time")
    return float(value) if isinstance(value, (int, float)) else None


def _newer(
    current: tuple[RateLimitInfo, float | None] | None,
    info: RateLimitInfo,
    server_time: float | None,
) -> tuple[RateLimitInfo, float | None] | None:
    """Of two ``X-RateLimit-*`` readings, the one that says most about the present: the
    later window, then the fewer calls remaining."""
    if info.limit is None or info.remaining is None or info.reset is None:
        return current
    if current is None:
        return info, server_time
    best = current[0]
    if (info.reset, -info.remaining) > (best.reset or 0, -(best.remaining or 0)):
        return info, server_time
    return current


def _describe(error: BaseException) -> str:
    if isinstance(error, IntercomAPIError):
        return str(error)
    return f"{type(error).__name__}: {error}"


def _failure_record(settlement: Settlement) -> dict[str, Any]:
    # Compact: a failed event may wait a year. The reason says the status and code; the
    # words (why, Intercom's message and request id) are in the job's exc_info, the time in
    # RQ's ended_at.
    return {"reason": settlement.reason, "attempts": settlement.attempts.total}
