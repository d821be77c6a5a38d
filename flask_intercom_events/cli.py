"""The ``flask intercom`` commands (those for failed events are in ``cli_failures.py``)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime, timezone

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from .cli_failures import DURATION, failed, purge_failed_command, requeue_failed_command
from .client import IntercomClient
from .config import Settings
from .errors import ConfigurationError, IntercomAPIError, IntercomEventsError
from .events import Event, Identity
from .json_text import parse_json
from .metrics import make_registry, render, serve
from .sandbox.cli import main as sandbox_main
from .state import state_of
from .status_report import (
    Snapshot,
    connect_reader,
    delivery_store,
    lines,
    problems,
    read_snapshot,
    report,
)
from .store import DeliveryStore
from .worker import DeliveryWorker

__all__ = ["intercom_cli"]

intercom_cli = AppGroup(
    "intercom", help="Intercom data events: delivery worker, status, spool and diagnostics."
)


@intercom_cli.command("flush-spool")
def flush_spool() -> None:
    """Move events spooled during a Redis outage into Redis.

    Web processes spool events to local files (INTERCOM_EVENTS_SPOOL_DIR) when Redis does not
    answer, and drain them themselves once it does; this does it now, on this machine, for
    this app's Redis and queue (other apps' files in the directory are left to them).
    """
    state = state_of(current_app)
    if state.intake is None:
        raise click.ClickException(
            f"INTERCOM_EVENTS_DELIVERY is {state.settings.delivery!r}: only 'rq' delivery spools"
        )
    waiting = state.intake.spool.count()
    try:
        moved = state.intake.drain_spool()
    except Exception as exc:
        raise click.ClickException(
            f"Redis did not take the spooled events ({exc}); they stay in "
            f"{state.intake.spool.directory}"
        ) from exc
    left = state.intake.spool.count()
    click.echo(f"Moved {moved} of {waiting} spooled event(s) into Redis; {left} left.")
    others = state.intake.spool.count_others()
    if others:
        click.echo(
            f"{others} event(s) spooled for other destinations (another Redis, database or "
            "queue) in the same directory were left for their own app to move."
        )


@intercom_cli.command("worker")
@click.option("--burst", is_flag=True, help="Exit once nothing is left to deliver.")
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=None,
    help="Requests in flight at most (default: INTERCOM_EVENTS_WORKER_CONCURRENCY, 32).",
)
@click.option("--queue", "queue_name", default=None, help="Queue (default: INTERCOM_EVENTS_QUEUE).")
@click.option(
    "--metrics-port",
    type=click.IntRange(min=0, max=65535),
    default=None,
    help="Serve Prometheus metrics on this port, at /metrics (default: "
    "INTERCOM_EVENTS_METRICS_PORT; none). Needs the metrics extra.",
)
@click.option(
    "--metrics-host",
    default="0.0.0.0",  # Prometheus scrapes from another machine
    show_default=True,
    help="Address the metrics endpoint listens on.",
)
def worker(
    burst: bool,
    concurrency: int | None,
    queue_name: str | None,
    metrics_port: int | None,
    metrics_host: str,
) -> None:
    """Deliver queued events to Intercom until SIGTERM (or, with --burst, until done).

    One process keeps up to --concurrency requests in flight and shares the rate budget
    (INTERCOM_EVENTS_RATE_LIMIT) with every other worker using the same access token. The
    first SIGTERM or Ctrl-C finishes the requests in flight and puts the rest back on the
    queue; a second one stops at once. With --metrics-port, /metrics gives the queue's
    figures (read from Redis at each scrape) and this worker's counters.
    """

    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    settings = state_of(app).settings
    port = metrics_port if metrics_port is not None else configured_metrics_port(app)
    observer = None
    if port is not None:
        try:
            registry, observer = make_registry(
                _snapshot_reader(settings, queue_name or settings.queue), observer=True
            )
        except ConfigurationError as exc:
            raise click.ClickException(str(exc)) from None
    delivery = DeliveryWorker(
        app, concurrency=concurrency, queue_name=queue_name, burst=burst, observer=observer
    )
    if port is not None:
        try:
            serve(registry, port, metrics_host)
        except ConfigurationError as exc:
            raise click.ClickException(str(exc)) from None
    delivery.run()


def configured_metrics_port(app: Flask) -> int | None:
    """``INTERCOM_EVENTS_METRICS_PORT``: from the checked settings when they have it, else
    read (and checked) here."""
    settings = state_of(app).settings
    if hasattr(settings, "metrics_port"):
        value = settings.metrics_port
        return None if value is None else int(value)
    raw = app.config.get("INTERCOM_EVENTS_METRICS_PORT")
    if raw is None or raw == "":
        return None
    try:
        port = int(str(raw).strip())
    except ValueError:
        port = -1
    if isinstance(raw, bool) or not 0 < port <= 65535:
        raise click.ClickException(
            f"INTERCOM_EVENTS_METRICS_PORT must be a port number (1 to 65535), got {raw!r}"
        )
    return port


def _snapshot_reader(settings: Settings, queue: str) -> Callable[[], Snapshot]:
    """Read a snapshot of ``queue`` on a connection of its own (scrapes come from the
    metrics server's threads, not the worker's loop)."""
    store = DeliveryStore(
        connect_reader(settings.redis_url), queue, failure_ttl=settings.failure_ttl
    )
    return lambda: read_snapshot(settings, store, reader="metrics")


@intercom_cli.command("metrics")
@click.option("--queue", "queue_name", default=None, help="Queue (default: INTERCOM_EVENTS_QUEUE).")
def metrics(queue_name: str | None) -> None:
    """Print the queue's Prometheus metrics once (for node_exporter's textfile collector).

    The same queue-wide gauges a worker serves with --metrics-port, read from Redis now;
    the counters and the request-duration histogram are each worker's own, served only by
    the workers. With Redis down, intercom_events_redis_up is 0 and the spool is counted.
    """
    settings = state_of(current_app).settings
    try:
        registry, _ = make_registry(
            _snapshot_reader(settings, queue_name or settings.queue), observer=False
        )
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(render(registry), nl=False)


@intercom_cli.command("status")
@click.option("--queue", "queue_name", default=None, help="Queue (default: INTERCOM_EVENTS_QUEUE).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option(
    "--check",
    is_flag=True,
    help="For monitoring: exit 3 if Redis does not answer, 4 if events wait and no worker "
    "is alive, 5 if the oldest waiting event is older than --max-age, 6 if events failed "
    "(with --fail-on-failed); 0 otherwise.",
)
@click.option(
    "--max-age",
    type=DURATION,
    default=None,
    help="With --check (implied): how long the oldest waiting event may wait, e.g. 15m.",
)
@click.option(
    "--fail-on-failed",
    is_flag=True,
    help="With --check (implied): failed events are a problem too.",
)
@click.option(
    "--recount",
    is_flag=True,
    help="Count the failed events by reading them all first (after another tool, e.g. "
    "rq-dashboard, deleted or requeued failed jobs).",
)
def status(
    *,
    queue_name: str | None,
    as_json: bool,
    check: bool,
    max_age: float | None,
    fail_on_failed: bool,
    recount: bool,
) -> None:
    """Where every event is: queued (and since when), the drain rate and ETA, in flight,
    scheduled for a retry, failed (by reason), spooled on this machine; the workers; the
    rate window. Redis down: this machine's spool, and exit code 3."""

    settings = state_of(current_app).settings
    with delivery_store(settings, queue_name) as store:
        snapshot = read_snapshot(settings, store, recount=recount)
    check = check or max_age is not None or fail_on_failed
    found = problems(snapshot, max_age=max_age, fail_on_failed=fail_on_failed)
    if not check:
        found = [problem for problem in found if problem.kind == "redis_down"]
    code = found[0].exit_code if found else 0
    if as_json:
        document = report(snapshot)
        if check:
            document["check"] = {
                "exit_code": code,
                "problems": [{"kind": p.kind, "message": p.message} for p in found],
            }
        click.echo(json.dumps(document, indent=2, sort_keys=True))
    else:
        for line in lines(snapshot):
            click.echo(line)
        if check:
            click.echo(f"check       {'OK' if not found else f'FAILED (exit {code})'}")
            for problem in found:
                click.echo(f"  {problem.message}")
    if code:
        raise SystemExit(code)


@intercom_cli.command("send")
@click.argument("event_name")
@click.option("--user-id", default=None, help="Your id of the user.")
@click.option("--email", default=None, help="The user's email (where it identifies users).")
@click.option("--id", "contact_id", default=None, help="Intercom's contact id (for a Lead).")
@click.option(
    "--metadata",
    "-m",
    "pairs",
    multiple=True,
    metavar="KEY=VALUE",
    help="A metadata value, repeatable; VALUE is read as JSON when it parses "
    '(-m seats=3, -m \'price={"amount": 34999, "currency": "eur"}\'), else as a string.',
)
@click.option(
    "--created-at", type=int, default=None, help="Unix seconds (default: the current second)."
)
def send(
    *,
    event_name: str,
    user_id: str | None,
    email: str | None,
    contact_id: str | None,
    pairs: tuple[str, ...],
    created_at: int | None,
) -> None:
    """Send one event to Intercom now, bypassing the queue, and print Intercom's answer.

    The event is checked like any other first. Example:

        flask intercom send invited-friend --user-id 42 -m invite_code=ADDAFRIEND
    """

    settings = state_of(current_app).settings
    metadata: dict[str, object] = {}
    for pair in pairs:
        key, equals, raw = pair.partition("=")
        if not equals:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--metadata")
        try:
            metadata[key] = parse_json(raw)
        except ValueError:
            metadata[key] = raw
    try:
        event = Event.create(
            event_name,
            identity=Identity(user_id=user_id, email=email, id=contact_id),
            metadata=metadata,  # type: ignore[arg-type]  # checked by Event
            created_at=created_at,
        )
        client = IntercomClient.from_settings(settings)
    except IntercomEventsError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"POST {settings.api_base_url}/events {json.dumps(event.to_payload())}")
    try:
        with client:
            result = client.create_event(event)
    except IntercomAPIError as exc:
        click.echo(f"Intercom refused it: {exc}", err=True)
        if exc.errors:
            for detail in exc.errors:
                field = f" (field {detail.field})" if detail.field else ""
                click.echo(f"  {detail.code}: {detail.message}{field}", err=True)
        raise SystemExit(1) from None
    click.echo(f"Intercom answered {result.status} ({result.elapsed * 1000:.0f} ms).")
    limit = result.rate_limit
    if limit.limit is not None:
        click.echo(
            f"Rate limit: {limit.remaining} of {limit.limit} calls left in this window"
            + (f", resets at Unix time {limit.reset}." if limit.reset is not None else ".")
        )


@intercom_cli.command("list-events")
@click.option("--user-id", default=None, help="Your id of the user.")
@click.option("--email", default=None, help="The user's email.")
@click.option("--intercom-user-id", default=None, help="Intercom's contact id (Leads too).")
@click.option("--summary", is_flag=True, help="Counts per event name instead of events.")
@click.option("--per-page", type=click.IntRange(min=1), default=None, help="Page size.")
@click.option("--json", "as_json", is_flag=True, help="Print the events as JSON.")
def list_events(
    *,
    user_id: str | None,
    email: str | None,
    intercom_user_id: str | None,
    summary: bool,
    per_page: int | None,
    as_json: bool,
) -> None:
    """List a contact's events (Intercom keeps them listable for 90 days).

    Give exactly one of --user-id, --email or --intercom-user-id. Every page is fetched.
    """

    settings = state_of(current_app).settings
    try:
        with IntercomClient.from_settings(settings) as client:
            found = client.list_events(
                user_id=user_id,
                email=email,
                intercom_user_id=intercom_user_id,
                summary=summary,
                per_page=per_page,
            )
    except IntercomAPIError as exc:
        raise click.ClickException(f"Intercom refused it: {exc}") from None
    except IntercomEventsError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(found, indent=2, sort_keys=True))
        return
    if not found:
        click.echo("No events.")
        return
    for item in found:
        if summary:
            click.echo(
                f"{item.get('name', item.get('event_name'))}: {item.get('count')} "
                f"(first {item.get('first')}, last {item.get('last')})"
            )
            continue
        when = item.get("created_at")
        stamp = (
            datetime.fromtimestamp(when, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
            if isinstance(when, int)
            else str(when)
        )
        metadata = json.dumps(item.get("metadata") or {}, sort_keys=True)
        click.echo(f"{stamp}  {item.get('event_name')}  {metadata}")
    click.echo(f"{len(found)} {'summaries' if summary else 'event(s)'}.")


@intercom_cli.command(
    "sandbox",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def sandbox(args: tuple[str, ...]) -> None:
    """Run the Intercom emulator (all options: flask intercom sandbox --help).

    It accepts this app's INTERCOM_ACCESS_TOKEN unless --token is given; point
    INTERCOM_API_BASE_URL at the URL it prints to deliver to it instead of Intercom.
    """
    argv = list(args)
    token = state_of(current_app).settings.access_token
    if token and "--token" not in argv and not any(a.startswith("--token=") for a in argv):
        argv += ["--token", token]
    raise SystemExit(sandbox_main(argv, prog="flask intercom sandbox"))


for _command in (failed, purge_failed_command, requeue_failed_command):
    intercom_cli.add_command(_command)
