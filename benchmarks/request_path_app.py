"""The app that ``request_path.py`` serves under gunicorn: one trivial view, three ways.

``BENCH_VARIANT`` picks the variant; the view's body and status are the same in all three:

- ``plain``: no tracking at all.
- ``floor``: after the response is sent (``response.call_on_close``, as the extension does),
  one ``RPUSH`` of the event's line on a ``redis.Redis`` made once per worker process. The line
  is built per request the way the extension builds it (``Event.create`` then
  ``handoff.encode_event``), so the floor pays for the event and the round trip, nothing else.
- ``tracked``: ``@track_event`` with delivery ``rq``, an identity loader giving a fixed
  :class:`Identity`.

Every variant counts the requests its view answered and writes the count to
``BENCH_COUNT_DIR/served-<pid>`` when the worker exits, so the benchmark can check that each
request answered left exactly one event in Redis.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from flask import Flask, Response, after_this_request

from flask_intercom_events import Event, Identity, IntercomEvents, track_event
from flask_intercom_events.handoff import encode_event
from flask_intercom_events.intake import intake_key

VARIANTS = ("plain", "floor", "tracked")
EVENT_NAME = "viewed-page"
IDENTITY = Identity(user_id="bench-user-42")
METADATA = {"page": "home", "plan": "pro"}
QUEUE = "intercom-events"
BODY = "Hello, benchmark!\n"


class _Served:
    """How many requests this worker's view answered (one per process, written at exit)."""

    count = 0


def create_app() -> Flask:
    """The app for ``BENCH_VARIANT`` (plain, floor or tracked), Redis at ``BENCH_REDIS_URL``."""
    variant = os.environ["BENCH_VARIANT"]
    if variant not in VARIANTS:
        raise ValueError(f"BENCH_VARIANT must be one of {VARIANTS}, got {variant!r}")
    redis_url = os.environ["BENCH_REDIS_URL"]
    count_dir = Path(os.environ["BENCH_COUNT_DIR"])
    atexit.register(_write_count, count_dir)

    app = Flask(__name__)
    app.config.update(
        INTERCOM_ACCESS_TOKEN="dummy-benchmark-token",
        INTERCOM_EVENTS_DELIVERY="rq",
        INTERCOM_EVENTS_REDIS_URL=redis_url,
        INTERCOM_EVENTS_QUEUE=QUEUE,
        INTERCOM_EVENTS_SPOOL_DIR=os.environ["BENCH_SPOOL_DIR"],
    )

    def view() -> tuple[str, int]:
        _Served.count += 1
        return BODY, 200

    if variant == "plain":
        app.add_url_rule("/", view_func=view)
    elif variant == "floor":
        app.add_url_rule("/", view_func=_floor(view, redis.Redis.from_url(redis_url)))
    else:
        intercom = IntercomEvents(app)
        intercom.identity_loader(lambda: IDENTITY)
        app.add_url_rule("/", view_func=track_event(EVENT_NAME, metadata=METADATA)(view))
    return app


def _floor(view: Callable[[], tuple[str, int]], connection: redis.Redis) -> Callable[[], Any]:
    """``view`` plus one RPUSH of its event's JSON once the response has been sent."""
    key = intake_key(QUEUE)

    def floor_view() -> tuple[str, int]:
        result = view()
        event = Event.create(EVENT_NAME, identity=IDENTITY, metadata=METADATA)
        line = encode_event(event)

        @after_this_request
        def push_after_close(response: Response) -> Response:
            response.call_on_close(lambda: connection.rpush(key, line))
            return response

        return result

    return floor_view


def _write_count(count_dir: Path) -> None:
    (count_dir / f"served-{os.getpid()}").write_text(str(_Served.count))
