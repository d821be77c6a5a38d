"""The reports every user has, and their schedules (stored with Flask-SQLAlchemy)."""

from __future__ import annotations

from datetime import date

from sqlalchemy import ForeignKey
from sqlalchemy.orm import Mapped, mapped_column

from .db import Base, db

#: Name in the URL: title on the page.
REPORTS = {"signups": "Weekly sign-ups", "revenue": "Monthly revenue"}
EXPORT_FORMATS = ("csv", "json")
#: What every report holds, in this example.
SAMPLE_ROWS = [("2024-W01", 12), ("2024-W02", 19)]


class Schedule(Base):
    """When a user's report runs next."""

    __tablename__ = "schedule"

    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"), primary_key=True)
    report: Mapped[str] = mapped_column(primary_key=True)
    next_run: Mapped[date]


def next_run(user_id: int, report: str) -> date | None:
    """When ``report`` runs next for this user, if it is scheduled."""
    schedule = db.session.get(Schedule, (user_id, report))
    return schedule.next_run if schedule is not None else None


def schedule_run(user_id: int, report: str, day: date) -> None:
    """Run ``report`` next on ``day`` for this user."""
    db.session.merge(Schedule(user_id=user_id, report=report, next_run=day))
    db.session.commit()
