from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis.connection
from flask import Flask

from flask_intercom_events import ConfigurationError, IntercomEvents
from flask_intercom_events.extension import state_of

from .apps import make_app

# redis-py's own reading of a URL (untyped there).
parse_url: Callable[[str], dict[str, Any]] = redis.connection.parse_url


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"INTERCOM_ACCESS_TOKEN": None, "INTERCOM_EVENTS_DELIVERY": "rq"},
            "INTERCOM_ACCESS_TOKEN is not set, and INTERCOM_EVENTS_DELIVERY is 'rq'",
        ),
        (
            {"INTERCOM_ACCESS_TOKEN": None, "INTERCOM_EVENTS_DELIVERY": "eager"},
            "INTERCOM_ACCESS_TOKEN is not set",
        ),
        ({"INTERCOM_ACCESS_TOKEN": "  "}, "INTERCOM_ACCESS_TOKEN (access_token) is empty"),
        ({"INTERCOM_EVENTS_DELIVERY": "celery"}, "INTERCOM_EVENTS_DELIVERY is 'celery'"),
        ({"INTERCOM_API_BASE_URL": "api.intercom.io"}, "INTERCOM_API_BASE_URL"),
        (
            {"INTERCOM_API_BASE_URL": "http://api.intercom.io"},
            "INTERCOM_API_BASE_URL (base_url) 'http://api.intercom.io' uses plain http://",
        ),
        ({"INTERCOM_EVENTS_REDIS_URL": "localhost:6379"}, "INTERCOM_EVENTS_REDIS_URL must be"),
        (
            {"INTERCOM_EVENTS_REDIS_TIMEOUT": 0},
            "INTERCOM_EVENTS_REDIS_TIMEOUT must be a number of seconds more than 0 and at most 60",
        ),
        (
            {"INTERCOM_EVENTS_RATE_LIMIT": "lots"},
            "INTERCOM_EVENTS_RATE_LIMIT must be a whole number of calls a minute from 1 to "
            "1,000,000,000, got 'lots'",
        ),
        ({"INTERCOM_EVENTS_STRICT": "maybe"}, "INTERCOM_EVENTS_STRICT must be true or false"),
        ({"INTERCOM_EVENTS_QUEUE": ""}, "INTERCOM_EVENTS_QUEUE must be a non-empty string"),
        ({"INTERCOM_API_TIMEOUT": 600}, "INTERCOM_API_TIMEOUT must be seconds"),
        ({"INTERCOM_API_TIMEOUT": (1, 2, 3)}, "INTERCOM_API_TIMEOUT must be seconds"),
        ({"INTERCOM_API_TIMEOUT": "soon"}, "INTERCOM_API_TIMEOUT must be seconds"),
        ({"INTERCOM_API_VERSION": "2.17"}, "INTERCOM_API_VERSION (api_version) must be an"),
        ({"INTERCOM_EVENTS_SPOOL_DIR": ["a"]}, "INTERCOM_EVENTS_SPOOL_DIR must be a directory"),
    ],
)
def test_bad_configuration_names_the_key(
    tmp_path: Path, config: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        make_app(tmp_path, **config)
    assert message in str(info.value)


def test_redis_url_password_is_not_echoed(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as info:
        make_app(tmp_path, INTERCOM_EVENTS_REDIS_URL="http://:s3cret@redis.example")
    assert "s3cret" not in str(info.value)


# Each holds a password: no message may show it. The last column: what redis-py's from_url
# does with it, later, in the request path or the worker (a raw ValueError, or a silent
# misreading).
REFUSED_REDIS_URLS = [
    ("redis://:s3cret@localhost:99999/0", "port that is not a number from 1 to 65535", "raises"),
    ("redis://:s3cret@h:port/0", "port that is not a number from 1 to 65535", "raises"),
    ("redis://:s3cret@h:0/0", "port that is not a number from 1 to 65535", "port 6379"),
    ("redis://:s3cret@[::1/0", "port that is not a number from 1 to 65535", "raises"),
    ("redis://:s3cret@h:6379/abc", "database that is not a whole number", "db 0"),
    ("redis://:s3cret@h:6379/-1", "database that is not a whole number", "db -1"),
    ("redis://:s3cret@h:6379/0?db=one", "db= that is not a whole number", "raises"),
    (
        "redis://:s3cret@h:6379/0?socket_timeout=soon",
        "socket_timeout= that is not a number",
        "raises",
    ),
    ("rediss://:s3cret@h/0?max_connections=lots", "max_connections= that is not a whole", "raises"),
    ("unix://:s3cret@", "needs the socket's path", "no path"),
    ("REDIS://:s3cret@h:6379/0", "must be a redis://, rediss:// or unix:// URL", "raises"),
]


@pytest.mark.parametrize(("url", "message", "redis_py"), REFUSED_REDIS_URLS)
def test_a_redis_url_redis_py_would_refuse_or_misread_is_refused(
    tmp_path: Path, url: str, message: str, redis_py: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        make_app(tmp_path, INTERCOM_EVENTS_DELIVERY="rq", INTERCOM_EVENTS_REDIS_URL=url)
    assert "INTERCOM_EVENTS_REDIS_URL" in str(info.value)
    assert message in str(info.value)
    assert "s3cret" not in str(info.value)
    try:
        kwargs = parse_url(url)
    except ValueError:
        assert redis_py == "raises"
        return
    read = {"port 6379": ("port", None), "db 0": ("db", None), "db -1": ("db", -1)}
    if redis_py == "no path":
        assert "path" not in kwargs
    else:
        name, value = read[redis_py]
        assert kwargs.get(name) == value


ACCEPTED_REDIS_URLS = [
    ("redis://localhost:6379/0", 0),
    ("redis://localhost", 0),
    ("redis://h:/", 0),
    ("rediss://user:p%40ss@redis.example:6380/2", 2),
    ("redis://:pw@[::1]:6379/3", 3),
    ("redis://h/0?db=5&socket_timeout=0.5&health_check_interval=10", 5),
    ("unix:///run/redis/redis.sock?db=1", 1),
]


@pytest.mark.parametrize(("url", "db"), ACCEPTED_REDIS_URLS)
def test_a_redis_url_redis_py_reads_is_accepted(tmp_path: Path, url: str, db: int) -> None:
    app = make_app(tmp_path, INTERCOM_EVENTS_REDIS_URL=url)
    assert state_of(app).settings.redis_url == url
    assert parse_url(url).get("db", 0) == db
    assert "pw" not in repr(state_of(app).settings)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080", "http://localhost:1234/", "http://[::1]:9"]
)
def test_plain_http_is_allowed_on_loopback(tmp_path: Path, url: str) -> None:
    app = make_app(tmp_path, INTERCOM_API_BASE_URL=url)
    assert state_of(app).settings.api_base_url == url.rstrip("/")


def test_defaults(tmp_path: Path) -> None:
    app = Flask(__name__, instance_path=str(tmp_path))
    app.config["INTERCOM_ACCESS_TOKEN"] = "tok"
    IntercomEvents(app)
    settings = state_of(app).settings
    assert settings.delivery == "rq"
    assert settings.strict is False
    assert settings.api_base_url == "https://api.intercom.io"
    assert settings.api_version == "2.11"
    assert settings.queue == "intercom-events"
    assert settings.redis_url == "redis://localhost:6379/0"
    assert settings.rate_limit == 10_000
    assert settings.spool_dir == str(tmp_path / "intercom-events-spool")


def test_testing_app_defaults_to_disabled_and_strict(tmp_path: Path) -> None:
    app = Flask(__name__, instance_path=str(tmp_path))
    app.testing = True
    IntercomEvents(app)  # no token needed: nothing is sent
    settings = state_of(app).settings
    assert (settings.delivery, settings.strict) == ("disabled", True)


def test_debug_app_is_strict(tmp_path: Path) -> None:
    app = Flask(__name__, instance_path=str(tmp_path))
    app.debug = True
    app.config.update(INTERCOM_ACCESS_TOKEN="tok", INTERCOM_EVENTS_DELIVERY="disabled")
    IntercomEvents(app)
    assert state_of(app).settings.strict is True


def test_strict_accepts_env_strings(tmp_path: Path) -> None:
    app = make_app(tmp_path, INTERCOM_EVENTS_STRICT="false")
    assert state_of(app).settings.strict is False


def test_token_never_in_repr(tmp_path: Path) -> None:
    app = make_app(tmp_path, INTERCOM_ACCESS_TOKEN="tok-very-secret")
    state = state_of(app)
    assert "tok-very-secret" not in repr(state.settings)
    assert "tok-very-secret" not in repr(state)
    assert "tok-very-secret" not in repr(state.extension)


def test_second_init_app_is_refused_and_says_why(tmp_path: Path) -> None:
    intercom = IntercomEvents()
    app = make_app(tmp_path, intercom)
    with pytest.raises(ConfigurationError, match="already initialised on this app"):
        intercom.init_app(app)
    with pytest.raises(ConfigurationError, match="call init_app once per app"):
        IntercomEvents(app)


def test_one_extension_serves_two_apps_with_their_own_settings(tmp_path: Path) -> None:
    intercom = IntercomEvents()
    first = make_app(tmp_path / "a", intercom, INTERCOM_EVENTS_QUEUE="first")
    second = make_app(tmp_path / "b", intercom, INTERCOM_EVENTS_QUEUE="second")
    assert state_of(first).settings.queue == "first"
    assert state_of(second).settings.queue == "second"
    assert state_of(first).extension is state_of(second).extension is intercom
    assert not any(isinstance(v, Flask) for v in vars(intercom).values())


def test_using_the_extension_without_init_app_is_a_clear_error(tmp_path: Path) -> None:
    app = Flask(__name__, instance_path=str(tmp_path))
    intercom = IntercomEvents()
    with (
        app.app_context(),
        pytest.raises(ConfigurationError, match=r"call intercom.init_app\(app\)"),
    ):
        intercom.track("signed-up", user_id="1")


def test_track_outside_an_app_context_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="needs an application context"):
        IntercomEvents().track("signed-up", user_id="1")


def test_intercom_commands_are_registered(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    result = app.test_cli_runner().invoke(args=["intercom", "--help"])
    assert result.exit_code == 0
    assert "flush-spool" in result.output
