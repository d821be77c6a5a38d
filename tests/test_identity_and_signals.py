"""Identity sources, ``track_signal``, ``before_send`` and the extension's own signals."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from blinker import Namespace
from flask import Flask, request, request_finished
from flask_login import LoginManager, UserMixin, login_user, logout_user, user_logged_in

from flask_intercom_events import Event, Identity, IntercomEvents, track_event
from flask_intercom_events.signals import event_dropped, event_tracked
from flask_intercom_events.testing import record_events

from .apps import make_app


class User(UserMixin):  # type: ignore[misc]
    def __init__(self, user_id: int, email: str | None = None) -> None:
        self.id = user_id
        self.email = email


USERS = {1: User(1, "frodo@example.com"), 2: User(2)}


def login_app(tmp_path: Path, intercom: IntercomEvents, **config: Any) -> Flask:
    app = make_app(tmp_path, intercom, **config)
    login = LoginManager(app)

    @login.user_loader  # type: ignore[untyped-decorator]
    def load(user_id: str) -> User | None:
        return USERS.get(int(user_id))

    @app.post("/login/<int:user_id>")
    def log_in(user_id: int) -> str:
        login_user(USERS[user_id])
        return "in"

    @app.post("/logout")
    def log_out() -> str:
        logout_user()
        return "out"

    @app.post("/invite")
    @track_event("invited-friend")
    def invite() -> str:
        return "ok"

    return app


@pytest.fixture
def dropped() -> Iterator[list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []

    def receiver(sender: Flask, **kwargs: Any) -> None:
        seen.append(kwargs)

    with event_dropped.connected_to(receiver):
        yield seen


# --- identity ------------------------------------------------------------------------------


def test_flask_login_current_user_is_the_default_identity(tmp_path: Path) -> None:
    app = login_app(tmp_path, IntercomEvents(), INTERCOM_EVENTS_STRICT=False)
    client = app.test_client()
    with record_events(app) as events:
        client.post("/login/1")
        client.post("/invite")
        client.post("/login/2")
        client.post("/invite")
    assert [e.identity for e in events] == [
        Identity(user_id="1", email="frodo@example.com"),
        Identity(user_id="2"),
    ]


def test_anonymous_user_has_no_identity(tmp_path: Path, dropped: list[dict[str, Any]]) -> None:
    app = login_app(tmp_path, IntercomEvents(), INTERCOM_EVENTS_STRICT=False)
    with record_events(app) as events:
        assert app.test_client().post("/invite").status_code == 200
    assert events == []
    assert dropped[0]["reason"].startswith("invalid: no identity for event 'invited-friend'")


def test_identity_loader_wins_over_flask_login(tmp_path: Path) -> None:
    intercom = IntercomEvents()

    @intercom.identity_loader
    def from_header() -> Identity | None:
        return Identity(email=request.headers["X-Email"]) if "X-Email" in request.headers else None

    app = login_app(tmp_path, intercom)
    client = app.test_client()
    client.post("/login/1")
    with record_events(app) as events:
        client.post("/invite", headers={"X-Email": "sam@example.com"})
    assert events[0].identity == Identity(email="sam@example.com")


def test_explicit_identity_wins_over_the_loader_in_track(tmp_path: Path) -> None:
    intercom = IntercomEvents()
    intercom.identity_loader(lambda: Identity(user_id="loaded"))
    app = make_app(tmp_path, intercom)
    with app.test_request_context(), record_events(app) as events:
        intercom.track("a")
        intercom.track("b", user_id="explicit")
        intercom.track("c", id="lead-1", email="lead@example.com")
    assert [e.identity for e in events] == [
        Identity(user_id="loaded"),
        Identity(user_id="explicit"),
        Identity(id="lead-1", email="lead@example.com"),
    ]


def test_without_flask_login_installed_nothing_breaks(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import sys
        sys.modules["flask_login"] = None  # as if it were not installed
        from flask import Flask
        from flask_intercom_events import IntercomEvents, track_event
        from flask_intercom_events.testing import record_events

        app = Flask(__name__, instance_path=sys.argv[1])
        app.config.update(INTERCOM_EVENTS_DELIVERY="disabled", INTERCOM_EVENTS_STRICT=False)
        intercom = IntercomEvents(app)

        @app.get("/")
        @track_event("visited")
        def index():
            return "ok"

        with record_events(app) as events:
            status = app.test_client().get("/").status_code
        print(status, len(events))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["200", "0"]


# --- track_signal --------------------------------------------------------------------------


def test_custom_signal_callables_get_sender_and_kwargs(tmp_path: Path) -> None:
    signals = Namespace()
    exported = signals.signal("report-exported")
    intercom = IntercomEvents()
    app = make_app(tmp_path, intercom)
    seen: list[tuple[Any, dict[str, Any]]] = []

    def metadata(sender: Any, **kwargs: Any) -> dict[str, Any]:
        seen.append((sender, kwargs))
        return {"format": kwargs["fmt"], "rows": kwargs["rows"]}

    intercom.track_signal(
        exported,
        "exported-report",
        metadata=metadata,
        identity=lambda sender, **kw: Identity(user_id=kw["owner"]),
    )
    with app.app_context(), record_events(app) as events:
        exported.send("reports", fmt="csv", rows=12, owner="7")
    assert seen == [("reports", {"fmt": "csv", "rows": 12, "owner": "7"})]
    assert [(e.event_name, e.identity, dict(e.metadata)) for e in events] == [
        ("exported-report", Identity(user_id="7"), {"format": "csv", "rows": 12})
    ]


def test_flask_login_user_logged_in_is_mapped(tmp_path: Path) -> None:
    intercom = IntercomEvents()
    app = login_app(tmp_path, intercom)
    intercom.track_signal(user_logged_in, "logged-in")
    with record_events(app) as events:
        app.test_client().post("/login/2")
    assert [(e.event_name, e.identity) for e in events] == [("logged-in", Identity(user_id="2"))]


def test_flasks_own_signal_is_mapped(tmp_path: Path) -> None:
    intercom = IntercomEvents()
    app = make_app(tmp_path, intercom)
    intercom.track_signal(
        request_finished,
        "finished-request",
        metadata=lambda sender, response: {"status": response.status_code},
        identity=Identity(user_id="ops"),
    )

    @app.get("/")
    def index() -> str:
        return "hi"

    with record_events(app) as events:
        app.test_client().get("/")
    assert [dict(e.metadata) for e in events] == [{"status": 200}]


def test_signal_receivers_are_strong_references(tmp_path: Path) -> None:
    signal = Namespace().signal("s")
    intercom = IntercomEvents()
    app = make_app(tmp_path, intercom)
    intercom.track_signal(
        signal, "sent", metadata=lambda sender: {"x": 1}, identity=Identity(user_id="1")
    )
    gc.collect()
    with app.app_context(), record_events(app) as events:
        signal.send(None)
    assert len(events) == 1


def test_a_signal_failure_never_reaches_the_sender_when_lenient(
    tmp_path: Path, dropped: list[dict[str, Any]]
) -> None:
    signal = Namespace().signal("s")
    intercom = IntercomEvents()
    app = make_app(tmp_path, intercom, INTERCOM_EVENTS_STRICT=False)

    def broken(sender: Any, **kwargs: Any) -> dict[str, Any]:
        raise KeyError("missing")

    intercom.track_signal(signal, "sent", metadata=broken, identity=Identity(user_id="1"))
    with app.app_context():
        signal.send(None)  # must not raise
    assert "KeyError('missing')" in dropped[0]["reason"]


def test_a_signal_failure_propagates_when_strict(tmp_path: Path) -> None:
    signal = Namespace().signal("s")
    intercom = IntercomEvents()
    app = make_app(tmp_path, intercom, INTERCOM_EVENTS_STRICT=True)
    intercom.track_signal(signal, "bad.name", identity=Identity(user_id="1"))
    with app.app_context(), pytest.raises(ValueError, match="use 'bad-name' instead"):
        signal.send(None)


def test_a_receiver_only_serves_apps_of_its_own_extension(tmp_path: Path) -> None:
    signal = Namespace().signal("s")
    mine, other = IntercomEvents(), IntercomEvents()
    my_app = make_app(tmp_path / "mine", mine)
    other_app = make_app(tmp_path / "other", other)
    mine.track_signal(signal, "sent", identity=Identity(user_id="1"))
    with record_events(my_app) as my_events, record_events(other_app) as other_events:
        with my_app.app_context():
            signal.send(None)
        with other_app.app_context():
            signal.send(None)
    assert (len(my_events), len(other_events)) == (1, 0)


def test_signal_outside_any_app_context_is_ignored_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    signal = Namespace().signal("s")
    intercom = IntercomEvents()
    make_app(tmp_path, intercom)
    intercom.track_signal(signal, "sent", identity=Identity(user_id="1"))
    signal.send("not-an-app")
    assert "outside an application context" in caplog.text


# --- before_send ---------------------------------------------------------------------------


def test_before_send_can_scrub_or_drop(tmp_path: Path, dropped: list[dict[str, Any]]) -> None:
    intercom = IntercomEvents()

    @intercom.before_send
    def scrub(event: Event) -> Event | None:
        if event.event_name == "secret":
            return None
        metadata = {k: v for k, v in event.metadata.items() if k != "email"}
        return Event(event.event_name, event.created_at, event.identity, metadata)

    app = make_app(tmp_path, intercom)
    with app.app_context(), record_events(app) as events:
        intercom.track("signed-up", user_id="1", metadata={"email": "a@b.c", "plan": "pro"})
        intercom.track("secret", user_id="1")
    assert [(e.event_name, dict(e.metadata)) for e in events] == [("signed-up", {"plan": "pro"})]
    assert [(d["event_name"], d["reason"]) for d in dropped] == [("secret", "before_send")]


def test_before_send_returning_something_else_is_an_error(tmp_path: Path) -> None:
    intercom = IntercomEvents()
    intercom.before_send(lambda event: "oops")  # type: ignore[arg-type,return-value]
    app = make_app(tmp_path, intercom, INTERCOM_EVENTS_STRICT=True)
    with app.app_context(), pytest.raises(Exception, match="must return an Event or None"):
        intercom.track("signed-up", user_id="1")


def test_event_tracked_fires_with_the_app_as_sender(tmp_path: Path) -> None:
    intercom = IntercomEvents()
    app = make_app(tmp_path, intercom)
    senders: list[Any] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        senders.append((sender, sorted(kwargs)))

    with event_tracked.connected_to(receiver), app.app_context():
        intercom.track("signed-up", user_id="1")
    assert senders == [(app, ["event"])]


def test_mapping_a_signal_in_an_app_factory_tracks_once_per_signal(tmp_path: Path) -> None:
    signal = Namespace().signal("s")
    intercom = IntercomEvents()

    def create_app(n: int) -> Flask:
        app = make_app(tmp_path / str(n), intercom)
        intercom.track_signal(
            signal, "sent", metadata={"factory_run": n}, identity=Identity(user_id="1")
        )
        return app

    apps = [create_app(n) for n in range(3)]
    with record_events(apps[0]) as events, apps[0].app_context():
        signal.send(None)
    # One event, with the latest mapping (the factory's last run).
    assert [dict(e.metadata) for e in events] == [{"factory_run": 2}]


def test_one_signal_can_map_to_several_event_names(tmp_path: Path) -> None:
    signal = Namespace().signal("s")
    intercom = IntercomEvents()
    app = make_app(tmp_path, intercom)
    intercom.track_signal(signal, "first", identity=Identity(user_id="1"))
    intercom.track_signal(signal, "second", identity=Identity(user_id="1"))
    with record_events(app) as events, app.app_context():
        signal.send(None)
    assert sorted(e.event_name for e in events) == ["first", "second"]
