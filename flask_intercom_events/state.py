"""The extension's state of one app, kept in ``app.extensions["intercom_events"]``.

A leaf module: the request path (``extension.py``), the command line and the delivery side
(``jobs.py``, ``worker.py``) all find an app's settings here, through :func:`state_of`, so the
delivery side never imports the extension or Flask's request machinery (as flask-sqlalchemy's
``cli.py`` only touches ``current_app.extensions[...]``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flask import Flask

from .config import Settings
from .errors import ConfigurationError

if TYPE_CHECKING:  # for the type checker only: at run time this module imports neither
    from .extension import IntercomEvents
    from .intake import Intake
    from .local_seconds import LocalSeconds

__all__ = ["EXTENSION_KEY", "AppState", "state_of"]

#: The key of the extension's state in ``app.extensions``.
EXTENSION_KEY = "intercom_events"


@dataclass
class AppState:
    """Everything the extension keeps for one app.

    ``extension`` is the :class:`~flask_intercom_events.IntercomEvents` serving the app,
    ``intake`` the hand-off to Redis (``rq`` delivery) and ``client`` the Intercom client
    (``eager`` delivery), with ``seconds``, its same-second claims (``spread``).
    """

    extension: IntercomEvents
    settings: Settings
    use_flask_login: bool
    intake: Intake | None
    client: Any
    seconds: LocalSeconds | None = None

    def __repr__(self) -> str:
        return f"<IntercomEvents state delivery={self.settings.delivery!r}>"


def state_of(app: Flask) -> AppState:
    """The extension's state for ``app``; a clear error if ``init_app`` was never called."""
    try:
        state: AppState = app.extensions[EXTENSION_KEY]
    except KeyError:
        raise ConfigurationError(
            f"IntercomEvents is not initialised on app {app.name!r}: call "
            "intercom.init_app(app) (or IntercomEvents(app)) in your app factory"
        ) from None
    return state
