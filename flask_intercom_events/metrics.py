"""Prometheus metrics (the optional ``metrics`` extra: ``prometheus_client``).

Two kinds, in one registry per worker process:

- **queue-wide gauges**, read from Redis when scraped (:class:`QueueCollector`, through
  ``status_report.read_snapshot``: the same few Redis calls whatever the backlog): every
  worker's endpoint gives the same figures, so scraping any one of them is enough (alert on
  ``max()`` of them when scraping all);
- **this process's counters and request-duration histogram** (:class:`MetricsObserver`, told
  by the worker's main thread what became of each event); sum them across workers.

``flask intercom worker --metrics-port N`` serves them on ``/metrics`` (:func:`serve`);
``flask intercom metrics`` prints the queue-wide ones once, for node_exporter's textfile
collector.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from .errors import ConfigurationError
from .outcomes import DeliveryObserver
from .status_report import Snapshot

if TYPE_CHECKING:  # prometheus_client is optional: imported when metrics are asked for
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

__all__ = [
    "METRICS_EXTRA",
    "MetricsObserver",
    "QueueCollector",
    "load_prometheus_client",
    "make_registry",
    "render",
    "serve",
]

log = logging.getLogger("flask_intercom_events.metrics")

#: What to install for metrics.
METRICS_EXTRA = "pip install 'flask-intercom-events[metrics]'"

#: Request durations, in seconds: Intercom answers in 50-150 ms, a timeout takes 10 s.
DURATION_BUCKETS = (0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

_PREFIX = "intercom_events_"


def load_prometheus_client() -> Any:
    """The ``prometheus_client`` module, or a :class:`ConfigurationError` naming the extra."""
    try:
        import prometheus_client  # noqa: PLC0415 (optional dependency)
    except ImportError:
        raise ConfigurationError(
            "Prometheus metrics need the prometheus_client package, which is not installed: "
            f"{METRICS_EXTRA}"
        ) from None
    return prometheus_client


class QueueCollector:
    """Queue-wide gauges, read from Redis by ``read`` (a :class:`Snapshot`) at each scrape."""

    def __init__(self, read: Callable[[], Snapshot]) -> None:
        self.read = read

    def describe(self) -> list[Metric]:
        """Nothing: the collector is never read when registered (no Redis call then)."""
        return []

    def collect(self) -> Iterator[Metric]:
        """The gauges of one snapshot (``intercom_events_redis_up`` 0 when Redis is down)."""
        core = load_prometheus_client().metrics_core
        snapshot = self.read()

        def gauge(name: str, doc: str, value: float | None = None) -> Any:
            family = core.GaugeMetricFamily(_PREFIX + name, doc)
            if value is not None:
                family.add_metric([], value)
            return family

        yield gauge(
            "spooled", "Events spooled on this machine while Redis was down.", snapshot.spooled
        )
        yield gauge(
            "redis_up", "1 if Redis answered this scrape.", 0 if snapshot.status is None else 1
        )
        found = snapshot.status
        if found is None:
            return
        yield gauge(
            "queued",
            "Events waiting to be sent: the intake list, workers' moving lists and RQ's queue.",
            found.waiting,
        )
        parts = core.GaugeMetricFamily(
            _PREFIX + "queued_parts", "Waiting events by where they are.", labels=["part"]
        )
        for part, count in (
            ("intake", found.intake),
            ("moving", found.moving),
            ("rq_queue", found.queued),
        ):
            parts.add_metric([part], count)
        yield parts
        yield gauge(
            "oldest_age_seconds",
            "Seconds since the oldest waiting event was tracked (0: none waits).",
            snapshot.oldest_age or 0.0,
        )
        yield gauge("in_flight", "Events workers hold: being sent or about to be.", found.in_flight)
        yield gauge(
            "stranded",
            "Events held or being moved by gone workers, put back when a live worker beats.",
            found.stranded,
        )
        yield gauge("scheduled", "Events waiting for a scheduled retry.", found.scheduled)
        failed = core.GaugeMetricFamily(
            _PREFIX + "failed", "Failed events kept in RQ's failed registry, by reason.",
            labels=["reason"],
        )  # fmt: skip
        for reason, count in found.failed_by_reason.items():
            failed.add_metric([reason], count)
        yield failed
        yield gauge(
            "failed_registry", "Jobs in RQ's failed registry (the failed events).", found.failed
        )
        yield gauge("workers_alive", "Workers whose registration is alive.", snapshot.alive)
        yield gauge(
            "drain_rate", "Events a second the live workers delivered (last minute).",
            found.drain_rate,
        )  # fmt: skip
        yield gauge(
            "event_names", "Event names delivered (Intercom allows 120 active ones).",
            found.event_names,
        )  # fmt: skip
        budget = snapshot.budget
        if budget is not None:
            yield gauge(
                "rate_window_remaining", "Calls left in the current rate window.", budget.remaining
            )
            yield gauge("rate_window_allowance", "Calls a rate window allows.", budget.allowance)
            yield gauge(
                "rate_blocked_seconds",
                "Seconds every worker holds off (Intercom said the window is spent).",
                budget.blocked_for,
            )
            yield gauge(
                "delivery_paused", "1 while Intercom refuses the access token.",
                0 if budget.paused_since is None else 1,
            )  # fmt: skip


class MetricsObserver(DeliveryObserver):
    """This worker process's counters and histogram (see the module docstring)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        client = load_prometheus_client()
        self.delivered_total = client.Counter(
            _PREFIX + "delivered", "Events delivered by this worker.", registry=registry
        )
        self.failed_total = client.Counter(
            _PREFIX + "failed", "Events this worker failed for good, by reason.", ["reason"],
            registry=registry,
        )  # fmt: skip
        self.retried_total = client.Counter(
            _PREFIX + "retried", "Retries this worker scheduled, by reason.", ["reason"],
            registry=registry,
        )  # fmt: skip
        self.rate_limited_total = client.Counter(
            _PREFIX + "rate_limited", "429 answers this worker got.", registry=registry
        )
        self.request_duration = client.Histogram(
            _PREFIX + "request_duration_seconds",
            "Seconds each HTTP attempt to Intercom took.",
            buckets=DURATION_BUCKETS,
            registry=registry,
        )

    def delivered(self, count: int) -> None:
        """Count ``count`` deliveries."""
        if count:
            self.delivered_total.inc(count)

    def retried(self, reason: str) -> None:
        """Count a scheduled retry."""
        self.retried_total.labels(reason).inc()

    def failed(self, reason: str) -> None:
        """Count a failure."""
        self.failed_total.labels(reason).inc()

    def rate_limited(self) -> None:
        """Count a 429."""
        self.rate_limited_total.inc()

    def requested(self, seconds: float) -> None:
        """Observe one attempt's duration."""
        self.request_duration.observe(seconds)


def make_registry(
    read: Callable[[], Snapshot], *, observer: bool
) -> tuple[Any, MetricsObserver | None]:
    """A registry with the queue-wide gauges (and, with ``observer``, this process's
    counters): ``(registry, observer or None)``."""
    client = load_prometheus_client()
    registry = client.CollectorRegistry(auto_describe=True)
    registry.register(QueueCollector(read))
    return registry, MetricsObserver(registry) if observer else None


def render(registry: Any) -> str:
    """The registry in Prometheus's text format."""
    text: bytes = load_prometheus_client().generate_latest(registry)
    return text.decode("utf-8")


def serve(registry: Any, port: int, host: str = "0.0.0.0") -> tuple[str, int]:
    """Serve ``registry`` on ``http://host:port/metrics`` from a daemon thread; returns the
    address bound (port ``0`` picks a free one). An address in use is a clear error."""
    client = load_prometheus_client()
    try:
        server, _ = client.start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise ConfigurationError(
            f"Cannot serve metrics on {host}:{port} (--metrics-port, "
            f"INTERCOM_EVENTS_METRICS_PORT): {exc.strerror or exc}"
        ) from None
    bound = int(server.server_port)
    log.info("Serving Prometheus metrics on http://%s:%d/metrics", host, bound)
    return host, bound
