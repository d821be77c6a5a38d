"""The example app (``example_app/``): what each view tracks, tested the way its users would
test theirs (``record_events``, delivery ``disabled``), then ``python -m example_app`` end to
end: the scripted ``--demo``, and the runner stopped with Ctrl-C."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from rq import Queue

from example_app import create_app
from example_app.runner import LEAD_ID
from flask_intercom_events import Event, Identity, Money, RichLink
from flask_intercom_events.signals import event_dropped
from flask_intercom_events.testing import record_events

ROOT = Path(__file__).resolve().parent.parent
EMAIL = "ada@example.com"
PASSWORD = "correct-horse-battery"
ADA = Identity(user_id="1", email=EMAIL)
GOOD_CARD = "4242 4242 4242 4242"


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    return create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "test",
            "DATABASE": str(tmp_path / "example.sqlite3"),
            "INTERCOM_EVENTS_DELIVERY": "disabled",
        }
    )


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def member(client: FlaskClient) -> FlaskClient:
    """A client whose user has signed up (user id 1)."""
    response = client.post("/signup", data={"email": EMAIL, "password": PASSWORD})
    assert response.status_code == 302
    return client


@pytest.fixture
def logged_in(member: FlaskClient) -> FlaskClient:
    """A client logged in as that user."""
    response = member.post("/login", data={"email": EMAIL, "password": PASSWORD})
    assert response.status_code == 302
    return member


def names(events: list[Event]) -> list[str]:
    return [event.event_name for event in events]


def tomorrow() -> str:
    return (datetime.now(timezone.utc).date() + timedelta(days=1)).isoformat()


# --- each view tracks what it should -------------------------------------------------------


def test_sign_up_tracks_the_new_user_before_any_log_in(app: Flask, client: FlaskClient) -> None:
    before = int(time.time())
    with record_events(app) as events:
        response = client.post("/signup", data={"email": EMAIL, "password": PASSWORD})
    assert response.status_code == 302
    [event] = events
    assert (event.event_name, event.identity, event.metadata) == (
        "signed-up",
        ADA,
        {"plan": "free"},
    )
    assert before <= event.created_at <= int(time.time())


def test_log_in_is_tracked_through_flask_logins_signal(app: Flask, member: FlaskClient) -> None:
    with record_events(app) as events:
        member.post("/login", data={"email": EMAIL, "password": PASSWORD})
    assert [(e.event_name, e.identity) for e in events] == [("logged-in", ADA)]


def test_upgrade_tracks_the_price_as_money(app: Flask, logged_in: FlaskClient) -> None:
    with record_events(app) as events:
        response = logged_in.post("/billing/upgrade", data={"plan": "pro", "card": GOOD_CARD})
    assert response.status_code == 302
    [event] = events
    assert event.event_name == "upgraded-plan"
    assert event.identity == ADA
    assert event.metadata == {"plan": "pro", "price": Money(34999, "eur")}
    assert b"You are on the <strong>pro</strong> plan" in logged_in.get("/").data


def test_a_declined_card_rolls_back_the_upgrade_and_its_event(
    app: Flask, logged_in: FlaskClient
) -> None:
    dropped: list[tuple[str, str]] = []

    def receiver(sender: Flask, *, event_name: str, reason: str, **extra: Any) -> None:
        dropped.append((event_name, reason))

    with record_events(app) as events, event_dropped.connected_to(receiver, sender=app):
        response = logged_in.post(
            "/billing/upgrade", data={"plan": "team", "card": "4000 0000 0000 0002"}
        )
    assert response.status_code == 402
    assert b"declined" in response.data
    assert events == []  # tracked in the transaction, then dropped with it
    assert dropped == [("upgraded-plan", "rolled back")]
    assert b"You are on the <strong>free</strong> plan" in logged_in.get("/").data


def test_sign_up_is_sent_only_once_the_account_is_committed(
    app: Flask, member: FlaskClient
) -> None:
    # Taken email: the insert fails before anything is tracked, and nothing is dropped.
    with record_events(app) as events:
        response = member.post("/signup", data={"email": EMAIL, "password": PASSWORD})
    assert response.status_code == 409
    assert events == []
    assert member.post("/login", data={"email": EMAIL, "password": PASSWORD}).status_code == 302


def test_the_database_is_sqlite_in_the_instance_folder_by_default() -> None:
    default = create_app({"TESTING": True})
    assert default.config["DATABASE"] == os.path.join(default.instance_path, "example.sqlite3")
    assert default.config["SQLALCHEMY_DATABASE_URI"] == "sqlite:///" + default.config["DATABASE"]


def test_schedule_tracks_a_rich_link_and_a_date(app: Flask, logged_in: FlaskClient) -> None:
    day = tomorrow()
    with record_events(app) as events:
        response = logged_in.post("/reports/signups/schedule", data={"next_run": day})
    assert response.status_code == 302
    [event] = events
    midnight = datetime.combine(date.fromisoformat(day), datetime.min.time(), timezone.utc)
    assert event.event_name == "scheduled-report"
    assert event.metadata == {
        "report": RichLink("http://localhost/reports/signups", "Weekly sign-ups"),
        "next_run_date": int(midnight.timestamp()),
    }
    assert event.to_payload()["metadata"]["report"] == {
        "url": "http://localhost/reports/signups",
        "value": "Weekly sign-ups",
    }


def test_export_is_tracked_through_the_apps_own_signal(app: Flask, logged_in: FlaskClient) -> None:
    with record_events(app) as events:
        response = logged_in.post("/reports/revenue/export", data={"format": "json"})
    assert response.status_code == 200
    assert response.json == [{"week": "2024-W01", "count": 12}, {"week": "2024-W02", "count": 19}]
    [event] = events
    assert (event.event_name, event.identity) == ("exported-report", ADA)
    assert event.metadata == {"report": "revenue", "format": "json"}


def test_log_out_is_tracked_for_the_user_who_leaves(app: Flask, logged_in: FlaskClient) -> None:
    with record_events(app) as events:
        logged_in.post("/logout")
    assert [(e.event_name, e.identity) for e in events] == [("logged-out", ADA)]
    assert logged_in.get("/").status_code == 200  # and they are logged out
    assert b"Log in" in logged_in.get("/").data


def test_pricing_tracks_a_lead_by_intercom_id(app: Flask, client: FlaskClient) -> None:
    with record_events(app) as events:
        client.get("/pricing?lead=6650f1c2a1b2c3d4e5f60718")
        client.get("/pricing")  # an anonymous visitor with no lead id: not tracked
    [event] = events
    assert event.event_name == "viewed-pricing"
    assert event.identity == Identity(id="6650f1c2a1b2c3d4e5f60718")
    assert event.to_payload() == {
        "event_name": "viewed-pricing",
        "created_at": event.created_at,
        "id": "6650f1c2a1b2c3d4e5f60718",
    }


def test_pricing_tracks_a_logged_in_user_as_themselves(app: Flask, logged_in: FlaskClient) -> None:
    with record_events(app) as events:
        logged_in.get("/pricing?lead=ignored-when-logged-in")
    assert [(e.event_name, e.identity) for e in events] == [("viewed-pricing", ADA)]


def test_pages_without_an_event_track_nothing(app: Flask, logged_in: FlaskClient) -> None:
    with record_events(app) as events:
        for path in ("/", "/signup", "/login", "/reports/signups"):
            assert logged_in.get(path).status_code == 200
    assert events == []


# --- failed forms track nothing -------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "data", "status"),
    [
        ("/signup", {"email": EMAIL, "password": PASSWORD}, 409),  # email taken
        ("/signup", {"email": "bob@example.com", "password": "short"}, 400),
        ("/signup", {"email": "not-an-email", "password": PASSWORD}, 400),
        ("/login", {"email": EMAIL, "password": "not-the-password"}, 401),
        ("/login", {"email": "nobody@example.com", "password": PASSWORD}, 401),
        ("/billing/upgrade", {"plan": "platinum"}, 400),
        ("/billing/upgrade", {"plan": "team", "card": "4000000000000002"}, 402),  # declined
        ("/reports/signups/schedule", {"next_run": "next tuesday"}, 400),
        ("/reports/signups/schedule", {"next_run": "2000-01-01"}, 400),  # in the past
        ("/reports/nope/schedule", {"next_run": tomorrow()}, 404),
        ("/reports/signups/export", {"format": "xlsx"}, 400),
        ("/reports/nope/export", {"format": "csv"}, 404),
    ],
)
def test_a_failed_form_tracks_nothing(
    app: Flask, logged_in: FlaskClient, path: str, data: dict[str, str], status: int
) -> None:
    with record_events(app) as events:
        response = logged_in.post(path, data=data)
    assert response.status_code == status
    assert events == []


@pytest.mark.parametrize(
    "path", ["/billing/upgrade", "/reports/signups/schedule", "/reports/signups/export"]
)
def test_a_visitor_sent_to_log_in_tracks_nothing(
    app: Flask, client: FlaskClient, path: str
) -> None:
    with record_events(app) as events:
        response = client.post(path, data={"plan": "pro", "next_run": tomorrow()})
    assert response.status_code == 302
    assert response.location.startswith("/login")
    assert events == []


def test_signals_are_tracked_once_however_many_apps_are_made(tmp_path: Path) -> None:
    # The signal mappings are made once per process (signals.py), not per create_app().
    apps = [
        create_app({"TESTING": True, "DATABASE": str(tmp_path / f"{n}.sqlite3")}) for n in range(3)
    ]
    client = apps[-1].test_client()
    client.post("/signup", data={"email": EMAIL, "password": PASSWORD})
    with record_events(apps[-1]) as events:
        client.post("/login", data={"email": EMAIL, "password": PASSWORD})
    assert names(events) == ["logged-in"]


# --- python -m example_app, end to end -------------------------------------------------------


def newcomer_env() -> dict[str, str]:
    """The environment of someone with no Redis and no Intercom token."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("INTERCOM_", "FLASK_INTERCOM_"))
    }
    env["PYTHONUNBUFFERED"] = "1"
    return env


def test_demo_runs_a_visit_and_shows_what_intercom_received() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "example_app", "--demo"],
        cwd=ROOT,
        env=newcomer_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "Traceback" not in output
    table = output.split("What Intercom (the emulator", 1)[1].split("Tracked, then dropped")[0]
    rows = {
        line.split()[0]: line
        for line in table.splitlines()
        if line.startswith("  ") and line.split()[0].islower()
    }
    assert set(rows) >= {
        "signed-up",
        "logged-in",
        "upgraded-plan",
        "scheduled-report",
        "exported-report",
        "viewed-pricing",
        "logged-out",
    }
    assert "price=349.99 EUR" in rows["upgraded-plan"]
    assert re.search(r"report='Weekly sign-ups' <http://127\.0\.0\.1:\d+/reports/signups>", table)
    assert re.search(r"next_run_date=\d{4}-\d\d-\d\d", rows["scheduled-report"])
    assert "report=signups, format=csv" in rows["exported-report"]
    assert "id=6650f1c2a1b2c3d4e5f60718" in table
    assert table.count("user_id=1 email=ada@example.com") == 7
    assert "queued 0, in flight 0, scheduled 0, failed 0" in output
    assert "-> upgraded-plan, rolled back: not sent" in output
    dropped = output.split("Tracked, then dropped before leaving the app", 1)[1]
    assert re.search(r"upgraded-plan +rolled back", dropped.split("flask intercom status")[0])
    assert re.search(r"OK: the 8 events tracked by 12 requests .* the 4 failed forms", output)


class Runner:
    """``python -m example_app`` as a newcomer starts it, its output read line by line."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "example_app", "--port", "0"],
            cwd=ROOT,
            env=newcomer_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout: float = 30) -> re.Match[str]:
        """The first line (seen or to come) matching ``pattern``."""
        for line in self.lines:
            if found := re.search(pattern, line):
                return found
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                item = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if item is None:
                break
            self.lines.append(item)
            if found := re.search(pattern, item):
                return found
        pytest.fail(f"no line matching {pattern!r} in:\n" + "\n".join(self.lines))

    def close(self) -> None:
        """Kill it if it still runs, and close its output."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._reader.join(10)
        assert self.process.stdout is not None
        self.process.stdout.close()

    def output(self) -> str:
        while (line := self._queue.get(timeout=10)) is not None:
            self.lines.append(line)
        return "\n".join(self.lines)


@pytest.fixture
def runner() -> Iterator[Runner]:
    started = Runner()
    yield started
    started.close()


def listening(url: str) -> bool:
    host, port = re.findall(r"//([\d.]+):(\d+)", url)[0]
    with socket.socket() as sock:
        return sock.connect_ex((host, int(port))) == 0


def test_runner_serves_delivers_and_stops_everything_on_ctrl_c(runner: Runner) -> None:
    web = runner.wait_for(r"web app +(http://\S+)/").group(1)
    emulator = runner.wait_for(r"the emulator at (http://\S+)").group(1)
    redis_line = runner.wait_for(r"Redis +(redis://\S+) .*pid (\d+)")
    worker_pid = int(runner.wait_for(r"worker .*\(pid (\d+)\)").group(1))
    redis_url, redis_pid = redis_line.group(1), int(redis_line.group(2))
    runner.wait_for("Ctrl-C stops everything")

    assert requests.get(f"{web}/pricing?lead={LEAD_ID}", timeout=10).status_code == 200
    runner.wait_for(rf"queued +viewed-pricing +id={LEAD_ID}")
    runner.wait_for(rf"received +viewed-pricing +id={LEAD_ID}")
    [event] = requests.get(f"{emulator}/_sandbox/events", timeout=5).json()["events"]
    assert (event["event_name"], event["id"]) == ("viewed-pricing", LEAD_ID)

    runner.process.send_signal(signal.SIGINT)  # what Ctrl-C sends the runner
    assert runner.process.wait(30) == 0
    output = runner.output()
    assert "Traceback" not in output
    assert output.rstrip().endswith("Stopped.")
    for url in (web, emulator, redis_url):
        assert not listening(url), f"{url} still answers"
    for pid in (worker_pid, redis_pid):
        assert not Path(f"/proc/{pid}").exists(), f"pid {pid} outlived the runner"


def test_a_second_ctrl_c_stops_the_worker_at_once(runner: Runner) -> None:
    web = runner.wait_for(r"web app +(http://\S+)/").group(1)
    emulator = runner.wait_for(r"the emulator at (http://\S+)").group(1)
    redis_url = runner.wait_for(r"Redis +(redis://\S+) ").group(1)
    worker_pid = int(runner.wait_for(r"worker .*\(pid (\d+)\)").group(1))
    runner.wait_for("Ctrl-C stops everything")
    # Intercom takes 8 s to answer: a graceful stop would wait for it.
    patched = requests.patch(f"{emulator}/_sandbox/settings", json={"latency": 8}, timeout=5)
    assert patched.status_code == 200, patched.text
    assert requests.get(f"{web}/pricing?lead=lead-7", timeout=10).status_code == 200
    started = Queue("intercom-events", connection=Redis.from_url(redis_url)).started_job_registry
    deadline = time.monotonic() + 30
    while started.count == 0:  # the worker has taken the event and is waiting for Intercom
        assert time.monotonic() < deadline, "the worker never started sending"
        time.sleep(0.05)

    runner.process.send_signal(signal.SIGINT)
    runner.wait_for("finishing the requests in flight")
    runner.process.send_signal(signal.SIGINT)

    runner.wait_for("Stopping the worker at once")
    runner.wait_for("Stopping now: unfinished events go back to the queue")
    assert runner.process.wait(30) == 0
    output = runner.output()
    assert "Traceback" not in output
    assert output.rstrip().endswith("Stopped.")
    assert not Path(f"/proc/{worker_pid}").exists()
    for url in (web, emulator, redis_url):
        assert not listening(url), f"{url} still answers"
