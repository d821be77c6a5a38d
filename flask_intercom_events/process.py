"""The worker process: its name, its machine, its Redis connection and its signals, and
whether a worker of this machine is gone."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from types import FrameType
from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

__all__ = [
    "connect_worker_redis",
    "machine_id",
    "new_worker_name",
    "process_gone",
    "stop_signals",
    "warn_if_evicting",
]


def connect_worker_redis(url: str) -> redis.Redis:
    """The worker's Redis client: patient, unlike the request path's (which spools instead).

    A few quick reconnection attempts per command; past that the worker's loop waits and
    tries again, keeping what it has not recorded yet in memory.
    """
    # TCP keepalive: redis-py's unix socket connection does not take the keyword at all.
    tcp = {} if url.startswith("unix://") else {"socket_keepalive": True}
    return redis.Redis.from_url(
        url,
        socket_timeout=10.0,
        socket_connect_timeout=2.0,
        health_check_interval=15,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
        **tcp,
    )


@contextlib.contextmanager
def stop_signals(handler: Callable[[int], None]) -> Iterator[None]:
    """Call ``handler(signum)`` on SIGTERM and SIGINT while inside (main thread only: signal
    handlers can only be set there), then put back the handlers there were."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(signum: int, frame: FrameType | None) -> None:
        handler(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def new_worker_name() -> str:
    """A name unique to this worker process: ``host.pid.random`` (no ``:``, which RQ's
    registries use as a separator)."""
    host = "".join(c if c.isalnum() or c in "-_" else "-" for c in socket.gethostname())
    return f"{host or 'host'}.{os.getpid()}.{uuid.uuid4().hex[:6]}"


def machine_id() -> str:
    """What tells this machine (and PID namespace) apart: a worker whose heartbeat carries
    the same id and whose PID no longer exists is dead."""
    parts = [socket.gethostname()]
    for path in ("/proc/sys/kernel/random/boot_id", "/etc/machine-id"):
        try:
            with open(path, encoding="ascii") as handle:
                parts.append(handle.read().strip())
        except OSError:
            continue
        break
    with contextlib.suppress(OSError):
        parts.append(str(os.stat("/proc/self/ns/pid").st_ino))
    return "/".join(parts)


def process_gone(details: Mapping[str, Any], machine: str) -> bool:
    """Whether a worker whose heartbeat says ``details`` ran on this machine and its process
    no longer exists (so it is dead before its registration expires)."""
    pid = details.get("pid")
    if details.get("machine") != machine or not isinstance(pid, int) or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def warn_if_evicting(connection: redis.Redis, log: Any) -> None:
    """Warn if Redis may evict keys under memory pressure (its ``maxmemory-policy`` is not
    ``noeviction``), which loses waiting events without a trace; nothing if Redis refuses
    ``CONFIG`` (a managed one may)."""
    try:
        policy = str(connection.config_get("maxmemory-policy").get("maxmemory-policy", ""))
    except redis.RedisError:
        return
    if policy and policy != "noeviction":
        log.warning(
            "Redis evicts keys under memory pressure (maxmemory-policy %s): waiting events "
            "would be lost without a trace; set maxmemory-policy noeviction",
            policy,
        )
