"""The emulator's HTTP/1.1 server (asyncio, keep-alive) and :class:`Sandbox`, its Python API.

One event loop in one background thread serves every connection: latency and stalls are
``asyncio.sleep`` calls, so hundreds of requests can be held at once at no cost, and the
handlers (pure, in :mod:`.api` and :mod:`.control`) run one at a time under the state lock.
The HTTP parser reads what clients send to this API: a request line, headers, and a body by
``Content-Length`` or chunked; it answers ``Expect: 100-continue`` and keeps connections
alive unless told otherwise.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from http import HTTPStatus
from types import TracebackType
from typing import Any

from .api import IntercomApi
from .contacts import Contact
from .control import handle_control, is_control
from .faults import Fault
from .records import ReceivedEvent, ReceivedSummary, RequestRecord, Stats
from .settings import DEFAULT_TOKEN, Settings
from .state import SandboxState
from .validation import EventWarning
from .wire import Reply, Request, json_reply

#: Largest request head (request line and headers) accepted, in bytes.
MAX_HEAD_BYTES = 64 * 1024
#: Largest request body accepted, in bytes.
MAX_BODY_BYTES = 1024 * 1024

_PHRASES = {status.value: status.phrase for status in HTTPStatus}


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Sandbox:
    """An Intercom Data Events API emulator on a real socket, run in a background thread.

    Every keyword is a :class:`~.settings.Settings` field, except ``host`` and ``port``
    (``0``: any free port), ``contacts`` (``None``: accept events for any contact; a list,
    even empty, of :class:`Contact` or ``{"user_id"|"email"|"id": ...}`` mappings: only those,
    others get ``404``), ``script`` (faults for the first requests, e.g. ``["500", "drop"]``)
    and ``clock`` (Unix time source, for rate windows and the 90-day listing rule).

    >>> with Sandbox(tokens=["t"]) as sandbox:          # doctest: +SKIP
    ...     requests.post(sandbox.url + "/events", json=..., headers=...)
    ...     sandbox.events[0].event_name
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tokens: Iterable[str] = (DEFAULT_TOKEN,),
        read_only_tokens: Iterable[str] = (),
        contacts: Iterable[Contact | Mapping[str, str]] | None = None,
        rate_limit: int | None = 1666,
        rate_window: float = 10.0,
        latency: float = 0.0,
        jitter: float = 0.0,
        error_rate: float = 0.0,
        error_status: int = 500,
        throttle_rate: float = 0.0,
        stall_rate: float = 0.0,
        stall_seconds: float = 30.0,
        drop_rate: float = 0.0,
        seed: int | None = None,
        max_event_names: int | None = 120,
        log_size: int = 10_000,
        script: Iterable[str | Fault] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        settings = Settings(
            tokens=tuple(tokens),
            read_only_tokens=tuple(read_only_tokens),
            require_contacts=contacts is not None,
            rate_limit=rate_limit,
            rate_window=rate_window,
            latency=latency,
            jitter=jitter,
            error_rate=error_rate,
            error_status=error_status,
            throttle_rate=throttle_rate,
            stall_rate=stall_rate,
            stall_seconds=stall_seconds,
            drop_rate=drop_rate,
            seed=seed,
            max_event_names=max_event_names,
            log_size=log_size,
        )
        declared = [_as_contact(contact) for contact in contacts or ()]
        self.state = SandboxState(settings, declared)
        """Everything received, behind a lock; the properties below read it."""
        self.api = IntercomApi(self.state)
        self.host = host
        self.port = port
        self.clock = clock
        self.script(*script)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._url: str | None = None

    # -- running ---------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> str:
        """Bind, serve from a background thread, and return the base URL
        (``http://127.0.0.1:PORT``)."""
        if self._thread is not None:
            raise RuntimeError("this Sandbox is already started; stop() it first")
        bound: concurrent.futures.Future[tuple[str, int]] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._run, args=(bound,), name="intercom-sandbox", daemon=True
        )
        self._thread.start()
        try:
            host, port = bound.result(timeout)
        except BaseException:
            self._thread.join(timeout)
            self._thread = None
            raise
        self.port = port
        shown = f"[{host}]" if ":" in host else host
        self._url = f"http://{shown}:{port}"
        self.api.base_url = self._url
        return self._url

    def stop(self, timeout: float = 10.0) -> None:
        """Close the listener and every connection (stalled ones too); idempotent."""
        thread, loop = self._thread, self._loop
        if thread is None:
            return
        if loop is not None and not loop.is_closed():
            # RuntimeError: the loop closed between the check and the call.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        self._thread = None
        self._url = None

    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321``: give it to the client as its base URL."""
        if self._url is None:
            raise RuntimeError("the Sandbox is not running: call start() or use it in a with")
        return self._url

    # -- what was received -----------------------------------------------------------------

    @property
    def events(self) -> list[ReceivedEvent]:
        """Events stored, in arrival order (duplicates are counted in :attr:`stats` only)."""
        return self.state.events

    @property
    def summaries(self) -> list[ReceivedSummary]:
        """Event summaries stored (``POST /events/summaries``), in arrival order."""
        return self.state.summaries

    @property
    def requests(self) -> list[RequestRecord]:
        """The latest API requests, oldest first (at most ``log_size``)."""
        return self.state.requests

    @property
    def stats(self) -> Stats:
        """Exact counts: requests, responses by status, events, duplicates, 429s, faults."""
        return self.state.stats

    @property
    def warnings(self) -> list[EventWarning]:
        """Every warning on stored events and summaries: assert it is empty."""
        return self.state.warnings

    @property
    def contacts(self) -> list[Contact]:
        """Contacts known: declared, and (unless contacts are required) created by events."""
        return self.state.contacts

    @property
    def settings(self) -> Settings:
        """The settings in force."""
        return self.state.settings

    def wait_for_events(self, count: int = 1, timeout: float = 5.0) -> list[ReceivedEvent]:
        """Block until at least ``count`` events are stored; return them all.

        Raises ``TimeoutError`` naming what did arrive.
        """
        if not self.state.wait_for(lambda: self.state.stats.events >= count, timeout):
            raise TimeoutError(
                f"expected {count} event(s) within {timeout}s, got {self.state.stats.events}; "
                f"counts: {self.state.stats.to_dict()}"
            )
        return self.events

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Block until ``predicate()`` holds (re-checked after each API request); ``False``
        on timeout. E.g. ``sandbox.wait_for(lambda: sandbox.stats.duplicates >= 1)``."""
        return self.state.wait_for(predicate, timeout)

    # -- changing behaviour ----------------------------------------------------------------

    def configure(self, **changes: Any) -> Settings:
        """Change settings at run time, e.g. ``configure(latency=0.2, error_rate=0.1)``."""
        return self.state.configure(**changes)

    def add_contact(
        self, *, user_id: str | None = None, email: str | None = None, id: str | None = None
    ) -> Contact:
        """Declare a contact (at any time); events for it are then accepted."""
        return self.state.add_contact(Contact.make(user_id=user_id, email=email, id=id))

    def script(self, *faults: str | Fault) -> list[Fault]:
        """Queue faults for the next API requests, one each, in order: ``"500"`` (any 5xx,
        ``"408"``, ``"409"``), ``"429"``, ``"drop"``, ``"stall"``, ``"stall:SECONDS"``,
        ``"ok"``. Returns what is queued."""
        parsed = [fault if isinstance(fault, Fault) else Fault.parse(fault) for fault in faults]
        return self.state.extend_script(parsed)

    def reset(self) -> None:
        """Forget what was received and the counts; settings and declared contacts stay."""
        self.state.reset()

    # -- the server ------------------------------------------------------------------------

    def _run(self, bound: concurrent.futures.Future[tuple[str, int]]) -> None:
        loop = asyncio.new_event_loop()
        connections: set[asyncio.Task[Any]] = set()

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            connections.add(task)
            try:
                await self._serve_connection(reader, writer)
            except asyncio.CancelledError:
                # Only stop() cancels; ending quietly keeps asyncio's stream callback from
                # logging the cancelled task as an error (Python 3.11).
                pass
            finally:
                connections.discard(task)

        try:
            server = loop.run_until_complete(
                asyncio.start_server(
                    serve, self.host, self.port, backlog=1024, limit=MAX_HEAD_BYTES
                )
            )
        except BaseException as exc:
            bound.set_exception(exc)
            loop.close()
            return
        self._loop = loop
        host, port = server.sockets[0].getsockname()[:2]
        bound.set_result((host, port))
        try:
            loop.run_forever()
        finally:
            server.close()
            for task in list(connections):
                task.cancel()
            loop.run_until_complete(_settle(server, connections))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            self._loop = None

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            while True:
                try:
                    request = await _read_request(reader, writer)
                except _BadRequest as exc:
                    reply = json_reply(exc.status, {"error": str(exc)})
                    writer.write(_render(reply, keep_alive=False))
                    await writer.drain()
                    return
                if request is None:
                    return
                reply = self._dispatch(request)
                if reply.delay > 0:
                    await asyncio.sleep(reply.delay)
                if reply.drop:
                    return
                keep_alive = _keep_alive(request)
                writer.write(_render(reply, keep_alive=keep_alive))
                await writer.drain()
                if not keep_alive:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away: nothing to answer
        finally:
            writer.close()

    def _dispatch(self, request: Request) -> Reply:
        if is_control(request.path):
            return handle_control(self.state, request)
        return self.api.handle(request, self.clock())


async def _settle(server: asyncio.Server, connections: set[asyncio.Task[Any]]) -> None:
    await asyncio.gather(*connections, return_exceptions=True)
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(server.wait_closed(), 2.0)


async def _read_request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> Request | None:
    """The next request on the connection; ``None`` when the client closed it cleanly."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise _BadRequest(400, "the request ended before its headers did") from None
    except asyncio.LimitOverrunError:
        raise _BadRequest(431, f"request head larger than {MAX_HEAD_BYTES} bytes") from None
    lines = head.decode("latin-1").lstrip("\r\n").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[0].isalpha():
        raise _BadRequest(400, f"malformed request line {lines[0][:100]!r}")
    method, target, version = parts
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise _BadRequest(505, f"unsupported HTTP version {version[:20]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise _BadRequest(400, f"malformed header line {line[:100]!r}")
        key, value = name.lower(), value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    if headers.get("expect", "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    if "transfer-encoding" in headers:
        if headers["transfer-encoding"].lower() != "chunked" or "content-length" in headers:
            raise _BadRequest(400, "only Transfer-Encoding: chunked, without Content-Length")
        body = await _read_chunked(reader)
    else:
        length_text = headers.get("content-length", "0")
        if not length_text.isdigit():
            raise _BadRequest(400, f"bad Content-Length {length_text[:30]!r}")
        length = int(length_text)
        if length > MAX_BODY_BYTES:
            raise _BadRequest(413, f"body larger than {MAX_BODY_BYTES} bytes")
        body = await reader.readexactly(length) if length else b""
    return Request(method.upper(), target, headers, body, version)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        size_line = await _read_line(reader)
        try:
            size = int(size_line.split(b";")[0].strip(), 16)
        except ValueError:
            raise _BadRequest(400, "malformed chunk size") from None
        if size < 0:
            raise _BadRequest(400, "malformed chunk size")
        if size == 0:
            while await _read_line(reader) != b"\r\n":
                pass  # trailer fields: ignored
            return b"".join(chunks)
        total += size
        if total > MAX_BODY_BYTES:
            raise _BadRequest(413, f"body larger than {MAX_BODY_BYTES} bytes")
        chunks.append(await reader.readexactly(size))
        if await reader.readexactly(2) != b"\r\n":
            raise _BadRequest(400, "chunk not followed by CRLF")


async def _read_line(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.readuntil(b"\r\n")
    except asyncio.LimitOverrunError:
        raise _BadRequest(400, "chunk line too long") from None


def _keep_alive(request: Request) -> bool:
    connection = request.headers.get("connection", "").lower()
    if request.version == "HTTP/1.0":
        return "keep-alive" in connection
    return "close" not in connection


def _render(reply: Reply, *, keep_alive: bool) -> bytes:
    lines = [f"HTTP/1.1 {reply.status} {_PHRASES.get(reply.status, 'Unknown')}"]
    if reply.content_type is not None:
        lines.append(f"Content-Type: {reply.content_type}")
    lines.append(f"Content-Length: {len(reply.body)}")
    lines.extend(f"{name}: {value}" for name, value in reply.headers)
    lines.append("Connection: keep-alive" if keep_alive else "Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + reply.body


def _as_contact(contact: Contact | Mapping[str, str]) -> Contact:
    return contact if isinstance(contact, Contact) else Contact.from_dict(contact)
