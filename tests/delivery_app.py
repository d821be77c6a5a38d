"""The app the delivery tests run their workers with: ``flask --app tests.delivery_app ...``.

Configured from the environment like a real deployment (``FLASK_INTERCOM_...`` variables,
read by ``app.config.from_prefixed_env()``), so a test starts a real worker process with
``python -m flask --app tests.delivery_app intercom worker`` and the settings it chose.
"""

from __future__ import annotations

import os

from flask import Flask

from flask_intercom_events import IntercomEvents
from flask_intercom_events.signals import event_delivered, event_dropped, event_failed

intercom = IntercomEvents()


def create_app() -> Flask:
    """The worker's app. ``DELIVERY_SIGNAL_LOG``, when set, names a file that gets one line
    per ``event_delivered``/``event_failed`` sent in the worker; with
    ``DELIVERY_SIGNAL_RAISE`` set, the receivers then raise, as buggy ones would
    (``event_dropped`` lines too, e.g. ``dropped <app> <name> collapsed``)."""
    app = Flask(__name__, instance_path=os.environ.get("DELIVERY_INSTANCE_PATH"))
    app.config["INTERCOM_EVENTS_DELIVERY"] = "rq"
    app.config.from_prefixed_env()
    intercom.init_app(app)
    signal_log = os.environ.get("DELIVERY_SIGNAL_LOG")
    crash = bool(os.environ.get("DELIVERY_SIGNAL_RAISE"))
    if signal_log:

        def delivered(sender: Flask, **kwargs: object) -> None:
            _append(signal_log, f"delivered {sender.name} {_name_of(kwargs.get('event'))}")
            if crash:
                raise RuntimeError("a buggy event_delivered receiver")

        def failed(sender: Flask, **kwargs: object) -> None:
            reason = kwargs.get("reason")
            _append(signal_log, f"failed {sender.name} {_name_of(kwargs.get('event'))} {reason}")
            if crash:
                raise RuntimeError("a buggy event_failed receiver")

        def dropped(sender: Flask, **kwargs: object) -> None:
            reason = kwargs.get("reason")
            _append(signal_log, f"dropped {sender.name} {kwargs.get('event_name')} {reason}")

        event_delivered.connect(delivered, weak=False)
        event_failed.connect(failed, weak=False)
        event_dropped.connect(dropped, weak=False)
    return app


def _name_of(event: object) -> str:
    return str(getattr(event, "event_name", None))


def _append(path: str, line: str) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line + "\n")
