"""Worker mode benchmark (RESOLVER_SVC_WORKERS, issue 14 point 6).

ResolveModel throughput at 32 concurrent callers against one resolver
start with 1 worker and one with 2 workers, both real `python -m
modelplane_server.resolver_svc` processes on one config_svc, in the same
run: short phases alternating between the two (1, 2, 1, 2, ...) and the
median of per-round ratios, so background load hits both alike.

The load comes from LOADGENS child processes (bench.loadgen), started
before each phase and released together at a set time; each spreads its
callers over CHANNELS connections, since a channel keeps to one connection
and the kernel hands a connection to one worker. The load generators run on
the same cores as the workers (this machine has two): what they use is not
the resolvers', so the ratio is below what separate client machines see.

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
from modelplane_server.runtime import crypto, logs, tokens
from modelplane_server.runtime.workers import available_cores
from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import config_service_pb2_grpc
from modelplane.v1 import resolver_service_pb2 as rs
from modelplane.v1 import resolver_service_pb2_grpc
from bench.resolution import GENERAL, Metadata, fresh_database, mint, postgres, seed

QUICK = os.environ.get("BENCH_QUICK") == "1"
PHASE_SECONDS = 0.1 if QUICK else 3.0
ROUNDS = 1 if QUICK else int(os.environ.get('BENCH_ROUNDS', 5))
CALLERS = 32
LOADGENS = 1
CONNECTIONS = 16  # per load generator, spread by the kernel over the workers
START_MARGIN_SECONDS = 2.0  # a load generator's imports and connections, before its phase begins
TARGET = 1.7
REQUEST = rs.ResolveModelRequest(context=GENERAL)
ROOT = Path(__file__).resolve().parent.parent


@contextlib.asynccontextmanager
async def resolver_start(config_address: str, token: str, workers: int) -> AsyncIterator[str]:
    """`python -m modelplane_server.resolver_svc` with `workers` workers; its address."""
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
        yield address
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


async def phase(address: str, call: dict[str, Any], seconds: float) -> dict[str, float]:
    """CALLERS streams in flight over LOADGENS processes started together: calls/s in all, worst p50/p99."""
    start_at = time.time() + START_MARGIN_SECONDS
    plan = {**call, "address": address, "connections": CONNECTIONS, "concurrency": CALLERS // LOADGENS,
            "seconds": seconds, "start_at": start_at}
    children = [await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.rawload", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        cwd=str(ROOT)) for _ in range(LOADGENS)]
    outputs = await asyncio.gather(*(child.communicate(json.dumps(plan).encode()) for child in children))
    if any(child.returncode != 0 for child in children):
        raise SystemExit("a load generator failed")
    results = [json.loads(out) for out, _ in outputs]
    if any(r["errors"] for r in results):
        raise SystemExit(f"calls failed during the phase: {results}")
    return {"per_second": sum(r["per_second"] for r in results), "cpu_share": sum(r["cpu_share"] for r in results),
            "p50_ms": max(r["p50_ms"] for r in results), "p99_ms": max(r["p99_ms"] for r in results)}


def report(rounds: list[dict[int, dict[str, float]]]) -> bool:
    print(f"\nResolveModel at {CALLERS} callers ({LOADGENS} raw HTTP/2 load generator process(es) x {CONNECTIONS} connections), "
          f"{ROUNDS} alternating rounds of {PHASE_SECONDS:.0f} s; {available_cores()} cores. Medians over rounds.")
    print(f"{'workers':<10}{'calls/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'x 1 worker':>12}")
    ratio = statistics.median(rd[2]["per_second"] / rd[1]["per_second"] for rd in rounds)
    for workers in (1, 2):
        per_second = statistics.median(rd[workers]["per_second"] for rd in rounds)
        p50 = statistics.median(rd[workers]["p50_ms"] for rd in rounds)
        p99 = statistics.median(rd[workers]["p99_ms"] for rd in rounds)
        shown = 1.0 if workers == 1 else ratio
        print(f"{workers:<10}{per_second:>10.0f}{p50:>9.3f}{p99:>9.3f}{shown:>11.2f}x")
    client = statistics.median(rd[w]["cpu_share"] for rd in rounds for w in (1, 2))
    print(f"load generator CPU: {client:.0%} of a core (taken from what the workers could use)")
    print("per round: " + "  ".join(f"{rd[2]['per_second'] / rd[1]['per_second']:.2f}x" for rd in rounds))
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
                async with resolver_start(config_address, service.token, 1) as one, \
                        resolver_start(config_address, service.token, 2) as two:
                    await watching(cstub, admin, 3)
                    addresses = {1: one, 2: two}
                    sizes = {await warm(address, member_md) for address in addresses.values()}
                    call = {"path": "/modelplane.v1.ResolverService/ResolveModel",
                            "request": REQUEST.SerializeToString().hex(),
                            "authorization": f"Bearer {member.token}", "expect_bytes": sizes.pop()}
                    print(f"config_svc {config_address}; 1 worker at {one}, 2 workers at {two}; "
                          f"{2 * ROUNDS} phases of {PHASE_SECONDS:.0f} s ...", flush=True)
                    rounds: list[dict[int, dict[str, float]]] = []
                    for _ in range(ROUNDS):
                        rounds.append({w: await phase(addresses[w], call, PHASE_SECONDS) for w in (1, 2)})
            return report(rounds)
        finally:
            await config.stop(0)


def main() -> int:
    logs.configure_logging("WARNING")
    with postgres() as server_dsn:
        ok = asyncio.run(run(server_dsn))
    print("\nresult:", "all targets met" if ok else "SOME TARGETS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
