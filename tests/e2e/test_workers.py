"""Worker mode (RESOLVER_SVC_WORKERS): real `python -m
modelplane_server.resolver_svc` processes. N workers share one port, each
serving and each with its own watch; a second start on that port, worker
mode or not, fails; SIGTERM stops them all; killing the parent leaves none
behind; a worker that dies comes back."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from modelplane_server.domain.types import Role
from modelplane.v1 import config_service_pb2 as cs
from tests.harness import ConfigHarness
from tests.resolver_harness import eventually, free_port

pytestmark = pytest.mark.e2e

GRACE_SECONDS = 1.0


def _two_free_ports() -> int:
    """A loopback port p with p + 1 free as well (worker metrics: base + index)."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise AssertionError("no two adjacent free ports")


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            status = (entry / "status").read_text()
            if f"\nPPid:\t{pid}\n" in status:
                found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


@dataclass
class Start:
    process: asyncio.subprocess.Process
    address: str
    metrics_port: int
    output: Path

    def text(self) -> str:
        return self.output.read_text(errors="replace")


def _env(config_address: str, token: str, address: str, metrics: str, workers: int) -> dict[str, str]:
    return {**os.environ, "CONFIG_SVC_ADDRESS": config_address, "RESOLVER_SERVICE_TOKEN": token,
            "RESOLVER_SVC_LISTEN": address, "RESOLVER_SVC_METRICS_LISTEN": metrics,
            "RESOLVER_SVC_WORKERS": str(workers), "RESOLVER_AMBIENT_AWS": "false",
            "RESOLVER_ACK_INTERVAL_SECONDS": "0.5", "LOG_LEVEL": "WARNING",
            "RESOLVER_SVC_SHUTDOWN_GRACE_SECONDS": str(GRACE_SECONDS)}


@contextlib.asynccontextmanager
async def start(cfg: ConfigHarness, workers: int = 2) -> AsyncIterator[Start]:
    address, metrics_port = f"127.0.0.1:{free_port()}", _two_free_ports()
    env = _env(cfg.address, await cfg.token(Role.SERVICE, "resolver"), address, f"127.0.0.1:{metrics_port}", workers)
    with tempfile.NamedTemporaryFile(prefix="resolver-workers-") as output:
        process = await asyncio.create_subprocess_exec(sys.executable, "-m", "modelplane_server.resolver_svc",
                                                       env=env, stdout=output, stderr=output)
        workers_of_it: set[int] = set()
        try:
            yield Start(process, address, metrics_port, Path(output.name))
        finally:
            workers_of_it = _children(process.pid)
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                process.kill()
                await process.wait()
            for pid in workers_of_it:  # never leave a worker behind, even when a test fails
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


async def live(cfg: ConfigHarness) -> list[cs.ResolverStatus]:
    return list((await cfg.stub.ListResolvers(cs.ListResolversRequest(), metadata=cfg.admin)).resolvers)


async def watching(cfg: ConfigHarness, count: int) -> list[cs.ResolverStatus]:
    async def check() -> list[cs.ResolverStatus]:
        statuses = [s for s in await live(cfg) if s.watching]
        assert len(statuses) == count, statuses
        return statuses

    return await eventually(check, timeout=60, interval=0.1)


def _health_checks_served(metrics_port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return sum(float(line.rpartition(" ")[2]) for line in text.splitlines()
               if line.startswith("grpc_server_handled_total{") and 'grpc_method="Check"' in line)


async def _check_on_own_connections(address: str, connections: int) -> None:
    """Health/Check over `connections` separate TCP connections (the kernel
    gives each to one worker)."""
    for _ in range(connections):
        # A local subchannel pool: a connection of its own, not shared with the other channels.
        async with grpc.aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def _second_start(cfg: ConfigHarness, address: str, workers: int) -> tuple[int, str]:
    env = _env(cfg.address, "unused-token", address, "off", workers)
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "modelplane_server.resolver_svc", env=env,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(process.communicate(), 20)
    except TimeoutError:  # it started: it shares the port
        process.kill()
        await process.wait()
        return -1, "still running after 20 s"
    return process.returncode or 0, (out + err).decode()


@pytest.mark.timeout(120)
async def test_workers_share_one_port_each_serving_with_its_own_watch(cfg: ConfigHarness) -> None:
    async with start(cfg) as group:
        statuses = await watching(cfg, 2)
        assert len({s.resolver.id for s in statuses}) == 2
        assert len(_children(group.process.pid)) == 2

        async def both_served() -> None:
            await _check_on_own_connections(group.address, 8)
            served = [_health_checks_served(group.metrics_port + i) for i in range(2)]
            assert all(n > 0 for n in served), served

        await eventually(both_served, timeout=30, interval=0)


@pytest.mark.timeout(120)
async def test_a_second_start_on_the_port_fails_in_either_mode(cfg: ConfigHarness) -> None:
    async with start(cfg) as group:
        before = {s.resolver.id for s in await watching(cfg, 2)}
        for workers in (2, 1):  # another worker-mode start; a single process
            code, said = await _second_start(cfg, group.address, workers)
            assert code == 2 and "address already in use" in said, (workers, said)
        assert {s.resolver.id for s in await watching(cfg, 2)} == before
        assert group.process.returncode is None
    # And the other way round: workers do not join a port another server holds.
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        code, said = await _second_start(cfg, f"127.0.0.1:{other.getsockname()[1]}", 2)
        assert code == 2 and "address already in use" in said, said


@pytest.mark.timeout(120)
async def test_sigterm_stops_every_worker(cfg: ConfigHarness) -> None:
    async with start(cfg) as group:
        await watching(cfg, 2)
        workers = _children(group.process.pid)
        group.process.terminate()
        assert await asyncio.wait_for(group.process.wait(), GRACE_SECONDS + 10) == 0, group.text()
        assert not any(_alive(pid) for pid in workers)
        # The port is free again at once: a new start may take it.
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(("127.0.0.1", int(group.address.rpartition(":")[2])))


@pytest.mark.timeout(120)
async def test_killing_the_parent_leaves_no_worker(cfg: ConfigHarness) -> None:
    async with start(cfg) as group:
        await watching(cfg, 2)
        workers = _children(group.process.pid)
        assert len(workers) == 2
        group.process.kill()
        await group.process.wait()
        deadline = time.monotonic() + GRACE_SECONDS + 10
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert not any(_alive(pid) for pid in workers)


@pytest.mark.timeout(120)
async def test_a_worker_that_dies_is_restarted(cfg: ConfigHarness) -> None:
    async with start(cfg) as group:
        first = await watching(cfg, 2)
        victim = min(_children(group.process.pid))
        os.kill(victim, signal.SIGKILL)

        async def replaced() -> None:
            now = _children(group.process.pid)
            assert len(now) == 2 and victim not in now
            assert len({s.resolver.id for s in await watching(cfg, 2)} - {s.resolver.id for s in first}) == 1

        await eventually(replaced, timeout=60, interval=0.2)
        assert group.process.returncode is None
