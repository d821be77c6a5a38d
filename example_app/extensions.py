"""The extension objects, made once and bound to each app in ``create_app``.

They live in their own module so that views and signal mappings can import them without
importing the app factory (which imports them).
"""

from __future__ import annotations

from flask_login import LoginManager

from flask_intercom_events import IntercomEvents

intercom = IntercomEvents()
login_manager = LoginManager()
login_manager.login_view = "views.login_form"  # where login_required sends visitors
