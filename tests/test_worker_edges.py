"""The worker at the edges: absurd rate-limit headers, and Redis down when it starts.

Real worker processes; a hostile HTTP server of the test's own on 127.0.0.1 answering like
a broken upstream; a real Redis stopped and started.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from flask_intercom_events.process import connect_worker_redis
from flask_intercom_events.sandbox import Sandbox

from .hostile import HostileServer, Peer, Received, response
from .redis_server import RedisServer
from .test_status import cli, ops_app
from .workers import Deployment, make_deployments

Make = Callable[..., Deployment]


@pytest.fixture
def deployments(tmp_path: Path) -> Iterator[Make]:
    yield from make_deployments(tmp_path)


class HostileIntercom:
    """Accepts every event (202), with the rate-limit headers (and status) it is given."""

    def __init__(self, status: int, headers: dict[str, str]) -> None:
        received: list[dict[str, object]] = []
        self.received = received

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                answer = status
                if status == 429 and len(received) % 2 == 0:
                    received.append({"throttled": True})
                else:
                    received.append(json.loads(body))
                    answer = 202
                payload = (
                    b'{"type":"error.list","errors":[{"code":"rate_limit_exceeded",'
                    b'"message":"slow down"}]}'
                    if answer == 429
                    else b""
                )
                self.send_response(answer)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def events(self) -> list[dict[str, object]]:
        return [item for item in self.received if "event_name" in item]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize(
    ("status", "headers", "problem"),
    [
        # A reset years ahead with nothing remaining: trusted, it would stop delivery for years.
        (
            202,
            {
                "X-RateLimit-Limit": "10",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": "99999999999",
            },
            "X-RateLimit-Reset",
        ),
        # A millisecond reset.
        (
            202,
            {
                "X-RateLimit-Limit": "10",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": "1796118000000",
            },
            "X-RateLimit-Reset",
        ),
        # A limit of 0: no call would ever be allowed.
        (
            202,
            {"X-RateLimit-Limit": "0", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1"},
            "X-RateLimit-Limit",
        ),
        # A 429 asking to come back in three years.
        (429, {"Retry-After": "99999999"}, "Retry-After"),
    ],
)
def test_one_absurd_header_never_freezes_delivery(
    redis_url: str,
    deployments: Make,
    status: int,
    headers: dict[str, str],
    problem: str,
) -> None:
    upstream = HostileIntercom(status, headers)
    try:
        setup = deployments(redis_url, upstream.url)
        setup.track(20)
        worker = setup.start_worker("--concurrency", "2")
        setup.wait_until(setup.settled, 60, "every event delivered despite the header")
        assert worker.stop() == 0
        assert len(upstream.events()) == 20
        log = worker.log()
        warning = "Ignoring an out-of-bounds rate-limit header from Intercom: " + problem
        assert log.count(warning) == 1  # said once, not once per response
        assert "WARNING" in log
    finally:
        upstream.close()


def test_the_worker_starts_while_redis_is_down_and_delivers_once_it_answers(
    own_redis: RedisServer, emulator: Sandbox, deployments: Make
) -> None:
    setup = deployments(own_redis.url, emulator.url)
    own_redis.stop()
    worker = setup.start_worker("--concurrency", "2")
    setup.wait_until(
        lambda: "does not answer" in worker.log(), 30, "the worker to say Redis is down"
    )
    assert worker.running()
    own_redis.start()
    setup.track(10)
    setup.wait_until(lambda: len(emulator.events) == 10, 60, "every event delivered")
    assert worker.stop() == 0
    log = worker.log()
    assert log.count("does not answer") == 1
    assert "Traceback" not in log
    assert "Redis answers again" in log


def test_a_database_redis_refuses_is_said_as_such_by_the_worker(
    redis_url: str, emulator: Sandbox, deployments: Make
) -> None:
    setup = deployments(redis_url.rsplit("/", 1)[0] + "/16", emulator.url)
    worker = setup.start_worker("--concurrency", "1")
    setup.wait_until(lambda: "refused" in worker.log(), 30, "the worker to say Redis refused")
    assert worker.running()
    assert worker.stop() == 0
    log = worker.log()
    assert (
        "Redis refused to SELECT the database INTERCOM_EVENTS_REDIS_URL names (DB index is out "
        "of range)" in log
    )
    assert "does not answer" not in log
    assert "Traceback" not in log


def test_the_worker_connects_to_a_unix_socket(tmp_path: Path) -> None:
    # The worker's client asked for TCP keepalive, which redis-py's unix socket connection
    # does not take: every command failed with a TypeError.
    connection = connect_worker_redis(f"unix://{tmp_path / 'no-redis.sock'}")
    with pytest.raises(redis.ConnectionError):
        connection.ping()


def test_a_proxy_refusing_its_credentials_pauses_delivery_then_resumes(
    redis_url: str, deployments: Make
) -> None:
    """A 407 would fail every event the same way, as a refused token would: delivery pauses
    (nothing failed, nothing lost), says once at CRITICAL that it is the proxy, probes with
    one event at a time, and resumes by itself once the proxy lets requests through."""
    let_through = threading.Event()
    events: list[object] = []

    def proxy(peer: Peer, request: Received) -> bool:
        if let_through.is_set():
            events.append(request.json())
            peer.send(response(202))
        else:
            peer.send(response(407, reason="Proxy Authentication Required"))
        return True

    with HostileServer(proxy) as server:
        setup = deployments(redis_url, server.url, INTERCOM_EVENTS_AUTH_PROBE_EVERY=1)
        setup.track(50)
        worker = setup.start_worker("--concurrency", "4")
        cli = setup.app.test_cli_runner()

        def paused() -> dict[str, object] | None:
            shown = cli.invoke(args=["intercom", "status", "--json"])
            found: dict[str, object] | None = json.loads(shown.output)["rate_window"]["paused"]
            return found

        # The pause as `status` shows it (the first batch, up to 4 requests at once, is
        # answered before the worker records it), then two probes after it.
        setup.wait_until(lambda: paused() is not None, 30, "delivery paused")
        found = paused()
        assert found is not None
        assert found["reason"] == "407 proxy_authentication_required"
        at_pause = len(server.received)
        setup.wait_until(lambda: len(server.received) >= at_pause + 2, 30, "two probes")
        status = setup.status()
        assert (status.failed, status.pending) == (0, 50)
        assert len(server.received) < 20  # a probe a second, not one request per event
        let_through.set()  # the proxy's credentials fixed
        setup.wait_until(setup.settled, 60, "every event delivered once the proxy lets it")
        assert worker.stop() == 0
    assert setup.status().failed == 0
    assert len(events) == 50
    log = worker.log()
    assert log.count("A proxy on the way to Intercom refused its credentials") == 1
    assert "CRITICAL" in log
    assert "HTTPS_PROXY" in log
    assert "Intercom refused the access token" not in log
    assert "delivery resumes" in log


def test_a_key_of_another_type_is_named_and_moved_aside_and_delivery_goes_on(
    redis_url: str, emulator: Sandbox, deployments: Make, tmp_path: Path
) -> None:
    """A key of the queue SET by hand to a string made every command on it fail with
    WRONGTYPE, which names no key: the worker took it for an outage and stalled, and status
    said Redis did not answer. Status names the key; the worker renames it aside (kept) and
    delivers."""
    setup = deployments(redis_url, emulator.url)
    keys = setup.store.keys
    setup.connection.set(keys.stats, "garbage")
    setup.connection.set(keys.event_names, "more garbage")
    app = ops_app(tmp_path, redis_url)
    report = json.loads(cli(app, "status", "--json").output)
    assert f"key {keys.stats} holds a string, where a hash belongs" in report["error"]
    assert f"key {keys.event_names} holds a string, where a set belongs" in report["error"]
    assert "did not answer" not in report["error"]
    setup.track(5)
    worker = setup.start_worker("--concurrency", "2")
    setup.wait_until(lambda: len(emulator.events) == 5, 30, "the events delivered")
    setup.wait_until(setup.settled, 30, "every event settled")
    assert worker.stop() == 0
    assert setup.connection.type(keys.stats) == b"hash"
    aside = [k.decode() for k in setup.connection.keys(f"{keys.stats}:wrongtype:*")]  # type: ignore[union-attr]
    assert len(aside) == 1
    assert setup.connection.get(aside[0]) == b"garbage"  # kept, not deleted
    assert f"renamed to {aside[0]}" in worker.log()
    assert json.loads(cli(app, "status", "--json").output)["error"] is None


def test_the_worker_warns_when_redis_may_evict_waiting_events(
    redis_url: str, emulator: Sandbox, deployments: Make
) -> None:
    """With an eviction policy, Redis under memory pressure drops keys, events among them,
    and nothing anywhere shows it: the worker says so when it registers."""
    setup = deployments(redis_url, emulator.url)
    setup.connection.config_set("maxmemory-policy", "allkeys-lru")
    try:
        worker = setup.start_worker()
        setup.wait_until(lambda: "maxmemory-policy allkeys-lru" in worker.log(), 30, "a warning")
        assert worker.stop() == 0
    finally:
        setup.connection.config_set("maxmemory-policy", "noeviction")
    quiet = setup.start_worker()
    setup.wait_until(
        lambda: [w.alive for w in setup.registered()].count(True) == 1, 30, "it registered"
    )
    assert quiet.stop() == 0
    assert "maxmemory-policy" not in quiet.log()
