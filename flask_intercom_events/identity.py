"""Who an event is about: explicit arguments, then the identity loader, then Flask-Login."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

from flask import has_request_context

from .events import Identity

__all__ = ["IdentityLoader", "flask_login_available", "identity_of_user", "resolve_identity"]

IdentityLoader = Callable[[], "Identity | None"]


def flask_login_available() -> bool:
    """Whether Flask-Login can be imported (checked once per app, in ``init_app``)."""
    try:
        return importlib.util.find_spec("flask_login") is not None
    except (ImportError, ValueError):  # a broken or deliberately blocked install
        return False


def identity_of_user(user: Any) -> Identity | None:
    """The identity of a Flask-Login style user object, or ``None`` if it is anonymous.

    ``user_id`` is ``str(user.get_id())``; ``email`` is added when the user has a non-empty
    string ``email`` attribute.
    """
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    get_id = getattr(user, "get_id", None)
    user_id = get_id() if callable(get_id) else None
    if user_id is None:
        return None
    email = getattr(user, "email", None)
    return Identity(user_id=str(user_id), email=email if isinstance(email, str) and email else None)


def resolve_identity(
    explicit: Identity | None, loader: IdentityLoader | None, use_flask_login: bool
) -> Identity | None:
    """The first identity found: ``explicit``, then ``loader()``, then Flask-Login's user."""
    if explicit is not None:
        return explicit
    if loader is not None:
        return loader()
    if use_flask_login and has_request_context():
        from flask_login import current_user

        return identity_of_user(current_user)
    return None
