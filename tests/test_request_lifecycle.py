"""A request's events leave with it whatever way it ends: a file sent as is, a teardown
function that raises, a copy of its context in a thread, a stream that tracks what it sends,
another app's context inside it. Each of these lost events, or sent phantoms, or sent them
to another app's Redis."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Response, abort, copy_current_request_context, send_file, stream_with_context
from werkzeug.exceptions import HTTPException

from flask_intercom_events import Identity, IntercomEvents, track_event
from flask_intercom_events.extension import state_of

from .apps import make_app
from .test_handoff import build_app
from .test_request_failed import Boom, dropped, names, read_failing_stream

__all__ = ["dropped"]  # the fixture, used by name


def test_a_file_sent_as_is_sends_what_its_request_tracked(
    tmp_path: Path, redis_url: str, dropped: list[dict[str, Any]]
) -> None:
    """``send_file`` answers with the file itself (``direct_passthrough``): werkzeug never
    calls the response's ``close()``, where the events left; they were lost without a word."""
    report = tmp_path / "report.csv"
    report.write_text("a,b\n1,2\n")
    app = build_app(tmp_path, redis_url)
    intercom = state_of(app).extension

    @app.get("/download")
    def download() -> Response:
        intercom.track("downloaded-report")
        return send_file(report)

    @app.get("/download-decorated")
    @track_event("downloaded-export")
    def decorated() -> Response:
        return send_file(report, conditional=True)

    with app.test_client().get("/download") as response:
        assert response.status_code == 200
        assert response.data == b"a,b\n1,2\n"
    with app.test_client().get("/download-decorated", headers={"Range": "bytes=0-3"}) as ranged:
        assert ranged.status_code == 206
    assert names(redis_url) == ["downloaded-export", "downloaded-report"]
    assert dropped == []


def test_a_teardown_function_that_raises_fails_the_request_visibly(
    tmp_path: Path, redis_url: str, dropped: list[dict[str, Any]]
) -> None:
    """A teardown function that raises stops Flask's teardown (ours may not run) and the
    WSGI call itself: no response is closed. The request failed: its events are discarded and
    said so, never lost without a word."""
    app = build_app(tmp_path, redis_url)
    intercom = state_of(app).extension

    @app.post("/order")
    def order() -> str:
        intercom.track("placed-order")
        return "ok"

    @app.teardown_request
    def broken(error: BaseException | None) -> None:
        raise Boom("the teardown failed")

    with pytest.raises(Boom):
        app.test_client().post("/order")
    assert names(redis_url) == []
    assert [(d["event_name"], d["reason"]) for d in dropped] == [("placed-order", "request failed")]
    assert isinstance(dropped[0]["error"], Boom)


def test_a_copy_of_the_request_context_does_not_decide_the_requests_fate(
    tmp_path: Path, redis_url: str, dropped: list[dict[str, Any]]
) -> None:
    """``copy_current_request_context`` shares the request's environ (and so its batch); its
    teardown is a thread's, not the request's: a helper thread that fails did not fail the
    request (its events were dropped), and one that ends well did not end the request (a
    request that then failed sent its events: phantoms)."""
    app = build_app(tmp_path, redis_url)
    intercom = state_of(app).extension

    def in_thread(work: Any) -> None:
        copied = copy_current_request_context(work)

        def run() -> None:
            with contextlib.suppress(Boom):  # the helper's error went through its context
                copied()

        thread = threading.Thread(target=run)
        thread.start()
        thread.join(10)

    @app.post("/ordered")
    def ordered() -> tuple[str, int]:
        intercom.track("placed-order")

        def send_mail() -> None:
            raise Boom("SMTP down")

        in_thread(send_mail)
        return "ok", 201

    @app.post("/failed")
    def failed() -> str:
        intercom.track("started-checkout")
        in_thread(lambda: None)
        raise Boom("the view failed after its helper")

    with app.test_client().post("/ordered") as response:
        assert response.status_code == 201
    assert names(redis_url) == ["placed-order"]
    assert dropped == []
    app.config["PROPAGATE_EXCEPTIONS"] = False
    with app.test_client().post("/failed") as response:
        assert response.status_code == 500
    assert names(redis_url) == ["placed-order"]
    assert [(d["event_name"], d["reason"]) for d in dropped] == [
        ("started-checkout", "request failed")
    ]


def test_what_a_failing_stream_tracks_is_discarded_even_if_the_view_tracked_nothing(
    tmp_path: Path, redis_url: str, dropped: list[dict[str, Any]]
) -> None:
    app = build_app(tmp_path, redis_url)
    intercom = state_of(app).extension

    @app.get("/export")
    def export() -> Response:
        def rows() -> Iterator[str]:
            yield "a,b\n"
            intercom.track("exported-rows")
            raise Boom("the stream failed after tracking")

        return Response(stream_with_context(rows()))

    @app.get("/export-plain")
    def export_plain() -> Response:
        def rows() -> Iterator[str]:
            yield "a,b\n"
            with app.app_context():
                intercom.track("exported-plain")  # outside the request: sent at once
            raise Boom("the stream failed")

        return Response(rows())

    read_failing_stream(app, "/export")
    assert names(redis_url) == []
    assert [(d["event_name"], d["reason"]) for d in dropped] == [
        ("exported-rows", "request failed")
    ]
    read_failing_stream(app, "/export-plain")
    assert names(redis_url) == ["exported-plain"]


def test_another_apps_events_in_a_request_go_to_that_apps_redis(
    tmp_path: Path, redis_url: str
) -> None:
    """One IntercomEvents for two apps (each its own Redis database): an event tracked in
    app B's context inside a request of app A belongs to B."""
    intercom = IntercomEvents()

    @intercom.identity_loader
    def who() -> Identity:
        return Identity(user_id="u1")

    url_a, url_b = redis_url, redis_url.rsplit("/", 1)[0] + "/7"
    app_a = make_app(
        tmp_path / "a",
        intercom,
        INTERCOM_EVENTS_DELIVERY="rq",
        INTERCOM_EVENTS_REDIS_URL=url_a,
        INTERCOM_EVENTS_REDIS_TIMEOUT=2.0,
        INTERCOM_EVENTS_REDIS_SLOW=1.0,
    )
    app_b = make_app(
        tmp_path / "b",
        intercom,
        INTERCOM_EVENTS_DELIVERY="rq",
        INTERCOM_EVENTS_REDIS_URL=url_b,
        INTERCOM_EVENTS_REDIS_TIMEOUT=2.0,
        INTERCOM_EVENTS_REDIS_SLOW=1.0,
    )

    @app_a.post("/both/<first>")
    def both(first: str) -> str:
        if first == "b":
            with app_b.app_context():
                intercom.track("b-event")
            intercom.track("a-event")
        else:
            intercom.track("a-event")
            with app_b.app_context():
                intercom.track("b-event")
        return "ok"

    try:
        for first in ("a", "b"):
            with app_a.test_client().post(f"/both/{first}") as response:
                assert response.status_code == 200
        assert names(url_a) == ["a-event", "a-event"]
        assert names(url_b) == ["b-event", "b-event"]
    finally:
        redis.Redis.from_url(url_b).flushdb()
        for app in (app_a, app_b):
            found = state_of(app).intake
            if found is not None:
                found.close()


def test_a_request_that_answers_5xx_failed_however_it_was_made(
    tmp_path: Path, redis_url: str, dropped: list[dict[str, Any]]
) -> None:
    """``abort(500)``, a catch-all error handler that answers 500 for a crash, a view that
    answers 503: the request failed, even though no exception reached Flask's teardown. Its
    events are phantoms if sent (a 4xx answered on purpose still sends)."""
    app = build_app(tmp_path, redis_url)
    intercom = state_of(app).extension

    @app.post("/aborted")
    def aborted() -> str:
        intercom.track("aborted-order")
        abort(500)

    @app.post("/crashed")
    def crashed() -> str:
        intercom.track("crashed-order")
        raise Boom("the view failed")

    @app.errorhandler(Boom)
    def as_json(error: Boom) -> tuple[dict[str, str], int]:
        return {"error": str(error)}, 500

    @app.post("/unavailable")
    def unavailable() -> tuple[str, int]:
        intercom.track("deferred-order")
        return "try again later", 503

    @app.after_request
    def late(response: Response) -> Response:
        intercom.track("after-request")  # tracked once the answer is known: failed too
        return response

    client = app.test_client()
    for path, status in (("/aborted", 500), ("/crashed", 500), ("/unavailable", 503)):
        with client.post(path) as response:
            assert response.status_code == status
    assert names(redis_url) == []
    assert sorted((d["event_name"], d["reason"]) for d in dropped) == sorted(
        [(name, "request failed") for name in ("aborted-order", "crashed-order", "deferred-order")]
        + [("after-request", "request failed")] * 3
    )
    errors = [d["error"] for d in dropped if d["event_name"] != "after-request"]
    assert sorted(error.code for error in errors) == [500, 500, 503]
    assert all(isinstance(error, HTTPException) for error in errors)


def test_a_5xx_sends_its_events_with_discard_on_error_off(
    tmp_path: Path, redis_url: str, dropped: list[dict[str, Any]]
) -> None:
    app = build_app(tmp_path, redis_url, INTERCOM_EVENTS_DISCARD_ON_ERROR=False)
    intercom = state_of(app).extension

    @app.post("/unavailable")
    def unavailable() -> tuple[str, int]:
        intercom.track("deferred-order")
        return "try again later", 503

    with app.test_client().post("/unavailable") as response:
        assert response.status_code == 503
    assert names(redis_url) == ["deferred-order"]
    assert dropped == []
