"""The README's opening snippet runs as written: a newcomer copies it first."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from flask_intercom_events import Identity, Money
from flask_intercom_events.testing import record_events

README = Path(__file__).resolve().parent.parent / "README.md"


def first_python_block() -> str:
    match = re.search(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert match is not None, "the README has no python block"
    return match.group(1)


def test_the_opening_snippet_runs_and_tracks_what_it_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What a newcomer's test environment gives app.config.from_prefixed_env().
    monkeypatch.setenv("FLASK_TESTING", "true")
    scope: dict[str, Any] = {"__name__": "readme_snippet"}
    exec(compile(first_python_block(), str(README), "exec"), scope)
    intercom = scope["intercom"]
    intercom.identity_loader(lambda: Identity(user_id="42"))  # the snippet's user, logged in
    app = scope["create_app"]()
    client = app.test_client()
    with record_events(app) as events:
        assert client.post("/invites", data={"code": "ADDAFRIEND"}).status_code == 200
        assert client.post("/plan").status_code == 200
    assert [(e.event_name, dict(e.metadata)) for e in events] == [
        ("invited-friend", {"invite_code": "ADDAFRIEND"}),
        ("updated-plan", {"plan": "pro", "price": Money(34999, "eur")}),
    ]
