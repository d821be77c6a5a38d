"""``intercom.transactional(session)``: an event tracked in a transaction leaves when it
commits and is dropped when it rolls back, against a real SQLite database through
Flask-SQLAlchemy (and plain SQLAlchemy sessions), in requests and outside them."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import create_engine, func, insert, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from flask_intercom_events import IntercomEvents
from flask_intercom_events.extension import state_of
from flask_intercom_events.signals import event_dropped
from flask_intercom_events.testing import record_events

from .test_handoff import build_app, intake

ROOT = Path(__file__).resolve().parent.parent


class Base(DeclarativeBase):
    pass


class Account(Base):
    __tablename__ = "account"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(unique=True)


class Boom(Exception):
    """What the failing views raise."""


@dataclass
class Shop:
    app: Flask
    intercom: IntercomEvents
    db: SQLAlchemy
    redis_url: str

    def sent(self) -> list[str]:
        """Names of the events in Redis, in the order they arrived."""
        return [p["event_name"] for p in intake(self.redis_url)]

    def accounts(self) -> int:
        with self.app.app_context():
            return int(self.db.session.scalar(select(func.count()).select_from(Account)) or 0)


@pytest.fixture
def dropped() -> Iterator[list[tuple[str, str]]]:
    seen: list[tuple[str, str]] = []

    def receiver(sender: Flask, **kwargs: Any) -> None:
        seen.append((kwargs["event_name"], kwargs["reason"]))

    with event_dropped.connected_to(receiver):
        yield seen


@pytest.fixture
def shop(tmp_path: Path, redis_url: str) -> Iterator[Shop]:
    app = build_app(
        tmp_path, redis_url, SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'shop.sqlite3'}"
    )
    intercom = state_of(app).extension
    db = SQLAlchemy(model_class=Base)
    db.init_app(app)
    assert intercom.transactional(db.session) is db.session
    with app.app_context():
        db.create_all()

    @app.post("/signup/<email>")
    def signup(email: str) -> tuple[str, int]:
        db.session.add(Account(email=email))
        intercom.track("signed-up", metadata={"email": email})
        if email.startswith("bad"):
            db.session.rollback()
            return "refused", 400
        db.session.commit()
        return "welcome", 201

    @app.post("/signup-then-fail/<email>")
    def signup_then_fail(email: str) -> str:
        db.session.add(Account(email=email))
        intercom.track("signed-up")
        db.session.commit()  # the account exists: this work happened
        intercom.track("saw-welcome")  # no transaction: the request's fate decides
        raise Boom("the page after the sign-up failed")

    @app.post("/rollback-then-fail")
    def rollback_then_fail() -> str:
        db.session.add(Account(email="x@example.com"))
        intercom.track("signed-up")
        db.session.rollback()
        raise Boom("and then the view failed")

    @app.get("/count")
    def count() -> str:
        number = db.session.scalar(select(func.count()).select_from(Account))  # a read
        intercom.track("counted-accounts")  # in the read's transaction, never committed
        return str(number)

    @app.post("/forgot-commit")
    def forgot_commit() -> str:
        db.session.add(Account(email="lost@example.com"))
        db.session.flush()  # written, never committed: the session's close undoes it
        intercom.track("signed-up")
        return "oops"

    @app.post("/savepoints")
    def savepoints() -> str:
        db.session.add(Account(email="outer@example.com"))
        intercom.track("in-outer")
        with db.session.begin_nested():
            db.session.add(Account(email="kept@example.com"))
            intercom.track("in-kept-savepoint")
        savepoint = db.session.begin_nested()
        db.session.add(Account(email="undone@example.com"))
        intercom.track("in-undone-savepoint")
        savepoint.rollback()
        db.session.commit()
        return "ok"

    @app.get("/plain")
    def plain() -> str:
        intercom.track("viewed-plain")  # no database: nothing changes
        return "ok"

    yield Shop(app, intercom, db, redis_url)
    with app.app_context():
        db.engine.dispose()  # the pool's SQLite connections, closed rather than collected


# --- in a request -------------------------------------------------------------------------


def test_a_committed_event_leaves_after_the_response(shop: Shop) -> None:
    response = shop.app.test_client().post("/signup/ada@example.com")
    assert response.status_code == 201
    assert shop.sent() == []  # committed, but the response is not closed yet
    response.close()
    assert shop.sent() == ["signed-up"]
    assert shop.accounts() == 1


def test_a_rolled_back_event_is_dropped(shop: Shop, dropped: list[tuple[str, str]]) -> None:
    with shop.app.test_client().post("/signup/bad@example.com") as response:
        assert response.status_code == 400
    assert shop.sent() == []
    assert dropped == [("signed-up", "rolled back")]
    assert shop.accounts() == 0


def test_savepoints_drop_only_what_rolled_back(shop: Shop, dropped: list[tuple[str, str]]) -> None:
    with shop.app.test_client().post("/savepoints") as response:
        assert response.status_code == 200
    assert sorted(shop.sent()) == ["in-kept-savepoint", "in-outer"]
    assert dropped == [("in-undone-savepoint", "rolled back")]
    assert shop.accounts() == 2


def test_a_view_that_fails_after_its_commit_keeps_the_committed_events(
    shop: Shop, dropped: list[tuple[str, str]]
) -> None:
    with shop.app.test_client().post("/signup-then-fail/ada@example.com") as response:
        assert response.status_code == 500
    assert shop.accounts() == 1
    assert shop.sent() == ["signed-up"]  # committed work counts, the request failed or not
    assert dropped == [("saw-welcome", "request failed")]


def test_a_500_after_a_rollback_sends_nothing_and_drops_once(
    shop: Shop, dropped: list[tuple[str, str]]
) -> None:
    with shop.app.test_client().post("/rollback-then-fail") as response:
        assert response.status_code == 500
    assert shop.sent() == []
    assert dropped == [("signed-up", "rolled back")]


def test_an_event_in_a_read_only_transaction_is_sent_when_the_session_closes(
    shop: Shop, dropped: list[tuple[str, str]]
) -> None:
    # Flask-SQLAlchemy closes the session at the end of the request: the read's transaction
    # ends without a commit, having written nothing.
    with shop.app.test_client().get("/count") as response:
        assert response.get_data(as_text=True) == "0"
    assert shop.sent() == ["counted-accounts"]
    assert dropped == []


def test_a_write_never_committed_drops_its_event(
    shop: Shop, dropped: list[tuple[str, str]]
) -> None:
    with shop.app.test_client().post("/forgot-commit") as response:
        assert response.status_code == 200
    assert shop.accounts() == 0
    assert shop.sent() == []
    assert dropped == [("signed-up", "rolled back")]


def test_outside_a_transaction_nothing_changes(shop: Shop) -> None:
    with shop.app.test_client().get("/plain") as response:
        assert response.status_code == 200
    assert shop.sent() == ["viewed-plain"]


def test_record_events_leaves_out_rolled_back_events(shop: Shop) -> None:
    client = shop.app.test_client()
    with record_events(shop.app) as events:
        client.post("/signup/bad@example.com").close()
        client.post("/signup/ada@example.com").close()
    assert [e.metadata["email"] for e in events] == ["ada@example.com"]


# --- outside a request ----------------------------------------------------------------------


def test_outside_a_request_a_commit_hands_off_at_once(
    shop: Shop, dropped: list[tuple[str, str]]
) -> None:
    db, intercom = shop.db, shop.intercom
    with shop.app.app_context():
        db.session.add(Account(email="cli@example.com"))
        intercom.track("imported-account", user_id="7")
        assert shop.sent() == []  # waiting for the commit
        db.session.commit()
        assert shop.sent() == ["imported-account"]

        db.session.add(Account(email="cli2@example.com"))
        intercom.track("imported-account", user_id="8")
        db.session.rollback()
        intercom.track("ran-import", user_id="7")  # no transaction in progress: at once
    assert shop.sent() == ["imported-account", "ran-import"]
    assert dropped == [("imported-account", "rolled back")]


def test_outside_a_request_savepoints(shop: Shop, dropped: list[tuple[str, str]]) -> None:
    db, intercom = shop.db, shop.intercom
    with shop.app.app_context():
        with db.session.begin():
            db.session.add(Account(email="a@example.com"))
            intercom.track("outer", user_id="1")
            with db.session.begin_nested():
                intercom.track("inner-committed", user_id="1")
            try:
                with db.session.begin_nested():
                    intercom.track("inner-failed", user_id="1")
                    raise Boom("undo the savepoint")
            except Boom:
                pass
            assert shop.sent() == []  # the outer transaction is still in progress
        assert sorted(shop.sent()) == ["inner-committed", "outer"]
        # The outer transaction rolls back: its savepoint's committed events go with it.
        try:
            with db.session.begin():
                with db.session.begin_nested():
                    intercom.track("doomed", user_id="1")
                raise Boom("undo everything")
        except Boom:
            pass
    assert sorted(shop.sent()) == ["inner-committed", "outer"]
    assert dropped == [("inner-failed", "rolled back"), ("doomed", "rolled back")]


def test_a_core_insert_counts_as_a_write(shop: Shop, dropped: list[tuple[str, str]]) -> None:
    db, intercom = shop.db, shop.intercom
    with shop.app.app_context():
        db.session.execute(insert(Account).values(email="core@example.com"))
        intercom.track("inserted", user_id="1")
        db.session.close()  # neither committed nor rolled back: the insert is undone
    assert shop.sent() == []
    assert dropped == [("inserted", "rolled back")]


# --- plain SQLAlchemy sessions ---------------------------------------------------------------


@pytest.fixture
def engine_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'plain.sqlite3'}"
    engine = create_engine(url)
    Base.metadata.create_all(engine)
    engine.dispose()
    return url


@pytest.mark.parametrize("kind", ["sessionmaker", "Session"])
def test_a_plain_session_or_sessionmaker(
    tmp_path: Path, redis_url: str, engine_url: str, kind: str, dropped: list[tuple[str, str]]
) -> None:
    app = build_app(tmp_path, redis_url)
    intercom = state_of(app).extension
    engine = create_engine(engine_url)
    maker = sessionmaker(engine)
    single = Session(engine)
    intercom.transactional(maker if kind == "sessionmaker" else single)
    session = maker() if kind == "sessionmaker" else single
    try:
        with app.app_context():
            session.add(Account(email="a@example.com"))
            intercom.track("committed", user_id="1")
            session.commit()
            session.add(Account(email="b@example.com"))
            intercom.track("rolled-back", user_id="1")
            session.rollback()
        assert [p["event_name"] for p in intake(redis_url)] == ["committed"]
        assert dropped == [("rolled-back", "rolled back")]
    finally:
        session.close()
        single.close()
        engine.dispose()


def test_a_session_another_extension_watches_is_not_this_ones(
    tmp_path: Path, redis_url: str, engine_url: str
) -> None:
    app = build_app(tmp_path, redis_url)
    engine = create_engine(engine_url)
    maker = sessionmaker(engine)
    IntercomEvents().transactional(maker)  # another extension object, not this app's
    with maker() as session, app.app_context():
        session.add(Account(email="a@example.com"))
        state_of(app).extension.track("not-held", user_id="1")
        assert [p["event_name"] for p in intake(redis_url)] == ["not-held"]
        session.rollback()
    engine.dispose()


def test_transactional_refuses_what_is_not_a_session() -> None:
    with pytest.raises(TypeError, match="takes a SQLAlchemy Session, sessionmaker or"):
        IntercomEvents().transactional(object())


def test_the_package_works_without_sqlalchemy(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import sys

        class NoSQLAlchemy:
            def find_spec(self, name, path=None, target=None):
                if name == "sqlalchemy" or name.startswith("sqlalchemy."):
                    raise ModuleNotFoundError(f"No module named {name!r}")
                return None

        sys.meta_path.insert(0, NoSQLAlchemy())
        from flask import Flask
        from flask_intercom_events import ConfigurationError, IntercomEvents
        from flask_intercom_events.testing import record_events

        app = Flask("app", instance_path=sys.argv[1])
        app.config["INTERCOM_EVENTS_DELIVERY"] = "disabled"
        intercom = IntercomEvents(app)
        with app.app_context(), record_events(app) as events:
            intercom.track("signed-up", user_id="1")
        assert [e.event_name for e in events] == ["signed-up"]
        try:
            intercom.transactional(object())
        except ConfigurationError as exc:
            print(exc)
        assert "sqlalchemy" not in sys.modules
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "intercom.transactional() needs SQLAlchemy" in done.stdout
    assert "pip install 'flask-intercom-events[sqlalchemy]'" in done.stdout
