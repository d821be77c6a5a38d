"""Issue 3's outage drill, end to end: Redis goes away while requests come in, the views
still answer, the events wait in the spool, and once Redis is back a real worker process
delivers every one of them to the emulator."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flask_intercom_events import Identity, track_event
from flask_intercom_events.extension import state_of
from flask_intercom_events.sandbox import Sandbox

from .redis_server import RedisServer
from .workers import Deployment, make_deployments

Make = Callable[..., Deployment]


@pytest.fixture
def deployments(tmp_path: Path) -> Iterator[Make]:
    yield from make_deployments(tmp_path)


def test_redis_outage_during_requests_every_event_delivered_after_it(
    own_redis: RedisServer, emulator: Sandbox, deployments: Make
) -> None:
    # Redis answers within the Deployment's 2-s timeout while it is up (no order before the
    # outage may go to the spool) and refuses at once while it is stopped.
    setup = deployments(
        own_redis.url,
        emulator.url,
        INTERCOM_EVENTS_REDIS_TIMEOUT=2.0,
        INTERCOM_EVENTS_REDIS_SLOW=1.0,
    )
    app = setup.app

    @app.post("/orders/<int:number>")
    @track_event(
        "placed-order",
        identity=lambda number: Identity(user_id=f"buyer-{number}"),
        metadata=lambda number: {"order": number},
    )
    def place(number: int) -> tuple[str, int]:
        return "placed", 201

    client = app.test_client()

    def order(number: int) -> None:
        with client.post(f"/orders/{number}") as response:
            assert response.status_code == 201

    worker = setup.start_worker("--concurrency", "8")
    for number in range(20):
        order(number)
    own_redis.stop()
    for number in range(20, 60):
        order(number)  # Redis is down: the view still answers
    intake = state_of(app).intake
    assert intake is not None
    assert intake.spool.count() == 40
    own_redis.start()
    for number in range(60, 80):
        order(number)
    setup.wait_until(
        lambda: len({e.user_id for e in emulator.events}) == 80 and intake.spool.count() == 0,
        60,
        "every order delivered",
    )
    setup.wait_until(setup.settled, 30, "the queue settled")
    assert worker.stop() == 0
    assert sorted(e.metadata["order"] for e in emulator.events) == list(range(80))
    assert setup.failed_ids() == []
    assert emulator.warnings == []
