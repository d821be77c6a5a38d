"""The job function (``jobs.py``): in the app's context, one client per process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from flask import Flask

from flask_intercom_events import ConfigurationError, Event, InvalidEventError, NotFoundError
from flask_intercom_events.jobs import DELIVER, deliver
from flask_intercom_events.sandbox import Sandbox
from flask_intercom_events.signals import event_delivered

from .apps import make_app


@pytest.fixture
def app(tmp_path: Path, emulator: Sandbox) -> Flask:
    return make_app(tmp_path, INTERCOM_API_BASE_URL=emulator.url)


def payload(user: str = "42") -> dict[str, object]:
    return {
        "event_name": "invited-friend",
        "created_at": 1_700_000_000,
        "user_id": user,
        "metadata": {"code": "ADD"},
    }


def test_the_job_function_is_importable_by_its_name() -> None:
    module, _, name = DELIVER.rpartition(".")
    assert getattr(__import__(module, fromlist=[name]), name) is deliver


def test_deliver_sends_the_payload_and_reports_the_answer(app: Flask, emulator: Sandbox) -> None:
    delivered: list[tuple[object, Event]] = []

    def receiver(sender: object, event: Event) -> None:
        delivered.append((sender, event))

    with app.app_context(), event_delivered.connected_to(receiver):
        answer = deliver(payload())
    assert answer["status"] == 202
    assert answer["rate_limit"]["limit"] == 1666
    assert answer["rate_limit"]["remaining"] == 1665
    assert isinstance(answer["rate_limit"]["reset"], int)
    assert [e.body for e in emulator.events] == [payload()]
    assert delivered == [(app, Event.from_payload(payload()))]


def test_deliver_raises_what_the_worker_classifies(app: Flask, emulator: Sandbox) -> None:
    emulator.configure(require_contacts=True)
    with app.app_context():
        with pytest.raises(NotFoundError):
            deliver(payload("nobody"))
        with pytest.raises(InvalidEventError):
            deliver({**payload(), "created_at": "yesterday"})


def test_deliver_needs_the_apps_context() -> None:
    with pytest.raises(ConfigurationError, match="flask --app yourapp intercom worker"):
        deliver(payload())


FORK_CHECK = """
import os, sys
from flask import Flask
from flask_intercom_events import IntercomEvents
from flask_intercom_events.extension import state_of
from flask_intercom_events.jobs import client_for

app = Flask("forked", instance_path=sys.argv[1])
app.config.update(INTERCOM_ACCESS_TOKEN="t", INTERCOM_EVENTS_DELIVERY="disabled",
                  INTERCOM_API_BASE_URL="http://127.0.0.1:9")
IntercomEvents(app)
settings = state_of(app).settings
parent = client_for(settings)
assert client_for(settings) is parent
parent.made_in_parent = True
pid = os.fork()
if pid == 0:
    child = client_for(settings)
    ok = not hasattr(child, "made_in_parent") and child.session is not parent.session
    os._exit(0 if ok and client_for(settings) is child else 1)
_, status = os.waitpid(pid, 0)
assert client_for(settings) is parent
sys.exit(os.waitstatus_to_exitcode(status))
"""


def test_one_client_per_process_made_again_after_a_fork(tmp_path: Path) -> None:
    # In a process of its own: forking this (threaded) test process is not safe.
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", FORK_CHECK, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
