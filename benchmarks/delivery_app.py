"""The app ``delivery.py`` runs its worker with: configured from ``FLASK_INTERCOM_...``.

``python -m flask --app benchmarks/delivery_app.py:create_app intercom worker``
"""

from __future__ import annotations

import os

from flask import Flask

from flask_intercom_events import IntercomEvents

intercom = IntercomEvents()


def create_app() -> Flask:
    """The benchmark worker's app: ``rq`` delivery, everything else from the environment."""
    app = Flask(__name__, instance_path=os.environ.get("BENCH_INSTANCE_PATH"))
    app.config["INTERCOM_EVENTS_DELIVERY"] = "rq"
    app.config.from_prefixed_env()
    intercom.init_app(app)
    return app
