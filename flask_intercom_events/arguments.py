"""Checks of the client's call arguments, made before anything is sent. Pure: no I/O.

A refusal is an :class:`~flask_intercom_events.errors.InvalidEventError` naming the argument.
"""

from __future__ import annotations

from .errors import InvalidEventError

__all__ = ["check_identifier", "list_events_query"]


def check_identifier(name: str, value: object) -> str:
    """``value`` if it is a non-blank string; :class:`InvalidEventError` naming ``name``."""
    if not isinstance(value, str):
        raise InvalidEventError(
            f"{name} must be a string, got {type(value).__name__} {value!r}", field=name
        )
    if not value.strip():
        raise InvalidEventError(f"{name} must not be empty or blank", field=name)
    return value


def list_events_query(
    *,
    user_id: str | None,
    email: str | None,
    intercom_user_id: str | None,
    summary: bool,
    per_page: int | None,
) -> dict[str, str]:
    """The query of ``GET /events`` for :meth:`~.client.IntercomClient.list_events`."""
    given = {
        name: check_identifier(name, value)
        for name, value in (
            ("user_id", user_id),
            ("email", email),
            ("intercom_user_id", intercom_user_id),
        )
        if value is not None
    }
    if len(given) != 1:
        got = ", ".join(given) if given else "none"
        raise InvalidEventError(
            f"list_events needs exactly one of user_id, email or intercom_user_id (got {got})",
            field="identity",
        )
    if not isinstance(summary, bool):
        raise InvalidEventError(f"summary must be True or False, got {summary!r}", field="summary")
    params: dict[str, str] = {"type": "user", **given}
    if summary:
        params["summary"] = "true"
    if per_page is not None:
        if isinstance(per_page, bool) or not isinstance(per_page, int) or per_page < 1:
            raise InvalidEventError(
                f"per_page must be a positive integer, got {per_page!r}", field="per_page"
            )
        params["per_page"] = str(per_page)
    return params
