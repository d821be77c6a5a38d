"""JSON from outside this process nested deeper than Python's decoder can recurse: a
``RecursionError``, which is no ``ValueError``, once went past every guard of a decoding and
stopped the worker on each start (a line in the intake) and ``status``. Every reading of
outside JSON is a ``ValueError`` when it fails, whatever the depth."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from flask_intercom_events import NetworkError
from flask_intercom_events.client import IntercomClient
from flask_intercom_events.events import Event, Identity
from flask_intercom_events.job_records import JobSerializer
from flask_intercom_events.json_text import parse_json
from flask_intercom_events.lines import decode_line

from .hostile import HostileServer, Peer, Received, response

DEEP = b"[" * 100_000 + b"]" * 100_000
DEEP_OBJECT = b'{"a":' * 100_000 + b"1" + b"}" * 100_000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b"[1, 2]", [1, 2]),
        ('{"a": "\u00e9"}', {"a": "\u00e9"}),
        (b"[" * 100 + b"]" * 100, parse_json(b"[" * 100 + b"]" * 100)),  # deep enough is fine
    ],
)
def test_json_is_read(text: bytes | str, expected: object) -> None:
    assert parse_json(text) == expected


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (DEEP, "nested too deeply"),
        (DEEP_OBJECT, "nested too deeply"),
        (DEEP.decode(), "nested too deeply"),
        (b"{truncated", "Expecting property name"),
        (b"\xff\xfe", "Expecting value"),  # a UTF-16 mark, and nothing after it
        (b"\xff\xff", "codec can't decode"),
        (b"", "Expecting value"),
        (b"NaN]", "Extra data"),
    ],
)
def test_what_is_not_json_is_a_value_error(text: bytes | str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_json(text)


@pytest.mark.parametrize("line", [b"some-uuid " + DEEP, b"some-uuid " + DEEP_OBJECT, DEEP_OBJECT])
def test_a_deep_intake_line_is_not_an_event_line(line: bytes) -> None:
    with pytest.raises(ValueError, match="nested too deeply"):
        decode_line(line)


def test_a_deep_job_field_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="nested too deeply"):
        JobSerializer.loads(DEEP)


@pytest.fixture
def deep_answers() -> Iterator[HostileServer]:
    def answer(peer: Peer, request: Received) -> bool:
        status = 202 if request.method == "POST" and request.target == "/events" else 200
        peer.send(response(status, DEEP))
        return False

    with HostileServer(answer) as server:
        yield server


def test_a_deep_answer_is_an_answer_that_is_not_json(deep_answers: HostileServer) -> None:
    with IntercomClient("test-token", base_url=deep_answers.url) as client:
        with pytest.raises(NetworkError, match="not JSON"):
            client.list_events(user_id="42")
        with pytest.raises(NetworkError, match="not JSON"):
            client.create_contact(external_id="42")
        # An event's 202 carries no body Intercom documents: accepted, whatever the bytes.
        client.create_event(Event("invited-friend", int(time.time()), Identity(user_id="42"), {}))
