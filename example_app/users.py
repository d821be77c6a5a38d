"""Users for Flask-Login: stored in SQLite, with hashed passwords."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from flask_login import UserMixin
from werkzeug.security import check_password_hash, generate_password_hash

from .db import get_db
from .extensions import login_manager

#: What each paid plan costs a month, in cents (Intercom's ``Money`` takes cents).
PLAN_PRICES = {"pro": 34999, "team": 99900}


@dataclass
class User(UserMixin):  # type: ignore[misc]  # flask_login ships no type hints
    """A signed-up user. Its ``email`` attribute is what the extension sends with
    ``user_id`` (``str(get_id())``), so Intercom can match either."""

    id: int
    email: str
    plan: str


class EmailTakenError(ValueError):
    """Someone already signed up with this email."""


def create_user(email: str, password: str) -> User:
    """Store a new user; raises :class:`EmailTakenError` if the email is taken."""
    db = get_db()
    try:
        with db:
            cursor = db.execute(
                "INSERT INTO user (email, password_hash) VALUES (?, ?)",
                (email, generate_password_hash(password)),
            )
    except sqlite3.IntegrityError:
        raise EmailTakenError(email) from None
    assert cursor.lastrowid is not None  # always set after an INSERT
    return User(id=cursor.lastrowid, email=email, plan="free")


def authenticate(email: str, password: str) -> User | None:
    """The user with this email and password, or ``None``."""
    row = get_db().execute("SELECT * FROM user WHERE email = ?", (email,)).fetchone()
    if row is None or not check_password_hash(row["password_hash"], password):
        return None
    return User(id=row["id"], email=row["email"], plan=row["plan"])


def set_plan(user: User, plan: str) -> None:
    """Move ``user`` to ``plan``."""
    db = get_db()
    with db:
        db.execute("UPDATE user SET plan = ? WHERE id = ?", (plan, user.id))
    user.plan = plan


def load_user(user_id: str) -> User | None:
    """Flask-Login's loader: the user of a session cookie."""
    row = get_db().execute("SELECT * FROM user WHERE id = ?", (user_id,)).fetchone()
    if row is None:
        return None
    return User(id=row["id"], email=row["email"], plan=row["plan"])


# A call rather than a decorator: Flask-Login ships no type hints, and an untyped decorator
# would hide load_user's signature from the type checker.
login_manager.user_loader(load_user)
