"""The reports every user has, and their schedules (stored in SQLite)."""

from __future__ import annotations

from datetime import date

from .db import get_db

#: Name in the URL: title on the page.
REPORTS = {"signups": "Weekly sign-ups", "revenue": "Monthly revenue"}
EXPORT_FORMATS = ("csv", "json")
#: What every report holds, in this example.
SAMPLE_ROWS = [("2024-W01", 12), ("2024-W02", 19)]


def next_run(user_id: int, report: str) -> date | None:
    """When ``report`` runs next for this user, if it is scheduled."""
    row = (
        get_db()
        .execute(
            "SELECT next_run FROM schedule WHERE user_id = ? AND report = ?", (user_id, report)
        )
        .fetchone()
    )
    return date.fromisoformat(row["next_run"]) if row else None


def schedule_run(user_id: int, report: str, day: date) -> None:
    """Run ``report`` next on ``day`` for this user."""
    db = get_db()
    with db:
        db.execute(
            "INSERT OR REPLACE INTO schedule (user_id, report, next_run) VALUES (?, ?, ?)",
            (user_id, report, day.isoformat()),
        )
