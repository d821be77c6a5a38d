"""Users for Flask-Login, stored with Flask-SQLAlchemy, with hashed passwords; and billing."""

from __future__ import annotations

from flask_login import UserMixin
from sqlalchemy import ForeignKey, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column
from werkzeug.security import check_password_hash, generate_password_hash

from .db import Base, db
from .extensions import login_manager

#: What each paid plan costs a month, in cents (Intercom's ``Money`` takes cents).
PLAN_PRICES = {"pro": 34999, "team": 99900}
#: The card number that is always declined (as payment providers' test cards are).
DECLINED_CARD = "4000000000000002"


class User(UserMixin, Base):  # type: ignore[misc]  # flask_login ships no type hints
    """A signed-up user. Its ``email`` attribute is what the extension sends with
    ``user_id`` (``str(get_id())``), so Intercom can match either."""

    __tablename__ = "user"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(unique=True)
    password_hash: Mapped[str]
    plan: Mapped[str] = mapped_column(default="free")


class Payment(Base):
    """One month of a plan, paid."""

    __tablename__ = "payment"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"))
    plan: Mapped[str]
    cents: Mapped[int]


class EmailTakenError(ValueError):
    """Someone already signed up with this email."""


class PaymentDeclined(Exception):
    """The card was refused; nothing was charged."""


def add_user(email: str, password: str) -> User:
    """Add a new user to the session's transaction (flushed, so it has its id; the caller
    commits); raises :class:`EmailTakenError`, the transaction rolled back, if the email is
    taken."""
    user = User(email=email, password_hash=generate_password_hash(password), plan="free")
    db.session.add(user)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise EmailTakenError(email) from None
    return user


def authenticate(email: str, password: str) -> User | None:
    """The user with this email and password, or ``None``."""
    user: User | None = db.session.scalar(select(User).where(User.email == email))
    if user is None or not check_password_hash(user.password_hash, password):
        return None
    return user


def charge(user: User, plan: str, card: str) -> None:
    """Record a month of ``plan`` paid by ``card`` in the session's transaction; raises
    :class:`PaymentDeclined` for the declined test card (after the payment row was written,
    as a real provider's refusal comes after the order is recorded)."""
    db.session.add(Payment(user_id=user.id, plan=plan, cents=PLAN_PRICES[plan]))
    db.session.flush()
    if card.replace(" ", "") == DECLINED_CARD:
        raise PaymentDeclined(f"card ending {card[-4:]} declined")


def load_user(user_id: str) -> User | None:
    """Flask-Login's loader: the user of a session cookie."""
    user: User | None = db.session.get(User, int(user_id))
    return user


# A call rather than a decorator: Flask-Login ships no type hints, and an untyped decorator
# would hide load_user's signature from the type checker.
login_manager.user_loader(load_user)
