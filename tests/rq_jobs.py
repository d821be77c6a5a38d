"""Job functions for RQ's own worker, in tests that compare its records with ours."""

from __future__ import annotations

import time

from rq import get_current_job


def hold(release_key: str) -> str:
    """Run until ``release_key`` exists in Redis (so a test can look at a started job)."""
    job = get_current_job()
    assert job is not None
    while not job.connection.exists(release_key):
        time.sleep(0.02)
    return "done"


def explode() -> None:
    """Fail, as a job does when its function raises."""
    raise ValueError("boom")
