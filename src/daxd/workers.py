"""``daxd serve --workers N``: one supervisor, N worker processes, one address, one cache.

The supervisor does no request work. It

- reserves the node's ports (a socket bound with ``SO_REUSEPORT`` but never
  listening: it receives no connections, and port 0 becomes a real port every
  worker then binds too; the kernel spreads connections over the workers);
- without ``--valkey``, starts an embedded valkey-server on a unix socket in
  a private directory (mode 0700) for the shared tier, and restarts it if it dies;
- creates the shared write-stamp table (:mod:`daxd.cache.stamps`) there;
- serves the node's admin port itself (:mod:`daxd.frontends.node_admin`): one
  ``/metrics``, ``/health``, ``/ready`` and dashboard for every worker, each
  worker's admin app listening on a unix socket in that directory;
- starts the workers: ``daxd serve`` with the same settings (passed as
  ``DAXD_*`` variables), ``--workers 1`` and the tier's URL, plus the worker
  context below; restarts a worker that dies (with backoff if it keeps dying);
- on SIGTERM/SIGINT forwards SIGTERM to every worker (each leaves the Valkey
  membership, serves on for the leave period, then drains), waits for them,
  stops the embedded Valkey and removes the directory; a further signal is
  forwarded too (it cuts the workers' leave period, then their drain).

A worker's output is forwarded line by line, prefixed with its number (except its
listeners' start-up lines: the supervisor announces the node's once).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from daxd import __version__
from daxd.cache import stamps
from daxd.config import Settings
from daxd.frontends.node_admin import NodeAdminApp, NodeAdminServer, WorkerSlot
from daxd.tier.server import EmbeddedValkey
from daxd.workers_merge import DOWN, SERVING, STARTING

log = logging.getLogger("daxd.workers")

_LISTENER_LINE = re.compile(r" on (https?|daxs?|redis|rediss|unix|valkeys?)://")
#: The line a worker logs once it serves (its admin listener comes last): the worker is ready.
_ADMIN_LINE = re.compile(r"\badmin\b.* on (http|unix)://")
_INDEX, _STAMPS, _ADMIN = "DAXD_WORKER_INDEX", "DAXD_WORKER_STAMPS", "DAXD_WORKER_ADMIN"
#: A worker that dies sooner than this after starting counts as crash-looping (restart backoff doubles).
_QUICK_DEATH = 2.0


@dataclass(frozen=True)
class WorkerContext:
    """What makes a process one worker of several: its number, the shared stamp table, its admin socket."""

    index: int
    stamps: str
    admin: str

    @classmethod
    def from_environment(cls) -> WorkerContext | None:
        index, path, admin = os.environ.get(_INDEX), os.environ.get(_STAMPS), os.environ.get(_ADMIN)
        if index is None or path is None or admin is None:
            return None
        return cls(int(index), path, admin)


def _reserve(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


class _Worker:
    def __init__(self, index: int) -> None:
        self.index = index
        self.process: subprocess.Popen[str] | None = None
        self.started = 0.0
        self.ready = threading.Event()
        self.backoff = 0.0
        self.restart_at = 0.0


class Supervisor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.directory = Path(tempfile.mkdtemp(prefix="daxd-node-"))
        self.directory.chmod(0o700)
        self.stop_requested = threading.Event()
        self.valkey: EmbeddedValkey | None = None
        self.reserved: list[socket.socket] = []
        self.workers = [_Worker(i) for i in range(settings.workers)]
        self.restarts = 0
        self.hash_seed = str(secrets.randbelow(2**32 - 1) + 1)
        self.admin: NodeAdminServer | None = None

    def _admin_socket(self, index: int) -> str:
        return str(self.directory / f"admin-{index}.sock")

    def slots(self) -> list[WorkerSlot]:
        """The workers as the admin port reports them (read from its thread)."""
        slots = []
        for worker in self.workers:
            process = worker.process
            if process is None or process.poll() is not None:
                state = DOWN
            else:
                state = SERVING if worker.ready.is_set() else STARTING
            slots.append(WorkerSlot(worker.index, process.pid if process is not None else None, state,
                                    self._admin_socket(worker.index)))
        return slots

    def _serve_admin(self) -> None:
        s = self.child_settings
        name = s.node_id or f"{socket.gethostname()}:{s.dax_port}"
        app = NodeAdminApp(self.slots, node=name, started_at=time.time(), interval=1.0,
                           restarts=lambda: self.restarts)
        self.admin = NodeAdminServer(app, s.host, s.admin_port)
        self.admin.start()

    def _prepare(self) -> None:
        s = self.settings
        if s.valkey is None:
            self.valkey = EmbeddedValkey(directory=str(self.directory / "valkey"))
        self.stamps = str(self.directory / "stamps")
        stamps.create(self.stamps)
        ports = {"http_port": s.http_port, "dax_port": s.dax_port, "admin_port": s.admin_port}
        if s.tls_cert is not None:
            ports |= {"dax_tls_port": s.dax_tls_port, "http_tls_port": s.http_tls_port}
        for name, port in ports.items():
            sock = _reserve(s.host, port)
            self.reserved.append(sock)
            ports[name] = int(sock.getsockname()[1])
        url = s.valkey if s.valkey is not None else self.valkey.url if self.valkey is not None else None
        # A private embedded Valkey is a membership of this node alone: nobody to wait for when it leaves.
        leave = 0.0 if self.valkey is not None and s.leave_period is None else s.leave_period
        self.child_settings = dataclasses.replace(s, workers=1, valkey=url, leave_period=leave,
                                                  **ports)  # type: ignore[arg-type]

    def _environment(self, worker: _Worker) -> dict[str, str]:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("DAXD_")}
        for field in dataclasses.fields(Settings):
            value = getattr(self.child_settings, field.name)
            if value is not None:
                environ["DAXD_" + field.name.upper()] = str(value)
        environ[_INDEX], environ[_STAMPS] = str(worker.index), self.stamps
        environ[_ADMIN] = self._admin_socket(worker.index)
        environ["PYTHONUNBUFFERED"] = "1"
        environ["PYTHONHASHSEED"] = self.hash_seed  # one slot per key in every worker (daxd/cache/stamps.py)
        return environ

    def _spawn(self, worker: _Worker) -> None:
        worker.ready.clear()
        worker.process = subprocess.Popen([sys.executable, "-m", "daxd", "serve"], env=self._environment(worker),
                                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, text=True)
        worker.started = time.monotonic()
        assert worker.process.stdout is not None
        threading.Thread(target=self._forward, args=(worker, worker.process.stdout), daemon=True,
                         name=f"daxd-worker-{worker.index}-output").start()

    @staticmethod
    def _forward(worker: _Worker, stream: IO[str]) -> None:
        for line in stream:
            if _ADMIN_LINE.search(line):
                worker.ready.set()
            if _LISTENER_LINE.search(line):
                continue  # the supervisor announces the node's listeners once, for all workers
            sys.stdout.write(f"[worker {worker.index}] {line}")
            sys.stdout.flush()

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        try:
            self._prepare()
            self._serve_admin()
            for worker in self.workers:
                self._spawn(worker)
            deadline = time.monotonic() + 60
            for worker in self.workers:
                while not worker.ready.wait(0.1):
                    process = worker.process
                    if self.stop_requested.is_set() or time.monotonic() > deadline or \
                            (process is not None and process.poll() is not None):
                        print(f"daxd: worker {worker.index} did not start", file=sys.stderr, flush=True)
                        return 1
            self._announce()
            self._watch()
            return 0
        finally:
            self._shutdown()

    def _on_signal(self, *_: object) -> None:
        """The first signal stops the node (:meth:`_shutdown` forwards it); later ones are forwarded at once."""
        if not self.stop_requested.is_set():
            self.stop_requested.set()
            return
        for worker in self.workers:
            if worker.process is not None and worker.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    worker.process.send_signal(signal.SIGTERM)

    def _announce(self) -> None:
        s = self.child_settings
        host = s.host if ":" not in s.host else f"[{s.host}]"
        pids = ", ".join(str(w.process.pid) for w in self.workers if w.process is not None)
        lines = [f"daxd {__version__}: DynamoDB API on http://{host}:{s.http_port}",
                 f"daxd: DAX protocol on dax://{host}:{s.dax_port}",
                 f"daxd: {len(self.workers)} workers (pids {pids}), supervisor pid {os.getpid()}",
                 f"daxd: shared cache tier on {s.valkey}" + (" (embedded valkey-server)" if self.valkey else ""),
                 f"daxd: admin (health, readiness, metrics) on http://{host}:{s.admin_port}"]
        for line in lines:
            print(line, flush=True)

    def _watch(self) -> None:
        while not self.stop_requested.wait(0.2):
            now = time.monotonic()
            if self.valkey is not None and not self.valkey.alive():
                log.warning("embedded valkey-server died: restarting it")
                with contextlib.suppress(Exception):
                    self.valkey.start()
            for worker in self.workers:
                process = worker.process
                if process is None or process.poll() is None:
                    continue
                if worker.restart_at == 0.0:
                    quick = now - worker.started < _QUICK_DEATH
                    worker.backoff = min(max(worker.backoff * 2, 0.5), 10.0) if quick else 0.0
                    worker.restart_at = now + worker.backoff
                    log.warning("worker %d (pid %d) exited with %s: restarting it%s", worker.index, process.pid,
                                process.returncode, f" in {worker.backoff:.1f}s" if worker.backoff else "")
                if now >= worker.restart_at:
                    worker.restart_at = 0.0
                    self.restarts += 1
                    self._spawn(worker)
                    print(f"daxd: worker {worker.index} restarted (pid {worker.process.pid})",  # type: ignore[union-attr]
                          flush=True)

    def _shutdown(self) -> None:
        running = [w.process for w in self.workers if w.process is not None and w.process.poll() is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        leave = getattr(self, "child_settings", self.settings).leave_seconds
        deadline = time.monotonic() + leave + self.settings.shutdown_grace + 5
        for process in running:
            try:
                process.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self.admin is not None:  # it reported the workers' drain until they ended
            self.admin.stop()
        if self.valkey is not None:
            self.valkey.stop()
        for sock in self.reserved:
            sock.close()
        shutil.rmtree(self.directory, ignore_errors=True)


def supervise(settings: Settings) -> int:
    """Run ``settings.workers`` workers until SIGTERM/SIGINT; the exit status."""
    return Supervisor(settings).run()
