"""The database: Flask-SQLAlchemy over SQLite, by default in the app's instance folder.

``DATABASE`` is the SQLite file (``SQLALCHEMY_DATABASE_URI`` is made from it unless set).
The tables are created when the app starts, so the example runs with no set-up step.
"""

from __future__ import annotations

import os

from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.pool import NullPool


class Base(DeclarativeBase):
    """The models' base class (``users.py``, ``reports.py``)."""


#: The app's database; ``db.session`` is the session of the current request (or app context),
#: closed by Flask-SQLAlchemy when it ends.
db = SQLAlchemy(model_class=Base)


def init_db(app: Flask) -> None:
    """Bind ``db`` to ``app`` and create the tables that are missing."""
    path = app.config["DATABASE"]
    app.config.setdefault("SQLALCHEMY_DATABASE_URI", f"sqlite:///{os.path.abspath(path)}")
    # A SQLite file opens in microseconds: no pool of connections left open when an app (one
    # per test, say) is thrown away.
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {"poolclass": NullPool})
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)  # the instance folder
    db.init_app(app)
    # The models (users.py, reports.py) are defined by now: create_app imports the views,
    # which import them, before it calls this.
    with app.app_context():
        db.create_all()
