"""SQLite storage (stdlib ``sqlite3``): one connection per request, as in Flask's tutorial."""

from __future__ import annotations

import os
import sqlite3

from flask import Flask, current_app, g

SCHEMA = """
CREATE TABLE IF NOT EXISTS user (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    email TEXT UNIQUE NOT NULL,
    password_hash TEXT NOT NULL,
    plan TEXT NOT NULL DEFAULT 'free'
);
CREATE TABLE IF NOT EXISTS schedule (
    user_id INTEGER NOT NULL REFERENCES user (id),
    report TEXT NOT NULL,
    next_run TEXT NOT NULL,
    PRIMARY KEY (user_id, report)
);
"""


def get_db() -> sqlite3.Connection:
    """This request's connection to ``DATABASE``, made (with the tables) on first use."""
    if "db" not in g:
        path = current_app.config["DATABASE"]
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)  # the instance folder, at first
        g.db = sqlite3.connect(path)
        g.db.row_factory = sqlite3.Row
        # Creating the tables here, not in a separate "init-db" step, keeps the example
        # runnable with no set-up: every statement is idempotent.
        g.db.executescript(SCHEMA)
    connection: sqlite3.Connection = g.db
    return connection


def close_db(exc: BaseException | None = None) -> None:
    """Close this request's connection, if it made one."""
    connection = g.pop("db", None)
    if connection is not None:
        connection.close()


def init_app(app: Flask) -> None:
    """Close the connection at the end of every request (and app context)."""
    app.teardown_appcontext(close_db)
