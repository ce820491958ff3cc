"""Scale benchmark: how the resolver's costs grow with models and users.

config_svc and Postgres run in this process; each model size gets a fresh
resolver in a child process (`python -m modelplane_server.resolver_svc`, so
its RSS is its own), and the load comes from another child (bench.loadgen).
Per model size (SCALE_MODELS, default 10,100,1000,10000, over 10 providers):

- resolver RSS once it serves, and the time from its start to SERVING;
- snapshot load: Snapshot.apply of the full WatchConfig snapshot, here;
- ResolveModel and ListAvailableModels (the first page) p50/p99 at 1 and 32
  callers, and every page of ListAvailableModels at one caller;
- write-to-visible p50/p99: an admin override flipped through config_svc
  until the resolver answers with it;
- one change: Snapshot.apply of one model change at that size, here.

Then, at the largest model size, users (SCALE_USERS, default 1000,10000;
add 100000 for the issue's full run, which takes a while to warm): each
new user resolved once (the cold path: users/s), then RSS and ResolveModel
p50/p99 for a random user among them.

Targets (issue 14), same-run ratios: ResolveModel and ListAvailableModels
p50 at the largest size within 1.5x of the smallest; one change under 5 ms;
write-to-visible p99 under 50 ms; RSS under 300 MB at 10,000 models and
100,000 users. The machine may be shared: read ratios, not absolutes.
Run: python -m bench.scale
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.resolution import Metadata, fresh_database, mint, main_on_postgres
from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import config_service_pb2_grpc
from modelplane.v1 import resolver_service_pb2 as rs
from modelplane.v1 import resolver_service_pb2_grpc
from modelplane.v1 import resources_pb2 as pb
from modelplane_server.config_svc.server import ConfigServer
from modelplane_server.config_svc.server import build_server as build_config
from modelplane_server.config_svc.settings import ConfigServiceSettings as ConfigSettings
from modelplane_server.domain.types import Role
from modelplane_server.resolver_svc.state.config_client import ConfigClient
from modelplane_server.resolver_svc.state.snapshot import Snapshot
from modelplane_server.runtime import crypto

QUICK = os.environ.get("BENCH_QUICK") == "1"


def _sizes(name: str, default: str) -> list[int]:
    return [int(v) for v in os.environ.get(name, default).split(",") if v.strip()]


MODEL_SIZES = _sizes("SCALE_MODELS", "10,30" if QUICK else "10,100,1000,10000")
USER_SIZES = _sizes("SCALE_USERS", "20,50" if QUICK else "1000,10000")
PROVIDERS = 10
PHASE_SECONDS = 0.05 if QUICK else 1.0
WRITES = 5 if QUICK else 100
CHANGES = 10 if QUICK else 200
GENERAL = pb.OVERRIDE_CONTEXT_GENERAL
ROOT = Path(__file__).resolve().parent.parent


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def add_models(stub: config_service_pb2_grpc.ConfigServiceStub, admin: Metadata, first: int, last: int) -> None:
    pending = iter(range(first, last))

    async def worker() -> None:
        for i in pending:
            await stub.CreateModel(cs.CreateModelRequest(model=pb.Model(
                name=f"m{i:05d}", provider=f"p{i % PROVIDERS}", model_identifier=f"vendor/model-{i}",
                display_name=f"Model {i:05d}", context_limit=128_000)), metadata=admin)
    await asyncio.gather(*(worker() for _ in range(16)))


async def start_resolver(config_port: int, token: str) -> tuple[asyncio.subprocess.Process, str, float]:
    port = _free_port()
    env = {**os.environ, "CONFIG_SVC_ADDRESS": f"127.0.0.1:{config_port}", "RESOLVER_SERVICE_TOKEN": token,
           "RESOLVER_SVC_LISTEN": f"127.0.0.1:{port}", "RESOLVER_SVC_METRICS_LISTEN": "off",
           "LOG_LEVEL": "WARNING", "RESOLVER_AMBIENT_AWS": "false",
           "RESOLVER_SVC_WORKERS": "1"}  # one resolver process: its RSS is the child's own
    began = time.perf_counter()
    child = await asyncio.create_subprocess_exec(sys.executable, "-m", "modelplane_server.resolver_svc", env=env,
                                                 cwd=str(ROOT))
    address = f"127.0.0.1:{port}"
    async with grpc.aio.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        check = health_pb2.HealthCheckRequest(service="modelplane.v1.ResolverService")
        while True:
            try:
                if (await health.Check(check, timeout=1)).status == health_pb2.HealthCheckResponse.SERVING:
                    break
            except grpc.aio.AioRpcError:
                pass
            if time.perf_counter() - began > 300:
                raise SystemExit("the resolver did not serve within 300 s")
            await asyncio.sleep(0.05)
    return child, address, time.perf_counter() - began


async def loadgen(address: str, token: str, phases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    plan = json.dumps({"address": address, "token": token, "user": "", "phases": phases}).encode()
    child = await asyncio.create_subprocess_exec(sys.executable, "-m", "bench.loadgen", stdin=asyncio.subprocess.PIPE,
                                                 stdout=asyncio.subprocess.PIPE, cwd=str(ROOT))
    out, _ = await child.communicate(plan)
    if child.returncode != 0:
        raise SystemExit(f"load generator failed with exit code {child.returncode}")
    results: list[dict[str, Any]] = json.loads(out)
    return results


async def snapshot_costs(config: ConfigServer, token: str, models: int) -> tuple[float, list[float]]:
    """(ms to apply the full snapshot, ms of each one-model change) here."""
    client = ConfigClient(f"127.0.0.1:{config.port}", token, timeout_seconds=30)
    try:
        stream = client.watch(0)
        first = await anext(stream)
        await stream.aclose()
    finally:
        await client.close()
    snap = Snapshot()
    snap.set_ambient_aws(False)
    began = time.perf_counter()
    snap.apply(first)
    load_ms = (time.perf_counter() - began) * 1000
    changes = []
    for n in range(CHANGES):
        i = (n * 7919) % models
        event = cs.ConfigEvent(revision=first.revision + n + 1, epoch=first.epoch, changes=[cs.ConfigChange(
            model=pb.Model(name=f"m{i:05d}", provider=f"p{i % PROVIDERS}", model_identifier=f"vendor/model-{i}",
                           display_name=f"Model {i:05d} v{n}", context_limit=128_000, enabled=n % 3 != 0))])
        began = time.perf_counter()
        snap.apply(event)
        changes.append((time.perf_counter() - began) * 1000)
    return load_ms, changes


async def write_to_visible(stub: config_service_pb2_grpc.ConfigServiceStub, admin: Metadata, address: str,
                           member: Metadata) -> list[float]:
    out = []
    async with grpc.aio.insecure_channel(address) as channel:
        resolver = resolver_service_pb2_grpc.ResolverServiceStub(channel)
        request = rs.ResolveModelRequest(context=GENERAL)
        for n in range(WRITES):
            target = "m00000" if n % 2 else "m00001"
            sent = time.perf_counter()
            await stub.SetModelOverride(cs.SetModelOverrideRequest(context=GENERAL, model=target), metadata=admin)
            while (await resolver.ResolveModel(request, metadata=member)).model.name != target:
                if time.perf_counter() - sent > 10:
                    raise SystemExit(f"write {n} not visible within 10 s")
            out.append((time.perf_counter() - sent) * 1000)
    return out


def _lat(results: list[dict[str, Any]], rpc: str, callers: int) -> tuple[float, float]:
    [r] = [r for r in results if r["rpc"] == rpc and r["concurrency"] == callers and "users" not in r]
    return r["p50_ms"], r["p99_ms"]


async def run(server_dsn: str) -> bool:
    async with fresh_database(server_dsn) as database_url:
        config = await build_config(ConfigSettings(
            database_url=database_url, encryption_keys=crypto.generate_key_entry("bench"), listen="127.0.0.1:0",
            own_addresses=(), allow_metadata_addresses=False, aws_region=None, db_pool_size=8,
            log_level="WARNING"))
        try:
            return await _run(config)
        finally:
            await config.stop(0)


async def _run(config: ConfigServer) -> bool:
    admin = await mint(config, Role.ADMIN, "bench-admin")
    member = await mint(config, Role.MEMBER, "alice")
    resolver_token = (await mint(config, Role.SERVICE, "resolver"))[0][1].removeprefix("Bearer ")
    runner_token = (await mint(config, Role.SERVICE, "bench-runner"))[0][1].removeprefix("Bearer ")
    rows: list[dict[str, Any]] = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{config.port}") as channel:
        stub = config_service_pb2_grpc.ConfigServiceStub(channel)
        for p in range(PROVIDERS):
            await stub.CreateProvider(cs.CreateProviderRequest(provider=pb.Provider(
                name=f"p{p}", type=pb.PROVIDER_TYPE_OPENAI_COMPATIBLE, base_url=f"https://p{p}.example.com/v1",
                api_key=f"sk-bench-{p}-0123456789")), metadata=admin)
        have = 0
        child = None
        print(f"resolver in a child process per size, load from another; {PROVIDERS} providers", flush=True)
        for size in MODEL_SIZES:
            began = time.perf_counter()
            await add_models(stub, admin, have, size)
            have = size
            print(f"  {size} models created in {time.perf_counter() - began:.1f} s", flush=True)
            if child is not None:
                child.terminate()
                await child.wait()
            child, address, ready_s = await start_resolver(config.port, resolver_token)
            load_ms, changes = await snapshot_costs(config, resolver_token, size)
            member_token = member[0][1].removeprefix("Bearer ")
            phases = [{"rpc": rpc, "concurrency": c, "seconds": PHASE_SECONDS}
                      for c in (1, 32)
                      for rpc in ("resolve_model", "list_available_models", "list_available_models_all")]
            results = await loadgen(address, member_token, phases)
            visible = await write_to_visible(stub, admin, address, member)
            row = {"models": size, "rss_mb": _rss_mb(child.pid), "ready_s": ready_s, "load_ms": load_ms,
                   "resolve": _lat(results, "resolve_model", 1), "list": _lat(results, "list_available_models", 1),
                   "resolve32": _lat(results, "resolve_model", 32),
                   "list32": _lat(results, "list_available_models", 32),
                   "list_all": _lat(results, "list_available_models_all", 1),
                   "visible": (_pct(visible, 0.5), _pct(visible, 0.99)),
                   "change": (statistics.median(changes), _pct(changes, 0.99))}
            rows.append(row)
            print(f"models {size:>6}: RSS {row['rss_mb']:.0f} MB, serving after {ready_s:.1f} s, snapshot load "
                  f"{load_ms:.0f} ms | ResolveModel p50/p99 {row['resolve'][0]:.2f}/{row['resolve'][1]:.2f} ms "
                  f"(32 callers {row['resolve32'][0]:.1f}/{row['resolve32'][1]:.1f}) | ListAvailableModels "
                  f"{row['list'][0]:.2f}/{row['list'][1]:.2f} ms (32 callers {row['list32'][0]:.1f}/"
                  f"{row['list32'][1]:.1f}; every page {row['list_all'][0]:.2f}/"
                  f"{row['list_all'][1]:.2f}) | write-to-visible {row['visible'][0]:.1f}/{row['visible'][1]:.1f} ms "
                  f"| one change {row['change'][0]:.2f}/{row['change'][1]:.2f} ms", flush=True)
        assert child is not None
        users = await _users(child.pid, address, runner_token)
        child.terminate()
        await child.wait()
    return report(rows, users)


async def _users(pid: int, address: str, token: str) -> list[dict[str, Any]]:
    out = []
    warmed = 0
    for size in USER_SIZES:
        [warm] = await loadgen(address, token, [{"warm_users": [warmed, size], "concurrency": 32}])
        warmed = size
        [hot] = await loadgen(address, token, [{"rpc": "resolve_model", "users": size, "concurrency": 1,
                                                "seconds": PHASE_SECONDS}])
        row = {"users": size, "rss_mb": _rss_mb(pid), "warm": warm["users_per_second"],
               "resolve": (hot["p50_ms"], hot["p99_ms"])}
        out.append(row)
        print(f"users {size:>7} (at {MODEL_SIZES[-1]} models): RSS {row['rss_mb']:.0f} MB, cold warm-up "
              f"{row['warm']:.0f} users/s, ResolveModel for a random user p50/p99 {row['resolve'][0]:.2f}/"
              f"{row['resolve'][1]:.2f} ms", flush=True)
    return out


def report(rows: list[dict[str, Any]], users: list[dict[str, Any]]) -> bool:
    small, large = rows[0], rows[-1]
    checks = [
        (f"ResolveModel p50 {large['models']} vs {small['models']} models",
         large["resolve"][0] / small["resolve"][0], 1.5),
        (f"ListAvailableModels p50 {large['models']} vs {small['models']} models (a page, 100 models at most)",
         large["list"][0] / small["list"][0], 1.5),
    ]
    print("\nsame-run ratios (machine may be loaded; targets in brackets):")
    ok = True
    for name, ratio, target in checks:
        print(f"  {name}: {ratio:.2f}x (<= {target}x)")
        ok &= ratio <= target
    # The whole list grows with the models (about 57 bytes each, 500 a page); no target.
    print(f"  every page of ListAvailableModels, p50 at {large['models']} models: {large['list_all'][0]:.1f} ms "
          f"({small['list_all'][0]:.2f} ms at {small['models']})")
    worst_change = max(r["change"][0] for r in rows)
    worst_visible = max(r["visible"][1] for r in rows)
    print(f"  one change, worst p50 over sizes: {worst_change:.2f} ms (< 5 ms)")
    print(f"  write-to-visible, worst p99 over sizes: {worst_visible:.1f} ms (< 50 ms)")
    ok &= worst_change < 5 and worst_visible < 50
    if users:
        print(f"  ResolveModel p50 for a random user, {users[-1]['users']} vs {users[0]['users']} users: "
              f"{users[-1]['resolve'][0] / users[0]['resolve'][0]:.2f}x")
        if large["models"] >= 10_000 and users[-1]["users"] >= 100_000:
            print(f"  RSS at {large['models']} models, {users[-1]['users']} users: {users[-1]['rss_mb']:.0f} MB "
                  "(< 300 MB)")
            ok &= users[-1]["rss_mb"] < 300
    return ok


def main() -> int:
    return main_on_postgres(run)


if __name__ == "__main__":
    sys.exit(main())
