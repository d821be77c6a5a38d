"""The request path's configuration keys: INTERCOM_EVENTS_REDIS_SLOW and
INTERCOM_EVENTS_DISCARD_ON_ERROR."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flask_intercom_events import ConfigurationError
from flask_intercom_events.extension import state_of

from .apps import make_app


def test_defaults(tmp_path: Path) -> None:
    settings = state_of(make_app(tmp_path)).settings
    assert settings.redis_slow == 0.05
    assert settings.discard_on_error is True


@pytest.mark.parametrize(
    ("config", "slow", "discard"),
    [
        ({"INTERCOM_EVENTS_REDIS_SLOW": 0.1}, 0.1, True),
        ({"INTERCOM_EVENTS_REDIS_SLOW": "0.2"}, 0.2, True),
        ({"INTERCOM_EVENTS_DISCARD_ON_ERROR": False}, 0.05, False),
        ({"INTERCOM_EVENTS_DISCARD_ON_ERROR": "off"}, 0.05, False),
    ],
)
def test_values(tmp_path: Path, config: dict[str, Any], slow: float, discard: bool) -> None:
    settings = state_of(make_app(tmp_path, **config)).settings
    assert (settings.redis_slow, settings.discard_on_error) == (slow, discard)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"INTERCOM_EVENTS_REDIS_SLOW": 0}, "INTERCOM_EVENTS_REDIS_SLOW"),
        ({"INTERCOM_EVENTS_REDIS_SLOW": "fast"}, "INTERCOM_EVENTS_REDIS_SLOW"),
        (
            {"INTERCOM_EVENTS_REDIS_SLOW": 0.5},
            "INTERCOM_EVENTS_REDIS_SLOW (0.5 s) must be below INTERCOM_EVENTS_REDIS_TIMEOUT",
        ),
        ({"INTERCOM_EVENTS_DISCARD_ON_ERROR": "maybe"}, "INTERCOM_EVENTS_DISCARD_ON_ERROR"),
    ],
)
def test_refusals(tmp_path: Path, config: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        make_app(tmp_path, **config)
    assert message in str(caught.value)


def test_a_short_redis_timeout_makes_the_slowness_bound_shorter(tmp_path: Path) -> None:
    settings = state_of(make_app(tmp_path, INTERCOM_EVENTS_REDIS_TIMEOUT=0.04)).settings
    assert settings.redis_slow < settings.redis_timeout
