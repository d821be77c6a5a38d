"""``python -m example_app``: the example app with everything it needs, in one command.

Starts Redis (a throw-away ``redis-server`` unless ``INTERCOM_EVENTS_REDIS_URL`` is set), the
Intercom emulator (unless ``INTERCOM_ACCESS_TOKEN`` is set), a delivery worker and the web
app, on 127.0.0.1; prints where to look; stops everything on Ctrl-C. ``--demo`` runs a
scripted visit instead and exits 0 once Intercom (always the emulator) has what it should.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import requests
from flask import Flask

from flask_intercom_events import ConfigurationError, Event
from flask_intercom_events.signals import event_dropped, event_enqueued

from . import create_app
from .demo import DemoFailed, identity, run_demo
from .runner import (
    LEAD_ID,
    Child,
    SetupError,
    WebServer,
    check_redis,
    port_taken,
    start_emulator,
    start_redis,
    start_worker,
    stop_on_signals,
)

#: The token the emulator accepts (it is not an Intercom token).
EMULATOR_TOKEN = "example-emulator-token"
DEFAULT_PORT = 5000


def main(argv: Sequence[str] | None = None) -> int:
    """Run until Ctrl-C (or, with ``--demo``, until the visit is checked); the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m example_app",
        description="Run the example app with Redis, a worker and an Intercom emulator.",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help=f"web app port on 127.0.0.1; 0 for any free one (default {DEFAULT_PORT}, or a "
        "free one if it is taken)",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="run a scripted visit, print what the emulator received, and exit",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    _log_requests(quiet=args.demo)
    stop_on_signals()
    try:
        with (
            tempfile.TemporaryDirectory(prefix="example-app-") as workdir,
            contextlib.ExitStack() as running,
        ):
            return _run(args.demo, args.port, Path(workdir), running)
    except KeyboardInterrupt:
        print("Stopped.", flush=True)
        return 130 if args.demo else 0
    except (SetupError, DemoFailed, ConfigurationError) as exc:
        print(f"\nerror: {exc}", file=sys.stderr, flush=True)
        return 1


def _run(demo: bool, port: int | None, workdir: Path, running: contextlib.ExitStack) -> int:
    """Start everything (each stop registered on ``running``, undone in reverse), then wait
    for Ctrl-C or run the demo."""
    port = 0 if demo else _choose_port(port)
    token = _env("INTERCOM_ACCESS_TOKEN")
    redis_url = _env("INTERCOM_EVENTS_REDIS_URL")
    if demo and (token or redis_url):
        print("--demo uses its own Redis and the emulator: your Redis and Intercom are untouched.")
        token = redis_url = None
    children: list[Child] = []

    own_redis = not redis_url
    if redis_url:
        check_redis(redis_url)
        redis_note = "given by INTERCOM_EVENTS_REDIS_URL"
    else:
        redis_child, redis_url = start_redis(workdir, running)
        children.append(redis_child)
        redis_note = f"its own redis-server, pid {redis_child.process.pid}, gone when it stops"

    emulator_url = None
    if token:
        api_url = _env("INTERCOM_API_BASE_URL") or "https://api.intercom.io"
    else:
        token = EMULATOR_TOKEN
        emulator, emulator_url = start_emulator(workdir, token, running)
        children.append(emulator)
        api_url = emulator_url

    # What the web app and the worker share; the worker gets it as FLASK_ variables.
    config = {
        "INTERCOM_ACCESS_TOKEN": token,
        "INTERCOM_API_BASE_URL": api_url,
        "INTERCOM_EVENTS_REDIS_URL": redis_url,
        "INTERCOM_EVENTS_DELIVERY": "rq",
        # A user who signed up a moment ago is no Intercom contact yet: the worker creates
        # it on the first event's 404, then delivers the event.
        "INTERCOM_EVENTS_CREATE_CONTACTS": "true",
        "DATABASE": str(workdir / "example.sqlite3"),  # a fresh database each run
    }
    if own_redis:
        # Spooled events belong with the throw-away Redis they were meant for.
        config["INTERCOM_EVENTS_SPOOL_DIR"] = str(workdir / "spool")
    worker = start_worker(config, workdir / "worker.log" if demo else None, running)
    children.append(worker)

    app = create_app({**config, "SECRET_KEY": secrets.token_hex(16)})
    web = WebServer(app, port)
    running.callback(web.stop)

    status_env = {**os.environ, **{f"FLASK_{key}": value for key, value in config.items()}}
    if demo:
        assert emulator_url is not None  # the demo always runs the emulator
        try:
            return run_demo(web.url, emulator_url, status_env, _dropped_by(app))
        except DemoFailed:
            print(f"\nThe end of the worker's log:\n{worker.tail(30)}")
            raise

    _print_banner(
        web_url=web.url,
        emulator_url=emulator_url,
        api_url=api_url,
        redis_url=redis_url,
        redis_note=redis_note,
        worker=worker,
    )
    event_enqueued.connect(_print_enqueued, sender=app, weak=False)
    event_dropped.connect(_print_dropped, sender=app, weak=False)
    if emulator_url is not None:
        watcher = _Watcher(emulator_url)
        running.callback(watcher.stop)
    running.callback(
        print,
        "\nStopping the web app, then the worker (it finishes what it is sending; "
        "Ctrl-C again stops it at once)...",
    )
    while True:  # until Ctrl-C or SIGTERM raises KeyboardInterrupt
        time.sleep(0.5)
        for child in children:
            if not child.running():
                raise SetupError(
                    f"the {child.name} stopped unexpectedly (exit status "
                    f"{child.process.returncode}); the rest is stopped too"
                )


def _log_requests(*, quiet: bool) -> None:
    """Werkzeug's request log as plain lines, or (``quiet``) only its warnings, and the
    extension's: the demo prints what was dropped itself, at the end."""
    if quiet:
        logging.getLogger("flask_intercom_events").setLevel(logging.WARNING)
    requests_log = logging.getLogger("werkzeug")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    requests_log.addHandler(handler)
    requests_log.propagate = False
    requests_log.setLevel(logging.WARNING if quiet else logging.INFO)


def _env(key: str) -> str | None:
    """``key`` from the environment, bare or ``FLASK_``-prefixed (as the app reads it)."""
    return os.environ.get(key) or os.environ.get(f"FLASK_{key}") or None


def _choose_port(port: int | None) -> int:
    """``port`` if it is free (``0``: any); ``None``: the default port, or any if it is taken."""
    if port is None:
        port = DEFAULT_PORT
        if port_taken(port):
            print(f"Port {port} is taken: using a free one instead (choose with --port).")
            port = 0
    elif port and port_taken(port):
        raise SetupError(
            f"127.0.0.1:{port} is taken: choose another --port, or --port 0 for any free one"
        )
    return port


def _print_banner(
    *,
    web_url: str,
    emulator_url: str | None,
    api_url: str,
    redis_url: str,
    redis_note: str,
    worker: Child,
) -> None:
    if emulator_url is not None:
        intercom = (
            f"the emulator at {emulator_url} (no INTERCOM_ACCESS_TOKEN set)\n"
            f"                    what it received: {emulator_url}/_sandbox/received"
        )
        token = f"FLASK_INTERCOM_ACCESS_TOKEN={EMULATOR_TOKEN}"
    else:
        intercom = f"{api_url}, with your INTERCOM_ACCESS_TOKEN"
        token = 'FLASK_INTERCOM_ACCESS_TOKEN="$INTERCOM_ACCESS_TOKEN"'
    print(
        f"""
flask-intercom-events example app

  web app           {web_url}/   (sign up, log in, click around)
  Intercom          {intercom}
  Redis             {redis_url}   ({redis_note})
  worker            flask --app example_app intercom worker   (pid {worker.process.pid})
  queue status      {token} FLASK_INTERCOM_EVENTS_REDIS_URL={redis_url} \\
                    flask --app example_app intercom status

Try: sign up, log in, upgrade (card 4000 0000 0000 0002 is declined), schedule and
export a report, log out, then open {web_url}/pricing?lead={LEAD_ID} as the
Lead the emulator knows (Intercom answers 404 for contacts it does not know).
Each event is printed below when it reaches Redis, when Intercom receives it, or when
it is dropped (a rolled-back transaction). Ctrl-C stops everything.
""",
        flush=True,
    )


def _print_enqueued(sender: Flask, *, event: Event, **extra: Any) -> None:
    # event_enqueued: the request has been answered and its events are in Redis.
    who = identity(event.identity.to_payload())
    print(f"  queued    {event.event_name:<18} {who}   (in Redis, for the worker)", flush=True)


def _dropped_by(app: Flask) -> list[tuple[str, str]]:
    """A list that fills with ``(event name, reason)`` as ``app`` sends ``event_dropped``."""
    dropped: list[tuple[str, str]] = []

    def collect(sender: Flask, *, event_name: str, reason: str, **extra: Any) -> None:
        dropped.append((event_name, reason))

    event_dropped.connect(collect, sender=app, weak=False)
    return dropped


def _print_dropped(sender: Flask, *, event_name: str, reason: str, **extra: Any) -> None:
    # event_dropped: tracked, but it will never be sent (a rolled-back transaction, say).
    print(f"  dropped   {event_name:<18} ({reason}: not sent)", flush=True)


class _Watcher:
    """Prints each event the emulator receives, polling ``/_sandbox/events``."""

    def __init__(self, emulator_url: str) -> None:
        self._url = f"{emulator_url}/_sandbox/events"
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        seen = 0
        while not self._stopping.wait(0.5):
            try:
                events = requests.get(self._url, timeout=5).json()["events"]
            except (requests.RequestException, ValueError):
                continue  # stopping, or busy: look again
            for event in events[seen:]:
                print(
                    f"  received  {event['event_name']:<18} {identity(event)}   "
                    "(delivered by the worker)",
                    flush=True,
                )
            seen = max(seen, len(events))

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(5)


if __name__ == "__main__":
    sys.exit(main())
