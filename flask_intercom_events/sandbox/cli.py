"""``python -m flask_intercom_events.sandbox``: run the emulator until SIGINT or SIGTERM.

The first stdout line is ``Intercom sandbox listening on http://HOST:PORT`` (flushed), so a
parent process can read the URL as the line's last word.
"""

from __future__ import annotations

import argparse
import signal
import textwrap
import threading
from collections.abc import Sequence
from types import FrameType

from .contacts import Contact
from .faults import Fault
from .server import Sandbox
from .settings import DEFAULT_TOKEN


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default once, and none for options whose default is nothing."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        # ArgumentDefaultsHelpFormatter would add "(default: None)" even where the help
        # already says what happens without the option (--token), and "(default: [])".
        default = action.default
        if (
            default is None
            or default is False
            or default == []
            or "default:" in (action.help or "")
        ):
            return action.help
        return super()._get_help_string(action)

    def _split_lines(self, text: str, width: int) -> list[str]:
        # Not at hyphens: "sandbox-token" and "--error-status" must read whole.
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


_DESCRIPTION = """\
Run an emulator of Intercom's API: POST /events, GET /events and POST /events/summaries
(Data Events), and POST /contacts, with strict validation, bearer tokens, the
Intercom-Version check (an unknown version gets 400; no header is allowed),
de-duplication, 10-second-window rate limits, latency and injected faults. The first
stdout line ends with the URL."""

_EPILOG = """\
contacts:
  By default events for any contact are accepted (a contact is created on first sight).
  With --contact or --require-contacts only declared contacts are: others get 404 User Not
  Found. Declare more at run time with
    curl -X POST URL/_sandbox/contacts -d '{"user_id": "42", "email": "ada@example.com"}'
  (one object or a list; keys user_id, email, id, role), or create them through the API
  with POST /contacts (a bearer token needed; 409 when the external_id is known; see
  --contact-visibility-delay).

control routes (no token needed; no answer shows a token):
  GET  /_sandbox/received     events, summaries, duplicates and counts, in one answer
  GET  /_sandbox/events       stored events (as Intercom stores them, body as sent)
  GET  /_sandbox/duplicates   events answered 202 but not stored, each with the one it matched
  GET  /_sandbox/stats        counts: requests, statuses, events, duplicates, 429s, faults
  GET  /_sandbox/requests     the request log; also /_sandbox/summaries, /_sandbox/contacts
  POST /_sandbox/reset        forget what was received (settings, declared contacts stay)
  GET|PATCH /_sandbox/settings         e.g. -X PATCH -d '{"latency": 0.1}'
  GET|POST|DELETE /_sandbox/script     e.g. -d '["500", "409@/contacts"]'"""


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser (also used by ``flask intercom sandbox``)."""
    parser = argparse.ArgumentParser(
        prog=prog or "python -m flask_intercom_events.sandbox",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=_HelpFormatter,
    )
    net = parser.add_argument_group("network")
    net.add_argument("--host", default="127.0.0.1", help="address to listen on")
    net.add_argument("--port", type=int, default=0, help="port to listen on; 0 picks a free one")

    auth = parser.add_argument_group("tokens and contacts")
    auth.add_argument(
        "--token",
        dest="tokens",
        action="append",
        metavar="TOKEN",
        help=f"accepted bearer token, repeatable (default: {DEFAULT_TOKEN}; flask intercom "
        "sandbox passes the app's INTERCOM_ACCESS_TOKEN instead, when it has one)",
    )
    auth.add_argument(
        "--read-only-token",
        dest="read_only_tokens",
        action="append",
        default=[],
        metavar="TOKEN",
        help="valid token without write scope: 403 on POST; repeatable",
    )
    auth.add_argument(
        "--contact",
        dest="contacts",
        action="append",
        type=_contact,
        metavar="KEY=VALUE[,KEY=VALUE]",
        help="declare a contact, e.g. user_id=42,email=a@example.com (keys: user_id, email, "
        "id, role=user|lead); once any is declared (or with --require-contacts) others get "
        "404; repeatable",
    )
    auth.add_argument(
        "--require-contacts",
        action="store_true",
        help="answer 404 User Not Found for contacts not declared (add them at run time with "
        "POST /_sandbox/contacts)",
    )

    limits = parser.add_argument_group("rate limit and latency")
    limits.add_argument(
        "--rate-limit", type=int, default=1666, help="calls per token per window; 0: unlimited"
    )
    limits.add_argument("--rate-window", type=float, default=10.0, help="window length, seconds")
    limits.add_argument("--latency", type=float, default=0.0, help="seconds added to answers")
    limits.add_argument("--jitter", type=float, default=0.0, help="up to this many more seconds")
    limits.add_argument(
        "--max-event-names", type=int, default=120, help="active event names; 0: no limit"
    )
    limits.add_argument(
        "--contact-visibility-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="a contact POST /contacts creates is still 404 to the events endpoints this long "
        "(Intercom's search index is eventually consistent)",
    )

    faults = parser.add_argument_group("injected faults (chances per API request, 0 to 1)")
    faults.add_argument("--error-rate", type=float, default=0.0, help="answer --error-status")
    faults.add_argument(
        "--error-status", type=int, default=500, help="status of injected errors: 5xx, 408, 409"
    )
    faults.add_argument("--throttle-rate", type=float, default=0.0, help="answer 429")
    faults.add_argument(
        "--stall-rate", type=float, default=0.0, help="handle, then hold the answer"
    )
    faults.add_argument(
        "--stall-seconds", type=float, default=30.0, help="how long a stall holds the answer"
    )
    faults.add_argument(
        "--drop-rate", type=float, default=0.0, help="close the connection without answering"
    )
    faults.add_argument("--seed", type=int, default=None, help="seed for repeatable draws")
    faults.add_argument(
        "--script",
        type=_script,
        default=[],
        metavar="FAULT[,FAULT...]",
        help="faults for the first requests, in order: ok, 500 (any 5xx, 408, 409), 429, "
        "drop, stall, stall:SECONDS; FAULT@PATH waits for a request to PATH (409@/contacts)",
    )
    parser.add_argument(
        "--log-size", type=int, default=10_000, help="requests kept in the request log"
    )
    return parser


def sandbox_from_args(args: argparse.Namespace) -> Sandbox:
    """A :class:`Sandbox` configured from parsed arguments."""
    contacts = args.contacts or ([] if args.require_contacts else None)
    return Sandbox(
        host=args.host,
        port=args.port,
        tokens=args.tokens or (DEFAULT_TOKEN,),
        read_only_tokens=args.read_only_tokens,
        contacts=contacts,
        rate_limit=args.rate_limit,
        rate_window=args.rate_window,
        latency=args.latency,
        jitter=args.jitter,
        error_rate=args.error_rate,
        error_status=args.error_status,
        throttle_rate=args.throttle_rate,
        stall_rate=args.stall_rate,
        stall_seconds=args.stall_seconds,
        drop_rate=args.drop_rate,
        seed=args.seed,
        max_event_names=args.max_event_names,
        log_size=args.log_size,
        contact_visibility_delay=args.contact_visibility_delay,
        script=args.script,
    )


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """Run until SIGINT or SIGTERM; returns the exit status."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    try:
        sandbox = sandbox_from_args(args)
        url = sandbox.start()
    except (ValueError, OSError) as exc:
        parser.error(str(exc))
    stopping = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, request_stop)
    print(f"Intercom sandbox listening on {url}", flush=True)
    print(f"what it received: {url}/_sandbox/received", flush=True)
    while not stopping.wait(0.5):
        pass
    sandbox.stop()
    stats = sandbox.stats
    print(
        f"stopped: {stats.requests} requests, {stats.events} events stored, "
        f"{stats.duplicates} duplicates, {stats.rate_limited} rate-limited",
        flush=True,
    )
    return 0


def _contact(text: str) -> Contact:
    try:
        fields = dict(item.split("=", 1) for item in text.split(",") if item)
        return Contact.from_dict(fields)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"{text!r}: {exc}; write e.g. user_id=42,email=a@example.com"
        ) from None


def _script(text: str) -> list[Fault]:
    try:
        return [Fault.parse(item) for item in text.split(",") if item.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
