"""An emulator of Intercom's Data Events API on a real HTTP socket, for tests and drills.

Nothing in this project calls the real Intercom: tests, the example app and the benchmarks
send to this. It follows ``INTERCOM_API_NOTES.md``: ``POST /events`` (``202``, strict
validation with Intercom's ``error.list`` bodies), ``GET /events`` (listing with
``pages.next``, ``summary=true``, the 90-day rule), ``POST /events/summaries``, and
``POST /contacts`` (CreateContact: ``200`` with the contact, ``409`` for a known
``external_id``; see :mod:`.contacts`); bearer tokens (``401``; ``403`` for a token without
write scope); ``Intercom-Version`` (an unknown one gets ``400 intercom_version_invalid``;
:data:`KNOWN_API_VERSIONS`); ``404 User Not Found`` for undeclared contacts when contacts are
declared, and for a just-created one during ``contact_visibility_delay``; de-duplication on
(contact, stored name, ``created_at``), the contact found by any of its identifiers; 120
active event names (``422``); fixed-window rate limits with ``X-RateLimit-*`` headers and
``429``; latency; injected faults, random (seeded) or scripted.

The ``string_too_long`` warning follows the only documented string bound, 255 characters
(Intercom Help Center, article 175), applied as the package's event model applies it: to the
event name, ``user_id``, ``email``, ``id``, metadata string values and rich-link values.

In a test (the ``emulator`` fixture in ``tests/conftest.py`` is one of these, token
``test-token``)::

    from flask_intercom_events.sandbox import Sandbox

    with Sandbox(tokens=["test-token"]) as sandbox:
        client = IntercomClient("test-token", base_url=sandbox.url)
        client.create_event(event)
        [received] = sandbox.events          # ReceivedEvent: event_name, created_at,
        assert received.user_id == "42"      # user_id, email, id, metadata, body, warnings
        assert sandbox.warnings == []        # nothing Intercom would silently mangle
        assert sandbox.stats.by_status == {202: 1}

What can be read (all snapshots, safe from any thread):

- ``sandbox.events``: :class:`ReceivedEvent` list (stored events; duplicates apart).
  ``event_name``/``metadata`` as Intercom stores them (lower case, ``.``/``$`` as ``-``,
  first 10 keys), ``body`` the JSON object as sent (``raw``: its bytes), ``intercom_user_id``
  the contact's id, ``warnings`` (:class:`EventWarning`: ``code``, ``message``, ``field``)
  for mistakes Intercom accepts silently: ``created_at_milliseconds``,
  ``event_name_case``, ``event_name_characters``, ``metadata_keys_ignored``,
  ``metadata_key_characters``, ``metadata_key_case``, ``metadata_date``, ``string_too_long``,
  ``unknown_parameter``, ``content_type``, ``accept_header``, ``intercom_version_missing``.
- ``sandbox.duplicates``: :class:`Duplicate` list, the latest ``log_size`` events answered
  ``202`` but not stored: ``body`` as sent, ``stored`` the event it matched.
- ``sandbox.summaries`` (:class:`ReceivedSummary`), ``sandbox.warnings`` (all of them),
  ``sandbox.requests`` (:class:`RequestRecord` log: method, target, status, fault),
  ``sandbox.contacts`` (:class:`Contact`: declared, created by ``POST /contacts`` or, unless
  contacts are required, by events), ``sandbox.settings``.
- ``sandbox.stats`` (:class:`Stats`): ``requests``, ``by_status`` (``{202: 3, 429: 1}``),
  ``events``, ``duplicates``, ``rate_limited``, ``summaries``, ``dropped``, ``faults``
  (``{"error": 1, "drop": 2}``), ``warnings``, ``contacts_created``.
- ``sandbox.wait_for_events(n, timeout)`` blocks until ``n`` events are stored (for
  background workers); ``sandbox.wait_for(predicate, timeout)`` for anything else.

What can be changed at run time: ``configure(**settings)`` (any :class:`Settings` field:
``latency``, ``rate_limit``, ``error_rate``...), ``add_contact(user_id=, email=, id=)``,
``script("500", "429", "drop", "stall:2", "409@/contacts", "ok")`` (the next requests'
faults, in order; ``@PATH``: the next request to that path), ``reset()`` (contacts declared
stay; those created by events or ``POST /contacts`` go). Faults: ``5xx``/``408``/``409``
errors and ``429`` are answered without handling the request; a ``stall`` handles it and
holds the answer; a ``drop`` closes the connection without handling it.

The same over HTTP, without a token, under ``/_sandbox/`` (see :mod:`.control`):
``GET received|events|duplicates|summaries|stats|requests|contacts|settings|script``,
``POST reset``, ``PATCH settings``, ``POST contacts``, ``POST|DELETE script``. No answer
there shows a token (counts and fingerprints instead).

From a shell, or as a subprocess (the first stdout line ends with the URL)::

    python -m flask_intercom_events.sandbox --port 0 --token T --latency 0.1
"""

from __future__ import annotations

from .contacts import Contact
from .faults import Fault, FaultKind
from .records import Duplicate, ReceivedEvent, ReceivedSummary, RequestRecord, Stats
from .server import Sandbox
from .settings import DEFAULT_TOKEN, Settings
from .validation import EventWarning
from .versions import KNOWN_API_VERSIONS

__all__ = [
    "DEFAULT_TOKEN",
    "KNOWN_API_VERSIONS",
    "Contact",
    "Duplicate",
    "EventWarning",
    "Fault",
    "FaultKind",
    "ReceivedEvent",
    "ReceivedSummary",
    "RequestRecord",
    "Sandbox",
    "Settings",
    "Stats",
]
