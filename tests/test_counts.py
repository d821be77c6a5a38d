"""What Intercom counts is exactly what happened: real worker processes, a real Redis, and
the emulator, which de-duplicates as Intercom does (contact, name, ``created_at``).

Distinct events of one second all count; one event sent again (a stall, a kill, a line
pushed twice) counts once; events past the spread are failed as collapsed, visibly; a
workspace's 121st event name fails at once, said once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from rq.job import Job

from flask_intercom_events.backlog import requeue_failed
from flask_intercom_events.job_records import JobSerializer
from flask_intercom_events.sandbox import Sandbox

from .workers import Deployment, make_deployments

Make = Callable[..., Deployment]


@pytest.fixture
def deployments(tmp_path: Path) -> Iterator[Make]:
    yield from make_deployments(tmp_path)


def export_reports(
    setup: Deployment, count: int, second: int, user: str = "42", first: int = 0
) -> None:
    """``count`` distinct exports by one user in one second, as a busy view would track."""
    with setup.app.app_context():
        for number in range(first, first + count):
            event = setup.intercom.track(
                "exported-report", user_id=user, created_at=second, metadata={"n": number}
            )
            assert event is not None


def stored(emulator: Sandbox, user: str = "42") -> list[int]:
    return sorted(e.created_at for e in emulator.events if e.user_id == user)


def test_five_distinct_events_in_one_second_are_five_in_intercom(
    redis_url: str, emulator: Sandbox, deployments: Make
) -> None:
    setup = deployments(redis_url, emulator.url)
    second = int(time.time()) - 60
    export_reports(setup, 5, second)
    worker = setup.start_worker("--concurrency", "4")
    setup.wait_until(lambda: len(emulator.events) == 5, 30, "five events stored")
    setup.wait_until(setup.settled, 30, "every event settled")
    assert worker.stop() == 0
    assert stored(emulator) == [second + n for n in range(5)]
    assert sorted(e.metadata["n"] for e in emulator.events) == [0, 1, 2, 3, 4]
    assert emulator.stats.duplicates == 0


def test_with_collapse_intercoms_own_de_duplication_applies(
    redis_url: str, emulator: Sandbox, deployments: Make
) -> None:
    """INTERCOM_EVENTS_SAME_SECOND="collapse": Intercom keeps one of the five."""
    setup = deployments(redis_url, emulator.url, INTERCOM_EVENTS_SAME_SECOND="collapse")
    second = int(time.time()) - 60
    export_reports(setup, 5, second)
    worker = setup.start_worker("--concurrency", "4")
    setup.wait_until(setup.settled, 30, "every event settled")
    assert worker.stop() == 0
    assert stored(emulator) == [second]
    assert emulator.stats.duplicates == 4


def test_two_workers_never_give_two_events_one_second(
    redis_url: str, emulator: Sandbox, deployments: Make
) -> None:
    """The claim of a second is in Redis and atomic: workers collecting side by side (on
    one machine or several) still give every event a second of its own."""
    emulator.configure(latency=0.05)
    setup = deployments(redis_url, emulator.url)
    workers = [setup.start_worker("--concurrency", "8") for _ in range(2)]
    setup.wait_until(lambda: len(setup.registered()) == 2, 30, "both workers up")
    second = int(time.time()) - 60
    for burst in range(5):  # in bursts, so that both workers collect some
        export_reports(setup, 10, second, first=10 * burst)
        time.sleep(0.05)
    setup.wait_until(lambda: len(emulator.events) == 50, 60, "fifty events stored")
    setup.wait_until(setup.settled, 30, "every event settled")
    for worker in workers:
        assert worker.stop() == 0
    assert stored(emulator) == [second + n for n in range(50)]
    assert emulator.stats.duplicates == 0
    collected = [w.log().count("delivering queue") for w in workers]
    assert collected == [1, 1]


def test_two_apps_sending_to_one_workspace_never_give_two_events_one_second(
    redis_url: str, emulator: Sandbox, deployments: Make
) -> None:
    """Intercom de-duplicates across its workspace, not per queue: two apps (two queues, one
    token) exporting for one user in one second still get a second each."""
    web = deployments(redis_url, emulator.url)
    api = deployments(redis_url, emulator.url, INTERCOM_EVENTS_QUEUE="api-events")
    second = int(time.time()) - 60
    export_reports(web, 3, second)
    export_reports(api, 3, second, first=3)
    workers = [web.start_worker("--concurrency", "4"), api.start_worker("--concurrency", "4")]
    web.wait_until(lambda: len(emulator.events) == 6, 30, "six events stored")
    for setup in (web, api):
        setup.wait_until(setup.settled, 30, "every event settled")
    for worker in workers:
        assert worker.stop() == 0
    assert stored(emulator) == [second + n for n in range(6)]
    assert emulator.stats.duplicates == 0


def test_one_event_sent_again_is_one_event_in_intercom(
    redis_url: str, emulator: Sandbox, deployments: Make, tmp_path: Path
) -> None:
    """Three re-deliveries of one event: a stall past the read timeout (Intercom stored it,
    the worker never heard), a worker killed with the request in flight, and the same line
    pushed onto the intake twice (a spool drained twice). Intercom stores it once."""
    # A 2-s read timeout: an ordinary answer of a loaded machine comes well within it (a
    # retry of one would be a second duplicate), the 5-s stall never does.
    setup = deployments(redis_url, emulator.url, INTERCOM_API_TIMEOUT=[2, 2.0])
    second = int(time.time()) - 60
    # 1. A stall: stored, but answered after the worker gave up; the retry is a duplicate.
    emulator.script("stall:5")
    export_reports(setup, 1, second)
    worker = setup.start_worker("--concurrency", "2")
    setup.wait_until(setup.settled, 30, "the stalled event settled")
    assert stored(emulator) == [second]
    assert emulator.stats.duplicates == 1
    assert worker.stop() == 0
    # 2. The same line twice on the intake: one event, one second.
    with setup.app.app_context():
        event = setup.intercom.track("exported-report", user_id="7", created_at=second)
    assert event is not None
    pushed = setup.connection.lrange(setup.store.keys.intake, 0, -1)
    assert len(pushed) == 1
    setup.connection.rpush(setup.store.keys.intake, pushed[0])
    # 3. A worker killed with that event in flight: the next one sends it again.
    emulator.configure(latency=3.0)
    first = setup.start_worker("--concurrency", "2")
    assert emulator.wait_for(lambda: emulator.stats.requests >= 3, 30)
    first.kill()
    emulator.configure(latency=0.0)
    second_worker = setup.start_worker("--concurrency", "2")
    setup.wait_until(setup.settled, 60, "every event settled")
    assert second_worker.stop() == 0
    assert stored(emulator, "7") == [second]
    assert emulator.stats.duplicates >= 2


def test_past_the_spread_an_event_is_failed_as_collapsed_never_silently(
    redis_url: str, emulator: Sandbox, deployments: Make
) -> None:
    setup = deployments(redis_url, emulator.url, INTERCOM_EVENTS_MAX_SPREAD=2)
    second = int(time.time()) - 60
    export_reports(setup, 4, second)
    worker = setup.start_worker("--concurrency", "4")
    setup.wait_until(setup.settled, 30, "every event settled")
    assert worker.stop() == 0
    assert stored(emulator) == [second, second + 1, second + 2]
    status = setup.status()
    assert status.failed_by_reason == {"collapsed": 1}
    assert status.counters["collapsed"] == 1
    assert "dropped tests.delivery_app exported-report collapsed" in setup.signals()
    [job_id] = setup.failed_ids()
    job = Job.fetch(job_id, connection=setup.connection, serializer=JobSerializer)
    assert job.args[0]["created_at"] == second  # kept as tracked, visibly
    assert "collapsed" in worker.log()


def test_a_collapsed_event_requeued_claims_its_second_again(
    redis_url: str, emulator: Sandbox, deployments: Make
) -> None:
    """Requeued (by this project or by RQ's tools), a collapsed event must not go out at the
    second another event holds: Intercom would drop it as a duplicate while it counts as
    delivered. It claims a second again: collapsed again while none is free, sent at the
    next free one once the spread allows it."""
    setup = deployments(redis_url, emulator.url, INTERCOM_EVENTS_MAX_SPREAD=1)
    second = int(time.time()) - 60
    export_reports(setup, 3, second)
    worker = setup.start_worker("--concurrency", "4")
    setup.wait_until(setup.settled, 30, "every event settled")
    assert worker.stop() == 0
    assert (stored(emulator), setup.status().failed_by_reason) == (
        [second, second + 1],
        {"collapsed": 1},
    )
    assert requeue_failed(setup.store) == 1
    worker = setup.start_worker("--concurrency", "4")  # the same spread: collapsed again
    setup.wait_until(setup.settled, 30, "the requeued event settled")
    assert worker.stop() == 0
    assert setup.status().failed_by_reason == {"collapsed": 1}
    assert (len(emulator.events), emulator.stats.duplicates) == (2, 0)
    assert requeue_failed(setup.store) == 1
    worker = setup.start_worker("--concurrency", "4", INTERCOM_EVENTS_MAX_SPREAD=5)
    setup.wait_until(setup.settled, 30, "the requeued event delivered")
    assert worker.stop() == 0
    assert stored(emulator) == [second, second + 1, second + 2]
    assert emulator.stats.duplicates == 0
    assert setup.status().failed == 0


def test_the_121st_event_name_fails_at_once_and_is_said_once(
    redis_url: str, emulator: Sandbox, deployments: Make
) -> None:
    emulator.configure(max_event_names=3)
    setup = deployments(redis_url, emulator.url)
    second = int(time.time()) - 60
    with setup.app.app_context():
        for name in ("a-one", "a-two", "a-three", "a-four", "a-four", "a-five"):
            setup.intercom.track(name, user_id="1", created_at=second)
    worker = setup.start_worker("--concurrency", "1")
    setup.wait_until(setup.settled, 30, "every event settled")
    assert worker.stop() == 0
    assert sorted(e.event_name for e in emulator.events) == ["a-one", "a-three", "a-two"]
    status = setup.status()
    assert status.failed_by_reason == {"422 too_many_event_names": 3}
    assert status.event_names == 3
    log = worker.log()
    assert log.count("Intercom refused the new event name 'a-four'") == 1
    assert log.count("Intercom refused the new event name 'a-five'") == 1
    assert emulator.stats.by_status[422] == 3  # failed at once: never retried


def test_the_same_action_twice_in_one_second_counts_twice(
    redis_url: str, emulator: Sandbox, deployments: Make
) -> None:
    """Two identical events (the same report exported twice in a second): their bodies are
    alike, but each was tracked, so each has its own uuid and each counts."""
    setup = deployments(redis_url, emulator.url)
    second = int(time.time()) - 60
    with setup.app.app_context():
        tracked = [
            setup.intercom.track("exported-report", user_id="42", created_at=second)
            for _ in range(2)
        ]
    assert len({event.uuid for event in tracked if event is not None}) == 2
    worker = setup.start_worker("--concurrency", "2")
    setup.wait_until(setup.settled, 30, "every event settled")
    assert worker.stop() == 0
    assert stored(emulator) == [second, second + 1]


def test_a_brand_new_users_first_event_creates_the_contact_and_arrives(
    redis_url: str, emulator: Sandbox, deployments: Make
) -> None:
    """INTERCOM_EVENTS_CREATE_CONTACTS: the 404 of a user who signed up a moment ago makes
    the worker create the contact (POST /contacts), then send the event again at once."""
    emulator.configure(require_contacts=True)
    setup = deployments(redis_url, emulator.url, INTERCOM_EVENTS_CREATE_CONTACTS=True)
    with setup.app.app_context():
        setup.intercom.track("signed-up", user_id="new-1", email="new@example.com")
    worker = setup.start_worker("--concurrency", "1")
    setup.wait_until(lambda: len(emulator.events) == 1, 30, "the first event delivered")
    setup.wait_until(setup.settled, 30, "every event settled")
    assert worker.stop() == 0
    [contact] = [c for c in emulator.contacts if c.user_id == "new-1"]
    assert (contact.email, contact.role) == ("new@example.com", "user")
    assert [e.user_id for e in emulator.events] == ["new-1"]
    # One 404, one POST /contacts, one 202: no wait of the 60-s not-found schedule.
    assert [r.status for r in emulator.requests] == [404, 200, 202]
    assert setup.status().counters.get("retried", 0) == 0


def test_a_contact_intercom_cannot_find_yet_is_retried_shortly(
    redis_url: str, emulator: Sandbox, deployments: Make
) -> None:
    """Intercom's search is eventually consistent: just created (or "already exists", 409),
    the contact may not be found for a moment. The event is retried within seconds, not on
    the 60 s / 300 s / 900 s schedule of a contact nobody created."""
    emulator.configure(require_contacts=True, contact_visibility_delay=1.0)
    setup = deployments(redis_url, emulator.url, INTERCOM_EVENTS_CREATE_CONTACTS=True)
    with setup.app.app_context():
        setup.intercom.track("signed-up", user_id="new-2")
    worker = setup.start_worker("--concurrency", "1")
    setup.wait_until(lambda: len(emulator.events) == 1, 30, "the event delivered")
    setup.wait_until(setup.settled, 30, "every event settled")
    assert worker.stop() == 0
    statuses = [r.status for r in emulator.requests]
    assert statuses[:3] == [404, 200, 404]  # created, not visible yet
    assert statuses[-1] == 202
    assert "retry in 2.0 s" in worker.log()  # the first of the short waits, not 60 s


def test_a_409_means_the_contact_exists_and_the_event_is_retried_shortly(
    redis_url: str, emulator: Sandbox, deployments: Make
) -> None:
    emulator.configure(require_contacts=True)
    emulator.script("409@/contacts")
    setup = deployments(redis_url, emulator.url, INTERCOM_EVENTS_CREATE_CONTACTS=True)
    with setup.app.app_context():
        setup.intercom.track("signed-up", user_id="new-3")
    worker = setup.start_worker("--concurrency", "1")
    assert emulator.wait_for(lambda: emulator.stats.by_status.get(409, 0) == 1, 30)
    emulator.add_contact(user_id="new-3")  # Intercom's search catches up
    setup.wait_until(lambda: len(emulator.events) == 1, 30, "the event delivered")
    assert worker.stop() == 0
    assert sum(1 for r in emulator.requests if r.target.startswith("/contacts")) == 1


def test_events_of_a_lead_never_create_contacts(
    redis_url: str, emulator: Sandbox, deployments: Make
) -> None:
    emulator.configure(require_contacts=True)
    setup = deployments(
        redis_url,
        emulator.url,
        INTERCOM_EVENTS_CREATE_CONTACTS=True,
        INTERCOM_EVENTS_NOT_FOUND_RETRIES=[],
    )
    with setup.app.app_context():
        setup.intercom.track("visited-pricing", id="5f1b2c3d4e5f6a7b8c9d0e1f")
    worker = setup.start_worker("--concurrency", "1")
    setup.wait_until(setup.settled, 30, "every event settled")
    assert worker.stop() == 0
    assert setup.status().failed_by_reason == {"404 not_found": 1}
    assert [r.status for r in emulator.requests] == [404]
