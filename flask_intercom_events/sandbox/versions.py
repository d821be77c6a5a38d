"""The Intercom API versions Intercom knows (pure: no I/O).

Intercom refuses any other ``Intercom-Version`` with ``400 intercom_version_invalid``, "The
requested version could not be found" (API notes, "Added facts"), so a typo that would pass
unnoticed locally fails here as it would in production. A request without the header gets
the workspace's default version, which is allowed.
"""

from __future__ import annotations

# One list for the emulator and the extension's configuration check (config.py is pure).
from flask_intercom_events.config import KNOWN_API_VERSIONS

__all__ = ["KNOWN_API_VERSIONS", "VERSION_INVALID", "is_known_version"]

#: Intercom's refusal of an unknown version: its code and message.
VERSION_INVALID = ("intercom_version_invalid", "The requested version could not be found")


def is_known_version(version: str) -> bool:
    """``True`` when Intercom answers requests sent with ``Intercom-Version: version``."""
    return version in _KNOWN


_KNOWN = frozenset(KNOWN_API_VERSIONS)
