"""The emulator's pure parts, by table: rate windows, faults, settings, validation, contacts."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import pytest

from flask_intercom_events.sandbox import Contact, Fault, FaultKind, Settings
from flask_intercom_events.sandbox.faults import FaultPlan
from flask_intercom_events.sandbox.ratelimit import (
    RateWindows,
    describe_window,
    limit_message,
    window_reset,
    window_start,
)
from flask_intercom_events.sandbox.settings import fingerprint
from flask_intercom_events.sandbox.validation import (
    Refusal,
    check_event,
    check_summaries,
    stored_event_name,
)

# -- rate windows ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "width", "start", "reset"),
    [
        (1_700_000_000.0, 10, 1_700_000_000, 1_700_000_010),
        (1_700_000_009.999, 10, 1_700_000_000, 1_700_000_010),
        (1_700_000_010.0, 10, 1_700_000_010, 1_700_000_020),
        (1_700_000_003.5, 1, 1_700_000_003, 1_700_000_004),
        (1_700_000_059.0, 60, 1_700_000_040, 1_700_000_100),
        (100.25, 0.5, 100.0, 101),
        # floor(now / 0.2) * 0.2 alone is 1795686704.8000002: the reset is 705, not 706.
        (1_795_686_704.85, 0.2, 1_795_686_704.8, 1_795_686_705),
        (1_795_686_704.99, 0.2, 1_795_686_704.8, 1_795_686_705),
        (1_795_686_705.0, 0.2, 1_795_686_705.0, 1_795_686_706),
    ],
)
def test_windows_are_aligned_to_multiples_of_their_width(
    now: float, width: float, start: float, reset: int
) -> None:
    assert window_start(now, width) == start
    assert window_reset(now, width) == reset


@pytest.mark.parametrize(
    ("limit", "width", "message"),
    [
        (1666, 10, "Exceeded rate limit of 1666 in 10_seconds"),
        (167, 10.0, "Exceeded rate limit of 167 in 10_seconds"),
        (3, 0.5, "Exceeded rate limit of 3 in 0.5_seconds"),
    ],
)
def test_limit_message_is_intercoms(limit: int, width: float, message: str) -> None:
    assert limit_message(limit, width) == message
    assert message.endswith(describe_window(width))


def test_rate_windows_count_per_key_and_restart_each_window() -> None:
    windows = RateWindows()
    seen = [windows.hit("a", 1000.0 + n * 0.1, 3, 10) for n in range(5)]

    assert [(d.allowed, d.remaining) for d in seen] == [
        (True, 2),
        (True, 1),
        (True, 0),
        (False, 0),
        (False, 0),
    ]
    assert {d.reset for d in seen} == {1010}
    assert windows.hit("b", 1000.5, 3, 10).remaining == 2
    assert windows.hit("a", 1010.0, 3, 10).remaining == 2
    windows.clear()
    assert windows.hit("a", 1010.0, 3, 10).remaining == 2
    assert dict(windows.hit("a", 1010.0, 3, 10).headers()) == {
        "X-RateLimit-Limit": "3",
        "X-RateLimit-Remaining": "1",
        "X-RateLimit-Reset": "1020",
    }


# -- faults ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "status", "seconds", "shown"),
    [
        ("ok", FaultKind.OK, None, None, "ok"),
        ("500", FaultKind.ERROR, 500, None, "500"),
        (" 503 ", FaultKind.ERROR, 503, None, "503"),
        (408, FaultKind.ERROR, 408, None, "408"),
        ("409", FaultKind.ERROR, 409, None, "409"),
        ("429", FaultKind.THROTTLE, 429, None, "429"),
        ("drop", FaultKind.DROP, None, None, "drop"),
        ("STALL", FaultKind.STALL, None, None, "stall"),
        ("stall:2.5", FaultKind.STALL, None, 2.5, "stall:2.5"),
        ("stall:0", FaultKind.STALL, None, 0.0, "stall:0"),
    ],
)
def test_fault_parse(
    text: str | int, kind: FaultKind, status: int | None, seconds: float | None, shown: str
) -> None:
    fault = Fault.parse(text)
    assert (fault.kind, fault.status, fault.seconds) == (kind, status, seconds)
    assert str(fault) == shown
    assert Fault.parse(str(fault)) == fault


@pytest.mark.parametrize(
    "text", ["404", "400", "600", "200", "boom", "stall:x", "stall:-1", "stall:inf", ""]
)
def test_fault_parse_refuses_the_unknown(text: str) -> None:
    with pytest.raises(ValueError, match="fault"):
        Fault.parse(text)


def test_fault_plan_runs_the_script_then_the_rates() -> None:
    plan = FaultPlan(seed=1)
    plan.extend([Fault.parse("500"), Fault.parse("drop")])
    settings = Settings()

    drawn = [str(plan.next(settings)) for _ in range(4)]

    assert drawn == ["500", "drop", "ok", "ok"]
    assert plan.pending == []


def test_a_scripted_fault_with_a_path_waits_for_a_request_to_that_path() -> None:
    plan = FaultPlan(seed=1)
    plan.extend([Fault.parse("409@/contacts"), Fault.parse("500")])
    settings = Settings()

    drawn = [str(plan.next(settings, path)) for path in ("/events", "/events", "/contacts")]

    assert drawn == ["500", "ok", "409@/contacts"]
    assert Fault.parse("stall:2@/events") == Fault(FaultKind.STALL, seconds=2.0, path="/events")


def test_fault_plan_rates_are_honoured_and_seeded() -> None:
    settings = Settings(error_rate=0.1, error_status=503, drop_rate=0.2, stall_rate=0.05, seed=4)
    plan = FaultPlan(settings.seed)
    drawn = Counter(str(plan.next(settings)) for _ in range(20_000))

    assert abs(drawn["503"] / 20_000 - 0.1) < 0.01
    assert abs(drawn["drop"] / 20_000 - 0.2) < 0.015
    assert abs(drawn["stall"] / 20_000 - 0.05) < 0.01
    assert drawn["429"] == 0
    again = FaultPlan(settings.seed)
    plan.reseed(settings.seed)
    assert [plan.next(settings) for _ in range(50)] == [again.next(settings) for _ in range(50)]


def test_fault_plan_latency_stays_within_the_jitter() -> None:
    plan = FaultPlan(seed=2)
    settings = Settings(latency=0.1, jitter=0.05)
    delays = [plan.latency(settings) for _ in range(1000)]
    assert min(delays) >= 0.1
    assert max(delays) <= 0.15
    assert max(delays) - min(delays) > 0.04
    assert plan.latency(Settings(latency=0.2)) == 0.2


# -- settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"tokens": "one-token"}, "tokens"),
        ({"tokens": [""]}, "tokens"),
        ({"read_only_tokens": [1]}, "read_only_tokens"),
        ({"rate_limit": -1}, "rate_limit"),
        ({"rate_limit": 2.5}, "rate_limit"),
        ({"rate_window": 0}, "rate_window"),
        ({"latency": -0.1}, "latency"),
        ({"latency": "slow"}, "latency"),
        ({"jitter": float("nan")}, "jitter"),
        ({"error_rate": 1.5}, "error_rate"),
        ({"drop_rate": 0.6, "stall_rate": 0.6}, "must not pass 1"),
        ({"error_status": 404}, "error_status"),
        ({"seed": "x"}, "seed"),
        ({"require_contacts": "yes"}, "require_contacts"),
        ({"log_size": 0}, "log_size"),
        ({"max_event_names": -5}, "max_event_names"),
        ({"contact_visibility_delay": -1}, "contact_visibility_delay"),
        ({"latence": 1}, "unknown setting"),
    ],
)
def test_bad_settings_are_refused_by_name(changes: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError, match=re.escape(named)):
        Settings().replace(**changes)


def test_settings_normalise_and_round_trip() -> None:
    settings = Settings().update({"tokens": ["a", "b"], "rate_limit": 0, "max_event_names": 0})

    assert settings.tokens == ("a", "b")
    assert settings.rate_limit is None
    assert settings.max_event_names is None
    shown = settings.to_dict()
    assert shown["tokens"] == {"count": 2, "fingerprints": [fingerprint("a"), fingerprint("b")]}
    assert Settings(**{**shown, "tokens": ["a", "b"], "read_only_tokens": []}) == settings
    assert Settings(read_only_tokens=("r",)).all_tokens == {"sandbox-token", "r"}


def test_tokens_are_shown_as_fingerprints_only() -> None:
    token = "tok_live_0123456789abcdef"
    settings = Settings(tokens=(token,), read_only_tokens=(token + "-read",))

    assert re.fullmatch("sha256:[0-9a-f]{12}", fingerprint(token))
    assert fingerprint(token) != fingerprint(token + "-read")
    assert token not in repr(settings)
    assert token not in str(settings.to_dict())
    for bad in ([token, 7], [token, ""], token):
        with pytest.raises(ValueError, match="tokens") as caught:
            Settings(tokens=bad)  # type: ignore[arg-type]
        assert token not in str(caught.value)


# -- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("invited-friend", "invited-friend"),
        ("Invited-Friend", "invited-friend"),
        ("order.placed", "order-placed"),
        ("paid$", "paid-"),
        ("ÉTÉ", "été"),
    ],
)
def test_stored_event_name(sent: str, stored: str) -> None:
    assert stored_event_name(sent) == stored


def test_check_event_keeps_the_first_ten_keys_in_send_order() -> None:
    metadata = {key: n for n, key in enumerate("zyxwvutsrqponm")}
    checked = check_event(
        {"event_name": "A.b", "created_at": 5, "email": "e@example.com", "metadata": metadata}
    )

    assert list(checked.metadata) == list("zyxwvutsrq")
    assert checked.event_name == "a-b"
    assert (checked.user_id, checked.email, checked.id) == (None, "e@example.com", None)
    assert [warning.code for warning in checked.warnings] == [
        "event_name_case",
        "event_name_characters",
        "metadata_keys_ignored",
    ]
    assert "'p', 'o', 'n', 'm'" in checked.warnings[-1].message


def test_check_event_refusal_lists_every_error() -> None:
    with pytest.raises(Refusal) as caught:
        check_event({"event_name": 1, "metadata": {"a": [], "b": {"amount": -1, "currency": 1}}})

    assert caught.value.status == 400
    assert [(e.code, e.field) for e in caught.value.errors] == [
        ("parameter_invalid", "event_name"),
        ("parameter_not_found", "created_at"),
        ("parameter_not_found", "user_id"),
        ("parameter_invalid", "metadata.a"),
        ("parameter_invalid", "metadata.b"),
        ("parameter_invalid", "metadata.b"),
    ]


def test_check_summaries_warns_on_milliseconds() -> None:
    checked = check_summaries(
        {
            "user_id": "1",
            "event_summaries": {"event_name": "a", "count": 2, "first": 1, "last": 10**12},
        }
    )
    assert [(w.code, w.field) for w in checked.warnings] == [
        ("created_at_milliseconds", "event_summaries.last")
    ]


# -- contacts ----------------------------------------------------------------------------------


def test_contact_ids_are_made_up_stably_and_intercom_shaped() -> None:
    first = Contact.make(user_id="42")
    assert first == Contact.make(user_id="42")
    assert re.fullmatch("[0-9a-f]{24}", first.id)
    assert Contact.make(user_id="43").id != first.id
    assert Contact.make(id="given", email="a@example.com").id == "given"


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"user_id": ""},
        {"user_id": 42},
        {"name": "Ada", "user_id": "1"},
        {"id": "x", "role": "admin"},
    ],
    ids=["none", "empty", "number", "unknown-field", "role"],
)
def test_bad_contacts_are_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="contact"):
        Contact.from_dict(fields)
