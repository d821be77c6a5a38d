"""Where a request's events wait, and the hooks that decide when they leave, or not.

A request's events wait in one :class:`~.handoff.RequestBatch`, kept in the WSGI environ
(which lives as long as the request; an app context pushed inside a view gets a new ``g``).
They leave when the response is closed, which a WSGI server does last, or at the request's
teardown if no response of ours will be closed. Every way a request can end is covered:

- a response closed by the server: ``after_request`` ties the batch to its ``close()``;
- a response of 500 or more, however made (``abort(500)``, an error handler's 500 for an
  exception it caught): the request failed, though no exception may reach the teardown;
- a file sent as is (``send_file``: ``direct_passthrough``), whose ``close()`` werkzeug never
  calls: the batch is not tied to it, and the teardown hands it off;
- a body made as it is sent (a generator) that fails: the body is watched, even when the view
  itself tracked nothing (what the stream tracks is the request's too);
- an exception out of the WSGI call itself (a teardown function that raised, which also stops
  Flask's other teardown functions): :class:`RequestGuard`, around the app, fails the batch;
- a copy of the request context (``copy_current_request_context``, in a thread): it shares
  the environ and the batch, but its teardown is the thread's end, not the request's.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from flask import Flask, Response, current_app, request
from flask.globals import request_ctx
from werkzeug.exceptions import HTTPException, InternalServerError, default_exceptions

from .handoff import RequestBatch
from .state import AppState, state_of

__all__ = ["RequestGuard", "attach_batch", "batch_of", "finish_batch", "mark_owner"]

_BATCH = "intercom_events.batch"
#: id() of the request context Flask dispatched the request in (not a copy of it).
_OWNER = "intercom_events.owner"

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def batch_of(app: Flask, state: AppState) -> RequestBatch:
    """The current request's batch, made on first use."""
    environ = request.environ
    batch: RequestBatch | None = environ.get(_BATCH)
    if batch is None:
        batch = environ[_BATCH] = RequestBatch(app, state)
    return batch


def mark_owner(sender: Flask, **extra: Any) -> None:
    """``request_started`` (sent once a request, in its own context, never in a copy)."""
    request.environ[_OWNER] = id(request_ctx._get_current_object())  # type: ignore[attr-defined]


def attach_batch(response: Response) -> Response:
    """``after_request``: tie the batch to the response that will be closed."""
    batch: RequestBatch | None = request.environ.get(_BATCH)
    streamed = response.is_streamed and not response.direct_passthrough
    failed = response.status_code >= 500
    if batch is None and (streamed or failed):
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        batch = batch_of(app, state_of(app))  # what the body, or later hooks, track
    if failed and batch is not None and batch.failed is None:
        # The request failed, however the answer was made (abort(500), an error handler
        # answering 500 for an exception it handled, a view's 503): no exception may reach
        # the teardown, yet what the request tracked did not happen.
        # An unhandled exception's 500 comes here while Flask handles it: that is the error.
        handling = sys.exc_info()[1]
        batch.finish(handling if handling is not None else _server_error(response.status_code))
    if batch is None or batch.done or response.direct_passthrough:
        # A file sent as is: werkzeug gives the server the file itself, and never calls the
        # response's close(); the teardown hands the batch off (nothing of ours runs later).
        return response
    # Events tracked later in this request (by after_request or teardown functions that run
    # after this one) leave with the batch when the response is closed. After an error in an
    # after_request function, Flask runs them all again on the error's response: the batch is
    # tied to both, handed off once.
    response.call_on_close(batch.flush)
    batch.attached = True
    if streamed:
        # A body made as it is sent can fail after the request's teardown, where no hook of
        # Flask's sees it (stream_with_context keeps the request until the end, and its
        # teardown sees it): the body itself is watched.
        response.response = _watched(response.response, batch)
    return response


def _server_error(status: int) -> HTTPException:
    error = default_exceptions.get(status, InternalServerError)(f"the request answered {status}")
    error.code = status
    return error


def _watched(body: Iterable[Any], batch: RequestBatch) -> Iterator[Any]:
    try:
        yield from body
    except Exception as error:  # not GeneratorExit: a client gone mid-body failed nothing
        batch.finish(error)
        raise


def finish_batch(error: BaseException | None) -> None:
    """``teardown_request``: the one hook that sees whether the request ended with an
    unhandled exception (after_request does not run when exceptions propagate, and a 500
    handler's response hides it)."""
    environ = request.environ
    owner = environ.get(_OWNER)
    if owner is not None and owner != id(request_ctx._get_current_object()):  # type: ignore[attr-defined]
        return  # a copy's teardown: a thread's work ended, not the request
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    batch_of(app, state_of(app)).finish(error)


class RequestGuard:
    """Around the app's ``wsgi_app``: an exception out of the WSGI call (a teardown function
    that raised, a response that could not be made) means no response will be closed, and the
    request failed: its batch is finished with the error and handed off (what it keeps)."""

    __slots__ = ("wsgi_app",)

    def __init__(self, wsgi_app: WSGIApp) -> None:
        self.wsgi_app = wsgi_app

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        try:
            return self.wsgi_app(environ, start_response)
        except BaseException as error:
            batch: RequestBatch | None = environ.get(_BATCH)
            if batch is not None:
                batch.abandon(error)
            raise
