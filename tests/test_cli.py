"""``flask intercom send``, ``list-events`` and ``sandbox``, against the emulator."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests
from flask import Flask

from flask_intercom_events.sandbox import Sandbox

from .apps import make_app

ROOT = Path(__file__).resolve().parent.parent


def cli_app(tmp_path: Path, emulator: Sandbox, **config: Any) -> Flask:
    return make_app(tmp_path, INTERCOM_API_BASE_URL=emulator.url, **config)


def test_send_prints_intercoms_answer(tmp_path: Path, emulator: Sandbox) -> None:
    app = cli_app(tmp_path, emulator)
    result = app.test_cli_runner().invoke(
        args=[
            "intercom", "send", "invited-friend", "--user-id", "42",
            "-m", "invite_code=ADDAFRIEND", "-m", "seats=3",
            "-m", 'price={"amount": 34999, "currency": "eur"}',
            "--created-at", "1700000000",
        ]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Intercom answered 202" in result.output
    assert "calls left in this window" in result.output
    [event] = emulator.events
    assert (event.event_name, event.user_id, event.created_at) == (
        "invited-friend",
        "42",
        1700000000,
    )
    assert event.metadata == {
        "invite_code": "ADDAFRIEND",
        "seats": 3,
        "price": {"amount": 34999, "currency": "eur"},
    }
    assert "test-token" not in result.output


def test_send_refuses_an_invalid_event_before_sending(tmp_path: Path, emulator: Sandbox) -> None:
    app = cli_app(tmp_path, emulator)
    result = app.test_cli_runner().invoke(args=["intercom", "send", "bad.name", "--user-id", "1"])
    assert result.exit_code == 1
    assert "use 'bad-name' instead" in result.output
    assert emulator.stats.requests == 0


def test_send_shows_intercoms_refusal(tmp_path: Path, emulator: Sandbox) -> None:
    emulator.configure(require_contacts=True)
    app = cli_app(tmp_path, emulator)
    result = app.test_cli_runner().invoke(args=["intercom", "send", "paid", "--user-id", "ghost"])
    assert result.exit_code == 1
    assert "Intercom refused it: POST /events: HTTP 404 not_found: User Not Found" in result.output


def test_list_events_follows_every_page(tmp_path: Path, emulator: Sandbox) -> None:
    app = cli_app(tmp_path, emulator)
    runner = app.test_cli_runner()
    recent = int(time.time()) - 100  # Intercom lists only events of the last 90 days
    for second in range(5):
        runner.invoke(
            args=[
                "intercom",
                "send",
                "ran-report",
                "--user-id",
                "7",
                "--created-at",
                f"{recent + second}",
            ]
        )
    result = runner.invoke(args=["intercom", "list-events", "--user-id", "7", "--per-page", "2"])
    assert result.exit_code == 0, result.output
    assert result.output.count("ran-report") == 5
    assert "5 event(s)." in result.output
    summary = runner.invoke(args=["intercom", "list-events", "--user-id", "7", "--summary"])
    assert "ran-report: 5" in summary.output


def test_list_events_needs_exactly_one_identifier(tmp_path: Path, emulator: Sandbox) -> None:
    app = cli_app(tmp_path, emulator)
    result = app.test_cli_runner().invoke(args=["intercom", "list-events"])
    assert result.exit_code == 1
    assert "exactly one" in result.output


def test_sandbox_command_runs_the_emulator_with_the_apps_token(tmp_path: Path) -> None:
    app_module = tmp_path / "sandbox_app.py"
    app_module.write_text(
        "from flask import Flask\n"
        "from flask_intercom_events import IntercomEvents\n"
        "app = Flask(__name__)\n"
        "app.config.update(INTERCOM_ACCESS_TOKEN='app-token', INTERCOM_EVENTS_DELIVERY='eager')\n"
        "IntercomEvents(app)\n"
    )
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flask",
            "--app",
            "sandbox_app",
            "intercom",
            "sandbox",
            "--port",
            "0",
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("Intercom sandbox listening on http://127.0.0.1:")
        url = first.split()[-1]
        body = {"event_name": "a", "created_at": 1700000000, "user_id": "1"}
        ok = requests.post(
            f"{url}/events", json=body, headers={"Authorization": "Bearer app-token"}, timeout=5
        )
        bad = requests.post(
            f"{url}/events", json=body, headers={"Authorization": "Bearer other"}, timeout=5
        )
        assert (ok.status_code, bad.status_code) == (202, 401)
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
    assert "app-token" not in out + err


def test_sandbox_help_is_the_emulators(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    result = app.test_cli_runner().invoke(args=["intercom", "sandbox", "--help"])
    assert result.exit_code == 0
    assert "usage: flask intercom sandbox" in result.output
    assert "--error-rate" in result.output
