"""Small Flask apps for the tests, built the way users build theirs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask

from flask_intercom_events import IntercomEvents


def make_app(tmp_path: Path, intercom: IntercomEvents | None = None, **config: Any) -> Flask:
    """An app with the extension initialised; ``config`` overrides the defaults below."""
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(
        SECRET_KEY="test-secret",
        INTERCOM_ACCESS_TOKEN="test-token",
        INTERCOM_EVENTS_DELIVERY="disabled",
    )
    app.config.update(config)
    (intercom or IntercomEvents()).init_app(app)
    return app
