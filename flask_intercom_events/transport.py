"""One HTTP exchange with Intercom: the only module that imports ``requests`` (and urllib3).

:class:`Transport` sends one request through a ``requests.Session`` (the bearer token,
connect and read timeouts, no transport-level retries) and reads its answer into a
:class:`~flask_intercom_events.responses.Answer`, in a response hook, so that a redirect is
read like any other answer and never followed, within two bounds:

- a deadline for the whole call, :attr:`Transport.deadline` (connect + read timeouts +
  :data:`DEADLINE_MARGIN`), kept by :mod:`.deadlines` even while headers or a body trickle in:
  the connection classes of the transport's pools tell it which socket a call uses;
- the bytes read: :data:`MAX_POST_BODY` or :data:`MAX_PAGE_BODY` of a success, and
  :data:`MAX_ERROR_BODY` of an error's body; past that, reading stops and the connection is
  closed, not given back to the pool.

No usable answer is a :class:`~flask_intercom_events.errors.NetworkError` (a
:class:`~flask_intercom_events.errors.NetworkTimeoutError` when a timeout or the deadline
expired, a :class:`~flask_intercom_events.errors.ProxyAuthenticationError` when a proxy
refused the tunnel of an ``https://`` call with a 407), chained to the ``requests``
exception with the token taken out of its request objects and its frames' locals cleared.
The answer is kept as sent (its body and headers are data); it carries the
:class:`~flask_intercom_events.responses.Redactor` that takes the token out of every text
built from it, as an upstream may echo the request's headers.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _package_version
from typing import Any, ClassVar, TypeVar

import requests
import requests.adapters
import requests.structures
import requests.utils
import urllib3
import urllib3.connection
import urllib3.exceptions

from .deadlines import Deadlines
from .errors import (
    ConfigurationError,
    NetworkError,
    NetworkTimeoutError,
    ProxyAuthenticationError,
)
from .responses import PROXY_REFUSED, Answer, Redactor, origin_of, origin_text, short

__all__ = [
    "DEADLINE_MARGIN",
    "MAX_ERROR_BODY",
    "MAX_PAGE_BODY",
    "MAX_POST_BODY",
    "USER_AGENT",
    "Transport",
    "forget_frames",
    "scrubbed",
]

#: Seconds a call may take beyond its connect and read timeouts before it is cut.
DEADLINE_MARGIN = 1.0
#: Bytes of an error's body read (enough for any ``error.list``); the rest is not read.
MAX_ERROR_BODY = 64 * 1024
#: Bytes of a successful ``POST`` answer read: empty for an event, a contact object for
#: ``POST /contacts`` (custom attributes included). A larger one is a protocol error.
MAX_POST_BODY = 256 * 1024
#: Bytes of one page of ``GET /events`` read. A larger one is a protocol error.
MAX_PAGE_BODY = 4 * 1024 * 1024

_CHUNK = 64 * 1024

E = TypeVar("E", bound=BaseException)

logger = logging.getLogger("flask_intercom_events.client")

try:
    _VERSION = _package_version("flask-intercom-events")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    _VERSION = "0+unknown"
USER_AGENT = f"flask-intercom-events/{_VERSION} python-requests/{requests.__version__}"


class _BearerAuth(requests.auth.AuthBase):
    """Sets ``Authorization: Bearer``; an explicit auth also stops ``requests`` using netrc."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:
        return "_BearerAuth(<redacted>)"


class Transport:
    """Sends requests for one client; safe to share between threads.

    ``session`` is used as given when passed (its adapters untouched; the caller closes it):
    the deadline then holds from the answer's headers on. Otherwise the transport makes one
    with a pool of ``pool_size`` connections, watched from the moment a call connects.
    """

    def __init__(
        self,
        access_token: str,
        *,
        base_url: str,
        timeout: tuple[float, float],
        session: requests.Session | None,
        pool_size: int,
    ) -> None:
        self._auth = _BearerAuth(access_token)
        #: Takes the token out of texts built from what an upstream sent back.
        self.redactor = Redactor(access_token)
        self._origin = origin_text(origin_of(base_url))
        self._timeout = timeout
        self.deadline = timeout[0] + timeout[1] + DEADLINE_MARGIN
        self._deadlines = Deadlines()
        if session is None:
            self.session = _make_session(pool_size, base_url, self._deadlines)
            self._owns_session = True
        elif isinstance(session, requests.Session):
            self.session = session
            self._owns_session = False
        else:
            raise ConfigurationError(
                f"session must be a requests.Session or None, got {type(session).__name__}"
            )

    def __repr__(self) -> str:
        return f"Transport(origin={self._origin!r})"

    def close(self) -> None:
        """Close the session if the transport made it (a session passed in is the caller's)."""
        if self._owns_session:
            self.session.close()

    def exchange(
        self,
        method: str,
        url: str,
        path: str,
        headers: Mapping[str, str],
        *,
        max_body: int,
        params: Mapping[str, str] | None = None,
        data: bytes | None = None,
    ) -> Answer:
        """One attempt: the answer, whatever its status, or :class:`NetworkError` raised
        (:class:`ProxyAuthenticationError` when a proxy refused the tunnel with a 407).

        ``path`` names the call in logs and errors (never the query: it can hold an email);
        ``max_body`` is the most bytes of a successful answer's body read.
        """
        started = time.perf_counter()
        problem: requests.RequestException | None = None
        call = self._deadlines.start(self.deadline)
        try:
            answer = self._receive(
                method, url, headers, params=params, data=data, max_body=max_body
            )
        except requests.RequestException as exc:
            problem = exc
        finally:
            late = self._deadlines.finish(call)
        elapsed = time.perf_counter() - started
        if problem is None and not late:
            logger.debug("%s %s -> %d in %.1f ms", method, path, answer.status, elapsed * 1000)
            if answer.ok and answer.cut_at:
                raise NetworkError(
                    f"Intercom answered {answer.status} with a body larger than "
                    f"{max_body // 1024:,} KiB; stopped reading there and closed the "
                    "connection",
                    method=method,
                    path=path,
                )
            return answer
        logger.debug(
            "%s %s -> no response (%s) in %.1f ms",
            method,
            path,
            "past the deadline" if late else type(problem).__name__,
            elapsed * 1000,
        )
        # Raised here, after the except block: this frame keeps no exception of requests in a
        # local, and the chained one keeps no frame's locals (urllib3's hold the headers).
        cause = None if problem is None else forget_frames(problem)
        raise self._failure(cause, late, method, path) from cause

    def _receive(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        *,
        params: Mapping[str, str] | None,
        data: bytes | None,
        max_body: int,
    ) -> Answer:
        # The only frames that hold the response (and, through it, the request's headers):
        # they return an Answer, or their locals are cleared with the exception's traceback.
        started = time.perf_counter()
        read: list[Answer] = []

        def take(response: requests.Response, *args: Any, **kwargs: Any) -> None:
            read.append(self._read(response, max_body, started))
            if response.is_redirect:
                # Not followed, and read already: without its Location, requests does not
                # read the rest of the body (nor parse the Location, nor look in ~/.netrc)
                # to prepare the request it would send next (``Response.next``).
                del response.headers["Location"]

        # Read in a response hook, before Session.send goes on with a redirect. The hooks of
        # a request replace the session's own: those are listed first, and run as before.
        hooks = self.session.hooks.get("response") or []
        if callable(hooks):
            hooks = [hooks]
        response = self.session.request(
            method,
            url,
            params=params,
            data=data,
            headers=dict(headers),
            auth=self._auth,
            timeout=self._timeout,
            allow_redirects=False,
            stream=True,
            hooks={"response": [*hooks, take]},
        )
        if not read:  # a Session subclass that dispatches no hooks
            read.append(self._read(response, max_body, started))
        return read[0]

    def _read(self, response: requests.Response, max_body: int, started: float) -> Answer:
        """The answer, its body read within its limit; the response closed (its connection
        back to the pool when read to its end, closed when cut)."""
        try:
            # Already attached when connecting, unless the session is the caller's.
            self._deadlines.attach(getattr(response.raw, "connection", None))
            ok = 200 <= response.status_code < 300
            limit = max_body if ok else MAX_ERROR_BODY
            body, cut = _read_at_most(response, limit, ok)
        finally:
            response.close()
        # As sent: a body or header is data, and redacting the token from it could change
        # what it says. Texts built from it for a message go through the redactor.
        return Answer(
            status=response.status_code,
            reason=response.reason or "",
            headers=requests.structures.CaseInsensitiveDict(response.headers),
            body=body,
            redactor=self.redactor,
            elapsed=time.perf_counter() - started,
            cut_at=limit if cut else 0,
        )

    def _failure(
        self, exc: requests.RequestException | None, late: bool, method: str, path: str
    ) -> NetworkError | ProxyAuthenticationError:
        connect, read = self._timeout
        if late:
            return NetworkTimeoutError(
                f"no complete answer from {self._origin} within the deadline of "
                f"{self.deadline:g} s ({connect:g} s to connect, {read:g} s to read, and "
                f"{DEADLINE_MARGIN:g} s more): the server is too slow or trickles its answer",
                method=method,
                path=path,
            )
        said = short(self.redactor.text(str(exc)))
        if exc is not None and _is_timeout(exc):
            return NetworkTimeoutError(
                f"no answer from {self._origin} within the timeout ({connect:g} s to "
                f"connect, {read:g} s to read): {said}",
                method=method,
                path=path,
            )
        if exc is not None and _tunnel_refused_credentials(exc):
            return ProxyAuthenticationError(
                f"{PROXY_REFUSED}; it answered 407 to the tunnel to {self._origin}: {said}",
                status=407,
                method=method,
                path=path,
            )
        return NetworkError(
            f"no usable answer from {self._origin} ({type(exc).__name__}): {said}",
            method=method,
            path=path,
        )


def _read_at_most(response: requests.Response, limit: int, ok: bool) -> tuple[bytes, bool]:
    """The body, or its first ``limit`` bytes and ``True`` when it is longer (a success
    announced longer is not read at all: nothing of it would be used)."""
    declared = response.headers.get("Content-Length", "").strip()
    if ok and declared.isascii() and declared.isdigit() and int(declared) > limit:
        return b"", True
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(chunk_size=min(_CHUNK, limit + 1)):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return b"".join(chunks)[:limit], True
    return b"".join(chunks), False


def forget_frames(exc: E) -> E:
    """``exc`` with the token out of reach of a crash reporter that records frames' locals.

    urllib3 and http.client keep the request's headers in their frames' locals, and
    ``requests`` in the request objects its exceptions keep: for ``exc`` and every exception
    it links to (cause, context, arguments, attributes), the request objects are
    :func:`scrubbed` and the frames of the traceback cleared (all but the running ones,
    which :func:`traceback.clear_frames` leaves as they are).
    """
    for linked in _linked(exc):
        scrubbed(linked)
        traceback.clear_frames(linked.__traceback__)
    return exc


def _linked(exc: BaseException) -> list[BaseException]:
    found: list[BaseException] = []
    todo: list[object] = [exc]
    while todo:
        item = todo.pop()
        if not isinstance(item, BaseException) or any(item is seen for seen in found):
            continue
        found.append(item)
        todo += [item.__cause__, item.__context__, *item.args, *vars(item).values()]
    return found


def scrubbed(exc: BaseException) -> BaseException:
    """The exception with the token taken out of the request objects it keeps.

    Its text holds only URLs, but ``exc.request`` (kept as ``__cause__``) still has the
    headers; a crash reporter that dumps attributes must not find the token there.
    """
    response = getattr(exc, "response", None)
    for request in (getattr(exc, "request", None), getattr(response, "request", None)):
        if isinstance(request, requests.PreparedRequest) and "Authorization" in request.headers:
            request.headers["Authorization"] = "Bearer <redacted>"
    return exc


def _tunnel_refused_credentials(exc: requests.RequestException) -> bool:
    # An https:// call through a proxy asks it for a tunnel (CONNECT); a 407 there is no
    # answer requests returns but an OSError of http.client, "Tunnel connection failed:
    # 407 Proxy Authentication Required", wrapped in urllib3's and requests' ProxyError.
    return isinstance(exc, requests.exceptions.ProxyError) and any(
        type(linked) is OSError and str(linked).startswith("Tunnel connection failed: 407")
        for linked in _linked(exc)
    )


def _is_timeout(exc: requests.RequestException) -> bool:
    if isinstance(exc, requests.Timeout):
        return True
    # A stall while the body is read surfaces as ConnectionError(ReadTimeoutError(...)).
    return any(isinstance(arg, urllib3.exceptions.TimeoutError) for arg in exc.args)


# --- the session: pools whose connections tell the deadlines which socket a call uses -------


class _WatchedConnection(urllib3.connection.HTTPConnection):
    """Mixed into each connection class of the transport's pools (see :func:`_watch`)."""

    deadlines: ClassVar[Deadlines]

    def connect(self) -> None:
        super().connect()
        self.deadlines.attach(self)

    def request(self, *args: Any, **kwargs: Any) -> None:
        # A connection kept alive from an earlier call is attached here, before it sends.
        self.deadlines.attach(self)
        super().request(*args, **kwargs)


class _WatchedAdapter(requests.adapters.HTTPAdapter):
    """An adapter whose pools (direct or through a proxy) make watched connections."""

    def __init__(self, deadlines: Deadlines, **kwargs: Any) -> None:
        self._deadlines = deadlines
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        _watch(self.poolmanager, self._deadlines)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        made = proxy not in self.proxy_manager
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if made:
            _watch(manager, self._deadlines)
        return manager


def _watch(manager: Any, deadlines: Deadlines) -> None:
    """Make ``manager``'s pools, whatever their kind (plain, TLS, SOCKS), watched ones."""
    watched: dict[str, Any] = {}
    for scheme, pool_class in manager.pool_classes_by_scheme.items():
        connection_class = type(
            f"Watched{pool_class.ConnectionCls.__name__}",
            (_WatchedConnection, pool_class.ConnectionCls),
            {"deadlines": deadlines},
        )
        watched[scheme] = type(
            f"Watched{pool_class.__name__}", (pool_class,), {"ConnectionCls": connection_class}
        )
    manager.pool_classes_by_scheme = watched


def _make_session(pool_size: int, base_url: str, deadlines: Deadlines) -> requests.Session:
    session = requests.Session()
    adapter = _WatchedAdapter(deadlines, pool_connections=4, pool_maxsize=pool_size, max_retries=0)
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
