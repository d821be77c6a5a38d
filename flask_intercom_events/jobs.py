"""The RQ job: deliver one event, given as its JSON payload, to Intercom.

A job's payload is the event's JSON (``Event.to_payload()``, stored with RQ's
``JSONSerializer``): no token and no pickled objects ever reach Redis. The function runs in
the app's context (``flask intercom worker`` provides one per delivery) and sends through one
:class:`~flask_intercom_events.client.IntercomClient` per process: its ``requests.Session``
keeps connections alive between events, and is made again in a forked child.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from typing import Any

from flask import current_app, has_app_context

from .client import IntercomClient
from .config import Settings
from .errors import ConfigurationError
from .events import Event
from .job_records import DELIVER
from .signals import event_delivered
from .state import state_of

__all__ = ["DELIVER", "client_for", "deliver"]

log = logging.getLogger("flask_intercom_events.worker")


def deliver(payload: Mapping[str, Any], *, uuid: str | None = None) -> dict[str, Any]:
    """Send one event to Intercom; the function every delivery job calls.

    ``uuid`` is the event's :attr:`~flask_intercom_events.Event.uuid` (the job's id: the
    worker passes it, so receivers of ``event_delivered`` get the event as it was tracked).

    Returns what Intercom answered (JSON-serialisable, so RQ can keep it): ``status``,
    ``rate_limit`` (``limit``, ``remaining``, ``reset``), ``server_time`` and ``elapsed``.
    Sends ``event_delivered`` with the app as sender (a receiver that raises is logged, not
    propagated: the event was delivered). Raises
    :class:`~flask_intercom_events.errors.InvalidEventError` for a payload Intercom would
    refuse, and an :class:`~flask_intercom_events.errors.IntercomAPIError` subclass when
    Intercom (or the network) fails; the worker decides what to retry.
    """
    if not has_app_context():
        raise ConfigurationError(
            f"{DELIVER} needs the Flask app's context: run the jobs with "
            "`flask --app yourapp intercom worker`, not a bare `rq worker`"
        )
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    event = Event.from_payload(payload, uuid=uuid)
    result = client_for(state_of(app).settings).create_event(event)
    if event_delivered.receivers:
        try:
            event_delivered.send(app, event=event)
        except Exception:
            # Delivered all the same: a failing receiver must not make it look otherwise
            # (and be sent again).
            log.exception("An event_delivered receiver raised (the event was delivered)")
    info = result.rate_limit
    return {
        "status": result.status,
        "rate_limit": {"limit": info.limit, "remaining": info.remaining, "reset": info.reset},
        "server_time": result.server_time,
        "elapsed": result.elapsed,
    }


class _ProcessClients:
    """One client per app configuration in this process; emptied in a forked child.

    A ``requests.Session`` holds sockets that must not be shared across ``fork()``: the
    child starts with an empty cache (the parent's clients are left alone, not closed, as
    their sockets still belong to the parent).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: dict[Settings, Any] = {}

    def get(self, settings: Settings, pool_size: int | None) -> Any:
        client = self._clients.get(settings)
        if client is None:
            with self._lock:
                client = self._clients.get(settings)
                if client is None:
                    client = IntercomClient.from_settings(settings, pool_size=pool_size)
                    self._clients[settings] = client
        return client

    def forget(self) -> None:
        self._lock = threading.Lock()
        self._clients = {}


_clients = _ProcessClients()
os.register_at_fork(after_in_child=_clients.forget)


def client_for(settings: Settings, *, pool_size: int | None = None) -> Any:
    """This process's :class:`~flask_intercom_events.client.IntercomClient` for ``settings``.

    Made on first use (``pool_size``: connections kept open; only the first call's counts)
    and again after a fork.
    """
    return _clients.get(settings, pool_size)
