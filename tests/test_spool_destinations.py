"""A spool file belongs to one destination (Redis server, database, user and queue): two apps
sharing a spool directory (two tenants of one app factory, staging and production of one
checkout) never drain each other's events into the wrong Redis. Files of the old naming
(``spool-<host>-<pid>.jsonl``, from an earlier version) are still drained by any app."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import Result
from flask import Flask

from flask_intercom_events import Identity, IntercomEvents, track_event
from flask_intercom_events.extension import state_of
from flask_intercom_events.intake import intake_key
from flask_intercom_events.lines import decode_line, encode_line
from flask_intercom_events.spool import DEFAULT_DESTINATION, Spool, destination_of

from .apps import make_app
from .redis_server import RedisServer
from .test_handoff import wait_until


def tenant_app(tmp_path: Path, redis_url: str, tenant: str, **config: Any) -> Flask:
    """One tenant of the app factory: its instance folder (and so its default spool
    directory) is the same for every tenant, its Redis is its own."""
    intercom = IntercomEvents()

    @intercom.identity_loader
    def who() -> Identity:
        return Identity(user_id=f"{tenant}-user")

    app = make_app(
        tmp_path,
        intercom,
        INTERCOM_EVENTS_DELIVERY="rq",
        INTERCOM_EVENTS_REDIS_URL=redis_url,
        # Up, Redis answers within 2 s; stopped, it refuses at once.
        INTERCOM_EVENTS_REDIS_TIMEOUT=2.0,
        INTERCOM_EVENTS_REDIS_SLOW=1.0,
        **config,
    )

    @app.post("/signup/<int:n>")
    @track_event("signed-up", metadata=lambda n: {"tenant": tenant, "n": n})
    def signup(n: int) -> str:
        return "ok"

    return app


@pytest.fixture
def apps() -> Iterator[list[Flask]]:
    """Apps to close after the test (their intakes' threads and connections)."""
    made: list[Flask] = []
    yield made
    for app in made:
        intake = state_of(app).intake
        if intake is not None:
            intake.close()


def serve(app: Flask, *numbers: int) -> None:
    client = app.test_client()
    for n in numbers:
        with client.post(f"/signup/{n}") as response:
            assert response.status_code == 200


def in_redis(url: str, queue: str = "intercom-events") -> list[tuple[str, int]]:
    """``(tenant, n)`` of every event in ``url``'s intake of ``queue``."""
    client = redis.Redis.from_url(url)
    try:
        payloads = [decode_line(line)[1] for line in client.lrange(intake_key(queue), 0, -1)]
    finally:
        client.close()
    return sorted((p["metadata"]["tenant"], p["metadata"]["n"]) for p in payloads)


def cli(app: Flask, *args: str) -> Result:
    return app.test_cli_runner().invoke(args=["intercom", *args])


def status(app: Flask) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(cli(app, "status", "--json").output)
    return document


def spool_dir(app: Flask) -> Path:
    return Path(state_of(app).settings.spool_dir)


def line(tenant: str, n: int) -> bytes:
    payload = {
        "event_name": "signed-up",
        "created_at": 1_700_000_000 + n,
        "user_id": f"{tenant}-user",
        "metadata": {"tenant": tenant, "n": n},
    }
    return encode_line(f"{tenant}-{n}", payload)


def test_a_tenant_drains_only_its_own_spool_and_the_other_gets_its_events_later(
    tmp_path: Path, redis_url: str, own_redis: RedisServer, apps: list[Flask]
) -> None:
    # The tester's scenario: tenant B's Redis is down, B spools 2 events; tenant A, whose
    # Redis is up, then serves requests and drains the shared spool directory.
    own_redis.stop()
    b = tenant_app(tmp_path, own_redis.url, "b")
    a = tenant_app(tmp_path, redis_url, "a")
    apps.extend([a, b])
    assert spool_dir(a) == spool_dir(b)
    serve(b, 0, 1)
    assert state_of(b).intake.spool.count() == 2  # type: ignore[union-attr]
    serve(a, 0, 1, 2)
    flushed = cli(a, "flush-spool")  # what A's intake does in the background, now
    assert flushed.exit_code == 0, flushed.output
    assert in_redis(redis_url) == [("a", 0), ("a", 1), ("a", 2)], "only A's events in A's Redis"
    assert "2 event(s) spooled for other destinations" in flushed.output
    assert state_of(b).intake.spool.count() == 2  # type: ignore[union-attr]

    # B's Redis comes back: B's own recovery moves B's events into B's Redis.
    own_redis.start()
    wait_until(lambda: in_redis(own_redis.url) == [("b", 0), ("b", 1)], "B's events in B's Redis")
    wait_until(lambda: not list(spool_dir(a).glob("*.jsonl")), "the spool directory empty")
    assert in_redis(redis_url) == [("a", 0), ("a", 1), ("a", 2)]


@pytest.mark.parametrize(
    ("b_database", "b_queue"),
    [pytest.param("1", "intercom-events", id="another-db"), pytest.param("0", "b", id="queue")],
)
def test_status_and_flush_spool_count_this_destination_and_name_the_others(
    tmp_path: Path, redis_url: str, apps: list[Flask], b_database: str, b_queue: str
) -> None:
    server = redis_url.rsplit("/", 1)[0]
    a = tenant_app(tmp_path, f"{server}/0", "a")
    b = tenant_app(tmp_path, f"{server}/{b_database}", "b", INTERCOM_EVENTS_QUEUE=b_queue)
    apps.extend([a, b])
    cleanup = redis.Redis.from_url(f"{server}/1")
    cleanup.flushdb()  # the session's Redis is emptied (FLUSHALL) before each test anyway
    cleanup.close()
    state_of(b).intake.spool.append([line("b", 0), line("b", 1)])  # type: ignore[union-attr]
    state_of(a).intake.spool.append([line("a", 0)])  # type: ignore[union-attr]

    a_status, b_status = status(a), status(b)
    assert (a_status["spooled"], a_status["spooled_other_destinations"]) == (1, 2)
    assert (b_status["spooled"], b_status["spooled_other_destinations"]) == (2, 1)
    text = cli(a, "status").output
    assert "2 more for other destinations" in text

    flushed = cli(a, "flush-spool")
    assert flushed.exit_code == 0, flushed.output
    assert "Moved 1 of 1 spooled event(s) into Redis; 0 left." in flushed.output
    assert "2 event(s) spooled for other destinations" in flushed.output
    assert "left for their own app" in flushed.output
    assert in_redis(f"{server}/0") == [("a", 0)]
    assert status(a)["spooled_other_destinations"] == 2

    flushed = cli(b, "flush-spool")
    assert "Moved 2 of 2 spooled event(s) into Redis; 0 left." in flushed.output
    assert "other destinations" not in flushed.output
    assert in_redis(f"{server}/{b_database}", b_queue) == [("b", 0), ("b", 1)]
    assert in_redis(f"{server}/0") == [("a", 0)]
    assert (status(a)["spooled"], status(a)["spooled_other_destinations"]) == (0, 0)


def test_a_file_of_the_old_naming_is_drained_by_any_app(
    tmp_path: Path, redis_url: str, own_redis: RedisServer, apps: list[Flask]
) -> None:
    a = tenant_app(tmp_path, redis_url, "a")
    b = tenant_app(tmp_path, own_redis.url, "b")
    apps.extend([a, b])
    # What an earlier version wrote (spool-<host>-<pid>.jsonl; a host name may hold dashes).
    old = spool_dir(a) / "spool-web-1.example-4242.jsonl"
    old.write_bytes(line("old", 0) + b"\n" + line("old", 1) + b"\n")
    for app in (a, b):  # either app may drain it: it is counted as its own by both
        assert (status(app)["spooled"], status(app)["spooled_other_destinations"]) == (2, 0)
    flushed = cli(a, "flush-spool")
    assert "Moved 2 of 2 spooled event(s) into Redis; 0 left." in flushed.output
    assert in_redis(redis_url) == [("old", 0), ("old", 1)]
    assert not old.exists()


def test_the_destination_is_the_server_database_user_and_queue_never_the_password() -> None:
    base = destination_of("redis://cache.internal:6379/0", "intercom-events")
    # The same destination, written otherwise (redis-py's defaults, case, options, password).
    for same in (
        "redis://CACHE.internal/0",
        "redis://cache.internal:6379",
        "redis://cache.internal:6379/?db=0",
        "redis://:old-password@cache.internal:6379/0",
        "redis://:new-password@cache.internal:6379/0?socket_timeout=2",
        "rediss://cache.internal:6379/0?ssl_cert_reqs=none",
    ):
        assert destination_of(same, "intercom-events") == base, same
    # Another server, port, database, user, socket or queue: another destination.
    others = [
        destination_of(url, queue)
        for url, queue in (
            ("redis://other.internal:6379/0", "intercom-events"),
            ("redis://cache.internal:6380/0", "intercom-events"),
            ("redis://cache.internal:6379/1", "intercom-events"),
            ("redis://cache.internal:6379?db=2", "intercom-events"),
            ("redis://tenant-b@cache.internal:6379/0", "intercom-events"),
            ("unix:///run/redis/a.sock", "intercom-events"),
            ("unix:///run/redis/b.sock", "intercom-events"),
            ("unix:///run/redis/a.sock?db=1", "intercom-events"),
            ("redis://cache.internal:6379/0", "tenant-b"),
        )
    ]
    assert len({base, *others}) == len(others) + 1
    assert destination_of("redis://localhost:6379/0", "intercom-events") == DEFAULT_DESTINATION
    assert all(len(d) == 16 and int(d, 16) >= 0 for d in [base, *others])


def test_spool_files_name_their_destination_and_never_hold_the_password(
    tmp_path: Path, apps: list[Flask]
) -> None:
    # Nothing listens on port 1: the app spools at once.
    app = tenant_app(tmp_path, "redis://tenant-a:hunter2-secret@127.0.0.1:1/3", "a")
    apps.append(app)
    serve(app, 0)
    [path] = spool_dir(app).glob("*.jsonl")
    digest = destination_of("redis://tenant-a@127.0.0.1:1/3", "intercom-events")
    assert path.name.startswith(f"spool@{digest}-")
    for text in (path.name, path.read_text()):
        assert "hunter2" not in text
        assert "tenant-a:" not in text
        assert "127.0.0.1:1" not in text
    spool = state_of(app).intake.spool  # type: ignore[union-attr]
    assert repr(spool).endswith(f"destination={digest!r})")


def test_two_destinations_in_one_process_write_two_files(tmp_path: Path) -> None:
    first = Spool.for_redis(tmp_path, "redis://127.0.0.1:1/0", "intercom-events")
    second = Spool.for_redis(tmp_path, "redis://127.0.0.1:1/1", "intercom-events")
    first.append([line("a", 0)])
    second.append([line("b", 0), line("b", 1)])
    assert len(list(tmp_path.glob("*.jsonl"))) == 2
    assert (first.count(), first.count_others()) == (1, 2)
    assert (second.count(), second.count_others()) == (2, 1)
    pushed: list[str] = []
    assert first.drain(pushed.extend) == 1
    assert [decode_line(each)[0] for each in pushed] == ["a-0"]
    assert (first.count(), first.count_others()) == (0, 2)


def test_a_spool_of_a_directory_alone_is_the_default_apps(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    assert spool.destination == DEFAULT_DESTINATION
    assert spool.for_destination(DEFAULT_DESTINATION) is spool
    spool.append([line("x", 0)])
    [path] = tmp_path.glob("*.jsonl")
    assert path.name.startswith(f"spool@{DEFAULT_DESTINATION}-")
    with pytest.raises(ValueError, match="destination_of"):
        Spool(tmp_path, "../../etc/passwd")
