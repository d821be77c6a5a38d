"""The ``flask intercom`` commands for failed events: ``failed``, ``purge-failed``,
``requeue-failed`` (added to the group in ``cli.py``)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone

import click
import redis
from flask import current_app
from flask.cli import with_appcontext

from .backlog import failed_events, purge_failed, read_status, reason_matches, requeue_failed
from .presence import Presence
from .printable import printable
from .redis_errors import refusal
from .state import state_of
from .status_report import duration
from .store import DeliveryStore
from .worker import connect_worker_redis

__all__ = ["DURATION", "Duration", "failed", "purge_failed_command", "requeue_failed_command"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw]?)")


class Duration(click.ParamType):  # type: ignore[type-arg]
    """Seconds given as ``90``, ``90s``, ``15m``, ``2h``, ``7d``, ``1w`` or ``1h30m``."""

    name = "duration"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        """Seconds, or a usage error saying what is accepted."""
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        text = str(value).strip().lower().replace(" ", "")
        total, position = 0.0, 0
        for match in _PART.finditer(text):
            if match.start() != position:
                break
            total += float(match.group(1)) * _UNITS[match.group(2) or "s"]
            position = match.end()
        if not text or position != len(text):
            self.fail(
                f"{value!r} is not a duration: give seconds or a number with a unit, e.g. 90, "
                "90s, 15m, 2h, 7d or 1h30m",
                param,
                ctx,
            )
        return total


DURATION = Duration()

_QUEUE_OPTION = click.option(
    "--queue", "queue_name", default=None, help="Queue (default: INTERCOM_EVENTS_QUEUE)."
)
_REASON_HELP = (
    "Only failures with this reason, or one word of it: e.g. 401, 404, not_found, network "
    "(see `flask intercom status`)."
)


def _checked_reason(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not value.strip():
        raise click.BadParameter(
            "an empty reason matches no failure: give one (e.g. 404, network), or leave "
            "--reason out for every failure"
        )
    return value


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
            refusal(exc) or f"Redis (INTERCOM_EVENTS_REDIS_URL) did not answer: {exc}"
        ) from exc
    finally:
        connection.close()


def _matching(store: DeliveryStore, reason: str | None) -> int:
    """Failed events whose reason matches, from the counts kept by reason (no job read)."""
    found = read_status(store, Presence(store.connection, store.name, "cli", ttl=1))
    if reason is None:
        return found.failed
    return sum(n for r, n in found.failed_by_reason.items() if reason_matches(r, reason))


def _utc(timestamp: float | None) -> str:
    if timestamp is None:
        return "?"
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


@click.command("failed")
@click.option("--reason", default=None, help=_REASON_HELP, callback=_checked_reason)
@click.option(
    "--scheduled", is_flag=True, help="The events waiting for a retry instead, soonest first."
)
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=50,
    show_default=True,
    help="Events listed at most (0: all of them).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@_QUEUE_OPTION
@with_appcontext
def failed(
    reason: str | None, scheduled: bool, limit: int, as_json: bool, queue_name: str | None
) -> None:
    """List failed events, newest failure first (or, --scheduled, the retries waiting):
    when, reason, event name, contact, created_at, attempts and the last error."""
    shown = 0
    with _delivery_store(queue_name) as store:
        for event in failed_events(store, reason=reason, scheduled=scheduled, limit=limit or None):
            shown += 1
            if as_json:
                click.echo(json.dumps(event.to_dict(), sort_keys=True))
                continue
            created = "?" if event.created_at is None else _utc(event.created_at)
            click.echo(
                f"{_utc(event.at)}  {printable(event.reason)}  {printable(event.event_name)}  "
                f"contact {printable(event.contact)}  created_at {created}  attempts "
                f"{event.attempts}  id {printable(event.id)}"
            )
            if event.last_error:
                click.echo(f"    last error: {printable(event.last_error)}")
        if as_json:
            return
        if scheduled:
            total = int(store.connection.zcard(store.scheduled.key))
        else:
            total = _matching(store, reason)
    what = "scheduled retries" if scheduled else "failed event(s)"
    matching = f" with reason {reason!r}" if reason else ""
    if not shown:
        click.echo(f"No {what}{matching}.")
    elif limit and shown == limit and total > shown:
        click.echo(f"Listed {shown} of {total} {what}{matching}; --limit 0 lists them all.")
    else:
        click.echo(f"Listed {shown} {what}{matching}.")


@click.command("purge-failed")
@click.option("--reason", default=None, help=_REASON_HELP, callback=_checked_reason)
@click.option(
    "--older-than",
    type=DURATION,
    default=None,
    help="Only events that failed longer ago than this, e.g. 30d.",
)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_QUEUE_OPTION
@with_appcontext
def purge_failed_command(
    reason: str | None, older_than: float | None, yes: bool, queue_name: str | None
) -> None:
    """Delete failed events for good (all, or those matching --reason and --older-than)."""
    with _delivery_store(queue_name) as store:
        matching = _matching(store, reason)
        what = f" with reason {reason!r}" if reason else ""
        age = f" that failed more than {duration(older_than)} ago" if older_than else ""
        if not matching:
            click.echo(f"No failed events{what}.")
            return
        count = f"up to {matching}" if older_than else f"{matching}"
        if not yes:
            click.confirm(
                f"Delete {count} failed event(s){what}{age}? They will not be sent",
                abort=True,
            )
        deleted = purge_failed(store, reason, older_than=older_than)
    click.echo(f"Deleted {deleted} failed event(s){what}{age}.")


@click.command("requeue-failed")
@click.option("--reason", default=None, help=_REASON_HELP, callback=_checked_reason)
@_QUEUE_OPTION
@with_appcontext
def requeue_failed_command(reason: str | None, queue_name: str | None) -> None:
    """Put failed events back on the queue, with a fresh retry history."""
    with _delivery_store(queue_name) as store:
        total = int(store.connection.zcard(store.failed.key))
        with click.progressbar(length=total, label="Requeueing failed events") as bar:
            requeued = requeue_failed(store, reason, progress=bar.update)
    what = f" with reason {reason!r}" if reason else ""
    click.echo(f"Requeued {requeued} of {total} failed event(s){what}.")
