"""Send Intercom data events from Flask, delivered in the background and never lost."""

from __future__ import annotations

from .client import IntercomClient, SendResult
from .decorators import track_event
from .errors import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ConflictError,
    IntercomAPIError,
    IntercomEventsError,
    InvalidEventError,
    NetworkError,
    NetworkTimeoutError,
    NotFoundError,
    ProxyAuthenticationError,
    RateLimitedError,
    RateLimitInfo,
    RedirectError,
    RequestTimeoutError,
    ServerError,
    UnprocessableEntityError,
)
from .events import Event, EventSummary, Identity, Money, RichLink
from .extension import IntercomEvents

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "ConflictError",
    "Event",
    "EventSummary",
    "Identity",
    "IntercomAPIError",
    "IntercomClient",
    "IntercomEvents",
    "IntercomEventsError",
    "InvalidEventError",
    "Money",
    "NetworkError",
    "NetworkTimeoutError",
    "NotFoundError",
    "ProxyAuthenticationError",
    "RateLimitInfo",
    "RateLimitedError",
    "RedirectError",
    "RequestTimeoutError",
    "RichLink",
    "SendResult",
    "ServerError",
    "UnprocessableEntityError",
    "track_event",
]
