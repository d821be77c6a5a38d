"""What a failed Redis command tells an operator, and nothing it should not.

Pure: no I/O. Redis refusing what ``INTERCOM_EVENTS_REDIS_URL`` asks of every connection (a
database the server does not have, credentials it does not take) is said as such, naming the
key, rather than as Redis being down: waiting will not help, the URL or the server must change.
And an exception that carries the text it failed on (a ``UnicodeEncodeError`` holds the whole
string: a password, a key) is told by its type and reason only.
"""

from __future__ import annotations

import traceback

import redis

__all__ = ["refusal", "safe_reason", "safe_traceback"]

_KEY = "INTERCOM_EVENTS_REDIS_URL"
# How Redis (and redis-py) word a refusal of the credentials.
_CREDENTIALS = ("WRONGPASS", "NOAUTH", "invalid password", "invalid username-password")


def refusal(exc: BaseException) -> str | None:
    """What Redis refused of ``INTERCOM_EVENTS_REDIS_URL``, as a sentence naming the key, or
    ``None`` when ``exc`` is not such a refusal (Redis down, slow, or another error)."""
    text = str(exc)
    if isinstance(exc, redis.AuthenticationError) or (
        isinstance(exc, redis.ResponseError) and text.startswith(_CREDENTIALS)
    ):
        return (
            f"Redis refused the credentials of {_KEY} ({type(exc).__name__}): check the "
            "user and password in it"
        )
    if isinstance(exc, redis.ResponseError):
        # Redis answers SELECT, which redis-py sends on connecting, in these words.
        if "DB index is out of range" in text:
            return (
                f"Redis refused to SELECT the database {_KEY} names (DB index is out of "
                "range): the server has fewer databases (its `databases` setting, 16 by "
                "default); end the URL with a lower number"
            )
        if "SELECT is not allowed in cluster mode" in text:
            return (
                f"Redis refused to SELECT the database {_KEY} names (SELECT is not allowed "
                "in cluster mode): a Redis Cluster has database 0 only; end the URL with /0"
            )
    return None


def safe_reason(exc: BaseException) -> str:
    """``exc``'s type and what it says, as a log line may show it: a ``UnicodeError`` by its
    reason alone, never the string it failed on."""
    if isinstance(exc, UnicodeEncodeError):
        return f"{type(exc).__name__}: a string has no {exc.encoding} form ({exc.reason})"
    if isinstance(exc, UnicodeDecodeError):
        return f"{type(exc).__name__}: bytes are not {exc.encoding} ({exc.reason})"
    if isinstance(exc, UnicodeError):
        return type(exc).__name__
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def safe_traceback(exc: BaseException) -> str:
    """Where ``exc`` was raised (the frames of its traceback), without what it says."""
    frames = "".join(traceback.format_tb(exc.__traceback__)).rstrip()
    return f"Traceback (most recent call last):\n{frames}" if frames else ""
