"""No phantom events: a request that ends with an unhandled exception sends nothing it tracked
(``INTERCOM_EVENTS_DISCARD_ON_ERROR``), on every path Flask takes to a failed request; a
request that answers 4xx on purpose (``abort()``, a handled error, a 401 for a failed log-in)
still sends what it tracked."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, Response, abort, stream_with_context

from flask_intercom_events import Identity, IntercomEvents, track_event
from flask_intercom_events.extension import state_of
from flask_intercom_events.signals import event_dropped
from flask_intercom_events.testing import record_events

from .apps import make_app
from .test_handoff import build_app, intake


class Boom(Exception):
    """What the views raise."""


@pytest.fixture
def dropped() -> Iterator[list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []

    def receiver(sender: Flask, **kwargs: Any) -> None:
        seen.append(kwargs)

    with event_dropped.connected_to(receiver):
        yield seen


def failing_app(tmp_path: Path, redis_url: str, **config: Any) -> tuple[Flask, IntercomEvents]:
    app = build_app(tmp_path, redis_url, **config)
    intercom = state_of(app).extension

    @app.post("/fail")
    def fail() -> str:
        intercom.track("placed-order")
        raise Boom("the view failed after tracking")

    @app.post("/fail-async")
    async def fail_async() -> str:
        intercom.track("placed-order")
        raise Boom("the async view failed after tracking")

    @app.post("/denied")
    def denied() -> tuple[str, int]:
        intercom.track("failed-login")  # tracked on purpose: the 401 is the answer
        return "wrong password", 401

    @app.post("/gone")
    def gone() -> str:
        intercom.track("looked-for-it")
        abort(410)

    return app, intercom


def names(url: str) -> list[str]:
    return sorted(p["event_name"] for p in intake(url))


def read_failing_stream(app: Flask, path: str) -> None:
    """GET ``path``, whose body raises ``Boom`` midway, then close the response (as a WSGI
    server does)."""
    response = app.test_client().get(path)
    with pytest.raises(Boom):
        response.get_data()
    response.close()


def test_an_unhandled_exception_discards_what_the_request_tracked(
    tmp_path: Path, redis_url: str, dropped: list[dict[str, Any]]
) -> None:
    app, _ = failing_app(tmp_path, redis_url)
    with app.test_client().post("/fail") as response:
        assert response.status_code == 500
    assert names(redis_url) == []
    [drop] = dropped
    assert (drop["event_name"], drop["reason"]) == ("placed-order", "request failed")
    assert isinstance(drop["error"], Boom)
    assert drop["event"].event_name == "placed-order"


def test_a_500_handler_does_not_make_the_failure_a_success(
    tmp_path: Path, redis_url: str, dropped: list[dict[str, Any]]
) -> None:
    app, _ = failing_app(tmp_path, redis_url)

    @app.errorhandler(500)
    def sorry(error: Exception) -> tuple[str, int]:
        return "sorry", 500

    with app.test_client().post("/fail") as response:
        assert (response.status_code, response.get_data(as_text=True)) == (500, "sorry")
    assert names(redis_url) == []
    assert [d["reason"] for d in dropped] == ["request failed"]


def test_propagated_exceptions_discard_too(
    tmp_path: Path, redis_url: str, dropped: list[dict[str, Any]]
) -> None:
    # Under app.testing (or PROPAGATE_EXCEPTIONS) the exception reaches the WSGI server and
    # after_request never runs: only teardown sees the request end.
    app, _ = failing_app(tmp_path, redis_url, PROPAGATE_EXCEPTIONS=True)
    with pytest.raises(Boom):
        app.test_client().post("/fail")
    assert names(redis_url) == []
    assert [d["reason"] for d in dropped] == ["request failed"]


def test_an_async_view_that_raises_tracks_nothing(
    tmp_path: Path, redis_url: str, dropped: list[dict[str, Any]]
) -> None:
    app, _ = failing_app(tmp_path, redis_url)
    with app.test_client().post("/fail-async") as response:
        assert response.status_code == 500
    assert names(redis_url) == []
    assert [d["reason"] for d in dropped] == ["request failed"]


@pytest.mark.parametrize("registered", ["before init_app", "after init_app"])
def test_an_error_in_an_after_request_function_discards(
    tmp_path: Path, redis_url: str, dropped: list[dict[str, Any]], registered: str
) -> None:
    intercom = IntercomEvents()
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(
        INTERCOM_ACCESS_TOKEN="test-token",
        INTERCOM_EVENTS_DELIVERY="rq",
        INTERCOM_EVENTS_REDIS_URL=redis_url,
        INTERCOM_EVENTS_REDIS_TIMEOUT=2.0,
        INTERCOM_EVENTS_REDIS_SLOW=1.0,
    )

    def broken(response: Response) -> Response:
        raise Boom("an after_request function failed")

    # Flask runs after_request functions last registered first: before init_app, this one
    # runs after the extension's; after init_app, before it.
    if registered == "before init_app":
        app.after_request(broken)
        intercom.init_app(app)
    else:
        intercom.init_app(app)
        app.after_request(broken)

    @app.post("/order")
    @track_event("placed-order", identity=Identity(user_id="1"))
    def order() -> str:
        intercom.track("paid", user_id="1")
        return "ok"

    with app.test_client().post("/order") as response:
        assert response.status_code == 500
    assert names(redis_url) == []
    assert {d["reason"] for d in dropped} == {"request failed"}


def test_a_stream_that_fails_midway_tracks_nothing(
    tmp_path: Path, redis_url: str, dropped: list[dict[str, Any]]
) -> None:
    app, intercom = failing_app(tmp_path, redis_url)

    @app.get("/export")
    def export() -> Response:
        intercom.track("started-export")

        def rows() -> Iterator[str]:
            yield "a,b\n"
            intercom.track("exported-rows")
            raise Boom("the stream failed after its first row")

        return Response(stream_with_context(rows()))

    read_failing_stream(app, "/export")
    assert names(redis_url) == []
    assert sorted(d["event_name"] for d in dropped) == ["exported-rows", "started-export"]


def test_a_plain_generator_that_fails_midway_tracks_nothing(
    tmp_path: Path, redis_url: str, dropped: list[dict[str, Any]]
) -> None:
    """Without ``stream_with_context`` the request is torn down before the body is sent, so
    no teardown sees the failure: the body is watched instead."""
    app, intercom = failing_app(tmp_path, redis_url)

    @app.get("/export")
    def export() -> Response:
        intercom.track("started-export")

        def rows() -> Iterator[str]:
            yield "a,b\n"
            raise Boom("the stream failed after its first row")

        return Response(rows())

    read_failing_stream(app, "/export")
    assert names(redis_url) == []
    assert [(d["event_name"], d["reason"]) for d in dropped] == [
        ("started-export", "request failed")
    ]


def test_a_plain_generator_that_ends_well_or_is_left_sends_what_was_tracked(
    tmp_path: Path, redis_url: str
) -> None:
    app, intercom = failing_app(tmp_path, redis_url)

    @app.get("/export")
    def export() -> Response:
        intercom.track("started-export")
        return Response(iter(["a,b\n", "1,2\n"]))

    with app.test_client().get("/export") as response:
        assert response.get_data() == b"a,b\n1,2\n"
    # A client that goes away mid-body (the server closes the body early) did not make the
    # work fail.
    response = app.test_client().get("/export", buffered=False)
    next(iter(response.response))
    response.close()
    assert names(redis_url) == ["started-export", "started-export"]


def test_a_stream_that_ends_well_sends_everything_it_tracked(
    tmp_path: Path, redis_url: str
) -> None:
    app, intercom = failing_app(tmp_path, redis_url)

    @app.get("/export")
    def export() -> Response:
        intercom.track("started-export")

        def rows() -> Iterator[str]:
            yield "a,b\n"
            intercom.track("exported-rows")
            yield "1,2\n"

        return Response(stream_with_context(rows()))

    with app.test_client().get("/export") as response:
        assert response.get_data() == b"a,b\n1,2\n"
    assert names(redis_url) == ["exported-rows", "started-export"]


def test_a_4xx_answered_on_purpose_still_sends(
    tmp_path: Path, redis_url: str, dropped: list[dict[str, Any]]
) -> None:
    app, _ = failing_app(tmp_path, redis_url)
    client = app.test_client()
    with client.post("/denied") as response:
        assert response.status_code == 401
    with client.post("/gone") as response:
        assert response.status_code == 410
    assert names(redis_url) == ["failed-login", "looked-for-it"]
    assert dropped == []


def test_an_exception_an_error_handler_handles_is_not_a_failure(
    tmp_path: Path, redis_url: str
) -> None:
    app, _ = failing_app(tmp_path, redis_url)

    @app.errorhandler(Boom)
    def handled(error: Boom) -> tuple[str, int]:
        return "we know about this one", 409

    with app.test_client().post("/fail") as response:
        assert response.status_code == 409
    assert names(redis_url) == ["placed-order"]


def test_discard_on_error_off_sends_a_failed_requests_events(
    tmp_path: Path, redis_url: str, dropped: list[dict[str, Any]]
) -> None:
    app, _ = failing_app(tmp_path, redis_url, INTERCOM_EVENTS_DISCARD_ON_ERROR=False)
    with app.test_client().post("/fail") as response:
        assert response.status_code == 500
    assert names(redis_url) == ["placed-order"]
    assert dropped == []


def test_record_events_leaves_out_what_a_failed_request_discarded(tmp_path: Path) -> None:
    intercom = IntercomEvents()
    app = make_app(tmp_path, intercom)  # delivery disabled, as in an app's own tests

    @app.post("/fail")
    def fail() -> str:
        intercom.track("placed-order", user_id="1")
        raise Boom("no")

    @app.post("/ok")
    def ok() -> str:
        intercom.track("placed-order", user_id="2")
        return "ok"

    client = app.test_client()
    with record_events(app) as events:
        assert client.post("/fail").status_code == 500
        assert client.post("/ok").status_code == 200
    assert [e.identity.user_id for e in events] == ["2"]
