"""Reading what Intercom answered: headers, error bodies, origins. Pure: no I/O, no ``requests``.

:mod:`.transport` turns one HTTP exchange into an :class:`Answer`, kept as it was sent: its
body and headers are data (a JSON body, a rate-limit header), and taking the token out of
them could change what they say. The answer carries a :class:`Redactor` instead (an upstream
may echo the request's headers back), and every text built from it for a message goes
through that: the client turns an answer that is not a success into an
:class:`~flask_intercom_events.errors.IntercomAPIError` with :func:`error_from_answer`, whose
message, code, field, ``request_id`` and excerpt are redacted, as the error may be logged,
printed or stored in Redis.
"""

from __future__ import annotations

import html
import json
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timezone
from email.utils import parsedate_to_datetime
from typing import Any, NoReturn
from urllib.parse import quote, quote_plus, urljoin, urlsplit

from .errors import (
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ErrorDetail,
    IntercomAPIError,
    NetworkError,
    NotFoundError,
    ProxyAuthenticationError,
    RateLimitedError,
    RateLimitInfo,
    RedirectError,
    RequestTimeoutError,
    ServerError,
    UnprocessableEntityError,
    parse_error_list,
)
from .json_text import parse_json

__all__ = [
    "PROXY_REFUSED",
    "REDACTED",
    "Answer",
    "Redactor",
    "error_from_answer",
    "excerpt",
    "json_object",
    "next_page_url",
    "origin_of",
    "origin_text",
    "parse_http_date",
    "parse_rate_limit",
    "parse_retry_after",
    "protocol_error",
    "redact_credentials",
    "redirect_target",
    "short",
    "unexpected_success",
]

#: Characters of a body or an exception's text kept in an error message.
BODY_EXCERPT = 200
#: What stands where a credential was.
REDACTED = "<redacted>"
#: What a 407 says, whichever way it came.
PROXY_REFUSED = (
    "a proxy on the way to Intercom refused its credentials (set its user and password in "
    "HTTPS_PROXY, as http://user:password@proxy:port, or ask for access): not the access "
    "token's fault"
)
# "Bearer <credential>" as a header, a JSON string or a form would carry it. The credential
# stops before a quote, a backslash (a JSON escape), a separator or "<" (so a redacted text
# is left as it is).
_BEARER = re.compile(r"(?i)\b(bearer)(?:\s+|%20|\+)[^\s\"'\\,;<>&]+")

_ERROR_CLASSES: dict[int, type[IntercomAPIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: AuthenticationError,
    404: NotFoundError,
    407: ProxyAuthenticationError,
    408: RequestTimeoutError,
    409: ConflictError,
    422: UnprocessableEntityError,
    429: RateLimitedError,
}


class Redactor:
    """Takes one access token out of a text, in every form and case it may take there: as
    is, JSON-escaped (``/`` as ``\\/`` too), HTML-escaped and URL-encoded, upper-, lower-
    or mixed-case (a proxy may change the case of what it echoes; percent-encoding has two
    cases of its own).

    :meth:`text` also replaces any ``Bearer <credential>`` (:func:`redact_credentials`).
    It is for texts built for a message (an error, a log line), never for data: a short
    token may well match a part of an ordinary word.
    """

    def __init__(self, token: str) -> None:
        escaped = json.dumps(token)[1:-1]
        in_html = html.escape(token)
        forms = {
            token,
            escaped,
            escaped.replace("/", "\\/"),
            in_html,
            in_html.replace("&#x27;", "&#39;"),
            html.escape(token, quote=False),
            quote(token, safe=""),
            quote_plus(token),
        }
        # Longest first, so no form is left half-replaced by a shorter one.
        self._forms = re.compile(
            "|".join(re.escape(form) for form in sorted(forms, key=len, reverse=True)),
            re.IGNORECASE,
        )

    def __repr__(self) -> str:
        return f"Redactor({REDACTED})"

    def text(self, text: str) -> str:
        """``text`` without the token nor any bearer credential."""
        return redact_credentials(self._forms.sub(REDACTED, text))


@dataclass(frozen=True)
class Answer:
    """One HTTP answer: status line, headers and body, as sent.

    ``headers`` looks names up case-insensitively. ``redactor`` takes the access token out
    of any text built from the answer (:meth:`redact`). ``elapsed`` is the seconds the
    exchange took. ``cut_at`` is ``0`` for a body read whole, else the bytes read of a longer
    one (``body`` holds those, or nothing when the announced length was already too long).
    """

    status: int
    reason: str
    headers: Mapping[str, str] = field(repr=False)
    body: bytes = field(repr=False)
    redactor: Redactor = field(repr=False, compare=False)
    elapsed: float = 0.0
    cut_at: int = 0

    @property
    def ok(self) -> bool:
        """Whether the status is a success (2xx)."""
        return 200 <= self.status < 300

    def redact(self, text: str) -> str:
        """``text`` (taken from this answer, for a message) without the access token nor
        any bearer credential."""
        return self.redactor.text(text)


def redact_credentials(text: str) -> str:
    """``text`` with every ``Bearer <credential>`` replaced by ``Bearer <redacted>``."""
    return _BEARER.sub(lambda match: f"{match.group(1)} {REDACTED}", text)


def parse_rate_limit(headers: Mapping[str, str]) -> RateLimitInfo:
    """Read ``X-RateLimit-Limit``, ``-Remaining`` and ``-Reset`` (``None`` where absent/bad).

    ``headers`` should look names up case-insensitively, as ``requests``' headers do.
    """

    def integer(name: str) -> int | None:
        raw = headers.get(name)
        if raw is None:
            return None
        try:
            return int(str(raw).strip())
        except ValueError:
            return None

    return RateLimitInfo(
        limit=integer("X-RateLimit-Limit"),
        remaining=integer("X-RateLimit-Remaining"),
        reset=integer("X-RateLimit-Reset"),
    )


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delay seconds or an HTTP date.

    A date in the past gives ``0.0``; a missing or unreadable value ``None``. ``now`` (Unix
    seconds) defaults to the current time.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        when = parse_http_date(text)
        if when is None:
            return None
        seconds = when - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def parse_http_date(value: str | None) -> float | None:
    """Unix seconds of an HTTP date (``Date``, ``Retry-After``); ``None`` if unreadable."""
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def error_from_answer(answer: Answer, method: str, path: str) -> IntercomAPIError:
    """The :class:`~flask_intercom_events.errors.IntercomAPIError` subclass of a failed answer,
    with the first ``error.list`` entry as code and message (else the body's excerpt); a
    redirect (3xx) is a :class:`~flask_intercom_events.errors.RedirectError` saying where it
    pointed.

    The body is read as sent; every text taken from it (message, code, field,
    ``request_id``, excerpt, ``Location``) then has the token and any bearer credential
    redacted, as the error may be logged, printed or stored in Redis.
    """
    redact = answer.redact
    status = answer.status
    request_id, listed = parse_error_list(_json_or_none(answer.body))
    if request_id is None:
        request_id = answer.headers.get("X-Request-Id") or None
    if request_id is not None:
        request_id = redact(request_id)
    details = [
        ErrorDetail(
            code=redact(detail.code),
            message=redact(detail.message),
            field=None if detail.field is None else redact(detail.field),
        )
        for detail in listed
    ]
    if details:
        first = details[0]
        code: str | None = first.code or None
        message = first.message or first.code or f"HTTP {status}"
    else:
        code = None
        message = f"{redact(answer.reason) or 'error'}; body: {excerpt(answer)}"
    common: dict[str, Any] = {
        "status": status,
        "code": code,
        "request_id": request_id,
        "errors": details,
        "retry_after": parse_retry_after(answer.headers.get("Retry-After")),
        "rate_limit": parse_rate_limit(answer.headers),
        "method": method,
        "path": path,
    }
    if 300 <= status < 400:
        location = answer.headers.get("Location")
        reason = redact(answer.reason)
        return RedirectError(
            f"{reason + ', ' if reason else ''}{redirect_target(location, redact)}, "
            "not followed (the access token goes to the configured origin only): check "
            "INTERCOM_API_BASE_URL, or a proxy or captive portal on the way; body: "
            f"{excerpt(answer)}",
            location=None if location is None else redact(location),
            **common,
        )
    if status == 407:
        message = f"{PROXY_REFUSED}; {message}"
    error_class = _ERROR_CLASSES.get(status)
    if error_class is None:
        error_class = ServerError if 500 <= status < 600 else IntercomAPIError
    return error_class(message, **common)


def redirect_target(location: str | None, redact: Callable[[str], str]) -> str:
    """Where a redirect points, in words: the origin of its ``Location`` (never its path or
    query: they may hold anything). The whole ``Location`` is ``redact``-ed first: a token
    echoed there could otherwise show in part, cut by the parsing."""
    if location is None or not location.strip():
        return "a redirect without a Location"
    location = redact(location.strip())
    try:
        parts = urlsplit(location)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return "a redirect to an unreadable Location"
    if not parts.netloc:
        return "a redirect to another path of the same origin"
    if parts.scheme:
        where = origin_text(origin_of(location))
    else:
        where = f"//{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")
    return f"a redirect to {short(where)}"


def json_object(answer: Answer, method: str, path: str) -> dict[str, Any]:
    """The JSON object a successful answer holds; :class:`NetworkError` otherwise."""
    body = _json_or_none(answer.body, unreadable=_UNREADABLE)
    # Raised outside of an except block: the decoding error keeps the whole body (``doc``),
    # where an echoed token is not redacted.
    if body is _UNREADABLE:
        raise NetworkError(
            f"Intercom answered {answer.status} with a body that is not JSON: {excerpt(answer)}",
            status=answer.status,
            rate_limit=parse_rate_limit(answer.headers),
            method=method,
            path=path,
        )
    if not isinstance(body, dict):
        raise NetworkError(
            f"Intercom answered {answer.status} with JSON that is not an object",
            status=answer.status,
            method=method,
            path=path,
        )
    return body


def unexpected_success(answer: Answer, expected: int, method: str, path: str) -> NetworkError:
    """The error of a success Intercom never gives for ``method path`` (a ``200`` page where
    an event gets ``202``): something else answered (a captive portal, a proxy, a wrong
    ``INTERCOM_API_BASE_URL``), so the call may not have reached Intercom, and it is
    retried like a dropped connection, never counted as delivered."""
    return NetworkError(
        f"{method} {path} was answered {answer.status}, where Intercom answers {expected}: "
        f"not Intercom's answer (check INTERCOM_API_BASE_URL, or a proxy or captive portal on "
        f"the way): {excerpt(answer)}",
        status=answer.status,
        code="unexpected_answer",
        rate_limit=parse_rate_limit(answer.headers),
        method=method,
        path=path,
    )


def excerpt(answer: Answer) -> str:
    """A short, single-line view of a body that could not be used, without the token."""
    cut = f"; larger than {answer.cut_at // 1024:,} KiB, the rest not read" if answer.cut_at else ""
    if not answer.body:
        return f"(empty{cut})"
    text = answer.redact(answer.body.decode("utf-8", errors="replace"))
    kind = answer.redact(answer.headers.get("Content-Type", "no Content-Type"))
    return f"{short(text)!r} ({kind}{cut})"


def short(text: str) -> str:
    """``text`` on one line, cut to :data:`BODY_EXCERPT` characters."""
    text = " ".join(text.split())
    if len(text) > BODY_EXCERPT:
        return text[: BODY_EXCERPT - 3] + "..."
    return text


def origin_of(url: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of a URL, lower-cased, with the scheme's default port."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        port = 443 if scheme == "https" else 80
    return scheme, (parts.hostname or "").lower(), port


def origin_text(origin: tuple[str, str, int]) -> str:
    """An origin as ``scheme://host:port`` (IPv6 hosts in brackets)."""
    scheme, host, port = origin
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


def next_page_url(
    body: Mapping[str, Any],
    current: str,
    origin: tuple[str, str, int],
    redact: Callable[[str], str],
) -> str | None:
    """The absolute URL of ``pages.next`` in a page of ``GET /events`` (``None`` on the last
    page); :func:`protocol_error` when it is not a URL on ``origin`` without credentials
    (the origin it names ``redact``-ed)."""
    pages = body.get("pages")
    if not isinstance(pages, Mapping):
        return None
    next_url = pages.get("next")
    if next_url is None or next_url == "":
        return None
    if not isinstance(next_url, str):
        protocol_error(f"pages.next is {type(next_url).__name__}, not a URL")
    absolute = urljoin(current, next_url)
    parts = urlsplit(absolute)
    if parts.username is not None or parts.password is not None:
        protocol_error("pages.next carries credentials in its URL; refusing to follow it")
    if origin_of(absolute) != origin:
        protocol_error(
            f"pages.next points to {short(origin_text(origin_of(redact(absolute))))}, not "
            f"the configured {origin_text(origin)} (INTERCOM_API_BASE_URL); refusing to send "
            "the access token to another origin"
        )
    return absolute


def protocol_error(detail: str) -> NoReturn:
    """Raise the error of a page of ``GET /events`` that cannot be read (status 200)."""
    raise IntercomAPIError(
        f"cannot read the event list: {detail}", status=200, method="GET", path="/events"
    )


_UNREADABLE = object()


def _json_or_none(body: bytes, *, unreadable: Any = None) -> Any:
    try:
        return parse_json(body)
    except ValueError:  # UnicodeDecodeError is one
        return unreadable
