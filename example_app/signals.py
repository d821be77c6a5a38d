"""The app's own blinker signal, and which signals become Intercom events."""

from __future__ import annotations

from typing import Any

from blinker import Namespace
from flask_login import user_logged_in

from .extensions import intercom

_signals = Namespace()

#: Sent by the export view with ``report=`` (its name) and ``fmt=`` ("csv" or "json"); the
#: sender is the app. Anything else in the app (an audit log, a quota) can listen too.
report_exported = _signals.signal("report-exported")


def _export_metadata(sender: Any, *, report: str, fmt: str, **extra: Any) -> dict[str, str]:
    return {"report": report, "format": fmt}


def map_signals_to_events() -> None:
    """Called by ``create_app``; mapping again (one app per test) replaces, never doubles."""
    # Flask-Login sends user_logged_in with user=...: the event is about that user.
    intercom.track_signal(user_logged_in, "logged-in")
    # No identity given: the extension asks Flask-Login for the current user.
    intercom.track_signal(report_exported, "exported-report", metadata=_export_metadata)
