"""The retry rules (``retry.py``): pure, so every case is a row of a table."""

from __future__ import annotations

from typing import Any

import pytest

from flask_intercom_events.errors import (
    AuthenticationError,
    BadRequestError,
    IntercomAPIError,
    InvalidEventError,
    NetworkError,
    NetworkTimeoutError,
    NotFoundError,
    ProxyAuthenticationError,
    RateLimitedError,
    RedirectError,
    ServerError,
)
from flask_intercom_events.retry import (
    Action,
    Attempts,
    Decision,
    RetryPolicy,
    Verdict,
    backoff,
    classify,
    classify_error,
    decide,
    reason_of,
    settle,
)

T = Verdict.TRANSIENT


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (None, T),  # no response: network error or timeout
        (408, T),
        (409, T),
        (500, T),
        (502, T),
        (503, T),
        (504, T),
        (599, T),
        (429, Verdict.THROTTLED),
        (404, Verdict.CONTACT_MISSING),
        (401, Verdict.UNAUTHORIZED),
        (403, Verdict.UNAUTHORIZED),
        (407, Verdict.UNAUTHORIZED),  # a proxy refused its credentials: pause, as for 401
        (400, Verdict.REJECTED),
        (422, Verdict.REJECTED),
        (405, Verdict.REJECTED),
        (413, Verdict.REJECTED),
        # A redirect is never followed; it says nothing about the event (a wrong base URL, a
        # proxy or captive portal on the way): retried like a 5xx, then failed with it.
        # A success raised as an error is not Intercom's answer (a 200 page where an event
        # gets 202, a body that is not JSON): retried, never counted as delivered.
        (200, T),
        (204, T),
        (301, T),
        (302, T),
        (304, T),
        (308, T),
        (600, Verdict.REJECTED),
    ],
)
def test_classify_by_status(status: int | None, verdict: Verdict) -> None:
    assert classify(status) is verdict


@pytest.mark.parametrize(
    ("error", "verdict", "reason"),
    [
        (NetworkError("refused"), T, "network"),
        (NetworkTimeoutError("slow"), T, "network"),
        (ServerError("boom", status=500), T, "500"),
        (ServerError("x", status=503, code="service_unavailable"), T, "503 service_unavailable"),
        (
            RateLimitedError("x", status=429, code="rate_limit_exceeded"),
            Verdict.THROTTLED,
            "429 rate_limit_exceeded",
        ),
        (
            NotFoundError("User Not Found", status=404, code="not_found"),
            Verdict.CONTACT_MISSING,
            "404 not_found",
        ),
        (
            AuthenticationError("x", status=401, code="unauthorized"),
            Verdict.UNAUTHORIZED,
            "401 unauthorized",
        ),
        (
            AuthenticationError("x", status=403, code="forbidden"),
            Verdict.UNAUTHORIZED,
            "403 forbidden",
        ),
        (
            ProxyAuthenticationError("x", status=407),
            Verdict.UNAUTHORIZED,
            "407 proxy_authentication_required",
        ),
        (
            BadRequestError("x", status=400, code="parameter_invalid"),
            Verdict.REJECTED,
            "400 parameter_invalid",
        ),
        (IntercomAPIError("x", status=422), Verdict.REJECTED, "422"),
        (RedirectError("x", status=302), T, "302 redirect"),
        (NetworkError("portal", status=200, code="unexpected_answer"), T, "200 unexpected_answer"),
        (RedirectError("x", status=307, code="moved"), T, "307 redirect"),
        (InvalidEventError("bad name", field="event_name"), Verdict.REJECTED, "invalid_event"),
        (TypeError("deliver() takes 1 argument"), Verdict.REJECTED, "TypeError"),
        (RuntimeError("a bug"), T, "RuntimeError"),
    ],
)
def test_classify_errors_and_their_reason_labels(
    error: Exception, verdict: Verdict, reason: str
) -> None:
    assert classify_error(error) is verdict
    assert reason_of(error) == reason


@pytest.mark.parametrize(
    ("verdict", "final"),
    [
        (T, False),
        (Verdict.THROTTLED, False),
        (Verdict.CONTACT_MISSING, False),
        (Verdict.REJECTED, True),
        (Verdict.UNAUTHORIZED, False),  # delivery pauses: the event waits
    ],
)
def test_final_verdicts(verdict: Verdict, final: bool) -> None:
    assert verdict.final is final


POLICY = RetryPolicy(delay=1.0, max_delay=60.0)


@pytest.mark.parametrize(
    ("failures", "draw", "expected"),
    [
        (1, 0.0, 0.5),  # half of 1 s for sure...
        (1, 1.0, 1.0),  # ...the other half by the draw
        (1, 0.5, 0.75),
        (2, 0.0, 1.0),
        (3, 0.0, 2.0),
        (3, 1.0, 4.0),
        (6, 0.0, 16.0),
        (7, 1.0, 60.0),  # 64 s capped at max_delay
        (50, 0.0, 30.0),
        (10_000, 1.0, 60.0),  # no overflow
        (0, 1.0, 1.0),  # nonsense counts are clamped, not trusted
        (1, 7.0, 1.0),
        (1, -1.0, 0.5),
    ],
)
def test_backoff_is_exponential_capped_and_jittered(
    failures: int, draw: float, expected: float
) -> None:
    assert backoff(failures, POLICY, draw) == pytest.approx(expected)


NOW = 1_700_000_000.0
POLICY_404 = RetryPolicy(
    max_attempts=5,
    max_retry_time=3600,
    delay=2.0,
    max_delay=100.0,
    not_found_delays=(60.0, 300.0),
    window=10.0,
)


def history(total: int, throttled: int = 0, not_found: int = 0, age: float = 0.0) -> Attempts:
    return Attempts(total=total, throttled=throttled, not_found=not_found, first_at=NOW - age)


@pytest.mark.parametrize(
    ("verdict", "attempts", "kwargs", "expected"),
    [
        # transient: backoff from `delay`, doubling, never below Retry-After or a spent window
        (T, history(1), {}, Decision(True, 1.0 + 1.0 * 0.5)),
        (T, history(2), {}, Decision(True, 2.0 + 2.0 * 0.5)),
        (T, history(2), {"retry_after": 30.0}, Decision(True, 30.0)),
        (T, history(2), {"window_resets_in": 7.5}, Decision(True, 7.5)),
        (T, history(5), {}, Decision(False, reason="gave up after 5 attempts")),
        # 429s are not the event's fault: they do not use up attempts
        (T, history(5, throttled=1), {}, Decision(True, 8.0 + 8.0 * 0.5)),
        # throttled: wait for the window, plus up to a tenth of it spread by the draw
        (
            Verdict.THROTTLED,
            history(1, throttled=1),
            {"window_resets_in": 4.0},
            Decision(True, 4.0 + 0.5),
        ),
        (
            Verdict.THROTTLED,
            history(1, throttled=1),
            {"retry_after": 20.0, "window_resets_in": 4.0},
            Decision(True, 20.0 + 0.5),
        ),
        (Verdict.THROTTLED, history(1, throttled=1), {}, Decision(True, 10.0 + 0.5)),
        (
            Verdict.THROTTLED,
            history(40, throttled=40),
            {"window_resets_in": 1.0},
            Decision(True, 1.5),
        ),
        # 404: the schedule, then give up
        (Verdict.CONTACT_MISSING, history(1, not_found=1), {}, Decision(True, 60.0)),
        (Verdict.CONTACT_MISSING, history(2, not_found=2), {}, Decision(True, 300.0)),
        (
            Verdict.CONTACT_MISSING,
            history(3, not_found=3),
            {},
            Decision(False, reason="the contact was still not found after 3 tries"),
        ),
        (
            Verdict.CONTACT_MISSING,
            history(1, not_found=1),
            {"retry_after": 90.0},
            Decision(True, 90.0),
        ),
        # the total time limit, counted from the first attempt
        (T, history(2, age=3590.0), {}, Decision(True, 3.0)),
        (
            T,
            history(2, age=3598.0),
            {},
            Decision(False, reason="gave up after 3598 s of retries (max_retry_time)"),
        ),
        (
            Verdict.THROTTLED,
            history(2, throttled=2, age=3595.0),
            {"window_resets_in": 9.0},
            Decision(False, reason="gave up after 3595 s of retries (max_retry_time)"),
        ),
        # final at once
        (
            Verdict.REJECTED,
            history(1),
            {},
            Decision(False, reason="Intercom refused the event; retrying cannot help"),
        ),
        (
            Verdict.UNAUTHORIZED,
            history(1),
            {},
            Decision(False, reason="the access token was refused (fix INTERCOM_ACCESS_TOKEN)"),
        ),
    ],
)
def test_decide(
    verdict: Verdict, attempts: Attempts, kwargs: dict[str, float], expected: Decision
) -> None:
    found = decide(verdict, attempts, POLICY_404, now=NOW, draw=0.5, **kwargs)
    assert found.retry is expected.retry
    if expected.retry:
        assert found.delay == pytest.approx(expected.delay)
        assert found.reason == f"retry in {expected.delay:.1f} s"
    else:
        assert found.reason == expected.reason


@pytest.mark.parametrize(
    ("before", "verdict", "after"),
    [
        (Attempts(), T, Attempts(1, 0, 0, NOW)),
        (Attempts(), Verdict.THROTTLED, Attempts(1, 1, 0, NOW)),
        (Attempts(), Verdict.CONTACT_MISSING, Attempts(1, 0, 1, NOW)),
        (Attempts(3, 1, 1, NOW - 50), T, Attempts(4, 1, 1, NOW - 50)),  # first_at kept
    ],
)
def test_attempts_count_each_failure(before: Attempts, verdict: Verdict, after: Attempts) -> None:
    assert before.after(verdict, NOW) == after


@pytest.mark.parametrize(
    ("meta", "expected"),
    [
        (None, Attempts()),
        ("garbage", Attempts()),
        ({"total": 3, "throttled": 1, "not_found": 2, "first_at": 12}, Attempts(3, 1, 2, 12.0)),
        ({"total": "3", "throttled": True, "first_at": "x"}, Attempts()),
    ],
)
def test_attempts_from_job_meta(meta: object, expected: Attempts) -> None:
    assert Attempts.from_meta(meta) == expected


def test_attempts_round_trip_through_meta() -> None:
    attempts = Attempts(4, 2, 1, NOW)
    assert Attempts.from_meta(attempts.to_meta()) == attempts


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"max_attempts": 0}, "max_attempts must be at least 1"),
        ({"delay": 0}, "delay must be more than 0 seconds"),
        ({"max_retry_time": -1}, "max_retry_time must be more than 0 seconds"),
        ({"not_found_delays": (10.0, -1.0)}, "not_found_delays must be >= 0"),
    ],
)
def test_policy_refuses_nonsense(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RetryPolicy(**changes)  # type: ignore[arg-type]


SETTLE_POLICY = RetryPolicy(max_attempts=3, not_found_delays=(60.0,), window=10.0)
SETTLE_NOW = 1_000.0


def api_error(cls: type[IntercomAPIError], status: int, code: str, message: str = "") -> Exception:
    return cls(message or code, status=status, code=code)


@pytest.mark.parametrize(
    "case",
    [
        # A refused token is no event's fault: delivery pauses, the history is untouched.
        (
            api_error(AuthenticationError, 401, "unauthorized"),
            Attempts(total=2),
            {},
            Action.PAUSE,
            "401 unauthorized",
            0.0,
            None,
        ),
        (
            api_error(AuthenticationError, 403, "forbidden"),
            Attempts(),
            {},
            Action.PAUSE,
            "403 forbidden",
            0.0,
            None,
        ),
        # So is a proxy that refuses its credentials: every event would fail the same way.
        (
            ProxyAuthenticationError("Proxy Authentication Required", status=407),
            Attempts(total=1),
            {},
            Action.PAUSE,
            "407 proxy_authentication_required",
            0.0,
            None,
        ),
        # Intercom refused the event itself: failed at once.
        (
            api_error(BadRequestError, 400, "parameter_invalid"),
            Attempts(),
            {},
            Action.FAIL,
            "400 parameter_invalid",
            0.0,
            None,
        ),
        (
            api_error(IntercomAPIError, 422, "422", "Cannot have more than 120 active event names"),
            Attempts(),
            {},
            Action.FAIL,
            "422 too_many_event_names",
            0.0,
            None,
        ),
        # A 429 waits for the reset (at least), blocks every worker, and is not an attempt.
        (
            api_error(RateLimitedError, 429, "rate_limit_exceeded"),
            Attempts(),
            {"reset_in": 4.0},
            Action.RETRY,
            "429 rate_limit_exceeded",
            4.0,
            4.0,
        ),
        (
            api_error(RateLimitedError, 429, "rate_limit_exceeded"),
            Attempts(),
            {},
            Action.RETRY,
            "429 rate_limit_exceeded",
            10.0,
            10.0,
        ),
        # 404: the schedule of the not-found delays, then failed.
        (
            api_error(NotFoundError, 404, "not_found"),
            Attempts(),
            {},
            Action.RETRY,
            "404 not_found",
            60.0,
            None,
        ),
        (
            api_error(NotFoundError, 404, "not_found"),
            Attempts(total=1, not_found=1),
            {},
            Action.FAIL,
            "404 not_found",
            0.0,
            None,
        ),
        # After the worker created the contact: short waits for Intercom's search.
        (
            api_error(NotFoundError, 404, "not_found"),
            Attempts(total=1, not_found=1),
            {"contact_created": True},
            Action.RETRY,
            "404 not_found",
            2.0,
            None,
        ),
        # Transient: backoff until max_attempts.
        (NetworkError("reset"), Attempts(total=2), {}, Action.FAIL, "network", 0.0, None),
        (
            api_error(ServerError, 503, "service_unavailable"),
            Attempts(),
            {"retry_after": 7.0},
            Action.RETRY,
            "503 service_unavailable",
            7.0,
            None,
        ),
        # What our side cannot send fails, without blaming Intercom.
        (InvalidEventError("bad"), Attempts(), {}, Action.FAIL, "invalid_event", 0.0, None),
    ],
)
def test_settle(case: tuple[Any, ...]) -> None:
    error, before, kwargs, action, reason, delay, block_for = case
    found = settle(error, before, SETTLE_POLICY, now=SETTLE_NOW, draw=0.0, **kwargs)
    assert (found.action, found.reason, found.block_for) == (action, reason, block_for)
    assert found.delay == pytest.approx(delay, abs=1.0 if action is Action.RETRY else 0)
    if action is Action.PAUSE:
        assert found.attempts == before
    else:
        assert found.attempts.total == before.total + 1


def test_settle_says_whose_refusal_it_was() -> None:
    ours = settle(
        InvalidEventError("created_at is a string"),
        Attempts(),
        SETTLE_POLICY,
        now=SETTLE_NOW,
        draw=0,
    )
    assert "Intercom" not in ours.why
    theirs = settle(
        api_error(BadRequestError, 400, "x"), Attempts(), SETTLE_POLICY, now=SETTLE_NOW, draw=0
    )
    assert theirs.why == "Intercom refused the event; retrying cannot help"


def test_a_pause_says_whose_refusal_it_was() -> None:
    token = settle(
        api_error(AuthenticationError, 401, "unauthorized"),
        Attempts(),
        SETTLE_POLICY,
        now=SETTLE_NOW,
        draw=0,
    )
    assert token.why == "the access token is refused: delivery pauses until it works again"
    proxy = settle(
        ProxyAuthenticationError("Proxy Authentication Required", status=407),
        Attempts(),
        SETTLE_POLICY,
        now=SETTLE_NOW,
        draw=0,
    )
    assert proxy.why == (
        "a proxy on the way to Intercom refused its credentials (407): delivery pauses "
        "until it lets requests through"
    )
    assert "token" not in proxy.why


def test_a_429_is_not_counted_against_max_attempts() -> None:
    history = Attempts(total=5, throttled=4)
    found = settle(
        api_error(RateLimitedError, 429, "r"), history, SETTLE_POLICY, now=SETTLE_NOW, draw=0.5
    )
    assert found.action is Action.RETRY
    assert found.attempts.throttled == 5


def test_the_reasons_count_in_words() -> None:
    one = RetryPolicy(max_attempts=1, not_found_delays=())
    missing = decide(Verdict.CONTACT_MISSING, Attempts(total=1, not_found=1), one, now=0, draw=0)
    assert missing.reason == "the contact was still not found after 1 try"
    failing = decide(T, Attempts(total=1), one, now=0, draw=0)
    assert failing.reason == "gave up after 1 attempt"
