"""A success Intercom never gives is not Intercom's answer: a captive portal, a proxy or a
wrong ``INTERCOM_API_BASE_URL`` answering ``200`` with a page where an event gets ``202``.
Such an event may never have reached Intercom: it is retried like a dropped connection, never
counted as delivered (it once was, and lost without a word)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flask_intercom_events import NetworkError
from flask_intercom_events.client import IntercomClient
from flask_intercom_events.events import Event, EventSummary, Identity

from .hostile import HostileServer, Peer, Received, response
from .workers import Deployment, make_deployments

PORTAL = b"<html><body>Please log in to the hotel Wi-Fi</body></html>"


def event() -> Event:
    return Event("invited-friend", int(time.time()), Identity(user_id="42"), {})


@pytest.fixture
def deployments(tmp_path: Path) -> Iterator[Callable[..., Deployment]]:
    yield from make_deployments(tmp_path)


def answering(status: int, body: bytes = b"", content_type: str = "text/html") -> HostileServer:
    def answer(peer: Peer, request: Received) -> bool:
        peer.send(response(status, body, content_type=content_type))
        return True

    return HostileServer(answer)


@pytest.mark.parametrize(
    ("status", "body"), [(200, PORTAL), (200, b""), (201, b"{}"), (204, b""), (299, b"ok")]
)
def test_an_event_answered_otherwise_than_202_is_not_delivered(status: int, body: bytes) -> None:
    with (
        answering(status, body) as server,
        IntercomClient("test-token", base_url=server.url) as client,
        pytest.raises(NetworkError, match=f"answered {status}, where Intercom answers 202"),
    ):
        client.create_event(event())


def test_summaries_answered_otherwise_than_200_are_not_submitted() -> None:
    summary = EventSummary("invited-friend", 2, int(time.time()) - 60, int(time.time()))
    with (
        answering(202) as server,
        IntercomClient("test-token", base_url=server.url) as client,
        pytest.raises(NetworkError, match="answered 202, where Intercom answers 200"),
    ):
        client.submit_summaries("42", summary)


def test_a_captive_portal_delays_delivery_and_loses_nothing(
    redis_url: str, deployments: Callable[..., Deployment]
) -> None:
    received: list[Any] = []

    def portal_then_intercom(peer: Peer, request: Received) -> bool:
        if len(received) < 4:  # the portal answers first
            received.append(None)
            peer.send(response(200, PORTAL, content_type="text/html"))
        else:
            received.append(request.json())
            peer.send(response(202))
        return True

    with HostileServer(portal_then_intercom) as server:
        setup = deployments(redis_url, server.url)
        setup.track(3)
        worker = setup.start_worker("--burst")
        assert worker.wait(60) == 0, worker.log()
    found = setup.status()
    assert (found.pending, found.failed) == (0, 0), worker.log()
    assert found.counters.get("delivered") == 3
    assert sorted(body["metadata"]["n"] for body in received[4:]) == [0, 1, 2]
    log = worker.log()
    assert "where Intercom answers 202" in log
    assert "Traceback" not in log
