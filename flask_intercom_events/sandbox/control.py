"""The control endpoints under ``/_sandbox/``: no token, no latency, no faults, not counted.

| call | what |
|---|---|
| ``GET /_sandbox/received`` | ``{"events", "summaries", "duplicates", "stats"}`` |
| ``GET /_sandbox/events``, ``/summaries``, ``/stats``, ``/requests`` | one of those parts |
| ``GET /_sandbox/duplicates`` | ``{"count": n, "duplicates": [{"body", "duplicate_of"...}]}`` |
| ``POST /_sandbox/reset`` | forget what was received (settings and declared contacts stay) |
| ``GET``, ``PATCH`` (or ``POST``) ``/_sandbox/settings`` | read or change settings |
| ``GET``, ``POST /_sandbox/contacts`` | list, or declare one contact or a list of them |
| ``GET``, ``POST``, ``DELETE /_sandbox/script`` | the fault script: read, append, clear |

``HEAD`` is answered wherever ``GET`` is, without the body; a method a route does not take
gets ``405`` with an ``Allow`` header naming those it does.

No answer shows a token, though these routes need none: settings give each list of tokens as
a count and fingerprints (``sha256:`` and 12 hex digits), and a token found anywhere else
(in a received body, a logged query string, a contact, an error) is shown as
``[token sha256:...]``. The Python API (``sandbox.events[0].body``...) keeps what was sent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from .contacts import Contact
from .faults import Fault
from .settings import fingerprint
from .state import SandboxState
from .wire import JSON, Reply, Request, dump_json

#: Tokens this long or longer are hidden on every page; a shorter one (``"t"``, a test's
#: placeholder) cannot be told apart from the pages' own text, which hiding it would mangle.
HIDDEN_FROM = 8

#: Every control route starts with this.
CONTROL_PREFIX = "/_sandbox"

_Handler = Callable[[SandboxState, Any], Any]


def is_control(path: str) -> bool:
    """``True`` for a path under ``/_sandbox``."""
    return path == CONTROL_PREFIX or path.startswith(CONTROL_PREFIX + "/")


def handle_control(state: SandboxState, request: Request) -> Reply:
    """The reply to one control request."""
    route = request.path[len(CONTROL_PREFIX) :].strip("/")
    handlers = _ROUTES.get(route)
    if handlers is None:
        return _reply(state, 404, {"error": f"no control route {request.path}", "routes": _INDEX})
    # HEAD is GET without the body (the server leaves it out).
    method = "GET" if request.method == "HEAD" else request.method
    handler = handlers.get(method)
    if handler is None:
        allowed = ", ".join(_allowed(handlers))
        return _reply(
            state,
            405,
            {"error": f"{request.method} {request.path}: use {allowed}"},
            (("Allow", allowed),),
        )
    try:
        body = json.loads(request.body) if request.body.strip() else None
        status, data = handler(state, body)
    except (ValueError, TypeError, RecursionError) as exc:
        return _reply(state, 400, {"error": str(exc)})
    return _reply(state, status, data)


def _reply(
    state: SandboxState, status: int, data: Any, headers: tuple[tuple[str, str], ...] = ()
) -> Reply:
    """A JSON reply in which no token shows.

    Settings show tokens as fingerprints already; this catches a token wherever else a
    client may have put it (an event body, a query string, a contact): in any string of the
    answer, keys included, it is replaced by ``[token sha256:...]``. The answer is checked
    once as text, and rebuilt only when a token is found in it.
    """
    body = dump_json(data)
    found = _shown(body, state.secrets)
    if found:
        # Longest first, so a token holding another is replaced whole.
        found.sort(key=len, reverse=True)
        body = dump_json(
            _redact(data, [(secret, f"[token {fingerprint(secret)}]") for secret in found])
        )
    return Reply(status, body, headers, JSON)


def _as_json(text: str) -> bytes:
    """``text`` as it appears inside a JSON string of :func:`dump_json` (escapes and all)."""
    return dump_json(text)[1:-1]


def _shown(body: bytes, secrets: frozenset[str]) -> list[str]:
    """The secrets ``body`` shows in any form: as sent, JSON-escaped, percent-encoded (a
    query string is logged as it came, upper- or lower-case escapes, whole or in part), in
    another case."""
    text = body.decode("utf-8", errors="replace").lower()
    views = (text, unquote(text))
    return [
        secret
        for secret in secrets
        if len(secret) >= HIDDEN_FROM
        and any(
            form in view
            for form in (secret.lower(), _as_json(secret).decode("utf-8").lower())
            for view in views
        )
    ]


def _redact(data: Any, replacements: list[tuple[str, str]]) -> Any:
    if isinstance(data, str):
        for secret, shown in replacements:
            data = _hide(data, secret, shown)
        return data
    if isinstance(data, dict):
        return {
            _redact(key, replacements): _redact(value, replacements) for key, value in data.items()
        }
    if isinstance(data, (list, tuple)):
        return [_redact(item, replacements) for item in data]
    return data


def _hide(text: str, secret: str, shown: str) -> str:
    """``text`` with ``secret`` replaced by ``shown``, in any case; a text showing it only
    once percent-decoded (a query string) is shown decoded."""
    pattern = re.compile(re.escape(secret), re.IGNORECASE)
    for form in (text, unquote(text)):
        if pattern.search(form):
            return pattern.sub(lambda _: shown, form)
    return text


def _received(state: SandboxState, _: Any) -> tuple[int, Any]:
    events, summaries, duplicates, stats = state.snapshot()
    return 200, {
        "events": [event.to_dict() for event in events],
        "summaries": [summary.to_dict() for summary in summaries],
        "duplicates": [duplicate.to_dict() for duplicate in duplicates],
        "stats": stats.to_dict(),
    }


def _events(state: SandboxState, _: Any) -> tuple[int, Any]:
    return 200, {"events": [event.to_dict() for event in state.events]}


def _duplicates(state: SandboxState, _: Any) -> tuple[int, Any]:
    _, _, duplicates, stats = state.snapshot()
    return 200, {
        "count": stats.duplicates,
        "duplicates": [duplicate.to_dict() for duplicate in duplicates],
    }


def _summaries(state: SandboxState, _: Any) -> tuple[int, Any]:
    return 200, {"summaries": [summary.to_dict() for summary in state.summaries]}


def _stats(state: SandboxState, _: Any) -> tuple[int, Any]:
    return 200, state.stats.to_dict()


def _requests(state: SandboxState, _: Any) -> tuple[int, Any]:
    return 200, {"requests": [record.to_dict() for record in state.requests]}


def _reset(state: SandboxState, _: Any) -> tuple[int, Any]:
    state.reset()
    return 200, state.stats.to_dict()


def _get_settings(state: SandboxState, _: Any) -> tuple[int, Any]:
    return 200, state.settings.to_dict()


def _set_settings(state: SandboxState, body: Any) -> tuple[int, Any]:
    if not isinstance(body, dict):
        raise ValueError('send a JSON object of settings to change, e.g. {"latency": 0.1}')
    return 200, state.configure(**body).to_dict()


def _get_contacts(state: SandboxState, _: Any) -> tuple[int, Any]:
    return 200, {"contacts": [contact.to_dict() for contact in state.contacts]}


def _add_contacts(state: SandboxState, body: Any) -> tuple[int, Any]:
    items = body if isinstance(body, list) else [body]
    if not all(isinstance(item, dict) for item in items):
        raise ValueError('send a contact {"user_id": ..., "email": ..., "id": ...} or a list')
    contacts = [Contact.from_dict(item) for item in items]
    added = [state.add_contact(contact) for contact in contacts]
    return 201, {"contacts": [contact.to_dict() for contact in added]}


def _get_script(state: SandboxState, _: Any) -> tuple[int, Any]:
    return 200, {"script": [str(fault) for fault in state.script]}


def _extend_script(state: SandboxState, body: Any) -> tuple[int, Any]:
    items = body.get("script") if isinstance(body, dict) else body
    if not isinstance(items, list):
        raise ValueError('send {"script": ["500", "429", "drop", "stall:2", "ok"]}')
    state.extend_script([Fault.parse(item) for item in items])
    return _get_script(state, None)


def _clear_script(state: SandboxState, _: Any) -> tuple[int, Any]:
    state.clear_script()
    return _get_script(state, None)


_ROUTES: dict[str, dict[str, _Handler]] = {
    "received": {"GET": _received},
    "events": {"GET": _events},
    "duplicates": {"GET": _duplicates},
    "summaries": {"GET": _summaries},
    "stats": {"GET": _stats},
    "requests": {"GET": _requests},
    "reset": {"POST": _reset},
    "settings": {"GET": _get_settings, "PATCH": _set_settings, "POST": _set_settings},
    "contacts": {"GET": _get_contacts, "POST": _add_contacts},
    "script": {"GET": _get_script, "POST": _extend_script, "DELETE": _clear_script},
}
_INDEX = sorted(f"{CONTROL_PREFIX}/{route}" for route in _ROUTES)


def _allowed(handlers: dict[str, _Handler]) -> list[str]:
    """The methods a route answers, as a 405's ``Allow`` header lists them."""
    return sorted({*handlers, "HEAD"} if "GET" in handlers else set(handlers))
