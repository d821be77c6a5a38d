"""Checks of the client's call arguments, made before anything is sent. Pure: no I/O.

A refusal is an :class:`~flask_intercom_events.errors.InvalidEventError` naming the argument.
"""

from __future__ import annotations

from .errors import InvalidEventError

__all__ = [
    "CONTACT_ROLES",
    "MAX_IDENTIFIER_LENGTH",
    "check_identifier",
    "contact_body",
    "list_events_query",
]

#: The roles ``POST /contacts`` creates.
CONTACT_ROLES = ("user", "lead")
#: The longest ``external_id`` or ``email`` taken, in characters.
MAX_IDENTIFIER_LENGTH = 255


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


def contact_body(*, role: object, external_id: object, email: object) -> dict[str, str]:
    """The body of ``POST /contacts`` for :meth:`~.client.IntercomClient.create_contact`:
    ``role`` ``"user"`` or ``"lead"``, and at least one of ``external_id`` and ``email``, each
    a non-blank string without surrounding whitespace, at most 255 characters of valid UTF-8.
    """
    if not isinstance(role, str) or role not in CONTACT_ROLES:
        raise InvalidEventError(f"role must be 'user' or 'lead', got {role!r}", field="role")
    body = {"role": role}
    for name, value in (("external_id", external_id), ("email", email)):
        if value is not None:
            body[name] = _contact_string(name, value)
    if len(body) == 1:
        raise InvalidEventError(
            "create_contact needs at least one of external_id or email (got neither)",
            field="identity",
        )
    address = body.get("email")
    if address is not None:
        local, at, domain = address.rpartition("@")
        if not at or not local or not domain:
            raise InvalidEventError(f"email {address!r} is not an email address", field="email")
    return body


def _contact_string(name: str, value: object) -> str:
    if not isinstance(value, str):
        hint = f"; pass str({value!r})" if isinstance(value, int) else ""
        raise InvalidEventError(
            f"{name} must be a string, got {type(value).__name__}{hint}", field=name
        )
    if not value.strip():
        raise InvalidEventError(f"{name} must not be empty or blank", field=name)
    if value != value.strip():
        raise InvalidEventError(
            f"{name} {value!r} has leading or trailing whitespace; strip it", field=name
        )
    if len(value) > MAX_IDENTIFIER_LENGTH:
        raise InvalidEventError(
            f"{name} is {len(value)} characters long; Intercom takes at most "
            f"{MAX_IDENTIFIER_LENGTH}",
            field=name,
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidEventError(
            f"{name} {value!r} is not valid UTF-8 (it holds a lone surrogate)", field=name
        ) from None
    return value
