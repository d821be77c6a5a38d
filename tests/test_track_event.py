from __future__ import annotations

import inspect
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, abort, request
from flask.views import MethodView

from flask_intercom_events import Event, Identity, IntercomEvents, InvalidEventError, track_event
from flask_intercom_events.signals import event_dropped
from flask_intercom_events.testing import record_events

from .apps import make_app


@pytest.fixture
def intercom() -> IntercomEvents:
    extension = IntercomEvents()

    @extension.identity_loader
    def current_identity() -> Identity | None:
        user = request.headers.get("X-User") if request else None
        return Identity(user_id=user) if user else None

    return extension


@pytest.fixture
def app(tmp_path: Path, intercom: IntercomEvents) -> Flask:
    return make_app(tmp_path, intercom, INTERCOM_EVENTS_STRICT=False)


@pytest.fixture
def dropped(app: Flask) -> Iterator[list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []

    def receiver(sender: Flask, **kwargs: Any) -> None:
        seen.append(kwargs)

    with event_dropped.connected_to(receiver, sender=app):
        yield seen


def test_records_after_a_successful_view(app: Flask) -> None:
    @app.post("/invites/<code>")
    @track_event("invited-friend", metadata=lambda code: {"invite_code": code})
    def invite(code: str) -> str:
        return "sent"

    with record_events(app) as events:
        before = int(time.time())
        response = app.test_client().post("/invites/ADDAFRIEND", headers={"X-User": "42"})
        after = int(time.time())
    assert response.status_code == 200
    assert response.text == "sent"
    assert len(events) == 1
    [event] = events
    assert event.event_name == "invited-friend"
    assert event.identity == Identity(user_id="42")
    assert dict(event.metadata) == {"invite_code": "ADDAFRIEND"}
    assert before <= event.created_at <= after


@pytest.mark.parametrize(
    ("status", "recorded"),
    [(200, 1), (201, 1), (204, 1), (302, 1), (399, 1), (400, 0), (404, 0), (500, 0)],
)
def test_only_responses_below_400_are_recorded(app: Flask, status: int, recorded: int) -> None:
    @app.get("/status")
    @track_event("checked-status")
    def view() -> tuple[str, int]:
        return "", status

    with record_events(app) as events:
        assert app.test_client().get("/status", headers={"X-User": "1"}).status_code == status
    assert len(events) == recorded


def test_not_recorded_when_the_view_raises_or_aborts(app: Flask) -> None:
    @app.get("/boom")
    @track_event("exploded")
    def boom() -> str:
        raise RuntimeError("boom")

    @app.get("/gone")
    @track_event("went")
    def gone() -> str:
        abort(410)

    client = app.test_client()
    with record_events(app) as events:
        assert client.get("/boom", headers={"X-User": "1"}).status_code == 500
        assert client.get("/gone", headers={"X-User": "1"}).status_code == 410
    assert events == []


def test_metadata_callable_reads_the_request(app: Flask) -> None:
    @app.post("/plan")
    @track_event("updated-plan", metadata=lambda: {"plan": request.form["plan"]})
    def plan() -> str:
        return "ok"

    with record_events(app) as events:
        app.test_client().post("/plan", data={"plan": "pro"}, headers={"X-User": "1"})
    assert dict(events[0].metadata) == {"plan": "pro"}


def test_explicit_identity_wins_over_the_loader(app: Flask) -> None:
    @app.post("/lead/<lead_id>")
    @track_event("viewed-pricing", identity=lambda lead_id: Identity(id=lead_id))
    def lead(lead_id: str) -> str:
        return "ok"

    @app.post("/fixed")
    @track_event("fixed", identity=Identity(email="ops@example.com"))
    def fixed() -> str:
        return "ok"

    with record_events(app) as events:
        app.test_client().post("/lead/5f3c", headers={"X-User": "1"})
        app.test_client().post("/fixed", headers={"X-User": "1"})
    assert [e.identity for e in events] == [Identity(id="5f3c"), Identity(email="ops@example.com")]


def test_async_view(app: Flask) -> None:
    @app.get("/async/<int:n>")
    @track_event("waited", metadata=lambda n: {"n": n})
    async def waited(n: int) -> str:
        return f"waited {n}"

    with record_events(app) as events:
        response = app.test_client().get("/async/3", headers={"X-User": "1"})
    assert response.text == "waited 3"
    assert [dict(e.metadata) for e in events] == [{"n": 3}]


def test_method_view_with_decorators(app: Flask) -> None:
    class Invites(MethodView):
        decorators = [track_event("invited-friend", metadata=lambda: {"via": request.method})]  # noqa: RUF012

        def get(self) -> str:
            return "list"

        def post(self) -> tuple[str, int]:
            return "created", 201

    app.add_url_rule("/invites", view_func=Invites.as_view("invites"))
    with record_events(app) as events:
        app.test_client().get("/invites", headers={"X-User": "1"})
        app.test_client().post("/invites", headers={"X-User": "1"})
    assert [dict(e.metadata) for e in events] == [{"via": "GET"}, {"via": "POST"}]


def test_keeps_name_docstring_and_signature() -> None:
    def view(slug: str, page: int = 1) -> str:
        """Show a page."""
        return slug

    wrapped = track_event("viewed")(view)
    assert wrapped.__name__ == "view"
    assert wrapped.__doc__ == "Show a page."
    assert inspect.signature(wrapped) == inspect.signature(view)

    async def async_view(slug: str) -> str:
        return slug

    wrapped_async = track_event("viewed")(async_view)
    assert inspect.iscoroutinefunction(wrapped_async)
    assert wrapped_async.__name__ == "async_view"


def test_lenient_bad_metadata_view_succeeds_and_event_is_dropped(
    app: Flask, dropped: list[dict[str, Any]]
) -> None:
    @app.post("/bad")
    @track_event("bad-meta", metadata={"tags": ["a", "b"]})  # type: ignore[dict-item]
    def bad() -> str:
        return "fine"

    with record_events(app) as events:
        response = app.test_client().post("/bad", headers={"X-User": "1"})
    assert response.status_code == 200
    assert response.text == "fine"
    assert events == []
    assert len(dropped) == 1
    assert dropped[0]["event_name"] == "bad-meta"
    assert dropped[0]["event"] is None
    assert "metadata key 'tags' holds list" in dropped[0]["reason"]
    assert isinstance(dropped[0]["error"], InvalidEventError)


def test_lenient_failing_metadata_callable_view_succeeds(
    app: Flask, dropped: list[dict[str, Any]]
) -> None:
    @app.post("/oops")
    @track_event("oops", metadata=lambda: {"x": request.form["missing"]})
    def oops() -> str:
        return "fine"

    response = app.test_client().post("/oops", headers={"X-User": "1"})
    assert response.status_code == 200
    assert len(dropped) == 1
    assert "BadRequestKeyError" in dropped[0]["reason"]


def test_lenient_no_identity_drops(app: Flask, dropped: list[dict[str, Any]]) -> None:
    @app.get("/anon")
    @track_event("visited")
    def anon() -> str:
        return "hello"

    assert app.test_client().get("/anon").status_code == 200
    assert [d["reason"].startswith("invalid: no identity") for d in dropped] == [True]


def test_strict_bad_input_raises_in_the_view(tmp_path: Path, intercom: IntercomEvents) -> None:
    app = make_app(tmp_path, intercom, INTERCOM_EVENTS_STRICT=True)

    @app.post("/bad")
    @track_event("bad.name")
    def bad() -> str:
        return "fine"

    app.testing = True  # let the exception reach the test
    with pytest.raises(InvalidEventError, match="use 'bad-name' instead"):
        app.test_client().post("/bad", headers={"X-User": "1"})


def test_created_at_is_the_second_the_view_returned(app: Flask) -> None:
    @app.get("/slow")
    @track_event("waited")
    def slow() -> str:
        time.sleep(1.1)
        return "done"

    with record_events(app) as events:
        started = int(time.time())
        app.test_client().get("/slow", headers={"X-User": "1"})
    assert events[0].created_at >= started + 1


def test_record_events_only_sees_its_own_app(tmp_path: Path, intercom: IntercomEvents) -> None:
    first = make_app(tmp_path / "1", intercom)
    second = make_app(tmp_path / "2", intercom)
    for app in (first, second):

        @app.get("/")
        @track_event("visited", identity=Identity(user_id=app.name + str(id(app))))
        def index() -> str:
            return "hi"

    with record_events(first) as from_first, record_events(second) as from_second:
        first.test_client().get("/")
        second.test_client().get("/")
        second.test_client().get("/")
    assert len(from_first) == 1
    assert len(from_second) == 2
    assert all(isinstance(e, Event) for e in from_first + from_second)
