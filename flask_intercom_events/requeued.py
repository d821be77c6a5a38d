"""Jobs that come back from the failed registry, requeued by any tool (``flask intercom
requeue-failed``, rq-dashboard, ``rq requeue``), as a worker claims them (see ``store.py``).

Their failure is counted out and their history starts afresh; and each claims its second
again (``collecting.py``): the second it had may belong to another event by now (it failed as
``collapsed`` because one did), and Intercom would drop it as a duplicate while it counted as
delivered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .collecting import SameSecond, choose_seconds, collapsed_description, contact_digest
from .job_records import ClaimedJob

if TYPE_CHECKING:  # the store calls this module: for the type checker only
    from .store import DeliveryStore

__all__ = ["forget_failure", "fresh_history", "seconds_again"]


def seconds_again(
    store: DeliveryStore, pipe: Any, worker: str, jobs: list[ClaimedJob], same_second: SameSecond
) -> list[ClaimedJob]:
    """Claim their second again for the requeued ones among ``jobs``, in ``pipe``; the
    moved get their new ``created_at``, the collapsed are failed; returns those."""
    again = {
        claimed.id: claimed
        for claimed in jobs
        if claimed.meta.get("requeued")
        and isinstance((claimed.payload or {}).get("created_at"), int)
    }
    starts = {}
    for job_id, claimed in again.items():
        payload = claimed.payload or {}
        first = claimed.meta.get("moved_from", payload["created_at"])
        starts[job_id] = (contact_digest(payload), first if isinstance(first, int) else 0)
    seconds, collapsed_ids = choose_seconds(store, same_second, starts)
    for job_id, second in seconds.items():
        claimed = again[job_id]
        payload = claimed.payload or {}
        if second == payload["created_at"]:
            continue
        claimed.meta.setdefault("moved_from", payload["created_at"])
        claimed.payload = {**payload, "created_at": second}
        assert claimed.job is not None
        claimed.job.args = [claimed.payload]
        claimed.job.meta = claimed.meta
        claimed.job.save(pipeline=pipe)
    collapsed = [again[job_id] for job_id in collapsed_ids]
    for claimed in collapsed:
        assert claimed.job is not None
        pipe.hdel(store.keys.held(worker), claimed.id)
        store.fail_now(
            pipe,
            claimed.job,
            "collapsed",
            collapsed_description(same_second.most, starts[claimed.id][1]),
            {"failure": {"reason": "collapsed", "attempts": 0}},
        )
    if collapsed:
        store.scripts.add_counts(
            counters=store.keys.stats, amounts={"collapsed": len(collapsed)}, client=pipe
        )
    return collapsed


def fresh_history(meta: dict[str, Any]) -> dict[str, Any]:
    """A requeued job's meta: its attempts and failure forgotten, its requeues counted."""
    fresh = {k: v for k, v in meta.items() if k not in ("attempts", "failure")}
    requeued = fresh.get("requeued")
    counted = requeued if isinstance(requeued, int) and not isinstance(requeued, bool) else 0
    fresh["requeued"] = counted + 1
    return fresh


def forget_failure(store: DeliveryStore, pipe: Any, claimed: ClaimedJob) -> None:
    """A job that comes back failed was requeued by another tool (rq-dashboard, ``rq
    requeue``; ours gives a fresh history first): count its failure out, start afresh."""
    failure = claimed.meta.get("failure")
    if not isinstance(failure, dict):
        return
    reason = failure.get("reason")
    if isinstance(reason, str):
        store.scripts.add_counts(
            counters=store.keys.failed_reasons, amounts={reason: -1}, client=pipe
        )
    meta = fresh_history(claimed.meta)
    claimed.meta = meta
    assert claimed.job is not None
    claimed.job.meta = meta
    claimed.job.save(pipeline=pipe)
