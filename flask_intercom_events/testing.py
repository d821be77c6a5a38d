"""Helpers for the tests of apps that use the extension.

``record_events(app)`` collects every event tracked inside it, in any delivery mode (it
listens to the ``event_tracked`` signal, which fires in ``disabled`` mode too). For the
``intercom_events`` pytest fixture, opt in from your ``conftest.py`` with
``pytest_plugins = ["flask_intercom_events.pytest_plugin"]``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask

from .events import Event
from .signals import event_tracked

__all__ = ["record_events"]


@contextmanager
def record_events(app: Flask) -> Iterator[list[Event]]:
    """Yield a list that fills with the events ``app`` tracks until the block ends."""
    recorded: list[Event] = []

    def receiver(sender: Flask, *, event: Event, **kwargs: Any) -> None:
        recorded.append(event)

    with event_tracked.connected_to(receiver, sender=app):
        yield recorded
