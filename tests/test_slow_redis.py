"""A Redis that answers, slowly: after a few slow hand-offs in a row the breaker opens, so
views stop paying the latency, and it closes once the probe finds Redis fast again, every
event reaching Redis. The slowness is real: a TCP proxy of the test's own holds each reply."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from flask_intercom_events.extension import state_of
from flask_intercom_events.intake import Intake

from .redis_server import RedisServer
from .servers import LatencyProxy
from .test_handoff import build_app, intake, rpush_calls, wait_until

#: A slow reply: held 1 s by the proxy, twice the slowness bound, a third of the timeout
#: (Redis answers). A fast one (no latency added, through the proxy's Python thread) has
#: the whole 0.5 s to the bound: a stall of a loaded machine does not make it slow.
SLOW = 1.0
SETTINGS = {"INTERCOM_EVENTS_REDIS_TIMEOUT": 3.0, "INTERCOM_EVENTS_REDIS_SLOW": 0.5}


@pytest.fixture
def slow_proxy(redis_server: RedisServer, redis_url: str) -> Iterator[LatencyProxy]:
    with LatencyProxy(redis_server.port) as proxy:
        yield proxy


def slow_app(tmp_path: Path, proxy: LatencyProxy) -> tuple[Flask, Intake]:
    """An app handing off through ``proxy``, its connection to Redis made while the proxy
    is fast: each slow hand-off then costs one slow reply, not one per command of the
    connection's set-up."""
    app = build_app(tmp_path, proxy.url, **SETTINGS)
    intake_ = state_of(app).intake
    assert isinstance(intake_, Intake)
    assert intake_.redis.ping()
    return app, intake_


def test_slow_hand_offs_open_the_breaker_and_fast_probes_close_it(
    tmp_path: Path, redis_url: str, slow_proxy: LatencyProxy
) -> None:
    app, intake_ = slow_app(tmp_path, slow_proxy)
    slow_proxy.latency = SLOW
    client = app.test_client()
    try:
        pushes_before = rpush_calls(redis_url)
        for n in range(10):
            with client.get(f"/one/{n}") as response:
                assert response.status_code == 200
        # Three slow hand-offs in a row reached Redis, then the breaker opened: the other
        # seven requests went to the spool without a round trip to Redis (no RPUSH).
        assert intake_.down
        assert rpush_calls(redis_url) - pushes_before == 3
        assert intake_.spool.count() == 7
        assert sorted(p["metadata"]["n"] for p in intake(redis_url)) == [0, 1, 2]

        slow_proxy.latency = 0.0  # Redis is fast again: the next probe sees it and drains
        wait_until(lambda: not intake_.down and not intake_.spool.files(), "the breaker closed")
        assert sorted(p["metadata"]["n"] for p in intake(redis_url)) == list(range(10))
        pushes_before = rpush_calls(redis_url)
        with client.get("/one/10") as response:
            assert response.status_code == 200
        assert rpush_calls(redis_url) - pushes_before == 1  # straight to Redis again
        assert intake_.spool.files() == []
        assert sorted(p["metadata"]["n"] for p in intake(redis_url)) == list(range(11))
    finally:
        intake_.close()


def test_one_slow_hand_off_is_a_hiccup_not_an_outage(
    tmp_path: Path, redis_url: str, slow_proxy: LatencyProxy
) -> None:
    app, intake_ = slow_app(tmp_path, slow_proxy)
    client = app.test_client()
    try:
        for n in range(6):
            # Slow, slow, fast, slow, slow, fast: never three in a row.
            slow_proxy.latency = 0.0 if n % 3 == 2 else SLOW
            with client.get(f"/one/{n}") as response:
                assert response.status_code == 200
            assert not intake_.down
        assert intake_.spool.files() == []
        assert sorted(p["metadata"]["n"] for p in intake(redis_url)) == list(range(6))
    finally:
        intake_.close()
