"""The hand-off when something goes wrong: an event that cannot be encoded, a push that fails
in a way that is not Redis', a full disk under the spool, a spool directory that cannot work.

Nothing may raise out of a response's ``close()``, and no good event may be lost to a bad one.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_intercom_events import ConfigurationError, IntercomEvents, Money, track_event
from flask_intercom_events.extension import state_of
from flask_intercom_events.intake import Intake
from flask_intercom_events.lines import decode_line
from flask_intercom_events.signals import event_dropped
from flask_intercom_events.spool import Spool

from .apps import make_app
from .redis_server import RedisServer
from .servers import ScriptedRedis, answer_client_commands
from .test_handoff import build_app, intake, wait_until


@pytest.fixture
def dropped() -> Iterator[list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []

    def receiver(sender: Flask, **kwargs: Any) -> None:
        seen.append(kwargs)

    with event_dropped.connected_to(receiver):
        yield seen


def extension(app: Flask) -> IntercomEvents:
    return state_of(app).extension


class UnencodableMoney(Money):
    """A metadata value that passes every check but cannot become JSON: a user's subclass
    whose ``to_json`` is broken."""

    def to_json(self) -> dict[str, Any]:
        raise ValueError("this amount cannot be written as JSON")


# --- one bad event, the request's other events ---------------------------------------------


def test_a_lone_surrogate_loses_no_other_event_of_the_request(
    tmp_path: Path, redis_url: str, dropped: list[dict[str, Any]]
) -> None:
    app = build_app(tmp_path, redis_url, INTERCOM_EVENTS_STRICT=False)
    intercom = extension(app)

    @app.post("/signup")
    @track_event("did-one", metadata={"n": 1})
    def signup() -> str:
        intercom.track("signed-up", metadata={"name": "Jos\udce9"})  # from a bad decode
        intercom.track("did-two", metadata={"n": 2})
        return "ok"

    with app.test_client().post("/signup") as response:
        assert response.status_code == 200
    assert sorted(p["event_name"] for p in intake(redis_url)) == ["did-one", "did-two"]
    # Refused at the hand-off ("unencodable") or, once the event model refuses lone
    # surrogates, when it is built ("invalid: ..."): dropped alone, and said so.
    [drop] = dropped
    assert drop["event_name"] == "signed-up"
    assert drop["reason"] == "unencodable" or drop["reason"].startswith("invalid")


def test_an_event_that_cannot_be_encoded_is_dropped_alone_at_error(
    tmp_path: Path, redis_url: str, dropped: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    app = build_app(tmp_path, redis_url)
    intercom = extension(app)

    @app.post("/pay")
    @track_event("did-one", metadata={"n": 1})
    def pay() -> str:
        intercom.track("paid", metadata={"price": UnencodableMoney(100, "eur")})
        intercom.track("did-two", metadata={"n": 2})
        return "ok"

    with caplog.at_level(logging.ERROR), app.test_client().post("/pay") as response:
        assert response.status_code == 200
    assert sorted(p["event_name"] for p in intake(redis_url)) == ["did-one", "did-two"]
    [drop] = dropped
    assert (drop["event_name"], drop["reason"]) == ("paid", "unencodable")
    assert drop["event"] is not None
    assert drop["event"].event_name == "paid"
    assert isinstance(drop["error"], ValueError)
    [record] = [r for r in caplog.records if "'paid'" in r.getMessage()]
    assert record.levelno == logging.ERROR
    assert "unencodable" in record.getMessage()


def test_a_push_failing_inside_redis_py_spools_the_batch(tmp_path: Path) -> None:
    # A server answering RPUSH with a reply redis-py cannot parse (":x" is no integer): the
    # push fails with a ValueError from redis-py's parser, not a RedisError.
    with ScriptedRedis(answer_client_commands(b":x\r\n")) as server:
        app = build_app(tmp_path, server.url)
        try:
            with app.test_client().post("/three/4") as response:
                assert response.status_code == 200
            spool = state_of(app).intake.spool  # type: ignore[union-attr]
            lines = [
                decode_line(line)[1]
                for path in spool.files()
                for line in path.read_bytes().splitlines()
            ]
            assert sorted(p["event_name"] for p in lines) == ["did-one", "did-two", "sent-custom"]
            assert state_of(app).intake.down  # type: ignore[union-attr]
        finally:
            state_of(app).intake.close()  # type: ignore[union-attr]


# --- the spool on a full disk --------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 64-KiB tmpfs, mounted for this test."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=True)


def fill(disk: Path, leave: int) -> Path:
    """Fill ``disk`` until about ``leave`` bytes are free; returns the filler file."""
    filler = disk / "filler"
    with filler.open("wb") as handle:
        while True:
            free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
            if free <= leave:
                break
            try:
                handle.write(b"x" * min(4096, free - leave))
                handle.flush()
            except OSError:
                break
    return filler


def spooled_lines(spool: Spool) -> list[bytes]:
    return [line for path in spool.files() for line in path.read_bytes().splitlines()]


def test_a_full_disk_leaves_no_torn_line_in_the_spool(small_disk: Path) -> None:
    spool = Spool(small_disk / "spool")
    spool.append([b'{"n":0}'])
    fill(small_disk, leave=8192)
    big = [json.dumps({"n": 1, "pad": "p" * 20000}).encode()]  # more than is left
    before = spooled_lines(spool)
    with pytest.raises(OSError, match="No space left"):
        spool.append(big)
    assert spooled_lines(spool) == before, "nothing of the failed append stays"
    (small_disk / "filler").unlink()
    spool.append([b'{"n":2}'])
    assert [json.loads(line)["n"] for line in spooled_lines(spool)] == [0, 2]


def test_redis_down_and_the_disk_full_drops_events_visibly(
    tmp_path: Path,
    small_disk: Path,
    own_redis: RedisServer,
    dropped: list[dict[str, Any]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = build_app(tmp_path, own_redis.url, INTERCOM_EVENTS_SPOOL_DIR=str(small_disk / "spool"))
    intercom = extension(app)
    padding = "p" * 250

    @app.post("/big/<int:n>")
    def big(n: int) -> str:
        # Ten events of about 3 KiB of metadata each: a request's batch of about 30 KiB.
        for k in range(10):
            intercom.track(f"did-{k}", metadata={"n": n, **{f"k{i}": padding for i in range(9)}})
        return "ok"

    spool = state_of(app).intake.spool  # type: ignore[union-attr]
    client = app.test_client()
    try:
        own_redis.stop()
        with client.post("/big/0") as response:  # spooled: the disk has room
            assert response.status_code == 200
        filler = fill(small_disk, leave=4096)
        with caplog.at_level(logging.ERROR), client.post("/big/1") as response:
            assert response.status_code == 200  # and close() raised nothing
        assert {d["reason"] for d in dropped} == {"unkeepable"}
        assert sorted(d["event_name"] for d in dropped) == sorted(f"did-{k}" for k in range(10))
        assert all(isinstance(d["error"], OSError) for d in dropped)
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert all(any(f"'did-{k}'" in m and "unkeepable" in m for m in errors) for k in range(10))
        assert all(decode_line(line)[1]["metadata"]["n"] == 0 for line in spooled_lines(spool))
        filler.unlink()
        with client.post("/big/2") as response:
            assert response.status_code == 200
        own_redis.start()
        wait_until(lambda: not spool.files(), "the spool drained")
        numbers = sorted(p["metadata"]["n"] for p in intake(own_redis.url))
        assert numbers == [0] * 10 + [2] * 10
        assert not list(spool.directory.glob("rejected-*"))
    finally:
        state_of(app).intake.close()  # type: ignore[union-attr]


# --- the spool directory is checked in init_app ---------------------------------------------


def rq_app(tmp_path: Path, spool_dir: str) -> Flask:
    return make_app(tmp_path, INTERCOM_EVENTS_DELIVERY="rq", INTERCOM_EVENTS_SPOOL_DIR=spool_dir)


def test_a_spool_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "a-file"
    path.write_text("")
    with pytest.raises(ConfigurationError, match="INTERCOM_EVENTS_SPOOL_DIR") as caught:
        rq_app(tmp_path, str(path))
    assert str(path) in str(caught.value)


def test_a_spool_dir_in_proc_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"INTERCOM_EVENTS_SPOOL_DIR .*cannot keep events"):
        rq_app(tmp_path, f"/proc/self/intercom-spool-{uuid.uuid4().hex}")


def test_a_read_only_spool_dir_is_refused(small_disk: Path, tmp_path: Path) -> None:
    # Root writes through permission bits: only a read-only mount is read-only for it.
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    with pytest.raises(ConfigurationError, match="Read-only file system"):
        rq_app(tmp_path, str(small_disk / "spool"))


def test_the_default_spool_dir_is_made_and_left_clean(tmp_path: Path) -> None:
    app = rq_app(tmp_path, "")
    directory = Path(state_of(app).settings.spool_dir)
    assert directory.is_dir()
    assert list(directory.iterdir()) == []
    state_of(app).intake.close()  # type: ignore[union-attr]


def test_the_spool_dir_is_not_checked_when_nothing_is_spooled(tmp_path: Path) -> None:
    path = tmp_path / "a-file"
    path.write_text("")
    make_app(tmp_path, INTERCOM_EVENTS_DELIVERY="disabled", INTERCOM_EVENTS_SPOOL_DIR=str(path))


def test_an_intake_never_raises_for_redis_when_the_spool_works(tmp_path: Path) -> None:
    intake_ = Intake("redis://127.0.0.1:1/0", "q", 0.2, Spool(tmp_path / "spool"))
    try:
        assert intake_.push([b'{"n":1}']) is False
        assert intake_.spool.count() == 1
    finally:
        intake_.close()


@pytest.mark.parametrize(
    ("password", "queue"),
    [("p\udce9ss-s3cret", "intercom-events"), ("pass", "caf\udce9-s3cret")],
)
def test_a_push_failure_logs_no_string_the_exception_carries(
    tmp_path: Path, redis_url: str, caplog: pytest.LogCaptureFixture, password: str, queue: str
) -> None:
    # init_app refuses such a URL or queue; an Intake built by hand must still not log the
    # strings a UnicodeEncodeError carries (its repr holds the whole password or key).
    url = redis_url.replace("redis://", f"redis://:{password}@")
    intake = Intake(url, queue, 0.5, Spool(tmp_path / "spool"))
    try:
        with caplog.at_level(logging.ERROR, logger="flask_intercom_events.intake"):
            assert intake.push([b"line"]) is False
        assert len(caplog.records) == 1
        assert "Pushing Intercom events to Redis failed (UnicodeEncodeError" in caplog.text
        assert "s3cret" not in caplog.text
        assert "\udce9" not in caplog.text
        assert "\\udce9" not in caplog.text
        assert intake.spool.files()
    finally:
        intake.close()
