"""Helpers for the tests of apps that use the extension.

``record_events(app)`` collects every event tracked inside it, in any delivery mode (it
listens to the ``event_tracked`` signal, which fires in ``disabled`` mode too), less those
dropped after they were tracked: tracked in a request that then failed, or in a transaction
that rolled back (``event_dropped``). For the ``intercom_events`` pytest fixture, opt in from
your ``conftest.py`` with ``pytest_plugins = ["flask_intercom_events.pytest_plugin"]``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask

from .events import Event
from .signals import event_dropped, event_tracked

__all__ = ["record_events"]


@contextmanager
def record_events(app: Flask) -> Iterator[list[Event]]:
    """Yield a list that fills with the events ``app`` tracks until the block ends.

    An event dropped once tracked (its request failed, its transaction rolled back, it could
    not be kept) leaves the list again: the list is what ``app`` will send.
    """
    recorded: list[Event] = []

    def tracked(sender: Flask, *, event: Event, **kwargs: Any) -> None:
        recorded.append(event)

    def dropped(sender: Flask, *, event: Event | None = None, **kwargs: Any) -> None:
        # By identity: two equal events (same name, second and identity) are two events.
        for index, candidate in enumerate(recorded):
            if candidate is event:
                del recorded[index]
                return

    with (
        event_tracked.connected_to(tracked, sender=app),
        event_dropped.connected_to(dropped, sender=app),
    ):
        yield recorded
