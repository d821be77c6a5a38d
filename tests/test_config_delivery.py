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


def test_defaults_of_the_newer_keys(tmp_path: Path) -> None:
    settings = state_of(make_app(tmp_path)).settings
    assert (settings.same_second, settings.max_spread) == ("spread", 60)
    assert (settings.discard_on_error, settings.create_contacts) == (True, False)
    assert (settings.metrics_port, settings.redis_slow, settings.redis_timeout) == (
        None,
        0.05,
        0.5,
    )


@pytest.mark.parametrize(
    ("config", "attribute", "expected"),
    [
        ({"INTERCOM_EVENTS_RATE_LIMIT": 1000}, "window_budget", 166),
        (
            {"INTERCOM_EVENTS_RATE_LIMIT": 1000, "INTERCOM_EVENTS_RATE_WINDOW": 60},
            "window_budget",
            1000,
        ),
        ({"INTERCOM_EVENTS_RATE_LIMIT": 6}, "window_budget", 1),  # the least: one per window
        ({"INTERCOM_EVENTS_RATE_LIMIT": 1, "INTERCOM_EVENTS_RATE_WINDOW": 60}, "window_budget", 1),
        ({"INTERCOM_EVENTS_RATE_LIMIT": 10_000.0}, "rate_limit", 10_000),
        ({"INTERCOM_EVENTS_RATE_LIMIT": 10**9}, "rate_limit", 10**9),
        ({"INTERCOM_EVENTS_MAX_ATTEMPTS": "4"}, "max_attempts", 4),  # from the environment
        ({"INTERCOM_EVENTS_NOT_FOUND_RETRIES": [1, 2.5]}, "not_found_retries", (1.0, 2.5)),
        ({"INTERCOM_EVENTS_NOT_FOUND_RETRIES": "30, 120"}, "not_found_retries", (30.0, 120.0)),
        ({"INTERCOM_EVENTS_NOT_FOUND_RETRIES": []}, "not_found_retries", ()),
        ({"INTERCOM_EVENTS_NOT_FOUND_RETRIES": ""}, "not_found_retries", ()),
        ({"INTERCOM_EVENTS_WORKER_CONCURRENCY": 64}, "worker_concurrency", 64),
        ({"INTERCOM_EVENTS_WORKER_TTL": "5"}, "worker_ttl", 5.0),
        ({"INTERCOM_EVENTS_RETRY_DELAY": 0.25}, "retry_delay", 0.25),
        ({"INTERCOM_EVENTS_FAILURE_TTL": 3600}, "failure_ttl", 3600),
        ({"INTERCOM_EVENTS_NOT_FOUND_RETRIES": 60}, "not_found_retries", (60.0,)),
        ({"INTERCOM_EVENTS_NOT_FOUND_RETRIES": [0] * 20}, "not_found_retries", (0.0,) * 20),
        ({"INTERCOM_EVENTS_NOT_FOUND_RETRIES": [86400]}, "not_found_retries", (86400.0,)),
        # The bounds themselves are accepted.
        ({"INTERCOM_EVENTS_RATE_WINDOW": 1}, "rate_window", 1.0),
        ({"INTERCOM_EVENTS_RATE_WINDOW": 600}, "rate_window", 600.0),
        ({"INTERCOM_EVENTS_WORKER_TTL": 86400}, "worker_ttl", 86400.0),
        ({"INTERCOM_EVENTS_WORKER_TTL": 1}, "worker_ttl", 1.0),
        ({"INTERCOM_EVENTS_REDIS_TIMEOUT": 60}, "redis_timeout", 60.0),
        ({"INTERCOM_EVENTS_FAILURE_TTL": 10 * 365 * 86400}, "failure_ttl", 315_360_000),
        ({"INTERCOM_EVENTS_WORKER_CONCURRENCY": 1024}, "worker_concurrency", 1024),
        ({"INTERCOM_EVENTS_MAX_ATTEMPTS": 1000}, "max_attempts", 1000),
        ({"INTERCOM_EVENTS_MAX_RETRY_TIME": 30 * 86400}, "max_retry_time", 2_592_000.0),
        ({"INTERCOM_EVENTS_RETRY_DELAY": 300}, "retry_delay", 300.0),  # = the cap
        ({"INTERCOM_EVENTS_RETRY_MAX_DELAY": 86400}, "retry_max_delay", 86400.0),
        # The newer keys.
        ({"INTERCOM_EVENTS_SAME_SECOND": "collapse"}, "same_second", "collapse"),
        ({"INTERCOM_EVENTS_MAX_SPREAD": 0}, "max_spread", 0),
        ({"INTERCOM_EVENTS_MAX_SPREAD": "3600"}, "max_spread", 3600),
        ({"INTERCOM_EVENTS_DISCARD_ON_ERROR": False}, "discard_on_error", False),
        ({"INTERCOM_EVENTS_CREATE_CONTACTS": "yes"}, "create_contacts", True),
        ({"INTERCOM_EVENTS_METRICS_PORT": 9100}, "metrics_port", 9100),
        ({"INTERCOM_EVENTS_METRICS_PORT": "65535"}, "metrics_port", 65535),
        ({"INTERCOM_EVENTS_METRICS_PORT": 1}, "metrics_port", 1),
        ({"INTERCOM_EVENTS_REDIS_SLOW": 0.1}, "redis_slow", 0.1),
        ({"INTERCOM_EVENTS_REDIS_SLOW": 0.499}, "redis_slow", 0.499),
        # Unset, REDIS_SLOW is 0.05 s, or half a shorter REDIS_TIMEOUT.
        ({"INTERCOM_EVENTS_REDIS_TIMEOUT": 0.06}, "redis_slow", 0.03),
    ],
)
def test_values(tmp_path: Path, config: dict[str, Any], attribute: str, expected: object) -> None:
    settings = state_of(make_app(tmp_path, **config)).settings
    assert getattr(settings, attribute) == expected


SECONDS = "must be a number of seconds"
WHOLE = "must be a whole number"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"INTERCOM_EVENTS_RATE_WINDOW": 0}, f"RATE_WINDOW {SECONDS} from 1 to 600, got 0"),
        (
            {"INTERCOM_EVENTS_RATE_WINDOW": 1e308},
            rf"RATE_WINDOW {SECONDS} from 1 to 600, got 1e\+308",
        ),
        ({"INTERCOM_EVENTS_RATE_WINDOW": 0.5}, f"RATE_WINDOW {SECONDS} from 1 to 600"),
        ({"INTERCOM_EVENTS_RATE_WINDOW": 601}, f"RATE_WINDOW {SECONDS} from 1 to 600"),
        ({"INTERCOM_EVENTS_WORKER_TTL": 0}, f"WORKER_TTL {SECONDS} from 1 to 86,400, got 0"),
        ({"INTERCOM_EVENTS_WORKER_TTL": 1e308}, f"WORKER_TTL {SECONDS} from 1 to 86,400"),
        ({"INTERCOM_EVENTS_WORKER_TTL": 86401}, f"WORKER_TTL {SECONDS} from 1 to 86,400"),
        (
            {"INTERCOM_EVENTS_REDIS_TIMEOUT": 1e308},
            f"REDIS_TIMEOUT {SECONDS} more than 0 and at most 60",
        ),
        (
            {"INTERCOM_EVENTS_REDIS_TIMEOUT": 61},
            f"REDIS_TIMEOUT {SECONDS} more than 0 and at most 60",
        ),
        ({"INTERCOM_EVENTS_REDIS_TIMEOUT": float("nan")}, f"REDIS_TIMEOUT {SECONDS}"),
        ({"INTERCOM_EVENTS_FAILURE_TTL": -5}, f"FAILURE_TTL {WHOLE} from 1 to 315,360,000"),
        ({"INTERCOM_EVENTS_FAILURE_TTL": 10**20}, f"FAILURE_TTL {WHOLE} from 1 to 315,360,000"),
        ({"INTERCOM_EVENTS_FAILURE_TTL": 10**400}, f"FAILURE_TTL {WHOLE} from 1 to 315,360,000"),
        ({"INTERCOM_EVENTS_FAILURE_TTL": 86400.5}, f"FAILURE_TTL {WHOLE} from 1 to 315,360,000"),
        (
            {"INTERCOM_EVENTS_RATE_LIMIT": 0.5},
            "RATE_LIMIT must be a whole number of calls a minute from 1 to 1,000,000,000, got 0.5",
        ),
        ({"INTERCOM_EVENTS_RATE_LIMIT": 0}, "RATE_LIMIT must be a whole number of calls a minute"),
        ({"INTERCOM_EVENTS_RATE_LIMIT": 10**9 + 1}, "RATE_LIMIT must be a whole number of calls"),
        (
            {"INTERCOM_EVENTS_RATE_LIMIT": 5},
            r"INTERCOM_EVENTS_RATE_LIMIT \(5 calls a minute\) allows less than one call per "
            r"INTERCOM_EVENTS_RATE_WINDOW \(10 s\): raise it to at least 6, or lengthen the window",
        ),
        (
            {"INTERCOM_EVENTS_RATE_LIMIT": 1, "INTERCOM_EVENTS_RATE_WINDOW": 30},
            "raise it to at least 2",
        ),
        ({"INTERCOM_EVENTS_MAX_ATTEMPTS": 0}, f"MAX_ATTEMPTS {WHOLE} from 1 to 1,000, got 0"),
        ({"INTERCOM_EVENTS_MAX_ATTEMPTS": 2.5}, f"MAX_ATTEMPTS {WHOLE} from 1 to 1,000, got 2.5"),
        ({"INTERCOM_EVENTS_MAX_ATTEMPTS": 1001}, f"MAX_ATTEMPTS {WHOLE} from 1 to 1,000"),
        ({"INTERCOM_EVENTS_MAX_RETRY_TIME": "never"}, f"MAX_RETRY_TIME {SECONDS}"),
        (
            {"INTERCOM_EVENTS_MAX_RETRY_TIME": 31 * 86400},
            f"MAX_RETRY_TIME {SECONDS} more than 0 and at most 2,592,000",
        ),
        (
            {"INTERCOM_EVENTS_RETRY_DELAY": -1},
            f"RETRY_DELAY {SECONDS} more than 0 and at most 3,600",
        ),
        (
            {"INTERCOM_EVENTS_RETRY_DELAY": 3601},
            f"RETRY_DELAY {SECONDS} more than 0 and at most 3,600",
        ),
        ({"INTERCOM_EVENTS_RETRY_MAX_DELAY": 0}, f"RETRY_MAX_DELAY {SECONDS} more than 0"),
        ({"INTERCOM_EVENTS_RETRY_MAX_DELAY": 86401}, f"RETRY_MAX_DELAY {SECONDS} more than 0"),
        (
            {"INTERCOM_EVENTS_RETRY_DELAY": 10, "INTERCOM_EVENTS_RETRY_MAX_DELAY": 5},
            r"INTERCOM_EVENTS_RETRY_DELAY \(10 s\) is more than INTERCOM_EVENTS_RETRY_MAX_DELAY",
        ),
        ({"INTERCOM_EVENTS_NOT_FOUND_RETRIES": [60, -1]}, "NOT_FOUND_RETRIES must be a list of"),
        ({"INTERCOM_EVENTS_NOT_FOUND_RETRIES": "soon"}, "NOT_FOUND_RETRIES must be a list of"),
        ({"INTERCOM_EVENTS_NOT_FOUND_RETRIES": [86401]}, "each 0 to 86,400 seconds"),
        ({"INTERCOM_EVENTS_NOT_FOUND_RETRIES": [1] * 21}, "at most 20 delays"),
        ({"INTERCOM_EVENTS_NOT_FOUND_RETRIES": [1e308]}, "each 0 to 86,400 seconds"),
        (
            {"INTERCOM_EVENTS_WORKER_CONCURRENCY": True},
            f"WORKER_CONCURRENCY {WHOLE} from 1 to 1,024",
        ),
        (
            {"INTERCOM_EVENTS_WORKER_CONCURRENCY": 10**6},
            f"WORKER_CONCURRENCY {WHOLE} from 1 to 1,024",
        ),
        ({"INTERCOM_EVENTS_WORKER_CONCURRENCY": 0}, f"WORKER_CONCURRENCY {WHOLE} from 1 to 1,024"),
        (
            {"INTERCOM_EVENTS_SAME_SECOND": "merge"},
            "SAME_SECOND is 'merge'; it must be one of 'spread', 'collapse'",
        ),
        ({"INTERCOM_EVENTS_MAX_SPREAD": -1}, f"MAX_SPREAD {WHOLE} from 0 to 3,600, got -1"),
        ({"INTERCOM_EVENTS_MAX_SPREAD": 3601}, f"MAX_SPREAD {WHOLE} from 0 to 3,600"),
        ({"INTERCOM_EVENTS_MAX_SPREAD": 1.5}, f"MAX_SPREAD {WHOLE} from 0 to 3,600"),
        ({"INTERCOM_EVENTS_METRICS_PORT": 0}, f"METRICS_PORT {WHOLE} from 1 to 65,535, got 0"),
        ({"INTERCOM_EVENTS_METRICS_PORT": 65536}, f"METRICS_PORT {WHOLE} from 1 to 65,535"),
        ({"INTERCOM_EVENTS_METRICS_PORT": 80.5}, f"METRICS_PORT {WHOLE} from 1 to 65,535"),
        ({"INTERCOM_EVENTS_REDIS_SLOW": 0}, f"REDIS_SLOW {SECONDS} more than 0"),
        (
            {"INTERCOM_EVENTS_REDIS_SLOW": 0.5},
            r"INTERCOM_EVENTS_REDIS_SLOW \(0.5 s\) must be below INTERCOM_EVENTS_REDIS_TIMEOUT "
            r"\(0.5 s\)",
        ),
        (
            {"INTERCOM_EVENTS_REDIS_SLOW": 1, "INTERCOM_EVENTS_REDIS_TIMEOUT": 0.2},
            "must be below INTERCOM_EVENTS_REDIS_TIMEOUT",
        ),
    ],
)
def test_bad_values_name_the_key_and_the_rule(
    tmp_path: Path, config: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        make_app(tmp_path, **config)
