"""Worker mode: N copies of one server, sharing one port, under a parent
that only supervises (Linux).

How the port is shared, and why an independent second start still fails:
- The workers listen with SO_REUSEPORT, so the kernel spreads incoming
  connections across them; every other server keeps it off (request_gate's
  server_options), and the kernel lets a socket join a SO_REUSEPORT group
  only when every socket in it set the option. So a single-process start on
  a port the workers hold fails with "address already in use", and workers
  cannot join a single-process server's port either.
- What the kernel cannot refuse is a second worker-mode start, whose workers
  set SO_REUSEPORT too. `PortGuard` refuses it: before it spawns anything
  the parent binds an abstract Unix socket named after the port (one name
  per port per network namespace, which is exactly the scope of a port,
  released by the kernel when the parent dies, nothing left on disk), then
  checks with a plain bind that nothing listens on the port yet. Taking the
  guard first closes the race between two starts.

Supervision: SIGTERM or SIGINT to the parent goes to every worker, which
drains as a single server does; a worker still running `grace` + 5 s later
is killed. A worker that exits with code 2 (a bad setting or a port it
cannot bind: it would fail again) stops the whole start with code 2. Any
other death is restarted after a backoff; more than MAX_RESTARTS deaths of
one worker within RESTART_WINDOW_SECONDS stop the start with code 1, so
an orchestrator sees a crash loop. Workers get SIGTERM when the parent dies
(prctl PR_SET_PDEATHSIG), even of SIGKILL, so none is left behind.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from types import FrameType
from typing import Callable, Sequence

import structlog

from modelplane_server.runtime.tls import ListenError, unbindable

log = structlog.get_logger(__name__)

# Exit code of a start that cannot work (bad setting, port taken): not worth a restart.
EXIT_CONFIG = 2
KILL_MARGIN_SECONDS = 5.0
MAX_RESTARTS = 5
RESTART_WINDOW_SECONDS = 60.0
FIRST_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 10.0
_PR_SET_PDEATHSIG = 1


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, as taskset or a
    cpuset limits it; a CPU quota is not seen: set the count explicitly)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def supported() -> bool:
    """SO_REUSEPORT balancing and PR_SET_PDEATHSIG are Linux's."""
    return sys.platform.startswith("linux")


# ------------------------------------------------------------------ the port guard


class PortGuard:
    """Held by the parent of a worker-mode start for as long as it runs."""

    def __init__(self, port: int, sock: socket.socket) -> None:
        self.port = port
        self._sock = sock

    @staticmethod
    def name(port: int) -> str:
        return f"\0modelplane-workers-port-{port}"

    @classmethod
    def claim(cls, listen: str) -> "PortGuard":
        """Take the guard of `listen`'s port, then check nothing listens
        there; ListenError ("cannot listen on ...: ...") otherwise."""
        port = int(listen.rpartition(":")[2])
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # not inherited by the workers
        try:
            sock.bind(cls.name(port))
        except OSError:
            sock.close()
            raise ListenError(f"cannot listen on {listen}: address already in use (another worker-mode start "
                              f"holds port {port})") from None
        why = unbindable(listen, server_like=True)
        if why is not None:
            sock.close()
            raise ListenError(f"cannot listen on {listen}: {why}")
        return cls(port, sock)

    def release(self) -> None:
        self._sock.close()


def free_port(host: str) -> int:
    """A port the OS considers free now (for a listen address ending in :0,
    which N workers could not share)."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host.strip("[]") or "0.0.0.0", 0))
        return int(probe.getsockname()[1])


# ------------------------------------------------------------------ in the worker


def die_with_parent(parent_pid: int) -> None:
    """SIGTERM this process when its parent dies (SIGKILL included); exit at
    once when the parent is already gone."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent_pid:  # it died before prctl took effect
        os._exit(1)


# ------------------------------------------------------------------ in the parent


@dataclass
class _Worker:
    index: int
    proc: subprocess.Popen[bytes]
    deaths: list[float] = field(default_factory=list)  # monotonic times, for the crash-loop limit
    restart_at: float | None = None  # waiting out a backoff


class Supervisor:
    """Runs `command(index)` for index 0..count-1 and keeps them running."""

    def __init__(self, count: int, command: Callable[[int], Sequence[str]], env: Callable[[int], dict[str, str]],
                 *, grace_seconds: float, name: str) -> None:
        self.count = count
        self._command = command
        self._env = env
        self._grace = grace_seconds
        self._name = name
        self._workers: list[_Worker] = []
        self._wake = threading.Event()
        self._stop_signal: int | None = None

    def _spawn(self, index: int) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(list(self._command(index)), env=self._env(index))
        log.info("worker started", service=self._name, worker=index, pid=proc.pid)
        return proc

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if signum != signal.SIGCHLD and self._stop_signal is None:
            self._stop_signal = signum
        self._wake.set()

    def run(self) -> int:
        """Until SIGTERM/SIGINT (then 0, or 1 when a worker had to be killed)
        or a worker failure that a restart cannot mend (its code)."""
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(sig, self._on_signal)
        self._workers = [_Worker(i, self._spawn(i)) for i in range(self.count)]
        code: int | None = None
        while self._stop_signal is None and code is None:
            self._wake.wait(0.5)
            self._wake.clear()
            code = self._tend()
        if self._stop_signal is not None:
            log.info("stopping workers", service=self._name, signal=signal.Signals(self._stop_signal).name,
                     grace_seconds=self._grace)
        return self._stop_all(code or 0)

    def _tend(self) -> int | None:
        """Restart what died; the exit code to stop with, if it comes to that."""
        now = time.monotonic()
        for worker in self._workers:
            if worker.restart_at is not None:
                if now >= worker.restart_at:
                    worker.proc, worker.restart_at = self._spawn(worker.index), None
                continue
            returncode = worker.proc.poll()
            if returncode is None:
                continue
            if returncode == EXIT_CONFIG:
                log.error("worker cannot start; stopping", service=self._name, worker=worker.index,
                          exit_code=returncode)
                return EXIT_CONFIG
            worker.deaths = [t for t in worker.deaths if now - t < RESTART_WINDOW_SECONDS] + [now]
            if len(worker.deaths) > MAX_RESTARTS:
                log.error("worker keeps dying; stopping", service=self._name, worker=worker.index,
                          exit_code=returncode, deaths=len(worker.deaths), window_seconds=RESTART_WINDOW_SECONDS)
                return 1
            backoff = min(MAX_BACKOFF_SECONDS, FIRST_BACKOFF_SECONDS * 2 ** (len(worker.deaths) - 1))
            log.warning("worker exited; restarting", service=self._name, worker=worker.index,
                        exit_code=returncode, restart_in_seconds=backoff)
            worker.restart_at = now + backoff
        return None

    def _stop_all(self, code: int) -> int:
        running = [w.proc for w in self._workers if w.restart_at is None and w.proc.poll() is None]
        for proc in running:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self._grace + KILL_MARGIN_SECONDS
        killed = False
        for proc in running:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker still running after its grace period; killing it", service=self._name,
                          pid=proc.pid)
                proc.kill()
                proc.wait()
                killed = True
        log.info("workers stopped", service=self._name)
        return code if code else (1 if killed else 0)
