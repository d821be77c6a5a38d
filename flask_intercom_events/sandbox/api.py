"""Intercom's Data Events API, and ``POST /contacts``, as the emulator answers them (pure:
the clock is passed in).

Order of checks: injected fault, bearer token (``401``), rate limit (every authenticated
call counts; ``429``), ``Intercom-Version`` (an unknown one: ``400
intercom_version_invalid``; no header: the workspace's default applies), route, write scope
on POST (``403``), body (``400``), contact (``404``; ``409`` for ``POST /contacts`` when one
with that ``external_id`` exists), active event names (``422``), then de-duplication (``202``
either way). Intercom documents the statuses, not the order it checks in; where the version
check falls is this emulator's choice.

``HEAD /events`` is answered as ``GET`` (the server sends no body); a method a route does not
take gets ``405`` with an ``Allow`` header.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timezone
from http import HTTPStatus
from typing import Any
from urllib.parse import urlencode

from .contacts import check_new_contact, contact_object
from .faults import Fault, FaultKind
from .ratelimit import limit_message, window_reset
from .received import Verdict
from .records import ReceivedEvent, ReceivedSummary
from .settings import Settings
from .state import SandboxState
from .validation import (
    ErrorItem,
    EventWarning,
    Refusal,
    check_event,
    check_summaries,
)
from .versions import VERSION_INVALID, is_known_version
from .wire import Reply, Request, error_reply, json_reply

#: Only events younger than this are listed by ``GET /events`` (summaries count them all).
LIST_WINDOW_SECONDS = 90 * 24 * 3600
#: ``GET /events`` page size when ``per_page`` is not given.
DEFAULT_PER_PAGE = 15
#: The allowance an injected ``429`` reports when the rate limit is off.
DEFAULT_RATE_LIMIT = 1666

_LOOKUPS = ("user_id", "email", "intercom_user_id")
# The methods of each API route, as a 405's Allow header lists them.
_ALLOWED = {
    "/events": ("GET", "HEAD", "POST"),
    "/events/summaries": ("POST",),
    "/contacts": ("POST",),
}
_ERROR_CODES = {408: "request_timeout", 409: "conflict"}


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# Immutable once built; NaN and Infinity are not JSON, and Intercom refuses them.
_DECODER = json.JSONDecoder(parse_constant=_no_constant)


class IntercomApi:
    """Answers the API routes (``/events``, ``/events/summaries``, ``/contacts``) from a
    state.

    ``base_url`` builds ``pages.next`` links when a request has no ``Host`` header.
    """

    def __init__(self, state: SandboxState, base_url: str = "http://127.0.0.1") -> None:
        self.state = state
        self.base_url = base_url

    def handle(self, request: Request, now: float) -> Reply:
        """The reply to one API request received at Unix time ``now``; counts and logs it."""
        admission = self.state.admit(request.path)
        settings, request_id, fault = admission.settings, admission.request_id, admission.fault
        delay = admission.delay
        if fault.kind is FaultKind.DROP:
            reply = Reply(0, drop=True)
        elif fault.kind is FaultKind.ERROR:
            reply = _injected_error(fault, request_id)
        elif fault.kind is FaultKind.THROTTLE:
            reply = _injected_throttle(settings, request_id, now)
        else:
            reply = self._answer(request, settings, request_id, now)
            if fault.kind is FaultKind.STALL:
                delay += settings.stall_seconds if fault.seconds is None else fault.seconds
        self.state.record_request(
            method=request.method,
            target=request.target,
            status=None if reply.drop else reply.status,
            fault=None if fault.kind is FaultKind.OK else fault,
            request_id=request_id,
            now=now,
        )
        return _amend(reply, (("X-Request-Id", request_id),), delay)

    def _answer(self, request: Request, settings: Settings, request_id: str, now: float) -> Reply:
        token = _bearer(request.headers.get("authorization"))
        if token is None or token not in settings.all_tokens:
            return error_reply(401, request_id, [ErrorItem("unauthorized", "Access Token Invalid")])
        headers: tuple[tuple[str, str], ...] = ()
        try:
            if settings.rate_limit is not None:
                decision = self.state.count_call(
                    token, now, settings.rate_limit, settings.rate_window
                )
                headers = decision.headers()
                if not decision.allowed:
                    raise Refusal(
                        429,
                        ErrorItem(
                            "rate_limit_exceeded",
                            limit_message(settings.rate_limit, settings.rate_window),
                        ),
                    )
            version = request.headers.get("intercom-version")
            if version is not None and not is_known_version(version):
                raise Refusal(400, ErrorItem(*VERSION_INVALID))
            reply = self._route(request, token, settings, request_id, now)
        except Refusal as refusal:
            return error_reply(refusal.status, request_id, refusal.errors, headers)
        return _amend(reply, headers)

    def _route(
        self, request: Request, token: str, settings: Settings, request_id: str, now: float
    ) -> Reply:
        path = request.path
        # HEAD is GET without the body (the server leaves the body out).
        method = "GET" if request.method == "HEAD" else request.method
        if path == "/events" and method == "GET":
            return self._list_events(request, now)
        allowed = _ALLOWED.get(path)
        if allowed is None:
            raise Refusal(404, ErrorItem("not_found", f"No such endpoint: {method} {path}"))
        if method not in allowed:
            return error_reply(
                405,
                request_id,
                [ErrorItem("method_not_allowed", f"{method} is not allowed on {path}")],
                (("Allow", ", ".join(allowed)),),
            )
        if token not in settings.tokens:
            raise Refusal(
                403, ErrorItem("forbidden", "Access Token does not have the write scope needed")
            )
        if path == "/events":
            return self._create_event(request, settings, request_id, now)
        if path == "/contacts":
            return self._create_contact(request, settings, request_id, now)
        return self._create_summaries(request, settings, request_id, now)

    # -- POST /events ----------------------------------------------------------------------

    def _create_event(
        self, request: Request, settings: Settings, request_id: str, now: float
    ) -> Reply:
        checked = check_event(_decode(request.body))
        verdict = self.state.accept_event(
            checked,
            settings,
            raw=request.body,
            warnings=_header_warnings(request) + checked.warnings,
            request_id=request_id,
            now=now,
        )
        if verdict is Verdict.NO_CONTACT:
            raise Refusal(404, ErrorItem("not_found", "User Not Found"))
        if verdict is Verdict.TOO_MANY_NAMES:
            # Intercom's own answer, code and all (seen in the wild as {"code": "422", ...}).
            raise Refusal(
                422,
                ErrorItem(
                    "422", f"Cannot have more than {settings.max_event_names} active event names"
                ),
            )
        return Reply(202)

    # -- POST /events/summaries ------------------------------------------------------------

    def _create_summaries(
        self, request: Request, settings: Settings, request_id: str, now: float
    ) -> Reply:
        checked = check_summaries(_decode(request.body))
        summary = self.state.accept_summary(
            checked,
            settings,
            raw=request.body,
            warnings=_header_warnings(request) + checked.warnings,
            request_id=request_id,
            now=now,
        )
        if summary is None:
            raise Refusal(404, ErrorItem("not_found", "User Not Found"))
        return Reply(200)

    # -- POST /contacts --------------------------------------------------------------------

    def _create_contact(
        self, request: Request, settings: Settings, request_id: str, now: float
    ) -> Reply:
        new = check_new_contact(_decode(request.body))
        contact, existed = self.state.create_contact(new, settings, now)
        if existed:
            raise Refusal(
                409,
                ErrorItem(
                    "conflict",
                    f"A contact matching those details already exists with id={contact.id}",
                ),
            )
        return json_reply(200, contact_object(contact, new, int(now)))

    # -- GET /events -----------------------------------------------------------------------

    def _list_events(self, request: Request, now: float) -> Reply:
        query = {key: values[0] for key, values in request.query.items()}
        kind = query.get("type")
        if kind is None:
            raise Refusal(400, _missing("type", "type is required; the value must be user"))
        if kind != "user":
            raise Refusal(400, _invalid("type", f"type must be user, got {kind!r}"))
        given = [key for key in _LOOKUPS if key in query]
        if len(given) != 1:
            message = "Exactly one of user_id, email or intercom_user_id is required"
            refusal = _missing if not given else _invalid
            raise Refusal(400, refusal(given[1] if given else "user_id", message))
        lookup = given[0]
        if not query[lookup]:
            raise Refusal(400, _invalid(lookup, f"{lookup} must not be empty"))
        summary = _flag(query, "summary")
        per_page = _positive_int(query, "per_page", DEFAULT_PER_PAGE)
        page = _positive_int(query, "page", 1)
        found = self.state.history(
            now, **{"id" if lookup == "intercom_user_id" else lookup: query[lookup]}
        )
        if found is None:
            raise Refusal(404, ErrorItem("not_found", "User Not Found"))
        contact, events, summaries = found
        answer: dict[str, Any] = {"type": "event.summary"}
        if summary:
            answer["events"] = _summarise(events, summaries)
        else:
            listed = sorted(
                (event for event in events if event.created_at >= now - LIST_WINDOW_SECONDS),
                key=lambda event: event.created_at,
                reverse=True,
            )
            start = (page - 1) * per_page
            answer["events"] = [event.to_api() for event in listed[start : start + per_page]]
            pages: dict[str, Any] = {}
            if start + per_page < len(listed):
                host = request.headers.get("host")
                base = f"http://{host}" if host else self.base_url
                pages["next"] = f"{base}/events?" + urlencode(
                    [
                        ("type", "user"),
                        (lookup, query[lookup]),
                        ("per_page", per_page),
                        ("page", page + 1),
                    ]
                )
            answer["pages"] = pages
        answer.update(email=contact.email, intercom_user_id=contact.id, user_id=contact.user_id)
        return json_reply(200, answer)


def _amend(reply: Reply, headers: tuple[tuple[str, str], ...], delay: float = 0.0) -> Reply:
    # Not dataclasses.replace: this runs twice per request and replace() is slow.
    return Reply(
        reply.status,
        reply.body,
        headers + reply.headers,
        reply.content_type,
        delay or reply.delay,
        reply.drop,
    )


def _bearer(header: str | None) -> str | None:
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _decode(body: bytes) -> Any:
    try:
        return _DECODER.decode(body.decode("utf-8"))
    except (ValueError, RecursionError):
        raise Refusal(
            400, ErrorItem("parameter_invalid", "The request body is not valid JSON")
        ) from None


def _header_warnings(request: Request) -> tuple[EventWarning, ...]:
    warnings = []
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        warnings.append(
            EventWarning(
                "content_type",
                f"Content-Type is {content_type!r}; Intercom expects application/json",
            )
        )
    if "application/json" not in request.headers.get("accept", "").lower():
        warnings.append(
            EventWarning("accept_header", "send Accept: application/json on every request")
        )
    if "intercom-version" not in request.headers:
        warnings.append(
            EventWarning(
                "intercom_version_missing",
                "no Intercom-Version header: the workspace's default version applies",
            )
        )
    return tuple(warnings)


def _missing(field: str, message: str) -> ErrorItem:
    return ErrorItem("parameter_not_found", message, field)


def _invalid(field: str, message: str) -> ErrorItem:
    return ErrorItem("parameter_invalid", message, field)


def _flag(query: Mapping[str, str], name: str) -> bool:
    value = query.get(name, "false").lower()
    if value not in ("true", "false"):
        raise Refusal(400, _invalid(name, f"{name} must be true or false, got {value!r}"))
    return value == "true"


def _positive_int(query: Mapping[str, str], name: str, default: int) -> int:
    if name not in query:
        return default
    value = query[name]
    if not value.isdigit() or int(value) < 1:
        raise Refusal(400, _invalid(name, f"{name} must be a positive integer, got {value!r}"))
    return int(value)


def _summarise(
    events: list[ReceivedEvent], summaries: list[ReceivedSummary]
) -> list[dict[str, Any]]:
    """Counts per event name (every event, however old, and submitted summaries)."""
    totals: dict[str, tuple[int, int, int]] = {}
    rows = [(e.event_name, 1, e.created_at, e.created_at) for e in events]
    rows += [(s.event_name, s.count, s.first, s.last) for s in summaries]
    for name, count, first, last in rows:
        seen, earliest, latest = totals.get(name, (0, first, last))
        totals[name] = (seen + count, min(earliest, first), max(latest, last))
    return [
        {"name": name, "first": _iso(first), "last": _iso(last), "count": count}
        for name, (count, first, last) in sorted(totals.items())
    ]


def _iso(seconds: int) -> str:
    """Intercom's timestamp format, e.g. ``2014-01-16T23:12:21.000+00:00``."""
    try:
        moment = datetime.fromtimestamp(seconds, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        moment = datetime.max.replace(tzinfo=timezone.utc)  # a millisecond created_at
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000+00:00")


def _injected_error(fault: Fault, request_id: str) -> Reply:
    status = fault.status or 500
    code = _ERROR_CODES.get(status, "server_error")
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Server Error"
    return error_reply(status, request_id, [ErrorItem(code, phrase)])


def _injected_throttle(settings: Settings, request_id: str, now: float) -> Reply:
    limit = settings.rate_limit or DEFAULT_RATE_LIMIT
    headers = (
        ("X-RateLimit-Limit", str(limit)),
        ("X-RateLimit-Remaining", "0"),
        ("X-RateLimit-Reset", str(window_reset(now, settings.rate_window))),
    )
    return error_reply(
        429,
        request_id,
        [ErrorItem("rate_limit_exceeded", limit_message(limit, settings.rate_window))],
        headers,
    )
