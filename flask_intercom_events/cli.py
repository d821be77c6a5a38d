"""The ``flask intercom`` commands."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup

from .extension import state_of

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
