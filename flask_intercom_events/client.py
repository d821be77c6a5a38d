"""The HTTP client for Intercom's Data Events API: the only module that imports ``requests``.

One :class:`IntercomClient` makes exactly one HTTP attempt per call and never retries: the
worker decides what is worth retrying, from the class of the error raised here. Every call
sends the bearer token, ``Intercom-Version``, ``Accept: application/json`` and a
``User-Agent``, with connect and read timeouts; redirects are never followed.

Any answer other than success becomes an
:class:`~flask_intercom_events.errors.IntercomAPIError` subclass chosen by status, carrying the
first entry of Intercom's ``error.list``, all of its entries, ``request_id``, the
``X-RateLimit-*`` values and ``Retry-After`` in seconds. No answer at all (connection refused or
dropped, unreadable body) is a :class:`~flask_intercom_events.errors.NetworkError`, and an
expired timeout a :class:`~flask_intercom_events.errors.NetworkTimeoutError`.

The access token appears in no message, ``repr``, log line or exception text, and the client
refuses to send it anywhere but the configured origin (``https://``, or ``http://`` on a
loopback host only).

Forking: a ``requests.Session`` holds open sockets and must not cross a ``fork()``. Make the
client (or at least its session) in the process that uses it; the worker builds its own per
process.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timezone
from email.utils import parsedate_to_datetime
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _package_version
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urljoin, urlsplit

import requests
import requests.adapters
import requests.utils
import urllib3.exceptions

from .errors import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ConflictError,
    IntercomAPIError,
    InvalidEventError,
    NetworkError,
    NetworkTimeoutError,
    NotFoundError,
    RateLimitedError,
    RateLimitInfo,
    RequestTimeoutError,
    ServerError,
    UnprocessableEntityError,
    parse_error_list,
)
from .events import EventSummary, Identity

if TYPE_CHECKING:
    from .events import Event

__all__ = [
    "AU_BASE_URL",
    "DEFAULT_API_VERSION",
    "DEFAULT_BASE_URL",
    "DEFAULT_POOL_SIZE",
    "DEFAULT_TIMEOUT",
    "EU_BASE_URL",
    "US_BASE_URL",
    "IntercomClient",
    "SendResult",
    "check_base_url",
    "check_token",
    "parse_rate_limit",
    "parse_retry_after",
]

#: Intercom's default host; it routes each workspace to its region.
US_BASE_URL = "https://api.intercom.io"
#: The host of workspaces hosted in Europe.
EU_BASE_URL = "https://api.eu.intercom.io"
#: The host of workspaces hosted in Australia.
AU_BASE_URL = "https://api.au.intercom.io"
DEFAULT_BASE_URL = US_BASE_URL
DEFAULT_API_VERSION = "2.11"
#: ``(connect, read)`` seconds. Short on purpose: a worker retries, a hung call only blocks.
DEFAULT_TIMEOUT: tuple[float, float] = (3.05, 10.0)
#: Connections kept per host; at least the number of requests a process has in flight.
DEFAULT_POOL_SIZE = 32

logger = logging.getLogger("flask_intercom_events.client")

try:
    _VERSION = _package_version("flask-intercom-events")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    _VERSION = "0+unknown"
USER_AGENT = f"flask-intercom-events/{_VERSION} python-requests/{requests.__version__}"

# Printable ASCII without spaces: what an Intercom token is made of. Anything else is a
# copy-paste accident, and ``requests`` would echo the header value (the token) in its error.
_TOKEN_CHARACTERS = re.compile(r"[\x21-\x7e]+")
_API_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_BODY_EXCERPT = 200

_ERROR_CLASSES: dict[int, type[IntercomAPIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: AuthenticationError,
    404: NotFoundError,
    408: RequestTimeoutError,
    409: ConflictError,
    422: UnprocessableEntityError,
    429: RateLimitedError,
}


@dataclass(frozen=True)
class SendResult:
    """What a successful ``POST`` answered.

    ``status`` is the HTTP status (202 for an event, 200 for summaries), ``rate_limit`` the
    ``X-RateLimit-*`` headers (so a rate limiter can correct its budget from successes too),
    ``server_time`` the response's ``Date`` as Unix seconds (``None`` without one; it tells the
    clock ``rate_limit.reset`` is measured by) and ``elapsed`` the seconds the call took.
    """

    status: int
    rate_limit: RateLimitInfo = field(default_factory=RateLimitInfo)
    server_time: float | None = None
    elapsed: float = 0.0


class _BearerAuth(requests.auth.AuthBase):
    """Sets ``Authorization: Bearer``; an explicit auth also stops ``requests`` using netrc."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:
        return "_BearerAuth(<redacted>)"


class IntercomClient:
    """A client of Intercom's Data Events API, safe to share between threads.

    ``access_token`` is the app's bearer token (``INTERCOM_ACCESS_TOKEN``). ``base_url`` is
    :data:`US_BASE_URL`, :data:`EU_BASE_URL` or :data:`AU_BASE_URL` (``INTERCOM_API_BASE_URL``);
    it must be ``https://``, except on a loopback host (127.0.0.0/8, ``::1``, ``localhost``),
    where ``http://`` is allowed for the sandbox emulator. ``api_version`` is sent as
    ``Intercom-Version``. ``timeout`` is ``(connect, read)`` seconds, or one number for both.

    ``session`` is used as given when passed (its adapters untouched; the caller closes it).
    Otherwise the client makes one whose connection pool keeps ``pool_size`` connections, enough
    for that many requests in flight from one process, and never retries at the transport
    level. A session must not cross a ``fork()``: make the client after forking.

    Raises :class:`~flask_intercom_events.errors.ConfigurationError` for an unusable token,
    URL, version, timeout or pool size; the message names the setting and never the token.
    """

    def __init__(
        self,
        access_token: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        api_version: str = DEFAULT_API_VERSION,
        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
        session: requests.Session | None = None,
        pool_size: int = DEFAULT_POOL_SIZE,
    ) -> None:
        self._auth = _BearerAuth(check_token(access_token))
        self._base_url = check_base_url(base_url)
        self._origin = _origin(self._base_url)
        self._api_version = _check_api_version(api_version)
        self._timeout = _check_timeout(timeout)
        if session is None:
            self._session = _make_session(_check_pool_size(pool_size), self._base_url)
            self._owns_session = True
        elif isinstance(session, requests.Session):
            self._session = session
            self._owns_session = False
        else:
            raise ConfigurationError(
                f"session must be a requests.Session or None, got {type(session).__name__}"
            )

    @property
    def base_url(self) -> str:
        """The base URL requests go to, without a trailing slash."""
        return self._base_url

    @property
    def api_version(self) -> str:
        """The ``Intercom-Version`` sent with every request."""
        return self._api_version

    @property
    def timeout(self) -> tuple[float, float]:
        """``(connect, read)`` timeout of every request, in seconds."""
        return self._timeout

    @property
    def session(self) -> requests.Session:
        """The ``requests.Session`` the client sends through."""
        return self._session

    def __repr__(self) -> str:
        return f"IntercomClient(base_url={self._base_url!r}, api_version={self._api_version!r})"

    def __reduce__(self) -> NoReturn:
        # A pickled client would carry the token into Redis or a log; jobs carry event JSON.
        raise TypeError(
            "IntercomClient cannot be pickled: it holds the access token. Pass the event's "
            "payload to the job and make a client in the worker."
        )

    def close(self) -> None:
        """Close the session if the client made it (a session passed in is the caller's)."""
        if self._owns_session:
            self._session.close()

    def __enter__(self) -> IntercomClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- the API ---------------------------------------------------------------------------

    def create_event(self, event: Event) -> SendResult:
        """Submit one data event: ``POST /events`` with ``event.to_payload()``.

        Intercom answers ``202 Accepted``; a duplicate (same contact, name and ``created_at``)
        is answered the same way and ignored. Raises an
        :class:`~flask_intercom_events.errors.IntercomAPIError` subclass otherwise.
        """
        payload = event.to_payload()
        return self._post("/events", payload)

    def submit_summaries(
        self, user_id: str, event_summaries: EventSummary | Mapping[str, Any]
    ) -> SendResult:
        """Submit pre-aggregated counts for a user: ``POST /events/summaries``.

        ``event_summaries`` is an :class:`~flask_intercom_events.events.EventSummary` or its
        ``{"event_name": str, "count": int, "first": int, "last": int}`` mapping, with
        ``first`` and ``last`` Unix seconds, ``first <= last``; the event name is lower-cased
        like an event's. ``user_id`` follows an event's ``user_id`` rule. Arguments are checked
        before anything is sent (:class:`~flask_intercom_events.errors.InvalidEventError`).
        """
        # The presence and type check first, then the identity rule (UTF-8, spaces, length).
        user = Identity(user_id=_check_identifier("user_id", user_id)).user_id
        if not isinstance(event_summaries, EventSummary):
            event_summaries = EventSummary.from_json(event_summaries)
        body = {"user_id": user, "event_summaries": event_summaries.to_json()}
        return self._post("/events/summaries", body)

    def list_events(
        self,
        *,
        user_id: str | None = None,
        email: str | None = None,
        intercom_user_id: str | None = None,
        summary: bool = False,
        per_page: int | None = None,
    ) -> list[dict[str, Any]]:
        """List a contact's events (only those under 90 days old): ``GET /events?type=user``.

        Give exactly one of ``user_id``, ``email`` or ``intercom_user_id`` (Intercom's contact
        id; the one that works for Leads). With ``summary=True`` the items are per-name
        summaries (``name``, ``count``, ``first``, ``last``) instead of events. ``per_page``
        sets the page size (Intercom's default is 15); every ``pages.next`` is followed, but
        only on the configured origin: the token is never sent elsewhere.
        """
        given = {
            name: _check_identifier(name, value)
            for name, value in (
                ("user_id", user_id),
                ("email", email),
                ("intercom_user_id", intercom_user_id),
            )
            if value is not None
        }
        if len(given) != 1:
            got = ", ".join(given) if given else "none"
            raise InvalidEventError(
                f"list_events needs exactly one of user_id, email or intercom_user_id (got {got})",
                field="identity",
            )
        if not isinstance(summary, bool):
            raise InvalidEventError(
                f"summary must be True or False, got {summary!r}", field="summary"
            )
        params: dict[str, str] = {"type": "user", **given}
        if summary:
            params["summary"] = "true"
        if per_page is not None:
            if isinstance(per_page, bool) or not isinstance(per_page, int) or per_page < 1:
                raise InvalidEventError(
                    f"per_page must be a positive integer, got {per_page!r}", field="per_page"
                )
            params["per_page"] = str(per_page)

        items: list[dict[str, Any]] = []
        url: str = self._base_url + "/events"
        seen: set[str] = set()
        request_params: dict[str, str] | None = params
        while True:
            body = self._get_json(url, request_params)
            events = body.get("events", [])
            if not isinstance(events, list):
                _protocol_error(f"'events' is {type(events).__name__}, not a list")
            items.extend(item for item in events if isinstance(item, dict))
            next_url = self._next_page(body, url)
            if next_url is None:
                return items
            if next_url in seen:
                _protocol_error("pages.next points back to a page already read")
            seen.add(next_url)
            url, request_params = next_url, None

    # --- HTTP ------------------------------------------------------------------------------

    def _post(self, path: str, payload: Mapping[str, Any]) -> SendResult:
        try:
            data = json.dumps(payload, ensure_ascii=False, allow_nan=False).encode("utf-8")
        except ValueError as exc:
            raise InvalidEventError(f"the body of POST {path} is not valid JSON: {exc}") from exc
        headers = {**self._headers(), "Content-Type": "application/json"}
        response, elapsed = self._send("POST", self._base_url + path, path, headers, data=data)
        return SendResult(
            status=response.status_code,
            rate_limit=parse_rate_limit(response.headers),
            server_time=_parse_http_date(response.headers.get("Date")),
            elapsed=elapsed,
        )

    def _get_json(self, url: str, params: Mapping[str, str] | None) -> dict[str, Any]:
        path = "/events"  # every page is a page of GET /events; its query names the contact
        response, _ = self._send("GET", url, path, self._headers(), params=params)
        try:
            body = response.json()
        except ValueError as exc:  # requests.JSONDecodeError is one
            raise NetworkError(
                f"Intercom answered {response.status_code} with a body that is not JSON: "
                f"{_excerpt(response)}",
                status=response.status_code,
                rate_limit=parse_rate_limit(response.headers),
                method="GET",
                path=path,
            ) from _scrubbed(exc)
        if not isinstance(body, dict):
            raise NetworkError(
                f"Intercom answered {response.status_code} with JSON that is not an object",
                status=response.status_code,
                method="GET",
                path=path,
            )
        return body

    def _headers(self) -> dict[str, str]:
        return {
            "Accept": "application/json",
            "Intercom-Version": self._api_version,
            "User-Agent": USER_AGENT,
        }

    def _send(
        self,
        method: str,
        url: str,
        path: str,
        headers: Mapping[str, str],
        *,
        params: Mapping[str, str] | None = None,
        data: bytes | None = None,
    ) -> tuple[requests.Response, float]:
        """One attempt; a success response and its duration, or the matching error raised."""
        started = time.perf_counter()
        try:
            response = self._session.request(
                method,
                url,
                params=params,
                data=data,
                headers=dict(headers),
                auth=self._auth,
                timeout=self._timeout,
                allow_redirects=False,
            )
            # Read the body here, under the timeout, so a stall mid-body is a timeout too.
            _ = response.content
        except requests.RequestException as exc:
            elapsed = time.perf_counter() - started
            timed_out = _is_timeout(exc)
            logger.debug(
                "%s %s -> no response (%s) in %.1f ms",
                method,
                path,
                type(exc).__name__,
                elapsed * 1000,
            )
            origin = _origin_text(self._origin)
            if timed_out:
                connect, read = self._timeout
                error: NetworkError = NetworkTimeoutError(
                    f"no answer from {origin} within the timeout ({connect:g} s to connect, "
                    f"{read:g} s to read): {_short(str(exc))}",
                    method=method,
                    path=path,
                )
            else:
                error = NetworkError(
                    f"no usable answer from {origin} ({type(exc).__name__}): {_short(str(exc))}",
                    method=method,
                    path=path,
                )
            raise error from _scrubbed(exc)
        elapsed = time.perf_counter() - started
        logger.debug("%s %s -> %d in %.1f ms", method, path, response.status_code, elapsed * 1000)
        if not 200 <= response.status_code < 300:
            raise _error_from_response(response, method, path)
        return response, elapsed

    def _next_page(self, body: Mapping[str, Any], current: str) -> str | None:
        pages = body.get("pages")
        if not isinstance(pages, Mapping):
            return None
        next_url = pages.get("next")
        if next_url is None or next_url == "":
            return None
        if not isinstance(next_url, str):
            _protocol_error(f"pages.next is {type(next_url).__name__}, not a URL")
        absolute = urljoin(current, next_url)
        parts = urlsplit(absolute)
        if parts.username is not None or parts.password is not None:
            _protocol_error("pages.next carries credentials in its URL; refusing to follow it")
        if _origin(absolute) != self._origin:
            _protocol_error(
                f"pages.next points to {_origin_text(_origin(absolute))}, not the configured "
                f"{_origin_text(self._origin)} (INTERCOM_API_BASE_URL); refusing to send the "
                "access token to another origin"
            )
        return absolute


# --- pure helpers ----------------------------------------------------------------------------


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
        when = _parse_http_date(text)
        if when is None:
            return None
        seconds = when - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _parse_http_date(value: str | None) -> float | None:
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def _error_from_response(response: requests.Response, method: str, path: str) -> IntercomAPIError:
    status = response.status_code
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    request_id, details = parse_error_list(body)
    if request_id is None:
        request_id = response.headers.get("X-Request-Id") or None
    if details:
        first = details[0]
        code: str | None = first.code or None
        message = first.message or first.code or f"HTTP {status}"
    else:
        code = None
        reason = response.reason or "error"
        message = f"{reason}; body: {_excerpt(response)}"
    error_class = _ERROR_CLASSES.get(status)
    if error_class is None:
        error_class = ServerError if 500 <= status < 600 else IntercomAPIError
    return error_class(
        message,
        status=status,
        code=code,
        request_id=request_id,
        errors=details,
        retry_after=parse_retry_after(response.headers.get("Retry-After")),
        rate_limit=parse_rate_limit(response.headers),
        method=method,
        path=path,
    )


def _excerpt(response: requests.Response) -> str:
    """A short, single-line view of a body that could not be used."""
    if not response.content:
        return "(empty)"
    text = response.content.decode("utf-8", errors="replace")
    kind = response.headers.get("Content-Type", "no Content-Type")
    return f"{_short(text)!r} ({kind})"


def _short(text: str) -> str:
    text = " ".join(text.split())
    if len(text) > _BODY_EXCERPT:
        return text[: _BODY_EXCERPT - 3] + "..."
    return text


def _is_timeout(exc: requests.RequestException) -> bool:
    if isinstance(exc, requests.Timeout):
        return True
    # A stall while the body is read surfaces as ConnectionError(ReadTimeoutError(...)).
    return any(isinstance(arg, urllib3.exceptions.TimeoutError) for arg in exc.args)


def _scrubbed(exc: BaseException) -> BaseException:
    """The exception with the token taken out of the request objects it keeps.

    Its text holds only URLs, but ``exc.request`` (kept as ``__cause__``) still has the
    headers; a crash reporter that dumps attributes must not find the token there.
    """
    response = getattr(exc, "response", None)
    for request in (getattr(exc, "request", None), getattr(response, "request", None)):
        if isinstance(request, requests.PreparedRequest) and "Authorization" in request.headers:
            request.headers["Authorization"] = "Bearer <redacted>"
    return exc


def _protocol_error(detail: str) -> NoReturn:
    raise IntercomAPIError(
        f"cannot read the event list: {detail}", status=200, method="GET", path="/events"
    )


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        port = 443 if scheme == "https" else 80
    return scheme, (parts.hostname or "").lower(), port


def _origin_text(origin: tuple[str, str, int]) -> str:
    scheme, host, port = origin
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


def _make_session(pool_size: int, base_url: str) -> requests.Session:
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(
        pool_connections=4, pool_maxsize=pool_size, max_retries=0
    )
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    # requests reads the proxy and CA-bundle environment variables again on every call
    # (about 0.4 ms of CPU, a third of a delivery's); read them once, here, instead.
    session.trust_env = False
    session.proxies.update(requests.utils.get_environ_proxies(base_url))
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        session.verify = bundle
    return session


# --- argument checks -------------------------------------------------------------------------


def check_token(token: object) -> str:
    """The access token, stripped; :class:`ConfigurationError` if it cannot be one."""
    if not isinstance(token, str):
        raise ConfigurationError(
            f"INTERCOM_ACCESS_TOKEN (access_token) must be a string, got {type(token).__name__}"
        )
    token = token.strip()  # a trailing newline from a secrets file is common and harmless
    if not token:
        raise ConfigurationError(
            "INTERCOM_ACCESS_TOKEN (access_token) is empty: set it to your Intercom app's "
            "access token (Developer Hub > your app > Authentication)"
        )
    if not _TOKEN_CHARACTERS.fullmatch(token):
        raise ConfigurationError(
            "INTERCOM_ACCESS_TOKEN (access_token) contains spaces, control or non-ASCII "
            "characters, which no Intercom token has: copy it again"
        )
    return token


def check_base_url(url: object) -> str:
    """The base URL without a trailing slash; :class:`ConfigurationError` unless it is an
    ``https://`` URL, or ``http://`` on a loopback host, without credentials or query."""
    setting = "INTERCOM_API_BASE_URL (base_url)"
    if not isinstance(url, str) or not url.strip():
        raise ConfigurationError(f"{setting} must be a URL such as {US_BASE_URL!r}, got {url!r}")
    url = url.strip().rstrip("/")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise ConfigurationError(f"{setting} {url!r} is not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in ("https", "http") or not host:
        raise ConfigurationError(
            f"{setting} must be an https:// URL with a host, such as {US_BASE_URL!r}, "
            f"{EU_BASE_URL!r} or {AU_BASE_URL!r}; got {url!r}"
        )
    if parts.username is not None or parts.password is not None:
        raise ConfigurationError(
            f"{setting} must not hold credentials (user:password@); the access token goes "
            "in INTERCOM_ACCESS_TOKEN"
        )
    if parts.query or parts.fragment:
        raise ConfigurationError(f"{setting} must not have a query or fragment; got {url!r}")
    if scheme == "http" and not _is_loopback(host):
        raise ConfigurationError(
            f"{setting} {url!r} uses plain http://, which would send the access token "
            "unencrypted: use https://. http:// is only allowed on a loopback host "
            "(127.0.0.0/8, ::1 or localhost), e.g. for the sandbox emulator."
        )
    return url


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_api_version(version: object) -> str:
    if not isinstance(version, str) or not _API_VERSION.fullmatch(version):
        raise ConfigurationError(
            "INTERCOM_API_VERSION (api_version) must be an Intercom API version such as "
            f"{DEFAULT_API_VERSION!r}, got {version!r}"
        )
    return version


def _check_timeout(timeout: object) -> tuple[float, float]:
    pair = timeout if isinstance(timeout, tuple) and len(timeout) == 2 else (timeout, timeout)
    seconds: list[float] = []
    for value in pair:
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or value <= 0
        ):
            raise ConfigurationError(
                "timeout must be a positive number of seconds or a (connect, read) pair of "
                f"them, got {timeout!r}; waiting forever is never an option"
            )
        seconds.append(float(value))
    return seconds[0], seconds[1]


def _check_pool_size(pool_size: object) -> int:
    if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
        raise ConfigurationError(
            f"pool_size must be a positive integer (connections kept open), got {pool_size!r}"
        )
    return pool_size


def _check_identifier(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidEventError(
            f"{name} must be a string, got {type(value).__name__} {value!r}", field=name
        )
    if not value.strip():
        raise InvalidEventError(f"{name} must not be empty or blank", field=name)
    return value
