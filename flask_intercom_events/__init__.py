"""Send Intercom data events from Flask, delivered in the background and never lost."""

from __future__ import annotations

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
    RateLimitedError,
    RateLimitInfo,
    RequestTimeoutError,
    ServerError,
    UnprocessableEntityError,
)
from .events import Event, Identity, Money, RichLink

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "ConflictError",
    "Event",
    "Identity",
    "IntercomAPIError",
    "IntercomEventsError",
    "InvalidEventError",
    "Money",
    "NetworkError",
    "NetworkTimeoutError",
    "NotFoundError",
    "RateLimitInfo",
    "RateLimitedError",
    "RequestTimeoutError",
    "RichLink",
    "ServerError",
    "UnprocessableEntityError",
]
