"""The delivery job's format: the RQ job of one event, and reading it back.

- The **intake line** an event arrives in is ``lines.py``'s (re-exported here).
- A **delivery job** is an RQ job whose id is the event's uuid, calling :data:`DELIVER` with
  the payload as its only argument, stored with :class:`JobSerializer` (JSON): no token and
  no pickled object ever reaches Redis. The job's ``meta`` keeps the delivery history
  (``attempts``, ``last_error``, ``retry`` or ``failure``).
- Jobs are written and read with RQ's own API (``Queue.prepare_data``, ``Job.restore``); only
  the serializer is ours, to read a job whose ``meta`` another tool rewrote with pickle.
"""

from __future__ import annotations

import io
import json
import pickle
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import redis
from rq import Queue
from rq.job import Job

from .json_text import parse_json
from .lines import decode_line, encode_line

__all__ = [
    "DELIVER",
    "ClaimedJob",
    "JobSerializer",
    "decode_line",
    "describe",
    "encode_line",
    "failed_fields",
    "job_data",
    "read_job",
]

#: The job function's import path, as RQ stores it in every delivery job (so it never
#: changes: queued jobs of an older version must still run).
DELIVER = "flask_intercom_events.jobs.deliver"

_PICKLE_MARK = 0x80  # every pickle of protocol 2 or later starts with PROTO


class _PlainUnpickler(pickle.Unpickler):
    """Unpickles plain data only (dicts, lists, strings, numbers): never a class or a call."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a job's pickle")


class JobSerializer:
    """RQ's JSON serializer, reading back what a tool rewrote with pickle (plain data only).

    rq-dashboard (without ``-j``) and ``rq requeue`` (without ``-S json``) save a job's
    ``meta`` with pickle; such a job must still be read, not failed. RQ 2 keeps a ``meta``
    it cannot read as ``{"unserialized": <bytes>}``; those bytes are read too.
    """

    @staticmethod
    def dumps(obj: Any) -> bytes:
        return json.dumps(obj).encode("utf-8")

    @staticmethod
    def loads(data: bytes | str) -> Any:
        raw = data.encode("utf-8") if isinstance(data, str) else data
        if raw[:1] and raw[0] == _PICKLE_MARK:
            value = _PlainUnpickler(io.BytesIO(raw)).load()
            inner = value.get("unserialized") if isinstance(value, dict) else None
            if isinstance(inner, (bytes, str)) and len(value) == 1:
                return JobSerializer.loads(inner)
            return value
        return parse_json(raw)


def describe(payload: Mapping[str, Any]) -> str:
    """A job's description, as RQ's tools show it."""
    return f"Intercom event {payload.get('event_name')!r}"


def job_data(
    uuid: str,
    payload: Mapping[str, Any],
    *,
    failure_ttl: int,
    meta: Mapping[str, Any] | None = None,
) -> Any:
    """What ``Queue.enqueue_many`` needs to make the delivery job of one event."""
    return Queue.prepare_data(
        DELIVER,
        args=[dict(payload)],
        job_id=uuid,
        result_ttl=0,
        failure_ttl=failure_ttl,
        description=describe(payload),
        meta=dict(meta) if meta else None,
    )


@dataclass
class ClaimedJob:
    """A delivery job a worker holds: RQ's job, the event's payload and delivery history.

    ``problem`` says why the job cannot be delivered (it is then failed without being sent,
    with reason ``problem_reason``); ``execution`` is the id of RQ's execution record while it
    is being sent.
    """

    id: str
    job: Job | None
    payload: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None
    execution: str = ""
    problem_reason: str = "unreadable_job"

    @property
    def event_name(self) -> str:
        """The event's name, for log lines (``?`` if the job cannot be read)."""
        name = (self.payload or {}).get("event_name")
        return name if isinstance(name, str) else "?"


def read_job(job_id: str, raw: Mapping[bytes, bytes], connection: redis.Redis) -> ClaimedJob:
    """A :class:`ClaimedJob` from a job hash as ``HGETALL`` gives it (RQ's ``Job.restore``)."""
    if not raw:
        return ClaimedJob(job_id, None, problem="the job's record is gone (deleted or expired)")
    job = Job(job_id, connection=connection, serializer=JobSerializer)
    try:
        job.restore(dict(raw))
        func_name, args, kwargs = job.func_name, job.args, job.kwargs
    except Exception as exc:  # whatever RQ or the serializer raise for a record they can't read
        return ClaimedJob(job_id, job, problem=f"the job cannot be read: {exc}")
    meta = job.meta if isinstance(job.meta, dict) else {}
    if func_name != DELIVER:
        return ClaimedJob(
            job_id,
            job,
            meta=meta,
            problem=f"the job calls {func_name!r}, not {DELIVER}: only Intercom event "
            "deliveries belong on this queue",
            problem_reason="foreign_job",
        )
    if len(args) != 1 or not isinstance(args[0], dict) or kwargs:
        return ClaimedJob(job_id, job, meta=meta, problem="the job's arguments are not one event")
    return ClaimedJob(job_id, job, payload=args[0], meta=meta)


def failed_fields(job: Job, description: str) -> dict[str, Any]:
    """The fields of a failed job whose record RQ cannot write back (it has no data): its
    status, when it ended and its description as RQ's ``exc_info`` (compressed as RQ does)."""
    ended = job.ended_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if job.ended_at else ""
    return {
        "status": "failed",
        "ended_at": ended,
        "exc_info": zlib.compress(description.encode("utf-8", errors="replace")),
    }
