"""Worker mode benchmark (RESOLVER_SVC_WORKERS, issue 14 point 6).

ResolveModel throughput at 32 concurrent callers against one resolver
start with 1 worker and one with 2 workers, both real `python -m
modelplane_server.resolver_svc` processes on one config_svc, in the same
run: short phases alternating between the two (1, 2, 1, 2, ...) and the
median of per-round ratios, so background load hits both alike.

The load comes from a child process started before each phase and
released at a set time: bench.rawload, a raw HTTP/2 client, because
through grpcio (bench.loadgen) the client used as much CPU as the resolver
and 1 and 2 workers measured the same (about 1,700 calls/s each). It
spreads its calls over CONNECTIONS connections, since the kernel hands a
connection to one worker. It runs on the same cores as the workers (this
machine has two): what it uses is not the resolvers', so the ratio is below
what separate client machines would see.

Beside the figures it prints the cores each phase's resolver start, the
load generator and everything else on the machine used (/proc), and calls
per resolver core: on a shared machine the ratio follows the cores the
workers got, and "others" says how many they did not get.

Target (issue 14): 2 workers >= 1.7x 1 worker at 32 callers.
Uses DATABASE_URL if set, else an embedded Postgres in a temporary folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any, AsyncIterator

import grpc
import grpc.aio

from modelplane_server.config_svc.server import build_server as build_config
from modelplane_server.config_svc.settings import ConfigServiceSettings as ConfigSettings
from modelplane_server.domain.types import Role
from modelplane_server.runtime import crypto, tokens
from modelplane_server.runtime.workers import available_cores
from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import config_service_pb2_grpc
from modelplane.v1 import resolver_service_pb2 as rs
from modelplane.v1 import resolver_service_pb2_grpc
from bench.resolution import GENERAL, Metadata, fresh_database, mint, main_on_postgres, seed

QUICK = os.environ.get("BENCH_QUICK") == "1"
PHASE_SECONDS = 0.1 if QUICK else 3.0
ROUNDS = 1 if QUICK else 5
CALLERS = 32
LOADGENS = 1
CONNECTIONS = 16  # per load generator, spread by the kernel over the workers
START_MARGIN_SECONDS = 2.0  # a load generator's imports and connections, before its phase begins
TARGET = 1.7
REQUEST = rs.ResolveModelRequest(context=GENERAL)
WARMUP_SECONDS = 0.1  # bench.rawload's, before it counts
BUSY_CORES = 0.15  # other processes using more than this during a phase: say the machine was busy
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
ROOT = Path(__file__).resolve().parent.parent


@contextlib.asynccontextmanager
async def resolver_start(config_address: str, token: str, workers: int) -> AsyncIterator[tuple[str, int]]:
    """`python -m modelplane_server.resolver_svc` with `workers` workers; its address and pid."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    env = {**os.environ, "CONFIG_SVC_ADDRESS": config_address, "RESOLVER_SERVICE_TOKEN": token,
           "RESOLVER_SVC_LISTEN": address, "RESOLVER_SVC_METRICS_LISTEN": "off",
           "RESOLVER_SVC_WORKERS": str(workers), "RESOLVER_AMBIENT_AWS": "false",
           # One log line per RPC at INFO would measure the logger, not the resolver.
           "LOG_LEVEL": "WARNING", "RESOLVER_SVC_SHUTDOWN_GRACE_SECONDS": "1"}
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "modelplane_server.resolver_svc", env=env,
                                                   stdout=asyncio.subprocess.DEVNULL, cwd=str(ROOT))
    try:
        yield address, process.pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 15)
        except TimeoutError:
            process.kill()
            await process.wait()


async def watching(config: config_service_pb2_grpc.ConfigServiceStub, admin: Metadata, count: int) -> None:
    """Until `count` resolvers hold a watch stream on config_svc."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        reply = await config.ListResolvers(cs.ListResolversRequest(), metadata=admin)
        if sum(1 for r in reply.resolvers if r.watching and r.applied_revision > 0) >= count:
            return
        await asyncio.sleep(0.1)
    raise SystemExit(f"{count} resolvers did not start watching within 60 s")


async def warm(address: str, member: Metadata) -> int:
    """The token check and the user's data, fetched once per worker before the
    timed phases; the size of the answer."""
    sizes = set()
    for _ in range(16):
        async with grpc.aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
            stub = resolver_service_pb2_grpc.ResolverServiceStub(channel)
            reply = await stub.ResolveModel(REQUEST, metadata=member, timeout=10)
            assert reply.model.name == "openai-m1", reply
            sizes.add(reply.ByteSize())
    assert len(sizes) == 1, sizes
    return sizes.pop()


def _busy_seconds() -> float:
    """CPU time the whole machine has spent busy (/proc/stat), in seconds."""
    with open("/proc/stat") as stat:
        user, nice, system, idle, iowait, *rest = (int(v) for v in stat.readline().split()[1:])
    return (user + nice + system + sum(rest[:3])) / CLOCK_TICKS  # irq, softirq, steal


def _group_seconds(pid: int) -> float:
    """CPU time of a resolver start: the process and its workers."""
    pids = [pid] + [int(e.name) for e in Path("/proc").iterdir()
                    if e.name.isdigit() and _quiet_read(e / "status").find(f"\nPPid:\t{pid}\n") >= 0]
    total = 0
    for each in pids:
        fields = _quiet_read(Path(f"/proc/{each}/stat")).rpartition(")")[2].split()
        if len(fields) > 12:
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


def _quiet_read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:  # a process that ended meanwhile
        return ""


async def phase(address: str, pid: int, call: dict[str, Any], seconds: float) -> dict[str, float]:
    """CALLERS streams in flight over LOADGENS processes started together:
    calls/s in all, worst p50/p99, and the cores the resolver start, the load
    generators and everything else on the machine used meanwhile."""
    start_at = time.time() + START_MARGIN_SECONDS
    plan = {**call, "address": address, "connections": CONNECTIONS, "concurrency": CALLERS // LOADGENS,
            "seconds": seconds, "start_at": start_at}
    children = [await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.rawload", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        cwd=str(ROOT)) for _ in range(LOADGENS)]
    done = asyncio.gather(*(child.communicate(json.dumps(plan).encode()) for child in children))
    await asyncio.sleep(max(0.0, start_at + WARMUP_SECONDS - time.time()))
    before = (time.perf_counter(), _busy_seconds(), _group_seconds(pid), time.process_time())
    await asyncio.sleep(seconds)
    after = (time.perf_counter(), _busy_seconds(), _group_seconds(pid), time.process_time())
    outputs = await done
    if any(child.returncode != 0 for child in children):
        raise SystemExit("a load generator failed")
    results = [json.loads(out) for out, _ in outputs]
    if any(r["errors"] for r in results):
        raise SystemExit(f"calls failed during the phase: {results}")
    elapsed, busy, server, own = (b - a for a, b in zip(before, after))
    client = sum(r["cpu_share"] for r in results)
    return {"per_second": sum(r["per_second"] for r in results), "client_cores": client,
            "server_cores": server / elapsed, "other_cores": max(0.0, (busy - server - own) / elapsed - client),
            "p50_ms": max(r["p50_ms"] for r in results), "p99_ms": max(r["p99_ms"] for r in results)}


def report(rounds: list[dict[int, dict[str, float]]]) -> bool:
    print(f"\nResolveModel at {CALLERS} callers ({LOADGENS} raw HTTP/2 load generator process x {CONNECTIONS} "
          f"connections), {ROUNDS} alternating rounds of {PHASE_SECONDS:.0f} s; {available_cores()} cores. "
          "Medians over rounds.")
    print("Cores used during each phase: by the resolver start, by the load generator, by everything else.")
    print(f"{'workers':<10}{'calls/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'x 1 worker':>12}"
          f"{'resolver':>10}{'loadgen':>9}{'others':>8}{'calls/s per resolver core':>27}")
    ratio = statistics.median(rd[2]["per_second"] / rd[1]["per_second"] for rd in rounds)
    for workers in (1, 2):
        median = {key: statistics.median(rd[workers][key] for rd in rounds) for key in rounds[0][workers]}
        shown = 1.0 if workers == 1 else ratio
        print(f"{workers:<10}{median['per_second']:>10.0f}{median['p50_ms']:>9.3f}{median['p99_ms']:>9.3f}"
              f"{shown:>11.2f}x{median['server_cores']:>10.2f}{median['client_cores']:>9.2f}"
              f"{median['other_cores']:>8.2f}{median['per_second'] / max(median['server_cores'], 1e-9):>27.0f}")
    print("per round: " + "  ".join(f"{rd[2]['per_second'] / rd[1]['per_second']:.2f}x" for rd in rounds))
    others = max(rd[2]["other_cores"] for rd in rounds)
    if others > BUSY_CORES:
        print(f"note: other processes used up to {others:.2f} cores during the 2-worker phases: the machine was "
              "not quiet, and what they took the workers could not use")
    ok = ratio >= TARGET
    print(f"target: 2 workers >= {TARGET}x 1 worker" + ("" if ok else "  (below target)"))
    return ok


async def run(server_dsn: str) -> bool:
    async with fresh_database(server_dsn) as database_url:
        config = await build_config(ConfigSettings(
            database_url=database_url, encryption_keys=crypto.generate_key_entry("bench"),
            listen="127.0.0.1:0", own_addresses=(), allow_metadata_addresses=False, aws_region=None,
            db_pool_size=10, log_level="WARNING"))
        try:
            config_address = f"127.0.0.1:{config.port}"
            service = tokens.mint()
            await config.store.create_token("bench", service.token_id, Role.SERVICE, "resolver", "",
                                            service.secret_hash)
            member = tokens.mint()
            await config.store.create_token("bench", member.token_id, Role.MEMBER, "alice", "", member.secret_hash)
            member_md: Metadata = (("authorization", f"Bearer {member.token}"),)
            async with grpc.aio.insecure_channel(config_address) as cch:
                cstub = config_service_pb2_grpc.ConfigServiceStub(cch)
                admin = await mint(config, Role.ADMIN, "bench-admin")
                await seed(cstub, admin)
                async with resolver_start(config_address, service.token, 1) as (one, one_pid), \
                        resolver_start(config_address, service.token, 2) as (two, two_pid):
                    await watching(cstub, admin, 3)
                    addresses, pids = {1: one, 2: two}, {1: one_pid, 2: two_pid}
                    sizes = {await warm(address, member_md) for address in addresses.values()}
                    call = {"path": "/modelplane.v1.ResolverService/ResolveModel",
                            "request": REQUEST.SerializeToString().hex(),
                            "authorization": f"Bearer {member.token}", "expect_bytes": sizes.pop()}
                    print(f"config_svc {config_address}; 1 worker at {one}, 2 workers at {two}; "
                          f"{2 * ROUNDS} phases of {PHASE_SECONDS:.0f} s ...", flush=True)
                    rounds: list[dict[int, dict[str, float]]] = []
                    for _ in range(ROUNDS):
                        rounds.append({w: await phase(addresses[w], pids[w], call, PHASE_SECONDS) for w in (1, 2)})
            return report(rounds)
        finally:
            await config.stop(0)


def main() -> int:
    return main_on_postgres(run)


if __name__ == "__main__":
    sys.exit(main())
