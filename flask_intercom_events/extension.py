"""The Flask extension: configuration per app, identity, tracking, and the hand-off."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from functools import partial
from typing import Any, TypeAlias, TypeVar

from blinker import Signal
from flask import Flask, current_app, has_app_context, has_request_context, request_started

from .cli import intercom_cli
from .client import IntercomClient
from .config import Settings
from .errors import ConfigurationError, IntercomEventsError, InvalidEventError
from .events import Event, Identity, MetadataInput
from .handoff import RequestBatch, drop, hand_off, send_now
from .identity import IdentityLoader, flask_login_available, identity_of_user, resolve_identity
from .intake import Intake
from .local_seconds import LocalSeconds
from .request_hooks import RequestGuard, attach_batch, batch_of, finish_batch, mark_owner
from .signals import event_tracked
from .spool import Spool
from .state import EXTENSION_KEY, AppState, state_of
from .transactions import Transactions

__all__ = ["BeforeSend", "IntercomEvents", "state_of"]

log = logging.getLogger("flask_intercom_events")

BeforeSend = Callable[[Event], "Event | None"]

#: What ``metadata=`` and ``identity=`` of :meth:`IntercomEvents.track_signal` accept.
SignalMetadata: TypeAlias = (
    Mapping[str, MetadataInput] | Callable[..., Mapping[str, MetadataInput] | None]
)
SignalIdentity: TypeAlias = Identity | Callable[..., Identity | None]
#: A SQLAlchemy ``Session``, ``sessionmaker`` or ``scoped_session`` (see ``transactional``).
SessionLike = TypeVar("SessionLike")


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
        self._transactions: Transactions | None = None
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
                _checked_spool(settings),
                slow=settings.redis_slow,
            )
        seconds = None
        if settings.delivery == "eager":
            client = IntercomClient.from_settings(settings)
            if settings.same_second == "spread":
                seconds = LocalSeconds(settings.max_spread)
        app.extensions[EXTENSION_KEY] = AppState(
            extension=self,
            settings=settings,
            use_flask_login=flask_login_available(),
            intake=intake,
            client=client,
            seconds=seconds,
        )
        app.after_request(attach_batch)
        app.teardown_request(finish_batch)
        request_started.connect(mark_owner, app)
        app.wsgi_app = RequestGuard(app.wsgi_app)  # type: ignore[method-assign]
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

    def transactional(self, session: SessionLike) -> SessionLike:
        """Make events tracked in ``session``'s transactions wait for them; returns ``session``.

        ``session`` is a SQLAlchemy ``Session``, ``sessionmaker`` or ``scoped_session`` (such
        as Flask-SQLAlchemy's ``db.session``). An event tracked while one of its sessions has
        a transaction in progress is handed off after that transaction commits (after the
        response, as usual, in a request; at once outside one) and dropped if it rolls back
        (``event_dropped``, reason ``"rolled back"``); in a savepoint that rolls back, only the
        savepoint's events are dropped. A transaction closed without a commit or a rollback
        (the session closed at the end of a request) drops its events if it wrote anything,
        and releases them if it only read. Outside a transaction nothing changes.
        """
        if self._transactions is None:
            self._transactions = Transactions(self._release, _drop_rolled_back)
        self._transactions.watch(session)
        return session

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
        if self._transactions is not None:
            batch = batch_of(app, state) if has_request_context() else None
            if self._transactions.hold(app, event, batch):
                return event
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
        if state.settings.delivery == "eager":
            send_now(app, state, event)
        elif has_request_context():
            batch_of(app, state).add(event, app, state)
        else:
            hand_off(app, state, [event])

    def _release(
        self, app: Flask, event: Event, batch: RequestBatch | None, committed: bool
    ) -> None:
        """An event a transaction held is free to go (``committed``: by a commit)."""
        state = state_of(app)
        if state.settings.delivery == "eager":
            send_now(app, state, event)
        elif batch is not None:
            batch.add(event, app, state, committed=committed)
        else:
            hand_off(app, state, [event])

    def _drop(self, app: Flask, event_name: str, reason: str, error: Exception | None) -> None:
        drop(app, event_name, reason, error)


def _drop_rolled_back(app: Flask, event: Event) -> None:
    drop(app, event.event_name, "rolled back", None, event=event, level=logging.INFO)


def _checked_spool(settings: Settings) -> Spool:
    # The spool of this app's destination (its Redis and queue): other apps sharing the
    # directory keep their own files, which this app's intake neither drains nor counts.
    directory = settings.spool_dir
    spool = Spool.for_redis(directory, settings.redis_url, settings.queue)
    try:
        spool.check()
    except (OSError, ValueError) as exc:  # ValueError: a path the OS cannot take at all
        raise ConfigurationError(
            f"INTERCOM_EVENTS_SPOOL_DIR {directory!r} cannot keep events: {exc}. The spool "
            "holds events while Redis is unreachable, so it must be a directory this process "
            "can create and write (on a local disk): set the key to one"
        ) from exc
    return spool


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
