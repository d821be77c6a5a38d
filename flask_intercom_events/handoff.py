"""From tracked events to the intake, without ever losing a good event to a bad one.

Each event is encoded into its line on its own (:func:`encode_event`): one that cannot be
encoded is dropped alone. The request's lines then go to Redis in one round trip, or to the
spool. Nothing here raises: what cannot be kept anywhere is logged at ERROR with its name and
sent as ``event_dropped``, never a traceback out of the response's ``close()``.

A request's events wait in its :class:`RequestBatch` (kept in the WSGI environ) until the
response is closed. A request that ends with an unhandled exception discards them
(``INTERCOM_EVENTS_DISCARD_ON_ERROR``), except those released by a committed transaction:
that work happened.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from typing import Any, NamedTuple

from blinker import Signal
from flask import Flask

from .collecting import collapsed_description
from .errors import IntercomAPIError
from .events import Event
from .lines import encode_line
from .signals import event_delivered, event_dropped, event_enqueued, event_failed
from .state import AppState

__all__ = ["RequestBatch", "drop", "encode_event", "hand_off", "send_now"]

log = logging.getLogger("flask_intercom_events")
ERROR = logging.ERROR


def encode_event(event: Event) -> bytes:
    """The line ``event`` travels as, through Redis and the spool (:mod:`.lines`: its uuid
    and its JSON body, in UTF-8); raises if it cannot be encoded."""
    return encode_line(event.uuid, event.to_payload())


def drop(
    app: Flask,
    event_name: str,
    reason: str,
    error: BaseException | None,
    *,
    event: Event | None = None,
    level: int = logging.WARNING,
    detail: str = "",
) -> None:
    """Log that an event will not be sent (``detail`` added to the log line), and send
    ``event_dropped``; never raises."""
    log.log(level, "Intercom event %r dropped: %s%s", event_name, reason, detail)
    _send(event_dropped, app, event=event, event_name=event_name, reason=reason, error=error)


def hand_off(app: Flask, state: AppState, events: Iterable[Event]) -> None:
    """Put ``events`` in Redis (or the spool) in one push; ``event_enqueued`` for those in
    Redis. Never raises: an event that cannot be encoded is dropped alone ("unencodable"),
    and the batch is dropped only when neither Redis nor the spool can keep it
    ("unkeepable"), each event logged at ERROR with its name."""
    if state.intake is None:  # delivery "disabled": built, validated, signalled; not sent
        return
    good: list[Event] = []
    lines: list[bytes] = []
    for event in events:
        try:
            lines.append(encode_event(event))
        except Exception as exc:
            detail = f" (it cannot be encoded as UTF-8 JSON: {exc!r})"
            drop(app, event.event_name, "unencodable", exc, event=event, level=ERROR, detail=detail)
            continue
        good.append(event)
    if not lines:
        return
    try:
        in_redis = state.intake.push(lines)
    except Exception as exc:
        # Redis did not take them and the spool could not either (a full or read-only disk).
        detail = f" (Redis did not take it and the spool could not keep it: {exc})"
        for event in good:
            drop(app, event.event_name, "unkeepable", exc, event=event, level=ERROR, detail=detail)
        return
    if in_redis and event_enqueued.receivers:
        for event in good:
            _send(event_enqueued, app, event=event)


def send_now(app: Flask, state: AppState, event: Event) -> None:
    """Eager delivery: send through the client; a failure is logged and sent as
    ``event_failed`` (then raised when strict). Lenient, nothing raises into the view: not
    the client, whatever it raises, nor a receiver of the signals. With same-second claims
    (``spread``), a distinct event of a contact and name in a second another one holds goes
    at the next free second, or is dropped as ``collapsed`` past ``INTERCOM_EVENTS_MAX_SPREAD``."""
    if state.seconds is not None:
        second = state.seconds.second_for(event)
        if second is None:
            detail = f" ({collapsed_description(state.seconds.most, event.created_at)})"
            drop(app, event.event_name, "collapsed", None, event=event, detail=detail)
            return
        if second != event.created_at:
            event = dataclasses.replace(event, created_at=second)
    try:
        state.client.create_event(event)
    except IntercomAPIError as exc:
        log.error("Intercom refused event %r: %s", event.event_name, exc)
        _failed(app, state, event, exc)
        return
    except Exception as exc:  # a bug of ours: the event is not sent; the view goes on
        log.exception("Intercom event %r could not be sent", event.event_name)
        _failed(app, state, event, exc)
        return
    _send(event_delivered, app, event=event)


def _failed(app: Flask, state: AppState, event: Event, error: Exception) -> None:
    _send(event_failed, app, event=event, error=error)
    if state.settings.strict:
        raise error


class _Waiting(NamedTuple):
    """An event of a request's batch, the app it belongs to (an event tracked in another
    app's context inside the request is that app's), and whether it counts even if the
    request fails (released by a committed transaction)."""

    event: Event
    app: Flask
    state: AppState
    kept: bool


class RequestBatch:
    """The events one request tracked, handed off together when its response is closed.

    ``attached``: tied to a response's ``close()``; ``done``: handed off already (later
    events go at once); ``failed``: the request ended with an unhandled exception and
    discards what it tracks, except events a committed transaction released. Each event goes
    to its own app's Redis, and its signals name that app.
    """

    __slots__ = ("app", "attached", "done", "events", "failed", "state")

    def __init__(self, app: Flask, state: AppState) -> None:
        self.app = app
        self.state = state
        self.events: list[_Waiting] = []
        self.attached = False
        self.done = False
        self.failed: BaseException | None = None

    def __repr__(self) -> str:
        return f"<RequestBatch events={len(self.events)} done={self.done}>"

    def add(self, event: Event, app: Flask, state: AppState, *, committed: bool = False) -> None:
        """Take ``event`` of ``app``; ``committed``: released by a commit, so it counts even
        if the request then fails."""
        if self.failed is not None and not committed:
            self._discard(event, app)
        elif self.done:
            hand_off(app, state, [event])
        else:
            self.events.append(_Waiting(event, app, state, committed))

    def flush(self) -> None:
        """Hand off what is waiting (the response's ``close()`` calls it); never raises."""
        if self.done:
            return
        self.done = True
        waiting, self.events = self.events, []
        try:
            by_app: dict[int, tuple[Flask, AppState, list[Event]]] = {}
            for item in waiting:
                by_app.setdefault(id(item.app), (item.app, item.state, []))[2].append(item.event)
            for app, state, events in by_app.values():
                hand_off(app, state, events)
        except Exception:  # hand_off does not raise; if it ever did, close() must not
            log.exception("Intercom events of a request could not be handed off")

    def finish(self, error: BaseException | None) -> None:
        """The request's teardown: discard what a failed request tracked, and hand off now
        if no response will be closed with the events (after_request did not run)."""
        if error is not None and self.state.settings.discard_on_error:
            self.failed = error
            for item in self.events:
                if not item.kept:
                    self._discard(item.event, item.app)
            self.events = [item for item in self.events if item.kept]
        if not self.attached:
            self.flush()

    def abandon(self, error: BaseException) -> None:
        """The WSGI call raised: no response will be closed. Finish as a failed request and
        hand off what it keeps now."""
        self.finish(error)
        self.flush()

    def _discard(self, event: Event, app: Flask) -> None:
        drop(app, event.event_name, "request failed", self.failed, event=event, level=logging.INFO)


def _send(signal: Signal, app: Flask, **kwargs: Any) -> None:
    # A receiver's bug must not escape into a response's close(), nor stop the other events.
    if not signal.receivers:
        return
    try:
        signal.send(app, **kwargs)
    except Exception:
        log.exception("A receiver of %s failed", getattr(signal, "name", signal))
