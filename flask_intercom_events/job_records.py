"""Delivery jobs in RQ's own Redis format, written and read without RQ's per-job overhead.

RQ builds and parses a whole :class:`rq.job.Job` per job: about 0.3 ms of CPU to enqueue one
and as much to fetch one, a quarter of what delivering an event costs. Delivery jobs are all
alike (same function, same options; only the payload differs), so:

- **writing**: the first job of a batch goes through RQ's ``Queue.enqueue_many``; the others
  are copies of its record with their own id, payload (``data``) and description, written by
  one Lua script (sending each record's two dozen fields would cost more than the rest);
- **reading** a claimed job fetches two fields, ``data`` and ``meta``, and decodes them the
  way ``Job.restore`` does (``data`` is zlib-compressed, both are RQ's ``JSONSerializer``).

On first use :class:`JobWriter` checks its copies with RQ's own ``Job.restore``; if this RQ
version stores jobs differently, it logs a warning and enqueues every job through RQ.
"""

from __future__ import annotations

import json
import logging
import uuid
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

__all__ = ["DELIVER", "ClaimedJob", "JobWriter", "read_claimed"]

#: The job function's import path, as RQ stores it in every delivery job (so it never
#: changes: queued jobs of an older version must still run).
DELIVER = "flask_intercom_events.jobs.deliver"

log = logging.getLogger("flask_intercom_events.delivery")

# KEYS: queue. ARGV: job key prefix, number of shared fields N, N field/value pairs, then
# (id, data, description) per copy.
_WRITE_COPIES = r"""
local prefix, shared = ARGV[1], tonumber(ARGV[2])
local base = {}
for i = 3, 2 + 2 * shared do
  base[#base + 1] = ARGV[i]
end
local ids = {}
for i = 3 + 2 * shared, #ARGV, 3 do
  local fields = {prefix .. ARGV[i]}
  for _, value in ipairs(base) do
    fields[#fields + 1] = value
  end
  fields[#fields + 1] = 'data'
  fields[#fields + 1] = ARGV[i + 1]
  fields[#fields + 1] = 'description'
  fields[#fields + 1] = ARGV[i + 2]
  redis.call('HSET', unpack(fields))
  ids[#ids + 1] = ARGV[i]
end
if #ids > 0 then
  redis.call('RPUSH', KEYS[1], unpack(ids))
end
return #ids
"""


@dataclass(frozen=True)
class ClaimedJob:
    """A claimed job as the worker needs it: id, function, arguments and ``meta``.

    ``problem`` says why the job could not be read (it then fails without being sent).
    """

    id: str
    func_name: str | None
    args: Sequence[Any] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    meta: Mapping[str, Any] = field(default_factory=dict)
    problem: str | None = None


def read_claimed(job_id: str, data: bytes | None, meta: bytes | None) -> ClaimedJob:
    """A :class:`ClaimedJob` from the job hash's ``data`` and ``meta`` fields."""
    if data is None:
        return ClaimedJob(job_id, None, problem="the job has no data (it was deleted)")
    try:
        with_meta = json.loads(meta) if meta else {}
        try:
            raw = zlib.decompress(data)
        except zlib.error:
            raw = data  # RQ's fallback: stored uncompressed
        func_name, _instance, args, kwargs = json.loads(raw)
        if not isinstance(with_meta, dict) or not isinstance(args, list):
            raise ValueError("unexpected shape")
    except (ValueError, TypeError) as exc:
        return ClaimedJob(job_id, None, problem=f"the job cannot be read as JSON: {exc}")
    return ClaimedJob(job_id, func_name, args, kwargs or {}, with_meta)


class JobWriter:
    """Enqueues delivery jobs (function :data:`~flask_intercom_events.jobs.DELIVER`, one
    payload each) onto ``queue`` inside a caller's transaction."""

    def __init__(self, queue: Queue, *, failure_ttl: int) -> None:
        self.queue = queue
        self.failure_ttl = failure_ttl
        self._copies_work: bool | None = None
        self._write_copies = queue.connection.register_script(_WRITE_COPIES)

    def enqueue(self, payloads: Sequence[dict[str, Any]], pipe: Any) -> list[str]:
        """Queue one job per payload in ``pipe`` (a transaction); returns the job ids."""
        if not payloads:
            return []
        if self._copies_work is False:
            return [job.id for job in self.queue.enqueue_many(self._data(payloads), pipeline=pipe)]
        [first] = self.queue.enqueue_many(self._data(payloads[:1]), pipeline=pipe)
        record = first.to_dict()
        if self._copies_work is None:
            self._copies_work = self._check(record)
            if not self._copies_work:
                rest = self.queue.enqueue_many(self._data(payloads[1:]), pipeline=pipe)
                return [first.id, *(job.id for job in rest)]
        shared = [
            part
            for name, value in record.items()
            if name not in ("data", "description")
            for part in (name, value)
        ]
        ids = [first.id]
        copies: list[Any] = []
        for payload in payloads[1:]:
            job_id = str(uuid.uuid4())  # as RQ makes them
            copies += [job_id, _encoded(payload), _description(payload)]
            ids.append(job_id)
        if copies:
            self._write_copies(
                keys=[self.queue.key],
                args=[Job.key_for(""), len(shared) // 2, *shared, *copies],
                client=pipe,
            )
        return ids

    def _data(self, payloads: Sequence[dict[str, Any]]) -> list[Any]:
        return [
            Queue.prepare_data(
                DELIVER,
                args=[payload],
                result_ttl=0,
                failure_ttl=self.failure_ttl,
                description=_description(payload),
            )
            for payload in payloads
        ]

    def _check(self, record: dict[str, Any]) -> bool:
        """Whether a copy of ``record`` reads back, through RQ, as the job it should be."""
        payload = {"event_name": "format-check", "created_at": 0, "user_id": "check"}
        stored = {
            key.encode(): _redis_bytes(value) for key, value in _copy(record, payload).items()
        }
        try:
            probe = Job("format-check", connection=self.queue.connection, serializer=JSONSerializer)
            probe.restore(stored)
            ours = read_claimed("format-check", stored.get(b"data"), stored.get(b"meta"))
            works = (
                probe.func_name == DELIVER
                and list(probe.args) == [payload]
                and probe.description == _description(payload)
                and probe.origin == self.queue.name
                and ours.func_name == DELIVER
                and list(ours.args) == [payload]
            )
        except Exception as exc:
            log.warning("Job record check failed (%s); enqueueing every job through RQ", exc)
            return False
        if not works:
            log.warning("This RQ stores jobs differently; enqueueing every job through RQ")
        return works


def _copy(record: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    """The record of a copy, as ``_WRITE_COPIES`` writes it."""
    return {**record, "data": _encoded(payload), "description": _description(payload)}


def _encoded(payload: dict[str, Any]) -> bytes:
    # What JSONSerializer.dumps makes of RQ's (function, instance, args, kwargs) tuple,
    # compressed as Job.to_dict does.
    return zlib.compress(json.dumps((DELIVER, None, [payload], {})).encode("utf-8"))


def _description(payload: Mapping[str, Any]) -> str:
    return f"Intercom event {payload.get('event_name')!r}"


def _redis_bytes(value: Any) -> bytes:
    # What redis-py's encoder sends, i.e. what HGETALL would give back.
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return repr(value).encode()
