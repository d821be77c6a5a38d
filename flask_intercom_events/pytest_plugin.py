"""An opt-in pytest plugin: ``pytest_plugins = ["flask_intercom_events.pytest_plugin"]``.

It provides the ``intercom_events`` fixture: the list of events the ``app`` fixture (yours)
tracks during the test, in any delivery mode.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask

from .events import Event
from .testing import record_events

__all__ = ["intercom_events"]


@pytest.fixture
def intercom_events(app: Flask) -> Iterator[list[Event]]:
    """The events the ``app`` fixture tracks during the test."""
    with record_events(app) as recorded:
        yield recorded
