"""Telling workers apart: their names, and whether a worker of this machine is gone."""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import Mapping
from typing import Any

__all__ = ["machine_id", "new_worker_name", "process_gone"]


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
