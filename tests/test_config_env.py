"""Configuration from the environment: ``app.config.from_prefixed_env()`` reads each
``FLASK_...`` variable as JSON when it can (``2.11`` is a float, ``1`` an int, ``[1, 2]`` a
list), else as a string; every key takes those values as meant. Also the API versions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_intercom_events import ConfigurationError, IntercomEvents
from flask_intercom_events.config import KNOWN_API_VERSIONS
from flask_intercom_events.extension import state_of

from .apps import make_app


def from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **variables: str) -> Flask:
    """An app configured the README's way: ``from_prefixed_env()`` over ``FLASK_...``."""
    variables.setdefault("INTERCOM_EVENTS_DELIVERY", "disabled")
    for name, value in variables.items():
        monkeypatch.setenv(f"FLASK_{name}", value)
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.from_prefixed_env()
    IntercomEvents(app)
    return app


def test_every_key_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = from_environment(
        tmp_path,
        monkeypatch,
        INTERCOM_ACCESS_TOKEN="dG9rOmFiYw==",  # not JSON: stays a string
        INTERCOM_API_BASE_URL="https://api.eu.intercom.io",
        INTERCOM_API_VERSION="2.11",  # the float 2.11
        INTERCOM_API_TIMEOUT="[2, 5]",  # a list
        INTERCOM_EVENTS_DELIVERY="disabled",
        INTERCOM_EVENTS_REDIS_URL="redis://redis.internal:6380/2",
        INTERCOM_EVENTS_REDIS_TIMEOUT="1",  # an int
        INTERCOM_EVENTS_QUEUE="2024",  # an int, meant as a name
        INTERCOM_EVENTS_STRICT="1",  # the int 1
        INTERCOM_EVENTS_RATE_LIMIT="1e4",  # the float 10000.0
        INTERCOM_EVENTS_SPOOL_DIR=str(tmp_path / "spool"),
        INTERCOM_EVENTS_RATE_WINDOW="10",
        INTERCOM_EVENTS_WORKER_CONCURRENCY="64",
        INTERCOM_EVENTS_MAX_ATTEMPTS="5",
        INTERCOM_EVENTS_MAX_RETRY_TIME="3600.5",
        INTERCOM_EVENTS_RETRY_DELAY="0.5",
        INTERCOM_EVENTS_RETRY_MAX_DELAY="60",
        INTERCOM_EVENTS_NOT_FOUND_RETRIES="60",  # one number: one retry
        INTERCOM_EVENTS_WORKER_TTL="45",
        INTERCOM_EVENTS_FAILURE_TTL="86400",
        INTERCOM_EVENTS_SAME_SECOND="collapse",
        INTERCOM_EVENTS_MAX_SPREAD="0",
        INTERCOM_EVENTS_DISCARD_ON_ERROR="false",  # the bool False
        INTERCOM_EVENTS_CREATE_CONTACTS="true",
        INTERCOM_EVENTS_METRICS_PORT="9100",
        INTERCOM_EVENTS_REDIS_SLOW="0.2",
    )
    settings = state_of(app).settings
    assert settings.access_token == "dG9rOmFiYw=="
    assert settings.api_base_url == "https://api.eu.intercom.io"
    assert settings.api_version == "2.11"
    assert settings.api_timeout == (2.0, 5.0)
    assert settings.redis_url == "redis://redis.internal:6380/2"
    assert settings.redis_timeout == 1.0
    assert settings.queue == "2024"
    assert settings.strict is True
    assert settings.rate_limit == 10_000
    assert isinstance(settings.rate_limit, int)
    assert settings.spool_dir == str(tmp_path / "spool")
    assert (settings.rate_window, settings.worker_concurrency, settings.max_attempts) == (
        10.0,
        64,
        5,
    )
    assert (settings.max_retry_time, settings.retry_delay, settings.retry_max_delay) == (
        3600.5,
        0.5,
        60.0,
    )
    assert settings.not_found_retries == (60.0,)
    assert (settings.worker_ttl, settings.failure_ttl) == (45.0, 86400)
    assert (settings.same_second, settings.max_spread) == ("collapse", 0)
    assert (settings.discard_on_error, settings.create_contacts) == (False, True)
    assert (settings.metrics_port, settings.redis_slow) == (9100, 0.2)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        *[("2.11", "2.11"), ("2.16", "2.16"), ("1.0", "1.0"), ("2.0", "2.0"), ("2.9", "2.9")],
        *[('"2.10"', "2.10"), ('"2.1"', "2.1"), ("Preview", "Preview"), ("Unstable", "Unstable")],
    ],
)
def test_api_version_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, raw: str, expected: str
) -> None:
    app = from_environment(tmp_path, monkeypatch, INTERCOM_API_VERSION=raw)
    assert state_of(app).settings.api_version == expected


def test_a_version_the_float_cannot_tell_is_refused_with_how_to_quote_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "2.10" arrives as the float 2.1: Intercom's 2.1 or 2.10? Only the user knows.
    with pytest.raises(ConfigurationError) as info:
        from_environment(tmp_path, monkeypatch, INTERCOM_API_VERSION="2.10")
    assert str(info.value) == (
        "INTERCOM_API_VERSION is the number 2.1, which could be '2.1' or '2.10': give the "
        "version as a string; from the environment with app.config.from_prefixed_env(), quote "
        """it as JSON, e.g. FLASK_INTERCOM_API_VERSION='"2.10"'"""
    )


@pytest.mark.parametrize("value", [2.17, 2, 3.0, 2.110001, True])
def test_a_number_that_is_no_known_version_is_refused(tmp_path: Path, value: Any) -> None:
    with pytest.raises(ConfigurationError, match="INTERCOM_API_VERSION"):
        make_app(tmp_path, INTERCOM_API_VERSION=value)


def test_known_api_versions() -> None:
    expected = ("1.0", "1.1", "1.2", "1.3", "1.4", *(f"2.{n}" for n in range(17)))
    assert (*expected, "Unstable", "Preview") == KNOWN_API_VERSIONS


@pytest.mark.parametrize("version", ["2.17", "3.0", "2.11.0", "preview", "latest", ""])
def test_unknown_versions_are_refused(tmp_path: Path, version: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        make_app(tmp_path, INTERCOM_API_VERSION=version)
    assert "1.0 to 1.4, 2.0 to 2.16, 'Unstable' or 'Preview'" in str(info.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        *[(True, True), (False, False), (1, True), (0, False), ("yes", True), (" OFF ", False)],
        *[("1", True), ("false", False), (None, True)],  # None: the default (an app in testing)
    ],
)
def test_flags(tmp_path: Path, value: Any, expected: bool) -> None:
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.testing = True
    app.config["INTERCOM_EVENTS_STRICT"] = value
    IntercomEvents(app)
    assert state_of(app).settings.strict is expected


@pytest.mark.parametrize("value", [2, -1, 1.0, "maybe", [], {}])
@pytest.mark.parametrize(
    "key",
    [
        "INTERCOM_EVENTS_STRICT",
        "INTERCOM_EVENTS_DISCARD_ON_ERROR",
        "INTERCOM_EVENTS_CREATE_CONTACTS",
    ],
)
def test_flags_refused(tmp_path: Path, key: str, value: Any) -> None:
    with pytest.raises(ConfigurationError, match=f"{key} must be true or false"):
        make_app(tmp_path, **{key: value})


@pytest.mark.parametrize("raw", ["12345", "1e5", "3.5"])
def test_a_token_read_as_a_number_is_refused_without_showing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        from_environment(tmp_path, monkeypatch, INTERCOM_ACCESS_TOKEN=raw)
    assert "quote it as a JSON string" in str(info.value)
    assert raw not in str(info.value)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("INTERCOM_API_BASE_URL", 8080),
        ("INTERCOM_EVENTS_DELIVERY", 1),
        ("INTERCOM_EVENTS_REDIS_URL", 6379),
        ("INTERCOM_EVENTS_SAME_SECOND", True),
        ("INTERCOM_EVENTS_QUEUE", True),
        ("INTERCOM_EVENTS_QUEUE", ["a"]),
        ("INTERCOM_EVENTS_RATE_LIMIT", [10]),
        ("INTERCOM_EVENTS_RATE_LIMIT", True),
        ("INTERCOM_EVENTS_WORKER_TTL", {"s": 1}),
        ("INTERCOM_EVENTS_NOT_FOUND_RETRIES", True),
        ("INTERCOM_EVENTS_NOT_FOUND_RETRIES", [60, True]),
        ("INTERCOM_EVENTS_NOT_FOUND_RETRIES", {"a": 1}),
        ("INTERCOM_API_TIMEOUT", True),
        ("INTERCOM_API_TIMEOUT", [1, "2"]),
        ("INTERCOM_EVENTS_METRICS_PORT", True),
        ("INTERCOM_EVENTS_METRICS_PORT", "http"),
    ],
)
def test_values_of_the_wrong_type_are_refused_naming_the_key(
    tmp_path: Path, key: str, value: Any
) -> None:
    with pytest.raises(ConfigurationError, match=key):
        make_app(tmp_path, **{key: value})


def test_none_takes_the_default(tmp_path: Path) -> None:
    keys = [
        "INTERCOM_API_BASE_URL",
        "INTERCOM_API_VERSION",
        "INTERCOM_API_TIMEOUT",
        "INTERCOM_EVENTS_QUEUE",
        "INTERCOM_EVENTS_RATE_LIMIT",
        "INTERCOM_EVENTS_NOT_FOUND_RETRIES",
        "INTERCOM_EVENTS_SAME_SECOND",
        "INTERCOM_EVENTS_DISCARD_ON_ERROR",
        "INTERCOM_EVENTS_METRICS_PORT",
    ]
    given = state_of(make_app(tmp_path, **dict.fromkeys(keys))).settings
    assert given == state_of(make_app(tmp_path)).settings


# What os.environ makes of bytes that are not UTF-8 (its surrogateescape): a lone surrogate.
# Such a value passed init_app, then failed every push (UnicodeEncodeError: every event
# spooled for good), the worker and `flask intercom status` (a traceback); a password was even
# printed in the request path's log. The third column: a secret, of which nothing may be shown.
NOT_UTF8 = [
    ("INTERCOM_EVENTS_QUEUE", '"caf\udce9"', False),
    ("INTERCOM_EVENTS_QUEUE", "caf\udce9", False),  # not JSON: as it is
    ("INTERCOM_EVENTS_REDIS_URL", "redis://:p\udce9ss@127.0.0.1:6379/0", True),
    ("INTERCOM_EVENTS_REDIS_URL", "redis://us\udce9r:pass@127.0.0.1:6379/0", True),
    ("INTERCOM_EVENTS_REDIS_URL", "redis://h\udce9st:6379/0", True),
    ("INTERCOM_EVENTS_REDIS_URL", "unix:///run/r\udce9dis.sock", True),
    ("INTERCOM_EVENTS_SPOOL_DIR", "/var/spool/caf\udce9", False),
    ("INTERCOM_API_BASE_URL", "https://api.inte\udce9com.io", False),
    ("INTERCOM_API_BASE_URL", "http://127.0.0.1:8080/caf\udce9", False),
    ("INTERCOM_ACCESS_TOKEN", "dG9r\udce9OmFiYw==", True),
]


@pytest.mark.parametrize(("key", "raw", "secret"), NOT_UTF8)
def test_a_value_with_no_utf8_form_is_refused_at_init_app_naming_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str, raw: str, secret: bool
) -> None:
    for delivery in ("rq", "disabled"):
        variables = {
            "INTERCOM_ACCESS_TOKEN": "test-token",
            "INTERCOM_EVENTS_DELIVERY": delivery,
            "INTERCOM_EVENTS_SPOOL_DIR": str(tmp_path / "spool"),
            key: raw,
        }
        with pytest.raises(ConfigurationError) as info:
            from_environment(tmp_path, monkeypatch, **variables)
        message = str(info.value)
        assert message.startswith(key)
        # A token is printable ASCII, and said so; the other keys say what is wrong.
        says = "non-ASCII" if key == "INTERCOM_ACCESS_TOKEN" else "has no UTF-8 form"
        assert says in message
        message.encode("utf-8")  # the message itself can be logged anywhere
        if secret:
            assert "\\udce9" not in message
            for part in ("pss", "p\\", "us", "h\\", "dis.sock", "dG9r", "OmFi"):
                assert part not in message.replace(key, "")
        else:
            assert "\\udce9" in message  # shown escaped, so it can be found
        assert not (tmp_path / "spool").exists()


@pytest.mark.parametrize("delivery", ["rq", "disabled"])
@pytest.mark.parametrize("spool_dir", ["/tmp/sp\x00ool", "sp\x00ool"])
def test_a_spool_dir_with_a_nul_byte_is_a_configuration_error(
    tmp_path: Path, delivery: str, spool_dir: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        make_app(tmp_path, INTERCOM_EVENTS_DELIVERY=delivery, INTERCOM_EVENTS_SPOOL_DIR=spool_dir)
    assert str(info.value).startswith("INTERCOM_EVENTS_SPOOL_DIR ")
    assert "NUL" in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        "https://api.intercom.io/ events",
        "https://api.intercom.io\x00",
        "https://api.intercom.io/\tv2",
        "https://api.inter\x7fcom.io",
    ],
)
def test_a_base_url_with_a_space_or_control_character_is_refused(tmp_path: Path, url: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        make_app(tmp_path, INTERCOM_API_BASE_URL=url)
    assert "INTERCOM_API_BASE_URL (base_url)" in str(info.value)
    assert "spaces or control characters" in str(info.value)
