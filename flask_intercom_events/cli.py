"""The ``flask intercom`` commands."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone

import click
import redis
from flask import current_app
from flask.cli import AppGroup

from .backlog import read_status
from .backlog import requeue_failed as requeue_failed_events
from .client import IntercomClient
from .errors import IntercomAPIError, IntercomEventsError
from .events import Event, Identity
from .presence import Presence
from .ratelimit import RateBudget
from .sandbox.cli import main as sandbox_main
from .state import state_of
from .store import DeliveryStore
from .worker import DeliveryWorker, connect_worker_redis

__all__ = ["intercom_cli"]

intercom_cli = AppGroup(
    "intercom", help="Intercom data events: delivery worker, status, spool and diagnostics."
)


@intercom_cli.command("flush-spool")
def flush_spool() -> None:
    """Move events spooled during a Redis outage into Redis.

    Web processes spool events to local files (INTERCOM_EVENTS_SPOOL_DIR) when Redis does not
    answer, and drain them themselves once it does; this does it now, on this machine.
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


@intercom_cli.command("worker")
@click.option("--burst", is_flag=True, help="Exit once nothing is left to deliver.")
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=None,
    help="Requests in flight at most (default: INTERCOM_EVENTS_WORKER_CONCURRENCY, 32).",
)
@click.option("--queue", "queue_name", default=None, help="Queue (default: INTERCOM_EVENTS_QUEUE).")
def worker(burst: bool, concurrency: int | None, queue_name: str | None) -> None:
    """Deliver queued events to Intercom until SIGTERM (or, with --burst, until done).

    One process keeps up to --concurrency requests in flight and shares the rate budget
    (INTERCOM_EVENTS_RATE_LIMIT) with every other worker using the same access token. The
    first SIGTERM or Ctrl-C finishes the requests in flight and puts the rest back on the
    queue; a second one stops at once.
    """

    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    DeliveryWorker(
        current_app._get_current_object(),  # type: ignore[attr-defined]
        concurrency=concurrency,
        queue_name=queue_name,
        burst=burst,
    ).run()


@intercom_cli.command("status")
@click.option("--queue", "queue_name", default=None, help="Queue (default: INTERCOM_EVENTS_QUEUE).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def status(queue_name: str | None, as_json: bool) -> None:
    """Where every event is: queued, in flight, scheduled for a retry, failed (by reason),
    spooled on this machine; the workers; and the current rate window."""

    state = state_of(current_app)
    settings = state.settings
    with _delivery_store(queue_name) as store:
        found = read_status(store, Presence(store.connection, store.name, "status", ttl=1))
        budget = (
            RateBudget(
                store.connection,
                settings.access_token,
                allowance=settings.window_budget,
                window=settings.rate_window,
            ).state()
            if settings.access_token
            else None
        )
    spooled = state.intake.spool.count() if state.intake is not None else 0
    report = {
        "queue": store.name,
        "queued": found.waiting,
        "queued_detail": {
            "intake": found.intake,
            "moving": found.moving,
            "rq_queue": found.queued,
        },
        "in_flight": found.in_flight,
        "scheduled": found.scheduled,
        "next_retry_in": found.next_retry_in,
        "failed": found.failed,
        "failed_by_reason": found.failed_by_reason,
        "spooled": spooled,
        "counters": found.counters,
        "workers": [{"name": w.name, "alive": w.alive, **w.details} for w in found.workers],
        "rate_window": None
        if budget is None
        else {
            "allowance": budget.allowance,
            "used": budget.used,
            "window_seconds": settings.rate_window,
            "resets_in": round(budget.resets_in, 3),
            "blocked_for": round(budget.blocked_for, 3),
            "intercom_limit": budget.intercom_limit,
        },
    }
    if as_json:
        click.echo(json.dumps(report, indent=2, sort_keys=True))
        return
    detail = {"intake": found.intake, "moving": found.moving, "rq_queue": found.queued}
    click.echo(f"Queue {store.name!r}")
    click.echo(
        f"  queued      {found.waiting:>8}   (intake {detail['intake']}, moving "
        f"{detail['moving']}, RQ queue {detail['rq_queue']})"
    )
    click.echo(f"  in flight   {found.in_flight:>8}")
    when = "" if found.next_retry_in is None else f"   (next in {found.next_retry_in:.1f} s)"
    click.echo(f"  scheduled   {found.scheduled:>8}{when}")
    click.echo(f"  failed      {found.failed:>8}")
    for reason, count in found.failed_by_reason.items():
        click.echo(f"    {count:>8}  {reason}")
    where = state.intake.spool.directory if state.intake is not None else "-"
    click.echo(f"  spooled     {spooled:>8}   (this machine: {where})")
    counters = ", ".join(f"{k} {v}" for k, v in sorted(found.counters.items())) or "none yet"
    click.echo(f"  counters    {counters}")
    if budget is not None:
        blocked = (
            f"; every worker waits {budget.blocked_for:.1f} s (429)"
            if budget.blocked_for > 0
            else ""
        )
        click.echo(
            f"  rate        {budget.used} of {budget.allowance} calls used in this "
            f"{settings.rate_window:g} s window, resets in {budget.resets_in:.1f} s{blocked}"
        )
    alive = [w for w in found.workers if w.alive]
    click.echo(
        f"  workers     {len(alive)} alive"
        + (f", {len(found.workers) - len(alive)} gone" if len(alive) < len(found.workers) else "")
    )
    for info in alive:
        click.echo(
            f"    {info.name}: {info.details.get('in_flight', '?')} in flight of "
            f"{info.details.get('concurrency', '?')}"
        )


@intercom_cli.command("requeue-failed")
@click.option(
    "--reason",
    default=None,
    help="Only failures with this reason, or one word of it: e.g. 401, 404, not_found, "
    "network (see `flask intercom status`).",
)
@click.option("--queue", "queue_name", default=None, help="Queue (default: INTERCOM_EVENTS_QUEUE).")
def requeue_failed(reason: str | None, queue_name: str | None) -> None:
    """Put failed events back on the queue, with a fresh retry history."""
    with _delivery_store(queue_name) as store:
        total = int(store.connection.zcard(store.failed.key))
        with click.progressbar(length=total, label="Requeueing failed events") as bar:
            requeued = requeue_failed_events(store, reason, progress=bar.update)
    what = f" with reason {reason!r}" if reason else ""
    click.echo(f"Requeued {requeued} of {total} failed event(s){what}.")


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
            metadata[key] = json.loads(raw)
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


@contextmanager
def _delivery_store(queue_name: str | None) -> Iterator[DeliveryStore]:
    """The app's delivery queue on a fresh connection; a Redis failure becomes a clear error."""
    settings = state_of(current_app).settings
    connection = connect_worker_redis(settings.redis_url)
    try:
        yield DeliveryStore(
            connection, queue_name or settings.queue, failure_ttl=settings.failure_ttl
        )
    except redis.RedisError as exc:
        raise click.ClickException(
            f"Redis (INTERCOM_EVENTS_REDIS_URL) did not answer: {exc}"
        ) from exc
    finally:
        connection.close()
