"""The Flask extension: configuration per app, identity, tracking, and the hand-off."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from functools import partial
from typing import Any, TypeAlias

from blinker import Signal
from flask import Flask, Response, current_app, has_app_context, has_request_context, request

from .cli import intercom_cli
from .client import IntercomClient
from .config import Settings
from .errors import ConfigurationError, IntercomAPIError, IntercomEventsError, InvalidEventError
from .events import Event, Identity, MetadataInput
from .identity import IdentityLoader, flask_login_available, identity_of_user, resolve_identity
from .intake import Intake
from .lines import encode_line
from .signals import event_delivered, event_dropped, event_enqueued, event_failed, event_tracked
from .spool import Spool
from .state import EXTENSION_KEY, AppState, state_of

__all__ = ["BeforeSend", "IntercomEvents", "state_of"]

log = logging.getLogger("flask_intercom_events")

# Kept in the WSGI environ, which lives as long as the request (an app context pushed inside
# a view gets a new ``g``; the environ stays): the request's events, whether after_request has
# tied them to the response's close, and whether teardown already handed them off.
_PENDING = "intercom_events.pending"
_ATTACHED = "intercom_events.attached"
_FLUSHED = "intercom_events.flushed"

BeforeSend = Callable[[Event], "Event | None"]

#: What ``metadata=`` and ``identity=`` of :meth:`IntercomEvents.track_signal` accept.
SignalMetadata: TypeAlias = (
    Mapping[str, MetadataInput] | Callable[..., Mapping[str, MetadataInput] | None]
)
SignalIdentity: TypeAlias = Identity | Callable[..., Identity | None]


class IntercomEvents:
    """Track Intercom data events in a Flask app and hand them to background delivery.

    ``IntercomEvents(app)`` or, with an app factory, ``intercom = IntercomEvents()`` then
    ``intercom.init_app(app)``. One instance can serve several apps; each app's settings and
    connections live in ``app.extensions["intercom_events"]``.
    """

    def __init__(self, app: Flask | None = None) -> None:
        self._identity_loader: IdentityLoader | None = None
        self._before_send: list[BeforeSend] = []
        self._receivers: dict[tuple[Signal, str], Callable[..., None]] = {}
        self._signal_mappings: dict[
            tuple[Signal, str], tuple[SignalMetadata | None, SignalIdentity | None]
        ] = {}
        if app is not None:
            self.init_app(app)

    def __repr__(self) -> str:
        return f"<IntercomEvents at {id(self):#x}>"

    # --- set-up ---------------------------------------------------------------------------

    def init_app(self, app: Flask) -> None:
        """Read and check this app's configuration and register the request hooks.

        Raises :class:`ConfigurationError` naming the key when a setting cannot work, and
        refuses a second call for the same app.
        """
        if EXTENSION_KEY in app.extensions:
            raise ConfigurationError(
                "IntercomEvents is already initialised on this app "
                f"(app.extensions[{EXTENSION_KEY!r}] exists): call init_app once per app, "
                "and use one IntercomEvents object for all of them"
            )
        settings = Settings.from_config(
            app.config, testing=app.testing, debug=app.debug, instance_path=app.instance_path
        )
        intake = None
        client = None
        if settings.delivery == "rq":
            intake = Intake(
                settings.redis_url,
                settings.queue,
                settings.redis_timeout,
                Spool(settings.spool_dir),
            )
        elif settings.delivery == "eager":
            client = IntercomClient.from_settings(settings)
        app.extensions[EXTENSION_KEY] = AppState(
            extension=self,
            settings=settings,
            use_flask_login=flask_login_available(),
            intake=intake,
            client=client,
        )
        app.after_request(_attach_pending)
        app.teardown_request(_flush_leftovers)
        if "intercom" not in app.cli.commands:
            app.cli.add_command(intercom_cli)

    def identity_loader(self, fn: IdentityLoader) -> IdentityLoader:
        """Register ``fn() -> Identity | None``, asked for the identity of each event.

        It runs when the event is tracked, in the request (or app) context. Without one,
        Flask-Login's ``current_user`` is used when Flask-Login is installed.
        """
        self._identity_loader = fn
        return fn

    def before_send(self, fn: BeforeSend) -> BeforeSend:
        """Register ``fn(event) -> Event | None``, run on every event before it leaves the app.

        Return the event (changed or not, e.g. with personal data scrubbed) or ``None`` to drop
        it (``event_dropped`` is sent with ``reason="before_send"``). Hooks run in the order
        they were registered.
        """
        self._before_send.append(fn)
        return fn

    # --- tracking -------------------------------------------------------------------------

    def track(
        self,
        event_name: str,
        *,
        metadata: Mapping[str, MetadataInput] | None = None,
        user_id: str | None = None,
        email: str | None = None,
        id: str | None = None,
        created_at: int | datetime | None = None,
    ) -> Event | None:
        """Track an event now; returns it, or ``None`` if it was dropped (lenient mode).

        Inside a request the event leaves with the request's other events once the response is
        sent; elsewhere (a CLI command, a shell, a job) it is handed to delivery at once.
        Explicit ``user_id``/``email``/``id`` win over the identity loader and Flask-Login.
        """
        app = _current_app("intercom.track()")
        explicit = None
        if user_id is not None or email is not None or id is not None:
            explicit = partial(Identity, user_id=user_id, email=email, id=id)
        return self._record(
            app, event_name, metadata=lambda: metadata, identity=explicit, created_at=created_at
        )

    def track_signal(
        self,
        signal: Signal,
        event_name: str,
        *,
        metadata: SignalMetadata | None = None,
        identity: SignalIdentity | None = None,
    ) -> Callable[..., None]:
        """Track ``event_name`` each time ``signal`` is sent; returns the connected receiver.

        ``metadata`` and ``identity`` may be values or callables called with the signal's
        ``(sender, **kwargs)``. Without ``identity``, a ``user`` keyword argument of the signal
        (as Flask-Login's ``user_logged_in`` sends) gives the identity, then the identity
        loader, then Flask-Login's ``current_user``. A failure here is logged and the event
        dropped, never raised into the code that sent the signal, unless the app is strict.

        Mapping the same signal to the same event name again (an app factory called once per
        test, say) replaces the earlier mapping: one signal sent tracks one event.
        """
        key = (signal, event_name)
        self._signal_mappings[key] = (metadata, identity)
        existing = self._receivers.get(key)
        if existing is not None:
            return existing

        def receiver(sender: Any, **kwargs: Any) -> None:
            app = _app_for_signal(sender)
            if app is None:
                log.warning(
                    "Signal %r sent outside an application context: cannot track %r",
                    getattr(signal, "name", signal),
                    event_name,
                )
                return
            state: AppState | None = app.extensions.get(EXTENSION_KEY)
            if state is None or state.extension is not self:
                return  # an app this extension does not serve
            meta_spec, who_spec = self._signal_mappings[key]

            def signal_metadata() -> Mapping[str, MetadataInput] | None:
                if meta_spec is None or isinstance(meta_spec, Mapping):
                    return meta_spec
                return meta_spec(sender, **kwargs)

            def signal_identity() -> Identity | None:
                if isinstance(who_spec, Identity):
                    return who_spec
                if who_spec is not None:
                    return who_spec(sender, **kwargs)
                return identity_of_user(kwargs["user"]) if "user" in kwargs else None

            self._record(app, event_name, metadata=signal_metadata, identity=signal_identity)

        # Strong references: a receiver defined inline must not vanish with its closure.
        signal.connect(receiver, weak=False)
        self._receivers[key] = receiver
        return receiver

    # --- the common path ------------------------------------------------------------------

    def _record(
        self,
        app: Flask,
        event_name: str,
        *,
        metadata: Callable[[], Mapping[str, MetadataInput] | None],
        identity: Callable[[], Identity | None] | None,
        created_at: int | datetime | None = None,
    ) -> Event | None:
        """Build, check, hook and dispatch one event: the path every way in shares.

        ``metadata`` and ``identity`` are called here, so that whatever they raise is handled
        like an invalid event: raised when strict, else logged and dropped. An ``identity``
        that gives ``None`` falls back to the identity loader, then Flask-Login.
        """
        state = state_of(app)
        try:
            event = self._build(event_name, metadata, identity, created_at, state)
        except Exception as exc:
            if state.settings.strict:
                raise
            reason = f"invalid: {exc}" if isinstance(exc, InvalidEventError) else repr(exc)
            self._drop(app, event_name, reason, exc)
            return None
        if event is None:
            self._drop(app, event_name, "before_send", None)
            return None
        if event_tracked.receivers:
            try:
                event_tracked.send(app, event=event)
            except Exception:
                if state.settings.strict:
                    raise
                # A receiver's bug must not fail the view nor lose the event.
                log.exception("An event_tracked receiver failed for %r", event.event_name)
        self._dispatch(app, state, event)
        return event

    def _build(
        self,
        event_name: str,
        metadata: Callable[[], Mapping[str, MetadataInput] | None],
        identity: Callable[[], Identity | None] | None,
        created_at: int | datetime | None,
        state: AppState,
    ) -> Event | None:
        who = identity() if identity is not None else None
        if who is None:
            who = resolve_identity(None, self._identity_loader, state.use_flask_login)
        if who is None:
            raise InvalidEventError(
                f"no identity for event {event_name!r}: no user is logged in and none was "
                "given (pass user_id=/email=/id= or identity=, or register "
                "@intercom.identity_loader)",
                field="identity",
            )
        event: Event | None = Event.create(
            event_name, identity=who, metadata=metadata(), created_at=created_at
        )
        for hook in self._before_send:
            if event is None:
                break
            event = hook(event)
            if event is not None and not isinstance(event, Event):
                raise IntercomEventsError(
                    f"before_send hook {getattr(hook, '__name__', hook)!r} returned "
                    f"{type(event).__name__}; it must return an Event or None"
                )
        return event

    def _dispatch(self, app: Flask, state: AppState, event: Event) -> None:
        delivery = state.settings.delivery
        if delivery == "rq":
            if has_request_context() and not request.environ.get(_FLUSHED):
                request.environ.setdefault(_PENDING, []).append(event)
            else:
                hand_off(app, state, [event])
        elif delivery == "eager":
            send_now(app, state, event)

    def _drop(self, app: Flask, event_name: str, reason: str, error: Exception | None) -> None:
        log.warning("Intercom event %r dropped: %s", event_name, reason)
        if event_dropped.receivers:
            event_dropped.send(app, event=None, event_name=event_name, reason=reason, error=error)


# --- helpers shared with the decorator and the worker ----------------------------------------


def hand_off(app: Flask, state: AppState, events: list[Event]) -> None:
    """Put ``events`` in Redis (or the spool) and send ``event_enqueued`` for those in Redis."""
    assert state.intake is not None
    in_redis = state.intake.push(
        [encode_line(event.uuid, event.to_payload()).decode() for event in events]
    )
    if in_redis and event_enqueued.receivers:
        for event in events:
            event_enqueued.send(app, event=event)


def send_now(app: Flask, state: AppState, event: Event) -> None:
    """Eager delivery: send through the client; failures are logged (raised when strict)."""
    try:
        state.client.create_event(event)
    except IntercomAPIError as exc:
        log.error("Intercom refused event %r: %s", event.event_name, exc)
        if event_failed.receivers:
            event_failed.send(app, event=event, error=exc)
        if state.settings.strict:
            raise
        return
    if event_delivered.receivers:
        event_delivered.send(app, event=event)


def _attach_pending(response: Response) -> Response:
    environ = request.environ
    events: list[Event] | None = environ.get(_PENDING)
    if events:
        # The list itself, not a copy: events tracked later in this request (by after_request
        # or teardown functions that run after this one) leave with it when the response
        # is closed, which the WSGI server does last.
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        response.call_on_close(partial(hand_off, app, state_of(app), events))
        environ[_ATTACHED] = True
    return response


def _flush_leftovers(error: BaseException | None) -> None:
    environ = request.environ
    if environ.get(_ATTACHED):
        return
    # after_request did not run (another after_request function raised): hand off now, and
    # anything tracked after this point at once.
    environ[_FLUSHED] = True
    events: list[Event] | None = environ.pop(_PENDING, None)
    if events:
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        hand_off(app, state_of(app), events)


def _current_app(what: str) -> Flask:
    if not has_app_context():
        raise RuntimeError(
            f"{what} needs an application context: call it in a request, a CLI command, or "
            "inside `with app.app_context():`"
        )
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    return app


def _app_for_signal(sender: Any) -> Flask | None:
    if has_app_context():
        app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
        return app
    if isinstance(sender, Flask):
        return sender
    return None
