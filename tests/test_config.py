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
    ("redis://:s3cret@h:6379/0?db=one", "db= that is not a database number", "raises"),
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
    ("redis://h/2147483646", 2147483646),  # the last index a server may have
    ("redis://h/0?socket_timeout=60&socket_connect_timeout=0.001&health_check_interval=0", 0),
    ("redis://h/0?socket_keepalive=false&retry_on_timeout=YES&protocol=3&client_name=web-1", 0),
    ("redis://h/0?socket_read_size=1048576&max_connections=64", 0),
    ("rediss://:pw@h:6380/0?ssl_cert_reqs=none&ssl_check_hostname=0", 0),
    ("rediss://h/0?ssl_ca_certs=/etc/ssl/ca.pem&ssl_min_version=771", 0),
    ("unix:///run/redis/redis.sock?socket_timeout=2&db=3", 3),
    ("redis://user:p%C3%A9ss@h/0", 0),  # a UTF-8 %-escape
]


# Each passes the checks above, and each would fail only later: at the first command of the
# request path (every event spooled, for good), of the worker or of `flask intercom status`
# (a raw ValueError, OverflowError, TypeError, MemoryError, a ConnectionError that reads as
# "Redis is down"), or be misread by redis-py (off is true, a list of letters). Each holds
# a password, which no message may show.
URLS_THAT_WOULD_FAIL_LATER = [
    (
        "socket_timeout=-1",
        "has a socket_timeout= that is not a number of seconds more than 0 and at most 60",
    ),
    ("socket_timeout=0", "socket_timeout= that is not a number of seconds more than 0"),
    ("socket_timeout=61", "socket_timeout= that is not a number of seconds more than 0"),
    ("socket_timeout=1e308", "socket_timeout= that is not a number of seconds more than 0"),
    ("socket_timeout=inf", "socket_timeout= that is not a number of seconds more than 0"),
    ("socket_timeout=nan", "socket_timeout= that is not a number of seconds more than 0"),
    ("socket_connect_timeout=0", "socket_connect_timeout= that is not a number of seconds more"),
    ("socket_connect_timeout=-1", "socket_connect_timeout= that is not a number of seconds more"),
    ("health_check_interval=-1", "health_check_interval= that is not a whole number of seconds"),
    (f"health_check_interval={10**400}", "health_check_interval= that is not a whole number of"),
    ("health_check_interval=86401", "health_check_interval= that is not a whole number of seconds"),
    ("socket_read_size=0", "socket_read_size= that is not a whole number of bytes from 1 to"),
    ("socket_read_size=99999999999", "socket_read_size= that is not a whole number of bytes"),
    ("max_connections=-1", "max_connections= that is not a whole number"),
    ("protocol=9", "protocol= that is not 2 or 3"),
    ("protocol=1", "protocol= that is not 2 or 3"),
    ("socket_keepalive=off", "socket_keepalive= that is not true or false"),
    ("retry_on_timeout=maybe", "retry_on_timeout= that is not true or false"),
    ("client_name=web%201", "client_name= that is not printable ASCII without spaces"),
    ("db=2147483647", "database number from 0 to 2,147,483,646"),
    ("db=99999999999", "database number from 0 to 2,147,483,646"),
    ("db=1&db=2", "has db= twice"),
    ("socket_timeout=1&socket_timeout=-1", "has socket_timeout= twice"),
    ("timeout=1", "timeout=, which redis-py reads only for a BlockingConnectionPool"),
    ("retry_on_error=ConnectionError", "retry_on_error=, which cannot be given in the URL"),
    ("decode_responses=1", "decode_responses=, which cannot be given in the URL"),
    ("encoding=latin-1", "encoding=, which cannot be given in the URL"),
    ("ssl_cert_reqs=none", "ssl_cert_reqs=, which only applies to rediss:// URLs"),
    ("ssl_check_hostname=false", "ssl_check_hostname=, which only applies to rediss://"),
    ("foo=bar", "has a query argument redis-py would pass to its connection"),
    ("s3cret=x", "has a query argument redis-py would pass to its connection"),
]
URLS_THAT_WOULD_FAIL_LATER_OTHERWISE = [
    ("redis://:s3cret@h:6379/2147483647", "database number from 0 to 2,147,483,646"),
    ("redis://:s3cret@h:6379/99999999999", "database number from 0 to 2,147,483,646"),
    (
        "rediss://:s3cret@h/0?ssl_cert_reqs=bogus",
        "ssl_cert_reqs= that is not none, optional or required",
    ),
    ("rediss://:s3cret@h/0?ssl_min_version=99", "ssl_min_version= that is not a TLS version"),
    (
        "rediss://:s3cret@h/0?ssl_include_verify_flags=x",
        "ssl_include_verify_flags= that is not a comma-separated",
    ),
    (
        "unix://:s3cret@/run/redis.sock?socket_keepalive=1",
        "socket_keepalive=, which only applies to redis:// and rediss:// URLs",
    ),
    ("redis://:s3cr%E9t@h/0", "a %-escape that is not UTF-8"),
]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (f"redis://:s3cret@h:6379/0?{query}", message)
        for query, message in URLS_THAT_WOULD_FAIL_LATER
    ]
    + URLS_THAT_WOULD_FAIL_LATER_OTHERWISE,
)
def test_a_redis_url_that_would_fail_later_is_refused_at_init_app(
    tmp_path: Path, url: str, message: str
) -> None:
    for delivery in ("rq", "eager", "disabled"):  # the worker and status read it too
        with pytest.raises(ConfigurationError) as info:
            make_app(tmp_path, INTERCOM_EVENTS_DELIVERY=delivery, INTERCOM_EVENTS_REDIS_URL=url)
        assert str(info.value).startswith("INTERCOM_EVENTS_REDIS_URL ")
        assert message in str(info.value)
        assert "s3cr" not in str(info.value)


def test_an_argument_an_older_redis_py_passes_on_as_text_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # redis-py 5.0 reads no socket_read_size= (it would reach recv() as the text "65536").
    monkeypatch.delitem(redis.connection.URL_QUERY_ARGUMENT_PARSERS, "socket_read_size")
    with pytest.raises(ConfigurationError) as info:
        make_app(tmp_path, INTERCOM_EVENTS_REDIS_URL="redis://h/0?socket_read_size=65536")
    assert "has a socket_read_size=, which this redis-py (" in str(info.value)
    assert "passes on as text" in str(info.value)


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


def test_a_relative_spool_dir_is_taken_from_the_instance_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not from the working directory: the web server and `flask intercom flush-spool`,
    started from different directories, spooled and looked in two places."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    app = make_app(tmp_path, INTERCOM_EVENTS_SPOOL_DIR="spool")
    assert state_of(app).settings.spool_dir == str(tmp_path / "instance" / "spool")
    absolute = make_app(tmp_path / "b", INTERCOM_EVENTS_SPOOL_DIR=str(tmp_path / "abs"))
    assert state_of(absolute).settings.spool_dir == str(tmp_path / "abs")
