"""The opt-in pytest plugin, used the way an app's test suite would use it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_intercom_events_fixture_in_a_users_test_suite(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(
        textwrap.dedent(
            """
            import pytest
            from flask import Flask
            from flask_intercom_events import IntercomEvents, Identity, track_event

            pytest_plugins = ["flask_intercom_events.pytest_plugin"]

            @pytest.fixture
            def app(tmp_path):
                app = Flask("users_app", instance_path=str(tmp_path))
                app.testing = True
                intercom = IntercomEvents(app)
                intercom.identity_loader(lambda: Identity(user_id="7"))

                @app.post("/invite")
                @track_event("invited-friend")
                def invite():
                    return "ok"

                return app
            """
        )
    )
    (tmp_path / "test_users_app.py").write_text(
        textwrap.dedent(
            """
            def test_invite_is_tracked(app, intercom_events):
                app.test_client().post("/invite")
                assert [e.event_name for e in intercom_events] == ["invited-friend"]
                assert intercom_events[0].identity.user_id == "7"

            def test_nothing_tracked_without_a_request(app, intercom_events):
                assert intercom_events == []
            """
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
