"""A durable local spool for events that could not reach Redis.

Each process appends JSON lines to its own file in the spool directory, whole or not at all
(a full disk leaves no partial line behind), fsynced before the call returns. Draining takes a
file's lock, pushes its lines to Redis and removes the file only once every line is in Redis:
a crash mid-drain re-sends lines on the next drain, which is harmless because Intercom
de-duplicates an event by contact, name and ``created_at``.

A spool file belongs to one destination, what decides where its events go: the Redis server
(host and port, or unix socket path), database and user, and the queue. Its name carries the
destination's digest (``spool@<digest>-<host>-<pid>.jsonl``, :func:`destination_of`), and a
spool drains and counts only its own destination's files: two apps sharing a directory (two
tenants of one app factory, staging and production of one checkout) never move each other's
events into the wrong Redis, where the wrong worker would send them with the wrong token.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from redis.connection import parse_url

from .config import DEFAULT_QUEUE, DEFAULT_REDIS_URL
from .lines import decode_line

__all__ = ["DEFAULT_DESTINATION", "Spool", "destination_of"]

log = logging.getLogger("flask_intercom_events.spool")

_SUFFIX = ".jsonl"
# A file of this version is "spool@<digest>-<host>-<pid>.jsonl". The "@" marks it: an earlier
# version's names are "spool-<host>-<pid>.jsonl", and a host name may hold dashes (even one
# that looks like a digest), but never sits right after "spool@".
_MARK = "spool@"
_DIGEST = re.compile(r"[0-9a-f]{16}")


def destination_of(redis_url: str, queue: str) -> str:
    """The digest of where events pushed to ``queue`` at ``redis_url`` go: a truncated SHA-256
    (as :mod:`.keys` names a token's keys) of the URL normalised the way redis-py reads it
    (host and port, or socket path; database; user name) and of the queue.

    Never the password: it is not stored, not even digested (a truncated digest of a weak
    password could be tried offline), and changing it must not strand the events spooled
    before. Nor the connection's options (timeouts, TLS files), which send nowhere else.
    """
    parts: dict[str, object] = parse_url(redis_url)  # type: ignore[no-untyped-call]
    if "path" in parts:
        where = ["unix", str(parts["path"])]
    else:
        where = ["tcp", str(parts.get("host") or "localhost"), str(parts.get("port") or 6379)]
    normalised = json.dumps(
        [*where, str(parts.get("db") or 0), str(parts.get("username") or ""), queue]
    )
    digest = hashlib.sha256(b"flask-intercom-events:spool:" + normalised.encode())
    return digest.hexdigest()[:16]


#: The destination of an app with the default ``INTERCOM_EVENTS_REDIS_URL`` and queue.
DEFAULT_DESTINATION = destination_of(DEFAULT_REDIS_URL, DEFAULT_QUEUE)


def _owner(path: Path) -> str | None:
    """The destination of a spool file, ``None`` for a file of the old naming."""
    name = path.name
    return name[len(_MARK) : len(_MARK) + 16] if name.startswith(_MARK) else None


class Spool:
    """The spool of one destination (:func:`destination_of`) in a directory, which other
    destinations' spools may share. Safe across threads and processes.

    ``destination`` defaults to that of an app with the default Redis URL and queue; an
    :class:`~.intake.Intake` uses its own destination's spool of the directory it is given.
    """

    def __init__(
        self, directory: str | os.PathLike[str], destination: str = DEFAULT_DESTINATION
    ) -> None:
        if not isinstance(destination, str) or not _DIGEST.fullmatch(destination):
            raise ValueError("a spool's destination is a digest made by destination_of()")
        self.directory = Path(directory)
        self.destination = destination
        self._lock = threading.Lock()

    @classmethod
    def for_redis(cls, directory: str | os.PathLike[str], redis_url: str, queue: str) -> Spool:
        """The spool in ``directory`` of the events bound for ``queue`` at ``redis_url``."""
        return cls(directory, destination_of(redis_url, queue))

    def for_destination(self, destination: str) -> Spool:
        """This spool if it is ``destination``'s, else ``destination``'s in the same directory."""
        return self if destination == self.destination else Spool(self.directory, destination)

    def __repr__(self) -> str:
        return f"Spool({str(self.directory)!r}, destination={self.destination!r})"

    def _own_file(self) -> Path:
        # One file per destination and process (and host, for a spool on shared storage): no
        # two writers ever interleave within a line, and two apps of one process sending to
        # two Redis never share a file.
        name = f"{_MARK}{self.destination}-{socket.gethostname()}-{os.getpid()}{_SUFFIX}"
        return self.directory / name

    def append(self, lines: Sequence[bytes]) -> None:
        """Write ``lines`` (one encoded JSON document each) durably, whole, or raise ``OSError``.

        All or nothing: on a short write the rest is written; if the disk is full (or any
        write or the fsync fails), the file is cut back to its size before the call, so no
        partial line is left for the next append to glue onto, and the error propagates.
        """
        data = b"".join(line + b"\n" for line in lines)
        with self._lock:
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self._own_file()
            while True:
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                    if os.fstat(fd).st_nlink == 0:
                        continue  # drained and removed while we waited for the lock
                    _write_whole(fd, data)
                    return
                finally:
                    os.close(fd)  # closing releases the lock

    def check(self) -> None:
        """Make sure events can be kept here: create the directory, write, fsync and remove a
        probe file. Raises ``OSError`` saying what failed."""
        if self.directory.exists() and not self.directory.is_dir():
            raise NotADirectoryError(f"{self.directory} exists and is not a directory")
        self.directory.mkdir(parents=True, exist_ok=True)
        probe = self.directory / f".probe-{socket.gethostname()}-{os.getpid()}"
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            _write_whole(fd, b"{}\n")
        finally:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                probe.unlink()

    def files(self) -> list[Path]:
        """The spool files this spool drains, oldest first: its destination's, and those of
        the old naming.

        A file of the old naming (``spool-<host>-<pid>.jsonl``, or any other ``*.jsonl``
        without the destination mark), written by an earlier version, says nothing of where
        its events were bound: it stays drained by any app's spool, as before, so that a
        deployment upgrading does not strand the events it holds.
        """
        return [p for p in self._all_files() if _owner(p) in (None, self.destination)]

    def other_files(self) -> list[Path]:
        """The spool files of other destinations in the directory (left for their own app)."""
        return [p for p in self._all_files() if _owner(p) not in (None, self.destination)]

    def _all_files(self) -> list[Path]:
        try:
            entries = [p for p in self.directory.iterdir() if p.name.endswith(_SUFFIX)]
        except FileNotFoundError:
            return []
        return sorted(entries, key=_modified)

    def count(self) -> int:
        """How many events this spool holds, to drain (reads each of its files)."""
        return _count_lines(self.files())

    def count_others(self) -> int:
        """How many events the directory holds for other destinations."""
        return _count_lines(self.other_files())

    def drain(self, push: Callable[[list[str]], object], batch_size: int = 500) -> int:
        """Push every line of this spool's files (:meth:`files`) with ``push`` (which raises
        on failure); return how many.

        Files another process is draining are skipped, and so are other destinations'. If
        ``push`` raises, the lines not yet pushed stay in their file and the exception
        propagates.
        """
        moved = 0
        for path in self.files():
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                if os.fstat(fd).st_nlink == 0:
                    continue
                moved += self._drain_locked(fd, path, push, batch_size)
            finally:
                os.close(fd)
        return moved

    def _drain_locked(
        self, fd: int, path: Path, push: Callable[[list[str]], object], batch_size: int
    ) -> int:
        with os.fdopen(os.dup(fd), "rb") as handle:
            raw = handle.read().decode("utf-8", errors="replace").splitlines()
        lines = [line for line in raw if line.strip()]
        good = []
        for line in lines:
            try:
                decode_line(line)
            except ValueError:
                # A torn last line (a crash mid-write) cannot be delivered: keep it visible.
                self._reject(line, path)
                continue
            good.append(line)
        done = 0
        try:
            for start in range(0, len(good), batch_size):
                push(good[start : start + batch_size])
                done = min(start + batch_size, len(good))
        finally:
            if done == len(good):
                path.unlink()
            elif done:
                rest = "".join(line + "\n" for line in good[done:]).encode()
                os.ftruncate(fd, 0)
                os.lseek(fd, 0, os.SEEK_SET)
                _write_all(fd, rest)  # fits: the file held more a moment ago
                os.fsync(fd)
        return done

    def _reject(self, line: str, path: Path) -> None:
        rejected = self.directory / f"rejected-{int(time.time())}.txt"
        log.error("Unreadable line in spool file %s kept in %s", path.name, rejected.name)
        with rejected.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")


def _write_whole(fd: int, data: bytes) -> None:
    """Append all of ``data`` to ``fd`` and fsync, or leave the file as it was and raise."""
    start = os.fstat(fd).st_size
    try:
        _write_all(fd, data)
        os.fsync(fd)
    except OSError:
        try:
            os.ftruncate(fd, start)
            os.fsync(fd)
        except OSError as exc:  # pragma: no cover - a disk failing under us
            log.error("Could not cut a spool file back after a failed write: %s", exc)
        raise


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        # A nearly full disk takes part of a buffer and answers ENOSPC only on the next
        # write: a short write is not an error, but the line is not whole yet.
        written = os.write(fd, view)
        view = view[written:]


def _count_lines(paths: list[Path]) -> int:
    total = 0
    for path in paths:
        try:
            with path.open("rb") as handle:
                total += sum(1 for line in handle if line.strip())
        except FileNotFoundError:  # drained meanwhile
            continue
    return total


def _modified(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:  # drained and removed by another process meanwhile
        return 0.0
