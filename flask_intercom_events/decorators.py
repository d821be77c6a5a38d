"""``@track_event``: record an Intercom event when a view succeeds."""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable, Mapping
from functools import wraps
from typing import Any, ParamSpec, TypeVar, cast

from flask import current_app, make_response

from .events import Identity, MetadataInput
from .state import state_of

__all__ = ["track_event"]

P = ParamSpec("P")
R = TypeVar("R")

ViewMetadata = Mapping[str, MetadataInput] | Callable[..., Mapping[str, MetadataInput] | None]
ViewIdentity = Identity | Callable[..., "Identity | None"]


def track_event(
    event_name: str,
    *,
    metadata: ViewMetadata | None = None,
    identity: ViewIdentity | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Record ``event_name`` each time the decorated view returns a response below 400.

    Nothing is recorded when the view raises (``abort()`` included) or answers 400 or more.
    ``created_at`` is the second the view returned. ``metadata`` is a mapping, or a callable
    called with the view's keyword arguments inside the request context (so it can read
    ``request``); ``identity`` likewise, an :class:`Identity` or a callable giving one, by
    default the identity loader's or Flask-Login's user. Works on sync and ``async`` views and
    on ``MethodView`` through ``decorators = [track_event(...)]``.

    The event leaves for Redis in one round trip with the request's other events, after the
    response is sent. An invalid event raises :class:`InvalidEventError` in strict mode;
    otherwise the view's response stands and ``event_dropped`` is sent.
    """

    def decorate(view: Callable[P, R]) -> Callable[P, R]:
        def record(response_value: Any, view_args: dict[str, Any]) -> Any:
            returned_at = int(time.time())
            app = current_app._get_current_object()  # type: ignore[attr-defined]
            response = make_response(response_value)
            if response.status_code >= 400:
                return response
            state = state_of(app)

            def event_metadata() -> Mapping[str, MetadataInput] | None:
                return metadata(**view_args) if callable(metadata) else metadata

            def event_identity() -> Identity | None:
                return identity(**view_args) if callable(identity) else identity

            state.extension._record(
                app,
                event_name,
                metadata=event_metadata,
                identity=event_identity if identity is not None else None,
                created_at=returned_at,
            )
            return response

        if inspect.iscoroutinefunction(view):
            async_view = cast(Callable[P, Awaitable[Any]], view)

            @wraps(view)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                return record(await async_view(*args, **kwargs), kwargs)

            return cast(Callable[P, R], async_wrapper)

        @wraps(view)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            return record(view(*args, **kwargs), kwargs)

        return cast(Callable[P, R], wrapper)

    return decorate
