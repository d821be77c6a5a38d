"""The hand-off to Redis in ``rq`` delivery: one round trip after the response, spool on outage."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from blinker import Namespace
from flask import Flask

from flask_intercom_events import Event, Identity, IntercomEvents, track_event
from flask_intercom_events.extension import state_of
from flask_intercom_events.intake import Intake, intake_key
from flask_intercom_events.job_records import decode_line
from flask_intercom_events.signals import event_enqueued, event_tracked
from flask_intercom_events.spool import Spool

from .apps import make_app
from .redis_server import RedisServer
from .servers import ScriptedRedis, answer_client_commands

KEY = intake_key("intercom-events")


def build_app(tmp_path: Path, redis_url: str, **config: Any) -> Flask:
    """An app delivering through ``redis_url``. Its Redis timeout is 2 s and its slowness
    bound 1 s: a stall of a loaded machine must not send an event to the spool where Redis
    is up (a stopped Redis refuses connections at once, so outages are seen no later)."""
    config.setdefault("INTERCOM_EVENTS_REDIS_TIMEOUT", 2.0)
    config.setdefault("INTERCOM_EVENTS_REDIS_SLOW", 1.0)
    intercom = IntercomEvents()

    @intercom.identity_loader
    def who() -> Identity:
        return Identity(user_id="u1")

    app = make_app(
        tmp_path,
        intercom,
        INTERCOM_EVENTS_DELIVERY="rq",
        INTERCOM_EVENTS_REDIS_URL=redis_url,
        **config,
    )
    custom = Namespace().signal("custom")
    intercom.track_signal(custom, "sent-custom", metadata=lambda sender, **kw: kw)

    @app.post("/three/<int:n>")
    @track_event("did-one", metadata=lambda n: {"n": n})
    def three(n: int) -> str:
        intercom.track("did-two", metadata={"n": n})
        custom.send(app, n=n)
        return "ok"

    @app.get("/one/<int:n>")
    @track_event("did-one", metadata=lambda n: {"n": n})
    def one(n: int) -> str:
        return "ok"

    return app


def intake(url: str) -> list[dict[str, Any]]:
    client = redis.Redis.from_url(url)
    try:
        return [decode_line(item)[1] for item in client.lrange(KEY, 0, -1)]
    finally:
        client.close()


def rpush_calls(url: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        stats = client.info("commandstats").get("cmdstat_rpush", {})
        return int(stats.get("calls", 0))
    finally:
        client.close()


def rpushes(server: ScriptedRedis) -> int:
    return sum(data.upper().count(b"RPUSH") for conn in server.commands for data in conn)


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_a_requests_events_reach_redis_in_one_rpush_after_the_response(
    tmp_path: Path, redis_url: str
) -> None:
    app = build_app(tmp_path, redis_url)
    calls_before = rpush_calls(redis_url)
    response = app.test_client().post("/three/7")
    assert response.status_code == 200
    # The response exists, but has not been closed (sent) yet: nothing in Redis.
    assert intake(redis_url) == []
    response.close()
    assert rpush_calls(redis_url) - calls_before == 1
    payloads = intake(redis_url)
    assert [p["event_name"] for p in payloads] == ["did-two", "sent-custom", "did-one"]
    assert all(p["user_id"] == "u1" and p["metadata"] == {"n": 7} for p in payloads)
    assert all(Event.from_payload(p).to_payload() == p for p in payloads)


def test_track_outside_a_request_is_handed_off_at_once(tmp_path: Path, redis_url: str) -> None:
    app = build_app(tmp_path, redis_url)
    intercom = state_of(app).extension
    with app.app_context():
        event = intercom.track("ran-report", user_id="99", created_at=1700000000)
    assert event is not None
    assert intake(redis_url) == [
        {"event_name": "ran-report", "created_at": 1700000000, "user_id": "99"}
    ]
    handoff = state_of(app).intake
    assert handoff is not None
    handoff.close()  # its connection, left to the garbage collector, was the one left open


def test_event_enqueued_fires_for_each_event_in_redis(tmp_path: Path, redis_url: str) -> None:
    app = build_app(tmp_path, redis_url)
    enqueued: list[str] = []

    def receiver(sender: Flask, *, event: Event, **kwargs: Any) -> None:
        enqueued.append(event.event_name)

    with event_enqueued.connected_to(receiver, sender=app):
        app.test_client().post("/three/1").close()
    assert sorted(enqueued) == ["did-one", "did-two", "sent-custom"]


@pytest.fixture
def outage_app(tmp_path: Path, own_redis: RedisServer) -> Iterator[Flask]:
    app = build_app(tmp_path, own_redis.url)
    yield app
    state_of(app).intake.close()  # type: ignore[union-attr]


def test_redis_outage_views_succeed_events_spool_then_reach_redis(
    outage_app: Flask, own_redis: RedisServer
) -> None:
    client = outage_app.test_client()
    client.get("/one/0").close()
    own_redis.stop()
    for n in range(1, 21):
        response = client.get(f"/one/{n}")
        assert response.status_code == 200
        response.close()
    spool = state_of(outage_app).intake.spool  # type: ignore[union-attr]
    assert spool.count() == 20
    own_redis.start()
    deadline = time.monotonic() + 20
    while spool.count() and time.monotonic() < deadline:
        time.sleep(0.1)
    numbers = sorted(p["metadata"]["n"] for p in intake(own_redis.url))
    assert numbers == list(range(21)), "every event reaches Redis after the outage"
    assert spool.files() == []


def test_a_hanging_redis_costs_one_timeout_then_the_breaker_spools(tmp_path: Path) -> None:
    # A server that takes the connection, then never answers a command: the worst outage.
    with ScriptedRedis(answer_client_commands(None)) as server:
        # A 1-s timeout: the connection's set-up (answered) fits in it on a loaded machine,
        # so the one timeout is the RPUSH's.
        app = build_app(
            tmp_path, server.url, INTERCOM_EVENTS_REDIS_TIMEOUT=1.0, INTERCOM_EVENTS_REDIS_SLOW=0.5
        )
        try:
            client = app.test_client()
            for n in range(5):
                with client.get(f"/one/{n}") as response:
                    assert response.status_code == 200
            intake_ = state_of(app).intake
            assert intake_ is not None
            assert intake_.down
            assert intake_.spool.count() == 5
            # Only the first request waited for Redis; the breaker sent the rest to the spool.
            # (The background probe sends PINGs, which this server never answers either.)
            wait_until(lambda: rpushes(server) >= 1, "the first request's RPUSH")
            assert rpushes(server) == 1
        finally:
            state_of(app).intake.close()  # type: ignore[union-attr]


def test_flush_spool_command_moves_spooled_events(tmp_path: Path, redis_url: str) -> None:
    app = build_app(tmp_path, redis_url)
    spool = state_of(app).intake.spool  # type: ignore[union-attr]
    lines = [
        json.dumps({"event_name": "e", "created_at": 1700000000 + i, "user_id": "1"}).encode()
        for i in range(3)
    ]
    spool.append(lines)
    result = app.test_cli_runner().invoke(args=["intercom", "flush-spool"])
    assert result.exit_code == 0, result.output
    assert "Moved 3 of 3 spooled event(s) into Redis; 0 left." in result.output
    assert [p["created_at"] for p in intake(redis_url)] == [1700000000, 1700000001, 1700000002]


def test_flush_spool_with_redis_down_keeps_the_events(tmp_path: Path) -> None:
    app = build_app(tmp_path, "redis://127.0.0.1:1/0")
    spool = state_of(app).intake.spool  # type: ignore[union-attr]
    spool.append(
        [json.dumps({"event_name": "e", "created_at": 1700000000, "user_id": "1"}).encode()]
    )
    result = app.test_cli_runner().invoke(args=["intercom", "flush-spool"])
    state_of(app).intake.close()  # type: ignore[union-attr]
    assert result.exit_code == 1
    assert "Redis did not take the spooled events" in result.output
    assert spool.count() == 1


def test_spool_loses_nothing_with_writers_and_drainers_racing(
    tmp_path: Path, redis_url: str
) -> None:
    spool = Spool(tmp_path / "spool")
    client = redis.Redis.from_url(redis_url)
    writers = 4
    per_writer = 200

    def write(w: int) -> None:
        for i in range(per_writer):
            spool.append([json.dumps({"w": w, "i": i}).encode()])

    def push(lines: list[str]) -> None:
        client.rpush("drained", *lines)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    drained = 0
    while any(t.is_alive() for t in threads):
        drained += spool.drain(push, batch_size=7)
    for thread in threads:
        thread.join()
    drained += spool.drain(push)
    items = {(d["w"], d["i"]) for d in map(json.loads, client.lrange("drained", 0, -1))}
    client.close()
    assert drained == writers * per_writer
    assert items == {(w, i) for w in range(writers) for i in range(per_writer)}


def test_torn_spool_line_is_kept_visible_not_dropped(tmp_path: Path, redis_url: str) -> None:
    spool = Spool(tmp_path / "spool")
    spool.append([json.dumps({"ok": 1}).encode()])
    with spool.files()[0].open("a") as handle:
        handle.write('{"torn": ')
    client = redis.Redis.from_url(redis_url)
    assert spool.drain(lambda lines: client.rpush("drained", *lines)) == 1
    client.close()
    rejected = list((tmp_path / "spool").glob("rejected-*.txt"))
    assert [p.read_text() for p in rejected] == ['{"torn": \n']


def test_flapping_redis_under_concurrent_pushes_loses_nothing(
    tmp_path: Path, own_redis: RedisServer
) -> None:
    """Redis stops and starts twice while eight threads push: once it is back for good, the
    intake's own recovery drains the spool, with no further push to trigger it."""
    intake = Intake(own_redis.url, "flap", 0.2, Spool(tmp_path / "spool"))
    writers, per_writer = 8, 400

    def write(w: int) -> None:
        for i in range(per_writer):
            intake.push([json.dumps({"w": w, "i": i}).encode()])

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    try:
        for thread in threads:
            thread.start()
        for _ in range(2):
            time.sleep(0.2)
            own_redis.stop()
            time.sleep(0.3)
            own_redis.start()
        for thread in threads:
            thread.join()
        client = redis.Redis.from_url(own_redis.url)
        deadline = time.monotonic() + 30
        seen: set[tuple[int, int]] = set()
        while time.monotonic() < deadline:
            items = client.lrange(intake.key, 0, -1)
            seen = {(d["w"], d["i"]) for d in map(json.loads, items)}
            if len(seen) == writers * per_writer and not intake.spool.files():
                break
            time.sleep(0.1)
        client.close()
        assert seen == {(w, i) for w in range(writers) for i in range(per_writer)}
        assert intake.spool.files() == []
        assert not intake.down
    finally:
        intake.close()


def test_events_tracked_in_a_nested_app_context_or_late_hooks_are_not_lost(
    tmp_path: Path, redis_url: str
) -> None:
    intercom = IntercomEvents()
    app = Flask(__name__, instance_path=str(tmp_path))
    app.config.update(
        INTERCOM_ACCESS_TOKEN="test-token",
        INTERCOM_EVENTS_DELIVERY="rq",
        INTERCOM_EVENTS_REDIS_URL=redis_url,
        INTERCOM_EVENTS_REDIS_TIMEOUT=2.0,  # Redis is up: a slow moment must not spool
        INTERCOM_EVENTS_REDIS_SLOW=1.0,
    )

    # Registered before init_app, so Flask runs them after the extension's own hooks.
    @app.after_request
    def late_after_request(response: Any) -> Any:
        intercom.track("in-after-request", user_id="1")
        return response

    @app.teardown_request
    def late_teardown(error: BaseException | None) -> None:
        intercom.track("in-teardown", user_id="1")

    intercom.init_app(app)

    @app.get("/nested")
    def nested() -> str:
        with app.app_context():  # a helper or library pushing its own app context
            intercom.track("in-nested-context", user_id="1")
        return "ok"

    app.test_client().get("/nested").close()
    names = sorted(p["event_name"] for p in intake(redis_url))
    assert names == ["in-after-request", "in-nested-context", "in-teardown"]


def test_a_failing_event_tracked_receiver_breaks_neither_view_nor_event(
    tmp_path: Path, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = build_app(tmp_path, redis_url, INTERCOM_EVENTS_STRICT=False)

    def broken(sender: Flask, **kwargs: Any) -> None:
        raise RuntimeError("a buggy receiver")

    with (
        event_tracked.connected_to(broken, sender=app),
        app.test_client().get("/one/5") as response,
    ):
        assert response.status_code == 200
    assert [p["metadata"] for p in intake(redis_url)] == [{"n": 5}]
    assert "An event_tracked receiver failed for 'did-one'" in caplog.text


def test_spool_listing_survives_files_vanishing_meanwhile(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spool.directory.mkdir()
    stop = threading.Event()

    def churn() -> None:
        n = 0
        while not stop.is_set():
            path = spool.directory / f"spool-x-{n}.jsonl"
            path.write_text("{}\n")
            path.unlink()
            n += 1

    churner = threading.Thread(target=churn)
    churner.start()
    try:
        for _ in range(5000):
            spool.files()  # must never raise FileNotFoundError
    finally:
        stop.set()
        churner.join()


@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
def test_a_process_forked_during_an_outage_recovers_on_its_own(
    tmp_path: Path, own_redis: RedisServer
) -> None:
    intake_ = Intake(own_redis.url, "forked", 0.2, Spool(tmp_path / "parent-spool"))
    own_redis.stop()
    assert intake_.push([b'{"who":"parent"}']) is False  # down, spooled, recovery watching
    pid = os.fork()
    if pid == 0:  # the child, e.g. a gunicorn worker forked from a --preload master
        code = 1
        try:
            intake_.spool = Spool(tmp_path / "child-spool")  # only the child can drain it
            intake_.push([b'{"who":"child"}'])
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if not intake_.spool.files() and not intake_.down:
                    code = 0
                    break
                time.sleep(0.05)
        finally:
            os._exit(code)
    own_redis.start()
    _, status = os.waitpid(pid, 0)
    try:
        assert os.waitstatus_to_exitcode(status) == 0, "the child's spool was never drained"
        client = redis.Redis.from_url(own_redis.url)
        deadline = time.monotonic() + 20
        who: set[str] = set()
        while time.monotonic() < deadline and who != {"parent", "child"}:
            who = {json.loads(x)["who"] for x in client.lrange(intake_.key, 0, -1)}
            time.sleep(0.05)
        client.close()
        assert who == {"parent", "child"}
    finally:
        intake_.close()
