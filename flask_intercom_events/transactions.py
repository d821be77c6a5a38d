"""``intercom.transactional(session)``: events tracked in a SQLAlchemy transaction wait for it.

Built on SQLAlchemy's session events, listened to on the ``Session``, ``sessionmaker`` or
``scoped_session`` given (``event.listen`` resolves the last two to the class their sessions
are made of, so only those sessions are watched):

- ``after_transaction_create`` / ``after_transaction_end``: the transactions in progress in
  the current context (a ``ContextVar``: a thread, or an asyncio task), innermost last, so
  :meth:`Transactions.hold` finds the one an event is tracked in;
- ``after_commit`` and ``after_rollback``: how a transaction (a savepoint included) ended;
  both fire before its ``after_transaction_end``, where the events are released or dropped;
- ``after_flush`` and ``do_orm_execute`` (ORM inserts, updates and deletes): whether it wrote.

A savepoint that commits hands its events to the enclosing transaction; the outermost one
releases them on commit. Rolled back: dropped. Closed with neither (``Session.close()``, what
Flask-SQLAlchemy does at the end of each request): dropped if it wrote (its writes are gone),
released if it only read, as the transaction a query begins on its own usually is.

SQLAlchemy is optional: it is imported only when :meth:`Transactions.watch` is first called.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flask import Flask

from .errors import ConfigurationError
from .events import Event

if TYPE_CHECKING:
    from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction

    from .handoff import RequestBatch

__all__ = ["Transactions"]

log = logging.getLogger("flask_intercom_events")


Release = Callable[[Flask, Event, "RequestBatch | None", bool], None]
Drop = Callable[[Flask, Event], None]


@dataclass
class _Held:
    """What one transaction holds: the events tracked in it, with their app and request
    batch, whether it wrote, and how it ended (``"committed"``, ``"rolled back"``)."""

    events: list[tuple[Flask, Event, RequestBatch | None]] = field(default_factory=list)
    wrote: bool = False
    outcome: str | None = None


class Transactions:
    """The sessions one :class:`~flask_intercom_events.IntercomEvents` waits for.

    ``release(app, event, batch, committed)`` is called for an event free to go,
    ``drop(app, event)`` for one rolled back.
    """

    def __init__(self, release: Release, drop: Drop) -> None:
        self._release = release
        self._drop = drop
        self._watched: list[object] = []
        # One variable per extension: each context sees the transactions begun in it.
        self._in_progress: ContextVar[tuple[SessionTransaction, ...]] = ContextVar(
            f"intercom_events_transactions_{id(self):x}", default=()
        )
        # Session.info keys of this object's own (several extensions may watch one session):
        # what each transaction holds, and that an ORM write is beginning a transaction.
        self._key = f"intercom_events.transactions.{id(self):x}"
        self._write_begins = f"intercom_events.write_begins.{id(self):x}"

    def __repr__(self) -> str:
        return f"<Transactions watching {len(self._watched)} session target(s)>"

    def watch(self, target: object) -> None:
        """Listen to ``target``'s session events (once per target)."""
        try:
            from sqlalchemy import event
            from sqlalchemy.orm import Session, scoped_session, sessionmaker
        except ImportError as exc:
            raise ConfigurationError(
                "intercom.transactional() needs SQLAlchemy, which is not installed: "
                "pip install 'flask-intercom-events[sqlalchemy]'"
            ) from exc

        if not isinstance(target, (Session, sessionmaker, scoped_session)):
            raise TypeError(
                "intercom.transactional() takes a SQLAlchemy Session, sessionmaker or "
                f"scoped_session (such as Flask-SQLAlchemy's db.session), got "
                f"{type(target).__name__}"
            )
        if any(watched is target for watched in self._watched):
            return
        listeners: dict[str, Callable[..., None]] = {
            "after_transaction_create": self._created,
            "after_transaction_end": self._ended,
            "after_commit": self._committed,
            "after_rollback": self._rolled_back,
            "after_flush": self._flushed,
            "do_orm_execute": self._executed,
        }
        for name, listener in listeners.items():
            event.listen(target, name, listener)
        self._watched.append(target)

    def hold(self, app: Flask, event: Event, batch: RequestBatch | None) -> bool:
        """Keep ``event`` with the innermost transaction in progress here, if there is one."""
        for transaction in reversed(self._in_progress.get()):
            if transaction.is_active:
                self._held(transaction).events.append((app, event, batch))
                return True
        return False

    # --- session events -------------------------------------------------------------------
    # SQLAlchemy calls these inside commit(), rollback() and close(): none may raise.

    def _created(self, session: Session, transaction: SessionTransaction) -> None:
        self._in_progress.set((*self._in_progress.get(), transaction))
        if transaction.parent is None and session.info.pop(self._write_begins, False):
            self._held(transaction).wrote = True

    def _committed(self, session: Session) -> None:
        # Fired by the transaction committing (a savepoint, or the outermost one) while it is
        # still the session's innermost.
        held = self._held_of(_innermost(session))
        if held is not None:
            held.outcome = "committed"

    def _rolled_back(self, session: Session) -> None:
        held = self._held_of(_innermost(session))
        if held is not None:
            held.outcome = "rolled back"

    def _flushed(self, session: Session, flush_context: Any) -> None:
        self._mark_written(_innermost(session))

    def _executed(self, state: ORMExecuteState) -> None:
        if not (state.is_insert or state.is_update or state.is_delete):
            return
        transaction = _innermost(state.session)
        if transaction is None:  # the statement begins the transaction it runs in
            state.session.info[self._write_begins] = True
        else:
            self._mark_written(transaction)

    def _ended(self, session: Session, transaction: SessionTransaction) -> None:
        self._in_progress.set(
            tuple(t for t in self._in_progress.get() if t is not transaction and t.is_active)
        )
        held: _Held | None = session.info.get(self._key, {}).pop(transaction, None)
        if held is None or not held.events:
            return
        kept = held.outcome == "committed" or (held.outcome is None and not held.wrote)
        parent = transaction.parent
        if kept and parent is not None:
            # A savepoint (or a closed inner transaction): the enclosing one decides.
            self._held(parent).events.extend(held.events)
            return
        for app, event, batch in held.events:
            try:
                if kept:
                    self._release(app, event, batch, held.outcome == "committed")
                else:
                    self._drop(app, event)
            except Exception:
                log.exception(
                    "Intercom event %r: handling the end of its transaction failed",
                    event.event_name,
                )

    def _held(self, transaction: SessionTransaction) -> _Held:
        registry: dict[SessionTransaction, _Held] = transaction.session.info.setdefault(
            self._key, {}
        )
        held = registry.get(transaction)
        if held is None:
            held = registry[transaction] = _Held()
        return held

    def _held_of(self, transaction: SessionTransaction | None) -> _Held | None:
        if transaction is None:
            return None
        registry: dict[SessionTransaction, _Held] = transaction.session.info.get(self._key, {})
        return registry.get(transaction)

    def _mark_written(self, transaction: SessionTransaction | None) -> None:
        # A savepoint's writes are its parents' too: their own rollback or close undoes them.
        while transaction is not None:
            self._held(transaction).wrote = True
            transaction = transaction.parent


def _innermost(session: Session) -> SessionTransaction | None:
    return session.get_nested_transaction() or session.get_transaction()
