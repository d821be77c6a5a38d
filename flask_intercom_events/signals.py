"""The extension's own signals. The sender is always the Flask app.

- ``event_tracked(app, event=Event)``: an event was built, validated and accepted (every
  delivery mode, ``disabled`` included; :func:`~flask_intercom_events.testing.record_events`
  listens to it).
- ``event_enqueued(app, event=Event)``: the event reached Redis (``rq`` delivery).
- ``event_delivered(app, event=Event)``: Intercom accepted the event (eager, or in the worker).
- ``event_failed(app, event=Event, error=IntercomAPIError)``: Intercom refused the event for
  good (eager), or the worker gave up on it.
- ``event_dropped(app, event=Event | None, event_name=str, reason=str, error=Exception | None)``:
  the event was not tracked: invalid in lenient mode, no identity, or dropped by a
  ``before_send`` hook. ``event`` is ``None`` when no valid event could be built.
"""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

event_tracked = _signals.signal("intercom-event-tracked")
event_enqueued = _signals.signal("intercom-event-enqueued")
event_delivered = _signals.signal("intercom-event-delivered")
event_failed = _signals.signal("intercom-event-failed")
event_dropped = _signals.signal("intercom-event-dropped")
