"""The Intercom API versions Intercom knows, in one place (pure: no I/O, no imports).

Intercom refuses any other ``Intercom-Version`` with ``400 intercom_version_invalid``, "The
requested version could not be found" (API notes, "Added facts"), so a typo that would pass
unnoticed locally fails here as it would in production. A request without the header gets
the workspace's default version, which is allowed.
"""

from __future__ import annotations

#: Every value ``Intercom-Version`` may take: 1.0-1.4, 2.0-2.16 (the OpenAPI enums of 2.11 and
#: 2.16), and ``Unstable``, since renamed ``Preview`` (both still answered). Exact spelling.
KNOWN_API_VERSIONS: tuple[str, ...] = (
    *(f"1.{minor}" for minor in range(5)),
    *(f"2.{minor}" for minor in range(17)),
    "Unstable",
    "Preview",
)

#: Intercom's refusal of an unknown version: its code and message.
VERSION_INVALID = ("intercom_version_invalid", "The requested version could not be found")


def is_known_version(version: str) -> bool:
    """``True`` when Intercom answers requests sent with ``Intercom-Version: version``."""
    return version in _KNOWN


_KNOWN = frozenset(KNOWN_API_VERSIONS)
