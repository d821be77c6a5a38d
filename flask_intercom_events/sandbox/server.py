"""The emulator's HTTP/1.1 server (asyncio, keep-alive) and :class:`Sandbox`, its Python API.

One event loop in one background thread serves every connection: latency and stalls are
``asyncio.sleep`` calls, so hundreds of requests can be held at once at no cost, and the
handlers (pure, in :mod:`.api` and :mod:`.control`) run one at a time under the state lock.
The HTTP/1.1 parsing and rendering are in :mod:`.protocol`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any

from .api import IntercomApi
from .contacts import Contact
from .control import handle_control, is_control
from .faults import Fault
from .protocol import MAX_HEAD_BYTES, BadRequest, keep_alive, read_request, render
from .records import Duplicate, ReceivedEvent, ReceivedSummary, RequestRecord, Stats
from .settings import DEFAULT_TOKEN, Settings
from .state import SandboxState
from .validation import EventWarning
from .wire import Reply, Request, json_reply


class Sandbox:
    """An Intercom API emulator on a real socket, run in a background thread.

    Every keyword is a :class:`~.settings.Settings` field, except ``host`` and ``port``
    (``0``: any free port), ``contacts`` (``None``: accept events for any contact; a list,
    even empty, of :class:`Contact` or ``{"user_id"|"email"|"id"|"role": ...}`` mappings:
    only those and the ones ``POST /contacts`` creates, others get ``404``), ``script``
    (faults for the first requests, e.g. ``["500", "drop"]``) and ``clock`` (Unix time
    source, for rate windows, the 90-day listing rule and ``contact_visibility_delay``).

    >>> with Sandbox(tokens=["test-token"]) as sandbox:          # doctest: +SKIP
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
        contact_visibility_delay: float = 0.0,
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
            contact_visibility_delay=contact_visibility_delay,
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
        """Events stored, in arrival order (duplicates: :attr:`duplicates`)."""
        return self.state.events

    @property
    def duplicates(self) -> list[Duplicate]:
        """The latest duplicates (at most ``log_size``), oldest first: events answered
        ``202`` but not stored, each with ``body`` as sent and ``stored``, the event it
        collided with. :attr:`stats` counts them all."""
        return self.state.duplicates

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
        self,
        *,
        user_id: str | None = None,
        email: str | None = None,
        id: str | None = None,
        role: str = "user",
    ) -> Contact:
        """Declare a contact (at any time; kept by :meth:`reset`); events for it are then
        accepted. A ``lead`` is addressed by its ``id`` only."""
        return self.state.add_contact(Contact.make(user_id=user_id, email=email, id=id, role=role))

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
                    request = await read_request(reader, writer)
                except BadRequest as exc:
                    reply = json_reply(exc.status, {"error": str(exc)})
                    writer.write(render(reply, keep_alive=False))
                    await writer.drain()
                    return
                if request is None:
                    return
                reply = self._dispatch(request)
                if reply.delay > 0:
                    await asyncio.sleep(reply.delay)
                if reply.drop:
                    return
                kept = keep_alive(request)
                writer.write(render(reply, keep_alive=kept, head=request.method == "HEAD"))
                await writer.drain()
                if not kept:
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


def _as_contact(contact: Contact | Mapping[str, str]) -> Contact:
    return contact if isinstance(contact, Contact) else Contact.from_dict(contact)
