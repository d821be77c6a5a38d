"""``flask intercom failed`` and ``purge-failed``: failures made by a real worker against the
emulator (and, for ages, by the store), read back through the commands."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from flask_intercom_events.job_records import encode_line
from flask_intercom_events.sandbox import Sandbox
from flask_intercom_events.store import DeliveryStore, Failure

from .test_status import claimed, cli, ops_app, push
from .workers import QUEUE, Deployment, make_deployments

WORKER = "host.1.failed"


@pytest.fixture
def deployments(tmp_path: Path) -> Iterator[Any]:
    yield from make_deployments(tmp_path)


@pytest.fixture
def failures(redis_url: str, emulator: Sandbox, deployments: Any) -> Deployment:
    """4 events to contacts Intercom does not know, failed at once (404, no retry) by a real
    worker."""
    emulator.configure(require_contacts=True)
    setup: Deployment = deployments(redis_url, emulator.url, INTERCOM_EVENTS_NOT_FOUND_RETRIES=[])
    setup.track(4, name="invited-friend", prefix="ghost")
    worker = setup.start_worker("--burst", "--concurrency", "2")
    assert worker.wait(30) == 0
    assert setup.status().failed == 4
    return setup


def test_failed_lists_what_an_operator_needs(
    failures: Deployment, tmp_path: Path, redis_url: str
) -> None:
    app = ops_app(tmp_path, redis_url)
    result = cli(app, "failed")
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if "  404 not_found  " in line]
    assert len(rows) == 4
    assert "invited-friend  contact ghost-3  created_at " in result.output
    assert "attempts 1" in result.output
    # The last error is the failure's description (RQ's exc_info): why, then Intercom's answer.
    assert "last error: the contact was still not found after 1 try: POST /events: HTTP 404" in (
        result.output
    )
    assert result.output.rstrip().endswith("Listed 4 failed event(s).")
    limited = cli(app, "failed", "--limit", "1", "--reason", "404")
    assert "Listed 1 of 4 failed event(s) with reason '404'; --limit 0 lists them all." in (
        limited.output
    )
    assert "No failed event(s) with reason '401'." in cli(app, "failed", "--reason", "401").output
    listed = [json.loads(line) for line in cli(app, "failed", "--json").output.splitlines()]
    assert {event["contact"] for event in listed} == {"ghost-0", "ghost-1", "ghost-2", "ghost-3"}
    first = listed[0]
    assert first["reason"] == "404 not_found"
    assert first["event_name"] == "invited-friend"
    assert first["attempts"] == 1
    assert isinstance(first["created_at"], int)
    assert "POST /events: HTTP 404 not_found: User Not Found" in first["last_error"]


def test_failed_scheduled_lists_the_retries_soonest_first(
    redis_url: str, emulator: Sandbox, deployments: Any, tmp_path: Path
) -> None:
    emulator.configure(require_contacts=True)
    setup: Deployment = deployments(
        redis_url, emulator.url, INTERCOM_EVENTS_NOT_FOUND_RETRIES=[600]
    )
    setup.track(2, prefix="later")
    worker = setup.start_worker("--concurrency", "2")
    setup.wait_until(lambda: setup.status().scheduled == 2, 30, "2 retries scheduled")
    worker.stop()
    app = ops_app(tmp_path, redis_url)
    result = cli(app, "failed", "--scheduled")
    assert result.output.count("  404 not_found  ran-drill") == 2
    assert "Listed 2 scheduled retries." in result.output
    assert "No failed event(s)." in cli(app, "failed").output


def test_purge_failed_asks_first(failures: Deployment, tmp_path: Path, redis_url: str) -> None:
    app = ops_app(tmp_path, redis_url)
    refused = cli(app, "purge-failed", "--reason", "404", input="n\n")
    assert refused.exit_code == 1
    assert "Delete 4 failed event(s) with reason '404'? They will not be sent" in refused.output
    assert "Aborted" in refused.output
    assert failures.status().failed == 4
    accepted = cli(app, "purge-failed", input="y\n")
    assert accepted.exit_code == 0
    assert "Deleted 4 failed event(s)." in accepted.output
    found = failures.status()
    assert (found.failed, found.failed_by_reason) == (0, {})
    assert list(failures.connection.scan_iter("rq:job:*")) == []
    assert "No failed events." in cli(app, "purge-failed", "--yes").output


def test_purge_failed_older_than(tmp_path: Path, redis_url: str) -> None:
    connection = redis.Redis.from_url(redis_url)
    store = DeliveryStore(connection, QUEUE, failure_ttl=3600)
    push(store, 3, created_at=1_700_000_000)
    now = time.time()
    jobs = claimed(store, 3)
    store.settle(
        WORKER,
        failures=[
            Failure(job, "400 bad", "bad", {"failure": {"reason": "400 bad", "failed_at": at}})
            for job, at in zip(jobs, (now - 3 * 86400, now - 2 * 86400, now - 60), strict=True)
        ],
    )
    app = ops_app(tmp_path, redis_url)
    result = cli(app, "purge-failed", "--older-than", "1d", "--yes")
    assert "Deleted 2 failed event(s) that failed more than 1 d ago." in result.output
    assert [e["id"] for e in map(json.loads, cli(app, "failed", "--json").output.splitlines())] == [
        jobs[2].id
    ]
    bad = cli(app, "purge-failed", "--older-than", "a while")
    assert bad.exit_code == 2
    assert "'a while' is not a duration" in bad.output
    connection.close()


@pytest.mark.parametrize("command", ["failed", "purge-failed", "requeue-failed"])
@pytest.mark.parametrize("reason", ["", "  "])
def test_an_empty_reason_is_refused_not_matched_to_nothing(
    tmp_path: Path, redis_url: str, command: str, reason: str
) -> None:
    result = cli(ops_app(tmp_path, redis_url), command, "--reason", reason)
    assert result.exit_code == 2
    assert "an empty reason matches no failure" in result.output


def test_what_redis_holds_never_drives_the_operators_terminal(
    redis_url: str, emulator: Sandbox, deployments: Any, tmp_path: Path
) -> None:
    """A hand-written line whose name carries terminal escapes (a title change, a clear
    screen) is failed, and shown escaped: by `failed` (click strips colour codes, not the
    others) and by the worker's log line."""
    setup: Deployment = deployments(redis_url, emulator.url)
    hostile = "x\x1b]0;pwned\x07\x1b[2Jy"
    setup.connection.rpush(
        setup.store.keys.intake,
        encode_line("ev-1", {"event_name": hostile, "created_at": 1_700_000_000, "user_id": "1"}),
    )
    worker = setup.start_worker("--burst")
    assert worker.wait(30) == 0
    assert setup.status().failed == 1
    assert "\x1b" not in worker.log()
    assert "x\\x1b]0;pwned\\x07\\x1b[2Jy" in worker.log()
    listed = cli(ops_app(tmp_path, redis_url), "failed").output
    assert "\x1b" not in listed
    assert "\x07" not in listed
    assert "x\\x1b]0;pwned\\x07\\x1b[2Jy" in listed
