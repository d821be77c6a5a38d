"""A durable local spool for events that could not reach Redis.

Each process appends JSON lines to its own file in the spool directory, whole or not at all
(a full disk leaves no partial line behind), fsynced before the call returns. Draining takes a
file's lock, pushes its lines to Redis and removes the file only once every line is in Redis:
a crash mid-drain re-sends lines on the next drain, which is harmless because Intercom
de-duplicates an event by contact, name and ``created_at``.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .lines import decode_line

__all__ = ["Spool"]

log = logging.getLogger("flask_intercom_events.spool")

_SUFFIX = ".jsonl"


class Spool:
    """The spool directory of one app. Safe across threads and processes."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Spool({str(self.directory)!r})"

    def _own_file(self) -> Path:
        # One file per process (and host, for a spool on shared storage): no two writers
        # ever interleave within a line.
        return self.directory / f"spool-{socket.gethostname()}-{os.getpid()}{_SUFFIX}"

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
        """The spool files waiting to be drained, oldest first."""
        try:
            entries = [p for p in self.directory.iterdir() if p.name.endswith(_SUFFIX)]
        except FileNotFoundError:
            return []
        return sorted(entries, key=_modified)

    def count(self) -> int:
        """How many events are spooled (reads every file)."""
        total = 0
        for path in self.files():
            try:
                with path.open("rb") as handle:
                    total += sum(1 for line in handle if line.strip())
            except FileNotFoundError:
                continue
        return total

    def drain(self, push: Callable[[list[str]], object], batch_size: int = 500) -> int:
        """Push every spooled line with ``push`` (which raises on failure); return how many.

        Files another process is draining are skipped. If ``push`` raises, the lines not yet
        pushed stay in their file and the exception propagates.
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


def _modified(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:  # drained and removed by another process meanwhile
        return 0.0
