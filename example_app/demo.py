"""``python -m example_app --demo``: a scripted visit through real HTTP, then what Intercom
(the emulator) received, checked against what each step should have tracked."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import requests

from .runner import LEAD_ID, ROOT

EMAIL = "ada@example.com"
PASSWORD = "correct-horse-battery"
#: A card that pays, and the one that is always declined (``users.DECLINED_CARD``).
GOOD_CARD = "4242 4242 4242 4242"
DECLINED_CARD = "4000 0000 0000 0002"
#: Seconds to wait for every event to reach the emulator.
DELIVERY_TIMEOUT = 30.0


@dataclass(frozen=True)
class Step:
    """One request of the visit (``"POST /signup"``), its form, the status it must get, and
    the event it must track (``None``: nothing) about ``who``: the user, or the Lead.
    ``drops``: an event it tracks in a transaction that rolls back, so never sent."""

    what: str
    request: str
    form: Mapping[str, str] | None
    status: int
    tracks: str | None = None
    who: str = "user"
    drops: str | None = None


def script() -> list[Step]:
    """The visit: every way of tracking in the app, and four forms that fail (one of them
    after tracking its event in a transaction that then rolls back)."""
    tomorrow = {"next_run": (datetime.now(timezone.utc).date() + timedelta(days=1)).isoformat()}
    account = {"email": EMAIL, "password": PASSWORD}
    wrong = {"email": EMAIL, "password": "not-the-password"}
    report = "/reports/signups"
    as_lead = f"GET /pricing?lead={LEAD_ID}"
    return [
        Step("sign up", "POST /signup", account, 302, "signed-up"),
        Step("sign up again (email taken)", "POST /signup", account, 409),
        Step("log in (wrong password)", "POST /login", wrong, 401),
        Step("log in", "POST /login", account, 302, "logged-in"),
        Step(
            "upgrade to team (card declined)",
            "POST /billing/upgrade",
            {"plan": "team", "card": DECLINED_CARD},
            402,
            drops="upgraded-plan",
        ),
        Step(
            "upgrade to pro",
            "POST /billing/upgrade",
            {"plan": "pro", "card": GOOD_CARD},
            302,
            "upgraded-plan",
        ),
        Step("schedule (no such day)", f"POST {report}/schedule", {"next_run": "soon"}, 400),
        Step("schedule a report", f"POST {report}/schedule", tomorrow, 302, "scheduled-report"),
        Step("export as CSV", f"POST {report}/export", {"format": "csv"}, 200, "exported-report"),
        Step("view pricing", "GET /pricing", None, 200, "viewed-pricing"),
        Step("log out", "POST /logout", None, 302, "logged-out"),
        Step("view pricing as a Lead", as_lead, None, 200, "viewed-pricing", who="lead"),
    ]


class DemoFailed(Exception):
    """The demo did not go as scripted; the message says what differed."""


def run_demo(
    web_url: str,
    emulator_url: str,
    status_env: Mapping[str, str],
    dropped: list[tuple[str, str]],
) -> int:
    """Run the visit, wait for delivery, print what the emulator received; 0 when all is as
    scripted. ``status_env``: the environment ``flask intercom status`` needs; ``dropped``:
    filled with ``(event name, reason)`` as the web app sends ``event_dropped``."""
    steps = script()
    print(f"\nA visit to {web_url}, through real HTTP:\n")
    with requests.Session() as browser:
        for step in steps:
            _visit(browser, web_url, step)
    visited = time.monotonic()
    expected = Counter((step.tracks, step.who) for step in steps if step.tracks is not None)
    failed_forms = sum(1 for step in steps if step.status >= 400)

    total = sum(expected.values())
    print(f"\nWaiting (at most {DELIVERY_TIMEOUT:g} s) for the worker to deliver {total} events...")
    _wait_for(emulator_url, expected)
    waited = time.monotonic() - visited
    status = _drained(status_env)
    # Read again once nothing is queued or in flight: an event a failed form tracked by
    # mistake would be here by now. Shown in the order of the visit (the worker sends
    # several at once, so they may arrive in another order).
    order = {(step.tracks, step.who): number for number, step in enumerate(steps)}
    received = sorted(
        _received(emulator_url),
        key=lambda event: (event["created_at"], order.get(_key(event), len(order))),
    )
    print(f"\nWhat Intercom (the emulator at {emulator_url}) received:\n")
    print(table(received))
    print("\nTracked, then dropped before leaving the app (never sent):\n")
    print("\n".join(f"  {name:<18} {reason}" for name, reason in dropped) or "  none")
    print(
        f"\nflask intercom status: queued {status['queued']}, in flight "
        f"{status['in_flight']}, scheduled {status['scheduled']}, failed {status['failed']}"
    )
    created = _contacts_created(emulator_url)
    print(
        "\nContacts the worker created (the new user's first event got 404 User Not Found, "
        "so the worker created the contact, then delivered the event):\n"
    )
    print("\n".join(f"  {c}" for c in created) or "  none")
    got = Counter(_key(event) for event in received)
    missing, unexpected = expected - got, got - expected
    warnings = [w for event in received for w in event.get("warnings", [])]
    should_drop = [(step.drops, "rolled back") for step in steps if step.drops is not None]
    if not created:
        raise DemoFailed("the worker created no contact for the user who signed up")
    if missing or unexpected or warnings or status["failed"] or dropped != should_drop:
        raise DemoFailed(
            "the emulator did not receive what the visit tracked: "
            f"missing {_listed(missing)}; unexpected {_listed(unexpected)}; "
            f"warnings {warnings or 'none'}; failed {status['failed']}; "
            f"dropped {dropped}, expected {should_drop}"
        )
    print(
        f"\nOK: the {total} events tracked by {len(steps)} requests went through Redis and the "
        f"worker to Intercom (the emulator) within {waited:.1f} s of the last request; "
        f"the {failed_forms} failed forms sent nothing (the declined card's upgraded-plan was "
        "tracked in its transaction and dropped when it rolled back)."
    )
    print("How each view tracks its event: example_app/views.py (the table at its top).")
    return 0


def _visit(browser: requests.Session, web_url: str, step: Step) -> None:
    method, path = step.request.split(" ", 1)
    response = browser.request(
        method, web_url + path, data=step.form, allow_redirects=False, timeout=10
    )
    if step.tracks:
        tracks = f"-> {step.tracks}"
    elif step.drops:
        tracks = f"-> {step.drops}, rolled back: not sent"
    else:
        tracks = "-> nothing tracked"
    print(f"  {response.status_code}  {step.request:<43}  {step.what:<32}  {tracks}")
    if response.status_code != step.status:
        raise DemoFailed(
            f"{step.request} answered {response.status_code}, not {step.status}:\n"
            f"{response.text[:500]}"
        )


def _received(emulator_url: str) -> list[dict[str, Any]]:
    response = requests.get(f"{emulator_url}/_sandbox/events", timeout=5)
    response.raise_for_status()
    events: list[dict[str, Any]] = response.json()["events"]
    return events


def _contacts_created(emulator_url: str) -> list[str]:
    """The contacts created through ``POST /contacts`` (the emulator's request log)."""
    found = requests.get(f"{emulator_url}/_sandbox/contacts", timeout=5).json()
    contacts = found.get("contacts", found) if isinstance(found, dict) else found
    return [
        f"{c.get('role', 'user')} external_id={c.get('user_id')} email={c.get('email')}"
        for c in contacts
        if c.get("user_id") is not None
    ]


def _key(event: Mapping[str, Any]) -> tuple[str, str]:
    """``(event name, "user" or "lead")``, as a step's ``(tracks, who)``."""
    if event.get("email") == EMAIL:
        return event["event_name"], "user"
    if event.get("id") == LEAD_ID:
        return event["event_name"], "lead"
    return event["event_name"], f"unknown contact {event.get('intercom_user_id')}"


def _listed(events: Counter[tuple[str, str]]) -> str:
    """``signed-up (user), viewed-pricing (lead)``, or ``none``."""
    return ", ".join(f"{name} ({who})" for name, who in sorted(events.elements())) or "none"


def _wait_for(emulator_url: str, expected: Counter[tuple[str, str]]) -> None:
    deadline = time.monotonic() + DELIVERY_TIMEOUT
    while True:
        received = _received(emulator_url)
        if not expected - Counter(_key(event) for event in received):
            return
        if time.monotonic() > deadline:
            got = Counter(_key(event) for event in received)
            raise DemoFailed(
                f"after {DELIVERY_TIMEOUT:g} s the emulator still misses "
                f"{_listed(expected - got)} (the worker's log is above)"
            )
        time.sleep(0.1)


def _drained(env: Mapping[str, str]) -> dict[str, Any]:
    """``flask intercom status --json``, once nothing is queued, in flight or scheduled."""
    deadline = time.monotonic() + 10
    while True:
        done = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "example_app", "intercom", "status", "--json"],
            cwd=ROOT,
            env=dict(env),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if done.returncode != 0:
            raise DemoFailed(f"flask intercom status failed:\n{done.stdout}{done.stderr}")
        status: dict[str, Any] = json.loads(done.stdout)
        if not (status["queued"] or status["in_flight"] or status["scheduled"]):
            return status
        if time.monotonic() > deadline:
            raise DemoFailed(f"events still waiting for delivery: {status}")
        time.sleep(0.2)


# --- the table -----------------------------------------------------------------------------


def table(events: list[dict[str, Any]]) -> str:
    """The events as a plain-text table: name, identity, created_at, metadata."""
    rows = [("event", "identity", "created_at (UTC)", "metadata")]
    for event in events:
        when = datetime.fromtimestamp(event["created_at"], timezone.utc)
        rows.append(
            (
                event["event_name"],
                identity(event),
                f"{when:%Y-%m-%d %H:%M:%S}",
                ", ".join(f"{k}={_value(k, v)}" for k, v in event["metadata"].items()),
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    lines = [
        "  "
        + "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True))
        + "  "
        + row[3]
        for row in rows
    ]
    lines.insert(1, "  " + "  ".join("-" * width for width in widths) + "  " + "-" * 8)
    return "\n".join(line.rstrip() for line in lines)


def identity(event: Mapping[str, Any]) -> str:
    """``user_id=... email=...`` or ``id=...`` (a Lead): how the event names its contact."""
    parts = [f"{key}={event[key]}" for key in ("user_id", "email", "id") if event.get(key)]
    return " ".join(parts)


def _value(key: str, value: Any) -> str:
    if isinstance(value, dict) and set(value) == {"amount", "currency"}:
        return f"{value['amount'] / 100:.2f} {value['currency'].upper()}"
    if isinstance(value, dict) and set(value) == {"url", "value"}:
        return f"{value['value']!r} <{value['url']}>"
    if key.endswith("_date") and isinstance(value, int):
        return f"{datetime.fromtimestamp(value, timezone.utc):%Y-%m-%d}"
    return str(value)
