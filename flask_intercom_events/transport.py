"""One HTTP exchange with Intercom: with :mod:`.client`, the only module that imports ``requests``.

:class:`Transport` sends one request through a ``requests.Session`` (with the bearer token,
connect and read timeouts, no redirects, no transport-level retries) and reads its answer
into a :class:`~flask_intercom_events.responses.Answer`. No answer at all is a
:class:`~flask_intercom_events.errors.NetworkError` (a
:class:`~flask_intercom_events.errors.NetworkTimeoutError` when a timeout expired), chained to
the ``requests`` exception with the token taken out of it.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _package_version
from typing import TypeVar

import requests
import requests.adapters
import requests.structures
import requests.utils
import urllib3.exceptions

from .errors import ConfigurationError, NetworkError, NetworkTimeoutError
from .responses import Answer, Redactor, origin_of, origin_text, short

__all__ = ["USER_AGENT", "Transport", "forget_frames", "scrubbed"]

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

    ``session`` is used as given when passed (its adapters untouched; the caller closes it);
    otherwise the transport makes one with a pool of ``pool_size`` connections.
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
        self._redactor = Redactor(access_token)
        self._origin = origin_text(origin_of(base_url))
        self._timeout = timeout
        if session is None:
            self.session = _make_session(pool_size, base_url)
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
        params: Mapping[str, str] | None = None,
        data: bytes | None = None,
    ) -> Answer:
        """One attempt: the answer, whatever its status, or :class:`NetworkError` raised.

        ``path`` names the call in logs and errors (never the query: it can hold an email).
        """
        started = time.perf_counter()
        problem: requests.RequestException | None = None
        try:
            answer = self._receive(method, url, headers, params=params, data=data, started=started)
        except requests.RequestException as exc:
            problem = exc
        if problem is None:
            logger.debug(
                "%s %s -> %d in %.1f ms", method, path, answer.status, answer.elapsed * 1000
            )
            return answer
        # Raised here, after the except block: this frame keeps no exception of requests in a
        # local, and the chained one keeps no frame's locals (urllib3's hold the headers).
        raise self._failure(forget_frames(problem), method, path, started) from problem

    def _receive(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        *,
        params: Mapping[str, str] | None,
        data: bytes | None,
        started: float,
    ) -> Answer:
        # The only frame that holds the response (and, through it, the request's headers):
        # it returns an Answer, or its locals are cleared with the exception's traceback.
        response = self.session.request(
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
        body = response.content
        # An upstream may echo the request's headers: the token goes no further than here.
        redact = self._redactor.text
        return Answer(
            status=response.status_code,
            reason=redact(response.reason or ""),
            headers=requests.structures.CaseInsensitiveDict(
                {name: redact(value) for name, value in response.headers.items()}
            ),
            body=self._redactor.body(body),
            elapsed=time.perf_counter() - started,
        )

    def _failure(
        self, exc: requests.RequestException, method: str, path: str, started: float
    ) -> NetworkError:
        logger.debug(
            "%s %s -> no response (%s) in %.1f ms",
            method,
            path,
            type(exc).__name__,
            (time.perf_counter() - started) * 1000,
        )
        said = short(self._redactor.text(str(exc)))
        if _is_timeout(exc):
            connect, read = self._timeout
            return NetworkTimeoutError(
                f"no answer from {self._origin} within the timeout ({connect:g} s to "
                f"connect, {read:g} s to read): {said}",
                method=method,
                path=path,
            )
        return NetworkError(
            f"no usable answer from {self._origin} ({type(exc).__name__}): {said}",
            method=method,
            path=path,
        )


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


def _is_timeout(exc: requests.RequestException) -> bool:
    if isinstance(exc, requests.Timeout):
        return True
    # A stall while the body is read surfaces as ConnectionError(ReadTimeoutError(...)).
    return any(isinstance(arg, urllib3.exceptions.TimeoutError) for arg in exc.args)


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
