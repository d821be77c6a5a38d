"""The exceptions this package raises.

Every error is an :class:`IntercomEventsError`. Messages are sentences that say what is wrong
and how to fix it; none of them ever contains the access token.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


class IntercomEventsError(Exception):
    """Base class of every error raised by flask-intercom-events."""


class ConfigurationError(IntercomEventsError):
    """A configuration key is missing or holds a value that cannot work.

    The message names the key (``INTERCOM_...``) and what it accepts.
    """


class InvalidEventError(IntercomEventsError, ValueError):
    """An event, identity or metadata value breaks one of Intercom's rules.

    ``field`` names what is wrong: ``"event_name"``, ``"created_at"``, ``"identity"``,
    ``"user_id"``, ``"email"``, ``"id"``, ``"metadata"`` or ``"metadata.<key>"``.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


@dataclass(frozen=True)
class RateLimitInfo:
    """The ``X-RateLimit-*`` headers of one response (``None`` where absent).

    ``limit`` is the allowance of one 10-second window, ``remaining`` what is left of it and
    ``reset`` the Unix time (seconds) when the window refills.
    """

    limit: int | None = None
    remaining: int | None = None
    reset: int | None = None


@dataclass(frozen=True)
class ErrorDetail:
    """One entry of Intercom's ``error.list``."""

    code: str
    message: str
    field: str | None = None


class IntercomAPIError(IntercomEventsError):
    """Intercom (or the network on the way to it) did not accept a request.

    Attributes: ``status`` (``None`` when no response arrived), ``code`` and ``message`` of the
    first entry of Intercom's ``error.list``, every entry in ``errors``, ``request_id``,
    ``retry_after`` (seconds, from ``Retry-After``, else ``None``) and ``rate_limit``
    (:class:`RateLimitInfo`).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        errors: Sequence[ErrorDetail] = (),
        retry_after: float | None = None,
        rate_limit: RateLimitInfo | None = None,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.request_id = request_id
        self.errors = tuple(errors)
        self.retry_after = retry_after
        self.rate_limit = rate_limit if rate_limit is not None else RateLimitInfo()
        self.method = method
        self.path = path

    def __str__(self) -> str:
        where = f"{self.method} {self.path}: " if self.method and self.path else ""
        status = f"HTTP {self.status}" if self.status is not None else "no response"
        code = f" {self.code}" if self.code else ""
        request = f" (request_id {self.request_id})" if self.request_id else ""
        return f"{where}{status}{code}: {self.message}{request}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, "
            f"message={self.message!r}, request_id={self.request_id!r})"
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable summary (used for the failed registry and logs)."""
        return {
            "type": type(self).__name__,
            "status": self.status,
            "code": self.code,
            "message": self.message,
            "request_id": self.request_id,
        }


class BadRequestError(IntercomAPIError):
    """HTTP 400: Intercom refused the body (``parameter_not_found``, ``parameter_invalid``...)."""


class AuthenticationError(IntercomAPIError):
    """HTTP 401 or 403: the access token is invalid, revoked, or lacks write scope.

    A configuration problem: retrying does not help.
    """


class ProxyAuthenticationError(IntercomAPIError):
    """HTTP 407: a proxy on the way to Intercom refused its credentials (or asked for some),
    answering the request itself or refusing the tunnel of an ``https://`` call.

    Not the access token: the proxy's user and password, as in
    ``HTTPS_PROXY=http://user:password@proxy:3128``. Every call would fail the same way, so
    the worker pauses delivery, as for a refused token.
    """


class RedirectError(IntercomAPIError):
    """HTTP 3xx: the API answered with a redirect, which the client never follows (the token
    goes to the configured origin only).

    An API that redirects is a wrong ``INTERCOM_API_BASE_URL``, or a proxy or captive portal
    in the way; the worker retries it like a 5xx. ``location`` is the ``Location`` header
    as sent (``None`` without one), the access token taken out; the message names only its
    origin.
    """

    def __init__(self, message: str, *, location: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.location = location


class NotFoundError(IntercomAPIError):
    """HTTP 404: the contact does not exist (yet). Events never create contacts."""


class RequestTimeoutError(IntercomAPIError):
    """HTTP 408: Intercom timed out handling the request; safe to retry."""


class ConflictError(IntercomAPIError):
    """HTTP 409: a conflicting request was in progress; safe to retry."""


class UnprocessableEntityError(IntercomAPIError):
    """HTTP 422: well-formed but refused, e.g. more than 120 active event names."""


class RateLimitedError(IntercomAPIError):
    """HTTP 429 ``rate_limit_exceeded``: wait until ``rate_limit.reset`` (or ``retry_after``)."""


class ServerError(IntercomAPIError):
    """HTTP 5xx: Intercom failed; retry with backoff."""


class NetworkError(IntercomAPIError):
    """No usable response: the connection failed, was dropped, or the body was unreadable."""


class NetworkTimeoutError(NetworkError):
    """The connect or read timeout expired before Intercom answered."""


def parse_error_list(body: Any) -> tuple[str | None, list[ErrorDetail]]:
    """Read ``request_id`` and the entries of an Intercom ``error.list`` body.

    Anything that is not an ``error.list`` yields ``(None, [])``.
    """
    if not isinstance(body, Mapping) or body.get("type") != "error.list":
        return None, []
    request_id = body.get("request_id")
    details: list[ErrorDetail] = []
    raw = body.get("errors")
    if isinstance(raw, Sequence) and not isinstance(raw, str):
        for item in raw:
            if isinstance(item, Mapping):
                field = item.get("field")
                details.append(
                    ErrorDetail(
                        code=str(item.get("code", "")),
                        message=str(item.get("message", "")),
                        field=str(field) if field is not None else None,
                    )
                )
    return (str(request_id) if request_id is not None else None), details
