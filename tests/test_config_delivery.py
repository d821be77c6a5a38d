"""The delivery settings (``INTERCOM_EVENTS_...`` keys read for the worker) in ``config.py``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flask_intercom_events import ConfigurationError
from flask_intercom_events.extension import state_of
from flask_intercom_events.retry import RetryPolicy

from .apps import make_app


def test_defaults(tmp_path: Path) -> None:
    settings = state_of(make_app(tmp_path)).settings
    assert settings.window_budget == 1666
    assert (settings.rate_window, settings.worker_concurrency, settings.worker_ttl) == (
        10.0,
        32,
        30.0,
    )
    assert RetryPolicy.from_settings(settings) == RetryPolicy(
        max_attempts=10,
        max_retry_time=86400.0,
        delay=1.0,
        max_delay=300.0,
        not_found_delays=(60.0, 300.0, 900.0),
        window=10.0,
    )
    assert settings.failure_ttl == 365 * 24 * 3600


@pytest.mark.parametrize(
    ("config", "attribute", "expected"),
    [
        ({"INTERCOM_EVENTS_RATE_LIMIT": 1000}, "window_budget", 166),
        (
            {"INTERCOM_EVENTS_RATE_LIMIT": 1000, "INTERCOM_EVENTS_RATE_WINDOW": 60},
            "window_budget",
            1000,
        ),
        ({"INTERCOM_EVENTS_RATE_LIMIT": 1}, "window_budget", 1),  # never 0
        ({"INTERCOM_EVENTS_MAX_ATTEMPTS": "4"}, "max_attempts", 4),  # from the environment
        ({"INTERCOM_EVENTS_NOT_FOUND_RETRIES": [1, 2.5]}, "not_found_retries", (1.0, 2.5)),
        ({"INTERCOM_EVENTS_NOT_FOUND_RETRIES": "30, 120"}, "not_found_retries", (30.0, 120.0)),
        ({"INTERCOM_EVENTS_NOT_FOUND_RETRIES": []}, "not_found_retries", ()),
        ({"INTERCOM_EVENTS_NOT_FOUND_RETRIES": ""}, "not_found_retries", ()),
        ({"INTERCOM_EVENTS_WORKER_CONCURRENCY": 64}, "worker_concurrency", 64),
        ({"INTERCOM_EVENTS_WORKER_TTL": "5"}, "worker_ttl", 5.0),
        ({"INTERCOM_EVENTS_RETRY_DELAY": 0.25}, "retry_delay", 0.25),
        ({"INTERCOM_EVENTS_FAILURE_TTL": 3600}, "failure_ttl", 3600),
    ],
)
def test_values(tmp_path: Path, config: dict[str, Any], attribute: str, expected: object) -> None:
    settings = state_of(make_app(tmp_path, **config)).settings
    assert getattr(settings, attribute) == expected


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"INTERCOM_EVENTS_RATE_WINDOW": 0}, "INTERCOM_EVENTS_RATE_WINDOW must be a positive"),
        (
            {"INTERCOM_EVENTS_MAX_ATTEMPTS": 0},
            "INTERCOM_EVENTS_MAX_ATTEMPTS must be a positive whole",
        ),
        (
            {"INTERCOM_EVENTS_MAX_ATTEMPTS": 2.5},
            "INTERCOM_EVENTS_MAX_ATTEMPTS must be a positive whole",
        ),
        ({"INTERCOM_EVENTS_MAX_RETRY_TIME": "never"}, "INTERCOM_EVENTS_MAX_RETRY_TIME must be"),
        ({"INTERCOM_EVENTS_RETRY_DELAY": -1}, "INTERCOM_EVENTS_RETRY_DELAY must be a positive"),
        ({"INTERCOM_EVENTS_RETRY_MAX_DELAY": 0}, "INTERCOM_EVENTS_RETRY_MAX_DELAY must be"),
        (
            {"INTERCOM_EVENTS_NOT_FOUND_RETRIES": [60, -1]},
            "INTERCOM_EVENTS_NOT_FOUND_RETRIES must be a list of delays in seconds",
        ),
        (
            {"INTERCOM_EVENTS_NOT_FOUND_RETRIES": "soon"},
            "INTERCOM_EVENTS_NOT_FOUND_RETRIES must be a list of delays in seconds",
        ),
        (
            {"INTERCOM_EVENTS_NOT_FOUND_RETRIES": 60},
            "INTERCOM_EVENTS_NOT_FOUND_RETRIES must be a list of delays in seconds",
        ),
        (
            {"INTERCOM_EVENTS_WORKER_CONCURRENCY": True},
            "INTERCOM_EVENTS_WORKER_CONCURRENCY must be a positive whole number",
        ),
        ({"INTERCOM_EVENTS_WORKER_TTL": 0}, "INTERCOM_EVENTS_WORKER_TTL must be a positive"),
        ({"INTERCOM_EVENTS_FAILURE_TTL": -5}, "INTERCOM_EVENTS_FAILURE_TTL must be a positive"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, config: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        make_app(tmp_path, **config)
