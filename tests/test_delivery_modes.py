"""``eager`` and ``disabled`` delivery, against the emulator over real HTTP."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask

from flask_intercom_events import (
    AuthenticationError,
    Event,
    Identity,
    IntercomEvents,
    NotFoundError,
    RedirectError,
    track_event,
)
from flask_intercom_events.local_seconds import LocalSeconds
from flask_intercom_events.sandbox import Sandbox
from flask_intercom_events.signals import event_delivered, event_dropped, event_failed
from flask_intercom_events.testing import record_events

from .apps import make_app
from .hostile import HostileServer, Peer, Received, response


def eager_app(tmp_path: Path, base_url: str, **config: Any) -> tuple[Flask, IntercomEvents]:
    intercom = IntercomEvents()
    intercom.identity_loader(lambda: Identity(user_id="u1"))
    app = make_app(
        tmp_path,
        intercom,
        INTERCOM_EVENTS_DELIVERY="eager",
        INTERCOM_API_BASE_URL=base_url,
        **config,
    )

    @app.post("/paid")
    @track_event("paid", metadata={"plan": "pro"})
    def paid() -> str:
        return "ok"

    return app, intercom


def outcomes(app: Flask) -> tuple[list[Any], list[Any]]:
    delivered: list[Any] = []
    failed: list[Any] = []
    event_delivered.connect(lambda sender, event: delivered.append(event), sender=app, weak=False)
    event_failed.connect(
        lambda sender, event, error: failed.append((event, error)), sender=app, weak=False
    )
    return delivered, failed


def test_eager_sends_inline_and_signals_delivery(tmp_path: Path, emulator: Sandbox) -> None:
    app, _ = eager_app(tmp_path, emulator.url)
    delivered, failed = outcomes(app)
    with record_events(app) as events:
        assert app.test_client().post("/paid").status_code == 200
    # Sent before the view's response was returned: no worker involved.
    assert [(e.event_name, e.user_id, e.metadata) for e in emulator.events] == [
        ("paid", "u1", {"plan": "pro"})
    ]
    assert emulator.warnings == []
    assert delivered == events
    assert failed == []


def test_eager_failure_is_logged_not_raised_when_lenient(
    tmp_path: Path, emulator: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    app, _ = eager_app(
        tmp_path, emulator.url, INTERCOM_ACCESS_TOKEN="wrong-token", INTERCOM_EVENTS_STRICT=False
    )
    delivered, failed = outcomes(app)
    assert app.test_client().post("/paid").status_code == 200
    assert delivered == []
    [(event, error)] = failed
    assert isinstance(event, Event)
    assert isinstance(error, AuthenticationError)
    assert error.status == 401
    assert "Intercom refused event 'paid'" in caplog.text
    assert "wrong-token" not in caplog.text


def test_eager_failure_raises_when_strict(tmp_path: Path, emulator: Sandbox) -> None:
    emulator.configure(require_contacts=True)  # no contact declared: every event is a 404
    app, intercom = eager_app(tmp_path, emulator.url, INTERCOM_EVENTS_STRICT=True)
    with app.app_context(), pytest.raises(NotFoundError, match="User Not Found"):
        intercom.track("paid", user_id="ghost")


def test_disabled_sends_nothing_anywhere(tmp_path: Path, emulator: Sandbox, redis_url: str) -> None:
    intercom = IntercomEvents()
    app = make_app(
        tmp_path,
        intercom,
        INTERCOM_EVENTS_DELIVERY="disabled",
        INTERCOM_API_BASE_URL=emulator.url,
        INTERCOM_EVENTS_REDIS_URL=redis_url,
    )
    with app.app_context(), record_events(app) as events:
        intercom.track("signed-up", user_id="1")
    assert [e.event_name for e in events] == ["signed-up"]
    assert emulator.stats.requests == 0
    client = redis.Redis.from_url(redis_url)
    assert client.dbsize() == 0
    client.close()


def test_eager_redirect_is_an_event_failed_not_a_500_when_lenient(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # An API answering a redirect (a wrong base URL, a captive portal): the view stands.
    def answer(peer: Peer, request: Received) -> bool:
        peer.send(response(302, b"", headers={"Location": "http://portal.example/"}))
        return True

    with HostileServer(answer) as server:
        app, _ = eager_app(tmp_path, server.url, INTERCOM_EVENTS_STRICT=False)
        delivered, failed = outcomes(app)
        assert app.test_client().post("/paid").status_code == 200
    assert delivered == []
    [(event, error)] = failed
    assert event.event_name == "paid"
    assert isinstance(error, RedirectError)
    assert error.status == 302
    assert "Intercom refused event 'paid'" in caplog.text


@pytest.mark.parametrize("which", ["event_delivered", "event_failed"])
def test_eager_receivers_that_raise_never_fail_the_view_when_lenient(
    tmp_path: Path, emulator: Sandbox, caplog: pytest.LogCaptureFixture, which: str
) -> None:
    token = "test-token" if which == "event_delivered" else "wrong-token"
    app, _ = eager_app(
        tmp_path, emulator.url, INTERCOM_ACCESS_TOKEN=token, INTERCOM_EVENTS_STRICT=False
    )

    def broken(sender: Flask, **kwargs: Any) -> None:
        raise RuntimeError("a receiver's bug")

    signal = event_delivered if which == "event_delivered" else event_failed
    signal.connect(broken, sender=app, weak=False)
    assert app.test_client().post("/paid").status_code == 200
    assert emulator.stats.requests == 1
    assert "a receiver's bug" in caplog.text


def test_eager_gives_distinct_events_of_one_second_distinct_seconds(
    tmp_path: Path, emulator: Sandbox
) -> None:
    """Eager sends from the web process, without the workers' claims: five reports exported
    in one second were one event in Intercom (four silent duplicates). They now take the next
    free seconds, as in rq delivery; past the spread an event is dropped as collapsed, said
    so."""
    app, intercom = eager_app(tmp_path, emulator.url, INTERCOM_EVENTS_MAX_SPREAD=6)
    second = 1_700_000_000
    with app.app_context():
        sent = [
            intercom.track("exported-report", created_at=second, metadata={"n": n})
            for n in range(5)
        ]
        assert all(event is not None for event in sent)
    stored = sorted(e.created_at for e in emulator.events)
    assert stored == [second + n for n in range(5)]
    assert emulator.stats.duplicates == 0
    dropped: list[dict[str, Any]] = []
    receiver = event_dropped.connected_to(lambda sender, **kw: dropped.append(kw), app)
    with receiver, app.app_context():
        for n in range(5, 9):  # seconds +5 and +6 are free, then none within 6 s
            intercom.track("exported-report", created_at=second, metadata={"n": n})
    assert sorted(e.created_at for e in emulator.events) == [second + n for n in range(7)]
    assert [d["reason"] for d in dropped] == ["collapsed", "collapsed"]


def test_eager_with_collapse_leaves_intercoms_de_duplication_alone(
    tmp_path: Path, emulator: Sandbox
) -> None:
    app, intercom = eager_app(tmp_path, emulator.url, INTERCOM_EVENTS_SAME_SECOND="collapse")
    with app.app_context():
        for n in range(3):
            intercom.track("exported-report", created_at=1_700_000_000, metadata={"n": n})
    assert [e.created_at for e in emulator.events] == [1_700_000_000]
    assert emulator.stats.duplicates == 2


def test_local_claims_keep_an_events_own_second_and_expire() -> None:
    claims = LocalSeconds(most=2, ttl=0.2)
    first = Event.create("exported-report", identity=Identity(user_id="7"), created_at=100)
    other = Event.create("exported-report", identity=Identity(user_id="7"), created_at=100)
    elsewhere = Event.create("exported-report", identity=Identity(user_id="8"), created_at=100)
    assert claims.second_for(first) == 100
    assert claims.second_for(first) == 100  # the same event again: its own second
    assert claims.second_for(other) == 101
    assert claims.second_for(elsewhere) == 100  # another contact
    assert (
        claims.second_for(
            Event.create("exported-report", identity=Identity(user_id="7"), created_at=100)
        )
        == 102
    )
    assert (
        claims.second_for(
            Event.create("exported-report", identity=Identity(user_id="7"), created_at=100)
        )
        is None
    )  # every second up to most taken
    time.sleep(0.25)
    assert claims.second_for(other) == 100  # the claims expired
