"""The pages, and the Intercom event each one tracks.

=========================  ================  ===============================================
page                       event             how
=========================  ================  ===============================================
POST /signup               signed-up         ``intercom.track`` in the sign-up's transaction,
                                             identity given (no login yet)
POST /login                logged-in         Flask-Login's ``user_logged_in`` (``signals.py``)
POST /billing/upgrade      upgraded-plan     ``intercom.track`` in the payment's transaction,
                                             a ``Money`` price
POST /reports/N/schedule   scheduled-report  ``@track_event``, a ``RichLink`` and a ``_date``
POST /reports/N/export     exported-report   the app's ``report_exported`` (``signals.py``)
GET /pricing               viewed-pricing    ``intercom.track``: the user, or a Lead by ``id=``
POST /logout               logged-out        ``intercom.track`` *before* ``logout_user()``
=========================  ================  ===============================================

A form that fails (4xx) tracks nothing. What is tracked while ``db.session`` has a
transaction in progress (``intercom.transactional(db.session)`` in ``create_app``) leaves
only once it commits: a declined card rolls the upgrade back, and its event with it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import date, datetime, time, timezone
from typing import Any, TypeVar, cast

import flask_login
from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_user, logout_user

from flask_intercom_events import Money, RichLink, track_event

from .db import db
from .extensions import intercom
from .reports import EXPORT_FORMATS, REPORTS, SAMPLE_ROWS, next_run, schedule_run
from .signals import report_exported
from .users import (
    PLAN_PRICES,
    EmailTakenError,
    PaymentDeclined,
    User,
    add_user,
    authenticate,
    charge,
)

F = TypeVar("F", bound=Callable[..., Any])
# Flask-Login ships no type hints: this keeps the views' signatures visible to mypy.
login_required = cast(Callable[[F], F], flask_login.login_required)

bp = Blueprint("views", __name__)


def _user() -> User:
    """The logged-in user (only in views behind ``login_required``)."""
    return cast(User, current_user._get_current_object())


@bp.get("/")
def index() -> str:
    """The dashboard: plan, reports, and where to go next."""
    return render_template("index.html", reports=REPORTS, prices=PLAN_PRICES)


# --- sign-up, log-in, log-out ------------------------------------------------------------


@bp.get("/signup")
def signup_form() -> str:
    """The sign-up form."""
    return render_template("auth.html", action="signup")


@bp.post("/signup")
def signup() -> ResponseReturnValue:
    """Create an account, then send the visitor to log in."""
    email = request.form.get("email", "").strip().lower()
    password = request.form.get("password", "")
    if "@" not in email or len(password) < 8:
        flash("Enter an email address and a password of at least 8 characters.")
        return render_template("auth.html", action="signup", email=email), 400
    try:
        user = add_user(email, password)
    except EmailTakenError:
        flash("Someone signed up with that email already: log in instead.")
        return render_template("auth.html", action="signup", email=email), 409
    # Nobody is logged in yet, so the identity is given: the new user's id and email. Tracked
    # in the sign-up's transaction: it leaves once the account is committed.
    intercom.track("signed-up", user_id=str(user.id), email=user.email, metadata={"plan": "free"})
    db.session.commit()
    flash("Account created: log in to start.")
    return redirect(url_for(".login_form", email=email))


@bp.get("/login")
def login_form() -> str:
    """The log-in form."""
    return render_template("auth.html", action="login", email=request.args.get("email", ""))


@bp.post("/login")
def login() -> ResponseReturnValue:
    """Log in. ``login_user`` sends ``user_logged_in``, which ``signals.py`` tracks."""
    email = request.form.get("email", "").strip().lower()
    user = authenticate(email, request.form.get("password", ""))
    if user is None:
        flash("Wrong email or password.")
        return render_template("auth.html", action="login", email=email), 401
    login_user(user)
    return redirect(url_for(".index"))


@bp.post("/logout")
@login_required
def logout() -> ResponseReturnValue:
    """Log out. Tracked before ``logout_user()``: after it there is no user to track."""
    intercom.track("logged-out")
    logout_user()
    return redirect(url_for(".index"))


# --- billing -------------------------------------------------------------------------------


@bp.post("/billing/upgrade")
@login_required
def upgrade() -> ResponseReturnValue:
    """Move the user to a paid plan, paying its first month with the form's card."""
    plan = request.form.get("plan", "")
    if plan not in PLAN_PRICES:
        flash(f"There is no plan {plan!r}.")
        return render_template("index.html", reports=REPORTS, prices=PLAN_PRICES), 400
    user = _user()
    previous = user.plan
    user.plan = plan
    # Tracked in the payment's transaction: sent once the plan and the payment are committed,
    # dropped (event_dropped, "rolled back") if the card is declined.
    intercom.track(
        "upgraded-plan", metadata={"plan": plan, "price": Money(PLAN_PRICES[plan], "eur")}
    )
    try:
        charge(user, plan, request.form.get("card", ""))
    except PaymentDeclined:
        db.session.rollback()
        flash(f"Your card was declined: you are still on the {previous} plan.")
        return render_template("index.html", reports=REPORTS, prices=PLAN_PRICES), 402
    db.session.commit()
    flash(f"You are on the {plan} plan.")
    return redirect(url_for(".index"))


# --- reports -------------------------------------------------------------------------------


@bp.get("/reports/<name>")
@login_required
def report(name: str) -> str:
    """One report, with its schedule and export forms."""
    if name not in REPORTS:
        abort(404)
    return render_template(
        "report.html", name=name, title=REPORTS[name], next_run=next_run(_user().id, name)
    )


def _form_day() -> date:
    """The form's ``next_run`` (``YYYY-MM-DD``); ``ValueError`` if it is not a day."""
    return date.fromisoformat(request.form.get("next_run", ""))


def _schedule_metadata(name: str) -> dict[str, RichLink | datetime]:
    # Called with the view's arguments, only once the view has succeeded (so the form's day
    # is valid). A date travels as Unix seconds; Intercom shows it as a date only under a key
    # ending in "_date".
    return {
        "report": RichLink(url_for(".report", name=name, _external=True), REPORTS[name]),
        # Event dates must be timezone-aware: the day's midnight, UTC.
        "next_run_date": datetime.combine(_form_day(), time(), timezone.utc),
    }


@bp.post("/reports/<name>/schedule")
@login_required
@track_event("scheduled-report", metadata=_schedule_metadata)
def schedule(name: str) -> ResponseReturnValue:
    """Schedule a report's next run."""
    if name not in REPORTS:
        abort(404)  # raises: nothing is tracked
    try:
        day = _form_day()
    except ValueError:
        day = None
    if day is None or day < datetime.now(timezone.utc).date():
        flash("Pick a day, today or later, for the next run.")
        return render_template("report.html", name=name, title=REPORTS[name], next_run=None), 400
    schedule_run(_user().id, name, day)
    flash(f"{REPORTS[name]} runs next on {day:%A %d %B %Y}.")
    return redirect(url_for(".report", name=name))


@bp.post("/reports/<name>/export")
@login_required
def export(name: str) -> ResponseReturnValue:
    """Download a report. Sends ``report_exported``, which ``signals.py`` maps to an event."""
    fmt = request.form.get("format", "")
    if name not in REPORTS or fmt not in EXPORT_FORMATS:
        abort(404 if name not in REPORTS else 400)
    if fmt == "csv":
        out = io.StringIO()
        csv.writer(out).writerows([("week", "count"), *SAMPLE_ROWS])
        body, mimetype = out.getvalue(), "text/csv"
    else:
        body = current_app.json.dumps([{"week": w, "count": n} for w, n in SAMPLE_ROWS])
        mimetype = "application/json"
    # The sender is the real app, not the current_app proxy, as Flask's own signals do.
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    report_exported.send(app, report=name, fmt=fmt)
    return Response(
        body,
        mimetype=mimetype,
        headers={"Content-Disposition": f"attachment; filename={name}.{fmt}"},
    )


# --- pricing: logged-in users, and Leads arriving from an Intercom message ----------------


@bp.get("/pricing")
def pricing() -> str:
    """The pricing page.

    A logged-in user's visit is tracked as theirs. An anonymous visitor who arrives from a
    link in an Intercom message carries their Lead's Intercom id in ``?lead=`` (a Lead has no
    ``user_id``): the visit is tracked with ``id=``. Anyone else is not tracked.
    """
    lead = request.args.get("lead", "").strip()
    if current_user.is_authenticated:
        intercom.track("viewed-pricing")
    elif lead:
        intercom.track("viewed-pricing", id=lead)
    return render_template("pricing.html", prices=PLAN_PRICES)
