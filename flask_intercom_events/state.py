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

from .client import IntercomClient
from .config import Settings
from .errors import ConfigurationError

if TYPE_CHECKING:  # for the type checker only: at run time this module imports neither
    from .extension import IntercomEvents
    from .intake import Intake

__all__ = ["EXTENSION_KEY", "AppState", "make_client", "state_of"]

#: The key of the extension's state in ``app.extensions``.
EXTENSION_KEY = "intercom_events"


@dataclass
class AppState:
    """Everything the extension keeps for one app.

    ``extension`` is the :class:`~flask_intercom_events.IntercomEvents` serving the app,
    ``intake`` the hand-off to Redis (``rq`` delivery) and ``client`` the Intercom client
    (``eager`` delivery).
    """

    extension: IntercomEvents
    settings: Settings
    use_flask_login: bool
    intake: Intake | None
    client: Any

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


def make_client(settings: Settings, *, pool_size: int | None = None) -> IntercomClient:
    """A new Intercom client for these settings (the caller closes it).

    ``pool_size``: connections kept open, at least the requests in flight at once (the
    worker's concurrency); the client's default when ``None``.
    """
    if settings.access_token is None:
        raise ConfigurationError("INTERCOM_ACCESS_TOKEN is required to talk to Intercom")
    extra: dict[str, Any] = {} if pool_size is None else {"pool_size": pool_size}
    return IntercomClient(
        settings.access_token,
        base_url=settings.api_base_url,
        api_version=settings.api_version,
        timeout=settings.api_timeout,
        **extra,
    )
