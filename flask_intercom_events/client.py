"""The client of Intercom's API: one :class:`IntercomClient`, one HTTP attempt per call.

The client never retries: the worker decides what is worth retrying, from the class of the
error raised here. The wire is :mod:`.transport` (headers, timeouts, the deadline and byte
limits of a call, no redirects); reading answers is :mod:`.responses`; the checks of the
arguments are :mod:`.arguments`' and :mod:`.config`'s (shared with the configuration keys).

Any answer other than success becomes an
:class:`~flask_intercom_events.errors.IntercomAPIError` subclass chosen by status, carrying the
first entry of Intercom's ``error.list``, all of its entries, ``request_id``, the
``X-RateLimit-*`` values and ``Retry-After`` in seconds. No usable answer (connection refused
or dropped, a body too large or unreadable) is a
:class:`~flask_intercom_events.errors.NetworkError`, and an expired timeout or deadline a
:class:`~flask_intercom_events.errors.NetworkTimeoutError`.

The access token appears in no message, ``repr``, log line or exception, even when an
upstream echoes it, and is sent only to the configured origin (``https://``, or ``http://``
on a loopback host). A ``requests.Session`` must not cross a ``fork()``: make the client in
the process that uses it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

from .arguments import check_identifier as _check_identifier
from .arguments import contact_body, list_events_query
from .config import (
    AU_BASE_URL,
    DEFAULT_API_VERSION,
    DEFAULT_BASE_URL,
    DEFAULT_POOL_SIZE,
    DEFAULT_TIMEOUT,
    EU_BASE_URL,
    US_BASE_URL,
    check_api_version,
    check_base_url,
    check_pool_size,
    check_timeout,
    check_token,
)
from .errors import ConfigurationError, InvalidEventError, RateLimitInfo
from .events import EventSummary, Identity
from .responses import (
    Answer,
    error_from_answer,
    json_object,
    next_page_url,
    origin_of,
    parse_http_date,
    parse_rate_limit,
    parse_retry_after,
    protocol_error,
    unexpected_success,
)
from .transport import MAX_PAGE_BODY, MAX_POST_BODY, USER_AGENT, Transport

if TYPE_CHECKING:
    import requests

    from .config import Settings
    from .events import Event

__all__ = [
    "AU_BASE_URL",
    "DEFAULT_API_VERSION",
    "DEFAULT_BASE_URL",
    "DEFAULT_POOL_SIZE",
    "DEFAULT_TIMEOUT",
    "EU_BASE_URL",
    "USER_AGENT",
    "US_BASE_URL",
    "IntercomClient",
    "SendResult",
    "check_base_url",
    "check_token",
    "parse_rate_limit",
    "parse_retry_after",
]


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
        token = check_token(access_token)
        self._base_url = check_base_url(base_url)
        self._origin = origin_of(self._base_url)
        self._api_version = check_api_version(api_version)
        self._timeout = check_timeout(timeout)
        self._transport = Transport(
            token,
            base_url=self._base_url,
            timeout=self._timeout,
            session=session,
            pool_size=check_pool_size(pool_size) if session is None else DEFAULT_POOL_SIZE,
        )

    @classmethod
    def from_settings(cls, settings: Settings, *, pool_size: int | None = None) -> IntercomClient:
        """The client of an app's checked configuration (``INTERCOM_ACCESS_TOKEN``,
        ``INTERCOM_API_BASE_URL``, ``INTERCOM_API_VERSION``, ``INTERCOM_API_TIMEOUT``).

        ``pool_size``: connections kept open, at least the requests in flight at once (the
        worker's concurrency); :data:`DEFAULT_POOL_SIZE` when ``None``. Raises
        :class:`~flask_intercom_events.errors.ConfigurationError` when the token is not set.
        """
        if settings.access_token is None:
            raise ConfigurationError(
                "INTERCOM_ACCESS_TOKEN is not set: talking to Intercom needs your app's access "
                "token (with INTERCOM_EVENTS_DELIVERY 'disabled', nothing is sent and no token "
                "is needed)"
            )
        return cls(
            settings.access_token,
            base_url=settings.api_base_url,
            api_version=settings.api_version,
            timeout=settings.api_timeout,
            pool_size=DEFAULT_POOL_SIZE if pool_size is None else pool_size,
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
    def deadline(self) -> float:
        """Seconds a call may take in all, however its answer trickles in: the connect and
        read timeouts and a second more."""
        return self._transport.deadline

    @property
    def session(self) -> requests.Session:
        """The ``requests.Session`` the client sends through."""
        return self._transport.session

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
        self._transport.close()

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
        return self._post("/events", payload, expect=202)

    def create_contact(
        self, *, role: str = "user", external_id: str | None = None, email: str | None = None
    ) -> dict[str, Any]:
        """Create a contact: ``POST /contacts`` with ``role`` (``"user"`` or ``"lead"``),
        ``external_id`` (your id of the user: an event's ``user_id``) and ``email``, at least
        one of the two; returns Intercom's contact object (``type`` ``"contact"``, ``id``...).

        A contact that already exists is a
        :class:`~flask_intercom_events.errors.ConflictError` (409, "A contact matching those
        details already exists with id=..."); other failures raise as for events. Arguments are
        checked before anything is sent
        (:class:`~flask_intercom_events.errors.InvalidEventError` naming the argument).
        """
        body = contact_body(role=role, external_id=external_id, email=email)
        path = "/contacts"
        answer = self._send("POST", self._base_url + path, path, data=_json_body(path, body))
        return json_object(answer, "POST", path)

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
        return self._post("/events/summaries", body, expect=200)

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
        params = list_events_query(
            user_id=user_id,
            email=email,
            intercom_user_id=intercom_user_id,
            summary=summary,
            per_page=per_page,
        )
        items: list[dict[str, Any]] = []
        url: str = self._base_url + "/events"
        seen: set[str] = set()
        request_params: dict[str, str] | None = params
        while True:
            body = self._get_json(url, request_params)
            events = body.get("events", [])
            if not isinstance(events, list):
                protocol_error(f"'events' is {type(events).__name__}, not a list")
            items.extend(item for item in events if isinstance(item, dict))
            next_url = next_page_url(body, url, self._origin, self._transport.redactor.text)
            if next_url is None:
                return items
            if next_url in seen:
                protocol_error("pages.next points back to a page already read")
            seen.add(next_url)
            url, request_params = next_url, None

    # --- HTTP ------------------------------------------------------------------------------

    def _post(self, path: str, payload: Mapping[str, Any], *, expect: int) -> SendResult:
        answer = self._send("POST", self._base_url + path, path, data=_json_body(path, payload))
        if answer.status != expect:
            raise unexpected_success(answer, expect, "POST", path)
        return SendResult(
            status=answer.status,
            rate_limit=parse_rate_limit(answer.headers),
            server_time=parse_http_date(answer.headers.get("Date")),
            elapsed=answer.elapsed,
        )

    def _get_json(self, url: str, params: Mapping[str, str] | None) -> dict[str, Any]:
        path = "/events"  # every page is a page of GET /events; its query names the contact
        return json_object(self._send("GET", url, path, params=params), "GET", path)

    def _send(
        self,
        method: str,
        url: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        data: bytes | None = None,
    ) -> Answer:
        """One attempt; a success answer, or the matching error raised."""
        headers = {
            "Accept": "application/json",
            "Intercom-Version": self._api_version,
            "User-Agent": USER_AGENT,
        }
        if data is not None:
            headers["Content-Type"] = "application/json"
        answer = self._transport.exchange(
            method,
            url,
            path,
            headers,
            params=params,
            data=data,
            max_body=MAX_PAGE_BODY if data is None else MAX_POST_BODY,
        )
        if not answer.ok:
            raise error_from_answer(answer, method, path)
        return answer


def _json_body(path: str, payload: Mapping[str, Any]) -> bytes:
    try:
        return json.dumps(payload, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except ValueError as exc:
        raise InvalidEventError(f"the body of POST {path} is not valid JSON: {exc}") from exc
