"""The emulator as a server: HTTP/1.1 on the wire, its life cycle, control endpoints, CLI."""

from __future__ import annotations

import http.client
import json
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
import requests

from flask_intercom_events.sandbox import Sandbox
from flask_intercom_events.sandbox.cli import build_parser, main, sandbox_from_args

from .apps import make_app

TOKEN = "test-token"
NOW = int(time.time()) - 60
BODY = json.dumps({"event_name": "invited-friend", "created_at": NOW, "user_id": "42"})
HEAD = (
    "POST /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer test-token\r\n"
    "Content-Type: application/json\r\nAccept: application/json\r\nIntercom-Version: 2.11\r\n"
)


def raw_exchange(url: str, data: bytes, *, wait: float = 2.0) -> bytes:
    """Send ``data`` on a fresh socket; everything read until the server closes or waits."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=wait) as sock:
        sock.sendall(data)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except TimeoutError:
            pass
    return received


def event_request(created_at: int = NOW, extra: str = "") -> bytes:
    """One complete ``POST /events`` request."""
    body = json.dumps({"event_name": "e", "created_at": created_at, "user_id": "42"})
    return f"{HEAD}{extra}Content-Length: {len(body)}\r\n\r\n{body}".encode()


def statuses(received: bytes) -> list[int]:
    """The status codes of every response in ``received`` (100 Continue included)."""
    return [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", received)]


# -- HTTP/1.1 ------------------------------------------------------------------------------------


def test_keep_alive_serves_many_requests_on_one_connection(emulator: Sandbox) -> None:
    connection = http.client.HTTPConnection(emulator.url.removeprefix("http://"), timeout=5)
    try:
        connection.connect()
        sock = connection.sock
        for n in range(3):
            body = json.dumps({"event_name": "e", "created_at": NOW - n, "user_id": "42"})
            connection.request(
                "POST",
                "/events",
                body,
                {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
            )
            response = connection.getresponse()
            assert response.status == 202
            assert response.read() == b""
            assert response.getheader("Connection") == "keep-alive"
        assert connection.sock is sock
    finally:
        connection.close()
    assert emulator.stats.events == 3


def test_pipelined_requests_are_answered_in_order(emulator: Sandbox) -> None:
    received = raw_exchange(
        emulator.url,
        event_request(NOW - 1)
        + event_request(NOW - 2)
        + event_request(NOW - 3, "Connection: close\r\n"),
    )
    assert statuses(received) == [202, 202, 202]
    assert [event.created_at for event in emulator.events] == [NOW - 1, NOW - 2, NOW - 3]


def test_chunked_body_is_read(emulator: Sandbox) -> None:
    first, second = BODY[:10].encode(), BODY[10:].encode()
    chunked = (
        f"{len(first):x}\r\n".encode()
        + first
        + b"\r\n"
        + f"{len(second):x};ext=1\r\n".encode()
        + second
        + b"\r\n0\r\nTrailer: x\r\n\r\n"
    )
    request = f"{HEAD}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n".encode() + chunked

    assert statuses(raw_exchange(emulator.url, request)) == [202]
    assert emulator.events[0].body == json.loads(BODY)


def test_expect_100_continue_is_answered_before_the_body(emulator: Sandbox) -> None:
    host, port = emulator.url.removeprefix("http://").split(":")
    head = f"{HEAD}Expect: 100-continue\r\nContent-Length: {len(BODY)}\r\n\r\n".encode()
    with socket.create_connection((host, int(port)), timeout=2) as sock:
        sock.sendall(head)
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(BODY.encode())
        assert sock.recv(1000).startswith(b"HTTP/1.1 202 Accepted\r\n")


def test_http_1_0_connection_is_closed_after_the_answer(emulator: Sandbox) -> None:
    request = event_request().replace(b"HTTP/1.1\r\n", b"HTTP/1.0\r\n", 1)

    received = raw_exchange(emulator.url, request + event_request(NOW - 1))

    assert statuses(received) == [202]
    assert b"Connection: close" in received


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"NONSENSE\r\n\r\n", 400),
        (b"GET /events HTTP/2.0\r\n\r\n", 505),
        (b"GET /events HTTP/1.1\r\nno colon here\r\n\r\n", 400),
        (b"GET /events HTTP/1.1\r\n folded: header\r\n\r\n", 400),
        (b"POST /events HTTP/1.1\r\nContent-Length: ten\r\n\r\n", 400),
        (b"POST /events HTTP/1.1\r\nContent-Length: 2000000\r\n\r\n", 413),
        (
            b"POST /events HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            400,
        ),
        (b"POST /events HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        (b"GET /events HTTP/1.1\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", 431),
        (
            b"POST /events HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1" * 70_000,
            400,
        ),
    ],
    ids=[
        "request-line",
        "version",
        "header-line",
        "obs-fold",
        "content-length",
        "too-large",
        "both-lengths",
        "chunk-size",
        "head-too-large",
        "chunk-line-too-long",
    ],
)
def test_malformed_requests_get_an_error_and_a_closed_connection(
    emulator: Sandbox, request_bytes: bytes, status: int
) -> None:
    received = raw_exchange(emulator.url, request_bytes)

    assert statuses(received) == [status]
    assert b"Connection: close" in received
    assert emulator.stats.requests == 0


def test_drop_closes_the_connection_without_a_byte(emulator: Sandbox) -> None:
    emulator.script("drop")

    assert raw_exchange(emulator.url, event_request()) == b""
    assert emulator.events == []
    assert emulator.stats.dropped == 1


def test_client_closing_mid_request_is_harmless(emulator: Sandbox) -> None:
    raw_exchange(emulator.url, event_request()[:-5], wait=0.1)
    assert statuses(raw_exchange(emulator.url, event_request(extra="Connection: close\r\n"))) == [
        202
    ]


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("DELETE", "/events", "GET, HEAD, POST"),
        ("PUT", "/events/summaries", "POST"),
        ("GET", "/events/summaries", "POST"),
        ("PUT", "/_sandbox/events", "GET, HEAD"),
        ("GET", "/_sandbox/reset", "POST"),
        ("DELETE", "/_sandbox/settings", "GET, HEAD, PATCH, POST"),
        ("PUT", "/_sandbox/script", "DELETE, GET, HEAD, POST"),
    ],
)
def test_405_names_the_allowed_methods(
    emulator: Sandbox, method: str, path: str, allow: str
) -> None:
    response = requests.request(
        method, emulator.url + path, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5
    )

    assert response.status_code == 405
    assert response.headers["Allow"] == allow


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/_sandbox/stats", 200),
        ("/_sandbox/nothing", 404),
        ("/events?type=user&user_id=42", 200),
        ("/events?type=user", 400),
        ("/nothing", 404),
    ],
)
def test_head_is_answered_like_get_without_a_body_on_a_kept_alive_connection(
    emulator: Sandbox, path: str, status: int
) -> None:
    requests.post(
        emulator.url + "/events",
        data=BODY,
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=5,
    )
    auth = f"Authorization: Bearer {TOKEN}\r\n"
    with requests.Session() as session:
        got = session.get(emulator.url + path, headers={"Authorization": f"Bearer {TOKEN}"})
        # HEAD then GET pipelined on one kept-alive connection: the GET's answer must follow
        # the HEAD's headers at once (a HEAD body would be read as the next answer's start).
        received = raw_exchange(
            emulator.url,
            f"HEAD {path} HTTP/1.1\r\nHost: x\r\n{auth}\r\n".encode()
            + b"GET /_sandbox/stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        head = session.head(emulator.url + path, headers={"Authorization": f"Bearer {TOKEN}"})
        after = session.get(emulator.url + "/_sandbox/stats")

    head_part, _, rest = received.partition(b"\r\n\r\n")
    assert statuses(head_part) == [status]
    assert rest.startswith(b"HTTP/1.1 200 OK\r\n"), rest[:80]
    assert json.loads(rest.partition(b"\r\n\r\n")[2])["events"] == 1
    assert f"Content-Length: {len(got.content)}".encode() in head_part
    assert (got.status_code, head.status_code, after.status_code) == (status, status, 200)
    assert head.content == b""
    assert head.headers["Content-Type"] == got.headers["Content-Type"]
    assert after.json()["events"] == 1


# -- life cycle ------------------------------------------------------------------------------------


def test_start_returns_the_url_and_stop_is_idempotent() -> None:
    sandbox = Sandbox()
    with pytest.raises(RuntimeError, match="not running"):
        _ = sandbox.url
    url = sandbox.start()
    try:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
        assert sandbox.url == url
        assert url.endswith(f":{sandbox.port}")
        with pytest.raises(RuntimeError, match="already started"):
            sandbox.start()
    finally:
        sandbox.stop()
    sandbox.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/_sandbox/stats", timeout=2)


def test_restart_keeps_what_was_received(emulator: Sandbox) -> None:
    requests.post(
        emulator.url + "/events",
        data=BODY,
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=5,
    )
    emulator.stop()
    emulator.start()
    assert requests.get(emulator.url + "/_sandbox/stats", timeout=5).json()["events"] == 1


def test_port_in_use_is_an_error(emulator: Sandbox) -> None:
    with pytest.raises(OSError, match="address"):
        Sandbox(port=emulator.port).start()


def test_stop_does_not_wait_for_stalled_requests() -> None:
    sandbox = Sandbox(tokens=[TOKEN], stall_rate=1.0, stall_seconds=60)
    url = sandbox.start()
    failures: list[BaseException] = []

    def send() -> None:
        try:
            requests.post(
                url + "/events", data=BODY, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
            )
        except requests.RequestException as exc:
            failures.append(exc)

    sender = threading.Thread(target=send)
    sender.start()
    assert sandbox.wait_for(lambda: sandbox.stats.requests == 1, timeout=5)
    started = time.monotonic()

    sandbox.stop()

    assert time.monotonic() - started < 8  # far from the 60-s stall
    sender.join(5)
    assert len(failures) == 1
    assert isinstance(failures[0], requests.ConnectionError)


def test_wait_for_events_sees_events_sent_from_another_thread(emulator: Sandbox) -> None:
    def send_later() -> None:
        time.sleep(0.1)
        for n in range(2):
            body = {"event_name": "e", "created_at": NOW - n, "user_id": "42"}
            requests.post(
                emulator.url + "/events",
                json=body,
                headers={"Authorization": f"Bearer {TOKEN}"},
                timeout=5,
            )

    sender = threading.Thread(target=send_later)
    sender.start()
    events = emulator.wait_for_events(2, timeout=5)
    sender.join()

    assert [event.created_at for event in events] == [NOW, NOW - 1]
    with pytest.raises(TimeoutError, match="expected 3 event"):
        emulator.wait_for_events(3, timeout=0.1)


# -- control endpoints -----------------------------------------------------------------------------


def control(url: str, method: str, route: str, body: Any = None) -> requests.Response:
    """Call ``/_sandbox/<route>`` (no token)."""
    return requests.request(method, f"{url}/_sandbox/{route}", json=body, timeout=5)


@pytest.fixture
def busy(emulator: Sandbox) -> Sandbox:
    """The emulator after one event, one duplicate, one warning, one summary and one 401."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    body = {"event_name": "Invited-Friend", "created_at": NOW, "user_id": "42"}
    summary = {
        "user_id": "42",
        "event_summaries": {"event_name": "e", "count": 1, "first": NOW, "last": NOW},
    }
    for _ in range(2):
        requests.post(emulator.url + "/events", json=body, headers=headers, timeout=5)
    requests.post(emulator.url + "/events/summaries", json=summary, headers=headers, timeout=5)
    requests.post(emulator.url + "/events", json=body, timeout=5)
    return emulator


def test_control_received_shows_events_summaries_and_counts(busy: Sandbox) -> None:
    received = control(busy.url, "GET", "received").json()

    [event] = received["events"]
    assert event["event_name"] == "invited-friend"
    assert event["body"]["event_name"] == "Invited-Friend"
    assert [w["code"] for w in event["warnings"]] == [
        "accept_header",
        "intercom_version_missing",
        "event_name_case",
    ]
    assert received["summaries"][0]["count"] == 1
    assert received["stats"] == {
        "requests": 4,
        "by_status": {"200": 1, "202": 2, "401": 1},
        "events": 1,
        "duplicates": 1,
        "rate_limited": 0,
        "summaries": 1,
        "dropped": 0,
        "faults": {},
        "warnings": 5,
        "contacts_created": 0,
    }
    assert control(busy.url, "GET", "events").json()["events"] == received["events"]
    assert control(busy.url, "GET", "summaries").json()["summaries"] == received["summaries"]
    assert control(busy.url, "GET", "stats").json() == received["stats"]


def test_control_requests_log_never_shows_the_token(busy: Sandbox) -> None:
    response = control(busy.url, "GET", "requests")

    log = response.json()["requests"]
    assert [(r["method"], r["target"], r["status"]) for r in log] == [
        ("POST", "/events", 202),
        ("POST", "/events", 202),
        ("POST", "/events/summaries", 200),
        ("POST", "/events", 401),
    ]
    assert TOKEN not in response.text


SECRET = "dG9rOnNlY3JldC1vZi10aGUtYXBw"
READER_SECRET = "reader-secret-token-value"


def test_no_control_route_ever_shows_a_token() -> None:
    with Sandbox(tokens=[SECRET], read_only_tokens=[READER_SECRET]) as sandbox:
        headers = {"Authorization": f"Bearer {SECRET}"}
        # The tokens where a careless client might put them: a body, a query, a contact.
        sent = {
            "event_name": "leaked",
            "created_at": NOW,
            "user_id": "42",
            "metadata": {"note": f"token={SECRET}", SECRET: READER_SECRET},
        }
        for _ in range(2):  # the second one is a duplicate
            requests.post(sandbox.url + "/events", json=sent, headers=headers, timeout=5)
        requests.get(
            f"{sandbox.url}/events?type=user&user_id=42&access_token={SECRET}",
            headers={"Authorization": f"Bearer {READER_SECRET}"},
            timeout=5,
        )
        # In a query, percent-encoded in lower case, in part, whole; in another case.
        for query in (
            "".join(f"%{ord(c):02x}" for c in SECRET),
            "".join(f"%{ord(c):02X}" for c in SECRET),
            "".join(f"%{ord(c):02x}" if c in "Ot" else c for c in SECRET),
            SECRET.lower(),
            SECRET.upper(),
        ):
            requests.get(f"{sandbox.url}/events?type=user&user_id={query}", timeout=5)
        control(sandbox.url, "POST", "contacts", {"user_id": f"u-{SECRET}"})
        answers = [
            control(sandbox.url, "PATCH", "settings", {"latency": 0}),
            control(sandbox.url, "PATCH", "settings", {"tokens": SECRET}),
            control(sandbox.url, "PATCH", "settings", {"read_only_tokens": [READER_SECRET, 7]}),
            control(sandbox.url, "POST", "contacts", {"user_id": 7, "email": SECRET}),
            control(sandbox.url, "DELETE", "received"),
            control(sandbox.url, "GET", "nothing"),
        ]
        routes = answers[-1].json()["routes"]
        assert len(routes) >= 9
        for route in routes:
            answers.append(requests.get(sandbox.url + route, timeout=5))
        answers.append(control(sandbox.url, "POST", "reset"))

        for answer in answers:
            shown = unquote(answer.text).lower()
            for secret in (SECRET, READER_SECRET):
                assert secret.lower() not in shown, (answer.url, answer.text[:300])
        settings = control(sandbox.url, "GET", "settings").json()
        assert settings["tokens"]["count"] == 1
        assert settings["read_only_tokens"]["count"] == 1
        # Still the real ones: the tokens were only hidden.
        assert sandbox.settings.tokens == (SECRET,)


@pytest.mark.parametrize("token", ['tok"quoted\\back', "dG9rL3NsYXNo+Kz/w==", "tok\ttab-token"])
def test_a_token_needing_json_escapes_is_hidden_too(token: str) -> None:
    with Sandbox(tokens=[token]) as sandbox:
        sent = {"event_name": "e", "created_at": NOW, "user_id": "42", "metadata": {"t": token}}
        answer = requests.post(
            sandbox.url + "/events",
            json=sent,
            headers={"Authorization": f"Bearer {token}"},
            timeout=5,
        )
        assert answer.status_code == 202
        shown = control(sandbox.url, "GET", "events")

    [event] = shown.json()["events"]
    assert event["metadata"]["t"].startswith("[token sha256:")
    assert token not in json.dumps(shown.json(), ensure_ascii=False)


def test_request_log_is_bounded_but_counts_stay_exact(emulator: Sandbox) -> None:
    emulator.configure(log_size=2)
    for _ in range(5):
        requests.get(emulator.url + "/events", timeout=5)
    assert len(emulator.requests) == 2
    assert emulator.stats.requests == 5


def test_control_reset(busy: Sandbox) -> None:
    assert control(busy.url, "POST", "reset").json()["requests"] == 0
    assert busy.events == []
    assert busy.summaries == []


def test_control_settings_read_and_change(emulator: Sandbox) -> None:
    assert control(emulator.url, "GET", "settings").json()["rate_limit"] == 1666

    changed = control(emulator.url, "PATCH", "settings", {"rate_limit": 7, "latency": 0.01})

    assert changed.status_code == 200
    assert (changed.json()["rate_limit"], changed.json()["latency"]) == (7, 0.01)
    assert emulator.settings.rate_limit == 7
    answer = requests.get(
        emulator.url + "/events?type=user&user_id=x",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=5,
    )
    assert answer.headers["X-RateLimit-Limit"] == "7"


@pytest.mark.parametrize(
    ("call", "body", "status", "says"),
    [
        ("PATCH settings", {"error_rate": 3}, 400, "error_rate"),
        ("PATCH settings", {"speed": 3}, 400, "unknown setting"),
        ("PATCH settings", [1], 400, "JSON object"),
        ("POST contacts", {"name": "x"}, 400, "unknown contact field"),
        ("POST contacts", "x", 400, "send a contact"),
        ("POST script", {"script": ["boom"]}, 400, "unknown fault"),
        ("POST script", {"faults": []}, 400, "script"),
        ("GET nothing", None, 404, "no control route"),
        ("DELETE events", None, 405, "use GET"),
    ],
)
def test_control_refusals_say_what_is_wrong(
    emulator: Sandbox, call: str, body: Any, status: int, says: str
) -> None:
    method, route = call.split()
    response = control(emulator.url, method, route, body)
    assert response.status_code == status
    assert says in response.json()["error"]


def test_control_invalid_json_is_400(emulator: Sandbox) -> None:
    response = requests.post(emulator.url + "/_sandbox/contacts", data=b"{", timeout=5)
    assert response.status_code == 400


def test_control_contacts_are_declared_at_run_time(emulator: Sandbox) -> None:
    emulator.configure(require_contacts=True)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    body = {"event_name": "e", "created_at": NOW, "email": "b@example.com"}
    assert (
        requests.post(emulator.url + "/events", json=body, headers=headers, timeout=5).status_code
        == 404
    )

    added = control(emulator.url, "POST", "contacts", [{"email": "b@example.com"}, {"id": "c"}])

    assert added.status_code == 201
    assert [c["email"] for c in added.json()["contacts"]] == ["b@example.com", None]
    assert len(control(emulator.url, "GET", "contacts").json()["contacts"]) == 2
    assert (
        requests.post(emulator.url + "/events", json=body, headers=headers, timeout=5).status_code
        == 202
    )


def test_control_script(emulator: Sandbox) -> None:
    assert control(emulator.url, "POST", "script", {"script": ["500", "stall:1"]}).json() == {
        "script": ["500", "stall:1"]
    }
    assert control(emulator.url, "POST", "script", ["drop"]).json()["script"] == [
        "500",
        "stall:1",
        "drop",
    ]
    assert requests.get(emulator.url + "/events", timeout=5).status_code == 500
    assert control(emulator.url, "GET", "script").json()["script"] == ["stall:1", "drop"]
    assert control(emulator.url, "DELETE", "script").json()["script"] == []
    assert [str(fault) for fault in emulator.script("429")] == ["429"]


# -- the command line ------------------------------------------------------------------------------


def start_cli(*arguments: str) -> tuple[subprocess.Popen[str], str]:
    """``python -m flask_intercom_events.sandbox --port 0 ...``; the process and its URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "flask_intercom_events.sandbox", "--port", "0", *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], 20)
    line = process.stdout.readline() if ready else ""
    if "http://" not in line:
        process.kill()
        _, errors = process.communicate()
        pytest.fail(f"the sandbox did not start: {line!r} {errors}")
    return process, line.split()[-1]


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_cli_serves_until_signalled(stop_signal: signal.Signals) -> None:
    process, url = start_cli(
        "--token", "cli-token", "--rate-limit", "5", "--contact", "user_id=7", "--script", "500"
    )
    try:
        headers = {"Authorization": "Bearer cli-token"}
        body = {"event_name": "e", "created_at": NOW, "user_id": "7"}
        first = requests.post(url + "/events", json=body, headers=headers, timeout=5)
        second = requests.post(url + "/events", json=body, headers=headers, timeout=5)
        stranger = requests.post(
            url + "/events", json={**body, "user_id": "8"}, headers=headers, timeout=5
        )

        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
        assert (first.status_code, second.status_code, stranger.status_code) == (500, 202, 404)
        assert second.headers["X-RateLimit-Limit"] == "5"
    finally:
        process.send_signal(stop_signal)
        output, errors = process.communicate(timeout=10)
    assert process.returncode == 0, errors
    assert "stopped: 3 requests, 1 events stored" in output
    assert errors == ""


def test_cli_help_names_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])

    assert exited.value.code == 0
    shown = capsys.readouterr().out
    for option in (
        "--port",
        "--host",
        "--token",
        "--read-only-token",
        "--contact",
        "--require-contacts",
        "--latency",
        "--jitter",
        "--rate-limit",
        "--rate-window",
        "--error-rate",
        "--error-status",
        "--throttle-rate",
        "--stall-rate",
        "--stall-seconds",
        "--drop-rate",
        "--seed",
        "--script",
        "--max-event-names",
        "--log-size",
        "--contact-visibility-delay",
    ):
        assert option in shown


@pytest.mark.parametrize("prog", [None, "flask intercom sandbox"])
def test_cli_help_shows_each_default_once_and_where_the_token_comes_from(
    prog: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(["--help"], prog=prog)

    shown = " ".join(capsys.readouterr().out.split())
    for empty in ("(default: None)", "(default: [])", "(default: False)"):
        assert empty not in shown
    start = shown.index("--token TOKEN accepted")
    token = shown[start : shown.index("--read-only-token TOKEN", start)]
    assert token.count("default") == 1
    assert "sandbox-token" in token
    assert "INTERCOM_ACCESS_TOKEN" in token
    for route in ("/_sandbox/received", "/_sandbox/duplicates", "/_sandbox/reset"):
        assert route in shown
    assert "POST /contacts" in shown
    assert "Intercom-Version" in shown


def test_flask_intercom_sandbox_help(tmp_path: Path) -> None:
    app = make_app(tmp_path)

    result = app.test_cli_runner().invoke(args=["intercom", "sandbox", "--help"])

    assert result.exit_code == 0, result.output
    shown = " ".join(result.output.split())
    assert shown.startswith("usage: flask intercom sandbox")
    assert "(default: None)" not in shown
    assert "the app's INTERCOM_ACCESS_TOKEN" in shown
    assert "test-token" not in shown


def test_cli_options_reach_the_settings() -> None:
    args = build_parser().parse_args(
        ["--contact-visibility-delay", "2.5", "--contact", "id=lead-1,role=lead"]
    )
    sandbox = sandbox_from_args(args)

    assert sandbox.settings.contact_visibility_delay == 2.5
    assert sandbox.settings.require_contacts
    assert [contact.role for contact in sandbox.contacts] == ["lead"]


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        (["--error-rate", "2"], "error_rate"),
        (["--script", "boom"], "unknown fault"),
        (["--contact", "name=x"], "unknown contact field"),
        (["--latency", "soon"], "invalid float"),
    ],
)
def test_cli_refuses_bad_options(
    arguments: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(arguments)

    assert exited.value.code == 2
    assert says in capsys.readouterr().err


@pytest.mark.parametrize("token", ["t", "e", "events", "request"])
def test_a_token_too_short_to_hide_leaves_the_pages_whole(token: str) -> None:
    with Sandbox(tokens=[token]) as sandbox:
        sent = {"event_name": "e", "created_at": NOW, "user_id": "42"}
        headers = {"Authorization": f"Bearer {token}"}
        assert requests.post(sandbox.url + "/events", json=sent, headers=headers, timeout=5).ok
        stats = control(sandbox.url, "GET", "stats").json()
        assert stats["events"] == 1
        assert control(sandbox.url, "GET", "events").json()["events"][0]["event_name"] == "e"
