"""Every Redis key name this project uses, built in one place.

RQ's own keys (``rq:queue:<queue>``, ``rq:job:<id>``, its registries, ``rq:worker:<name>``)
come from RQ's classes; the rest start with ``intercom-events:<queue>:``. With the default
queue, named ``intercom-events`` too, that reads ``intercom-events:intercom-events:intake``:
the doubled name is kept because the intake holds the events waiting to be sent, and a new
prefix would strand them (and the moving lists) when a deployment upgrades.
"""

from __future__ import annotations

import hashlib

__all__ = ["PREFIX", "QueueKeys", "budget_key", "seconds_prefix"]

#: The first part of every key of this project.
PREFIX = "intercom-events"


def _fingerprint(access_token: str) -> str:
    """What names a token's keys: a truncated SHA-256, never the token."""
    return hashlib.sha256(b"flask-intercom-events:" + access_token.encode()).hexdigest()[:16]


def budget_key(access_token: str) -> str:
    """The rate budget shared by every worker using ``access_token`` (whatever its queue)."""
    return f"{PREFIX}:rate:{_fingerprint(access_token)}"


def seconds_prefix(access_token: str) -> str:
    """The prefix of the same-second claims (``<prefix><digest>:<second>``) of every worker
    using ``access_token``: Intercom de-duplicates across its workspace, so two queues (two
    apps) sending to one workspace must not give two events of a contact the same second."""
    return f"{PREFIX}:second:{_fingerprint(access_token)}:"


class QueueKeys:
    """The keys of one delivery queue, besides RQ's."""

    def __init__(self, queue: str) -> None:
        base = f"{PREFIX}:{queue}"
        self.base = base
        #: List of tracked events (one line each) waiting to become RQ jobs.
        self.intake = f"{base}:intake"
        #: Set of the names of the workers of this queue (alive or not yet reclaimed).
        self.workers = f"{base}:workers"
        #: Hash of counters: collected, delivered, retried, failed, reclaimed...
        self.stats = f"{base}:stats"
        #: Hash of failure reason -> failed events with it (kept as they fail).
        self.failed_reasons = f"{base}:failed-reasons"
        #: Hash of retry reason -> scheduled events with it.
        self.scheduled_reasons = f"{base}:scheduled-reasons"
        #: Hash of job id -> the reason of its scheduled retry.
        self.scheduled_why = f"{base}:scheduled-why"
        #: Set of the event names delivered (Intercom allows 120 active ones).
        self.event_names = f"{base}:event-names"
        #: Prefix of the moving lists and held hashes (``<prefix><worker>``).
        self.moving_prefix = f"{base}:moving:"
        self.held_prefix = f"{base}:held:"
        self._heartbeat_prefix = f"{base}:worker:"

    def moving(self, worker: str) -> str:
        """``worker``'s list of events between the intake and RQ's queue."""
        return self.moving_prefix + worker

    def held(self, worker: str) -> str:
        """``worker``'s hash of the jobs it took: job id -> RQ execution id."""
        return self.held_prefix + worker

    def old_heartbeat(self, worker: str) -> str:
        """The heartbeat key of a worker of version 0.1 (the worker key of RQ's since)."""
        return self._heartbeat_prefix + worker
