"""Propagation benchmark: read your writes across replicas.

Two config_svc processes and three resolver processes on one Postgres
(embedded, or DATABASE_URL; resolvers get both config_svc addresses); this
process only writes and reads, as a client would.

1. Write to visible, per resolver: WRITES writes (the general admin
   override, flipped) through config_svc A. After each, every resolver is
   asked ResolveModel with min_revision = the write's revision, all at once;
   a resolver answers once it has applied the write (and the answer must
   name the new model). Time from the write sent, and from its answer, to
   each resolver's answer: p50 / p99 / max per resolver. Then, for scale,
   how many plain reads (no min_revision) sent right after a write's answer
   still saw the old model: what min_revision protects from.
2. What an already-satisfied min_revision costs: ResolveModel naming a
   revision long applied vs plain ResolveModel, sent together from a child
   process (bench.loadgen, each caller alternating between the two) against
   one resolver, at 1 and 32 callers, in several short rounds: both see the
   same load at every moment, which on a shared machine matters more than
   anything measured here. Latency ratios per round, medians over rounds.
3. Failover: SIGKILL the config_svc a resolver watches, write through the
   other one at once, and time until every resolver answers that write.

Targets (issue 12): write-to-visible p99 under 50 ms (NOTIFY; the 2 s poll is
only the fallback); a satisfied min_revision within 5 % of a plain read
(mean latency). Run: python -m bench.propagation
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator

import urllib.request

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from bench.resolution import fresh_database, main_on_postgres, seed
from modelplane_server.config_svc import db
from modelplane_server.config_svc.store import Store
from modelplane_server.domain.types import Role
from modelplane_server.runtime import crypto, tokens
from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import config_service_pb2_grpc
from modelplane.v1 import resolver_service_pb2 as rs
from modelplane.v1 import resolver_service_pb2_grpc
from modelplane.v1 import resources_pb2 as pb

QUICK = os.environ.get("BENCH_QUICK") == "1"
WRITES = 5 if QUICK else 200
PHASE_SECONDS = 0.05 if QUICK else 2.0
ROUNDS = 1 if QUICK else 5
CONCURRENCIES = (1, 32)
PLAIN, GUARDED = "resolve_model", "resolve_model_min_revision"
VISIBLE_P99_TARGET_MS = 50.0
SATISFIED_EXTRA_TARGET = 0.05
GENERAL = pb.OVERRIDE_CONTEXT_GENERAL
ROOT = Path(__file__).resolve().parent.parent

Metadata = tuple[tuple[str, str], ...]


# ------------------------------------------------------------------ processes


@dataclass
class Proc:
    name: str
    process: asyncio.subprocess.Process
    address: str
    metrics_port: int = 0
    channel: grpc.aio.Channel = field(init=False)

    def __post_init__(self) -> None:
        self.channel = grpc.aio.insecure_channel(self.address)

    @property
    def port(self) -> str:
        return self.address.rsplit(":", 1)[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def start_config(name: str, database_url: str, keys: str) -> Proc:
    env = {**os.environ, "DATABASE_URL": database_url, "MODELPLANE_ENCRYPTION_KEYS": keys,
           "CONFIG_SVC_LISTEN": "127.0.0.1:0", "CONFIG_SVC_METRICS_LISTEN": "off", "LOG_LEVEL": "WARNING"}
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "modelplane_server.config_svc", "serve",
                                                   env=env, stdout=asyncio.subprocess.PIPE, cwd=str(ROOT))
    assert process.stdout is not None
    line = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
    found = re.search(r"\(port (\d+)\)", line)
    if found is None:
        raise SystemExit(f"config_svc {name} did not start: {line!r}")
    return Proc(name, process, f"127.0.0.1:{found.group(1)}")


async def start_resolver(name: str, configs: list[Proc], service_token: str) -> Proc:
    address, metrics_port = f"127.0.0.1:{free_port()}", free_port()
    env = {**os.environ, "RESOLVER_CONFIG_SVC_ADDRESSES": ",".join(c.address for c in configs),
           "RESOLVER_SERVICE_TOKEN": service_token, "RESOLVER_SVC_LISTEN": address,
           "RESOLVER_SVC_METRICS_LISTEN": f"127.0.0.1:{metrics_port}", "RESOLVER_AMBIENT_AWS": "false",
           "LOG_LEVEL": "WARNING", "RESOLVER_SVC_WORKERS": "1"}  # one resolver (and watch) per process
    env.pop("CONFIG_SVC_ADDRESS", None)
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "modelplane_server.resolver_svc", env=env,
                                                   stdout=asyncio.subprocess.DEVNULL, cwd=str(ROOT))
    proc = Proc(name, process, address, metrics_port)
    health = health_pb2_grpc.HealthStub(proc.channel)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(grpc.aio.AioRpcError):
            reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                return proc
        await asyncio.sleep(0.1)
    raise SystemExit(f"resolver {name} did not become healthy")


async def stop(procs: list[Proc]) -> None:
    for proc in procs:
        await proc.channel.close(None)
        with contextlib.suppress(ProcessLookupError):
            proc.process.terminate()
    for proc in procs:
        try:
            await asyncio.wait_for(proc.process.wait(), 30)
        except TimeoutError:
            proc.process.kill()
            await proc.process.wait()


@contextlib.asynccontextmanager
async def token_store(database_url: str, keys: str) -> AsyncIterator[Store]:
    pool = await db.create_pool(database_url, max_size=2)
    try:
        yield Store(pool, crypto.Keyring.parse(keys))
    finally:
        await pool.close()


async def mint(store: Store, role: Role, subject: str) -> str:
    minted = tokens.mint()
    await store.create_token("bench", minted.token_id, role, subject, "", minted.secret_hash)
    return minted.token


def bearer(token: str) -> Metadata:
    return (("authorization", f"Bearer {token}"),)


# ------------------------------------------------------------------ measurements


VISIBLE_BUCKETS = ("0.0025", "0.005", "0.01", "0.025", "0.05")


async def applied_within(resolver: Proc) -> dict[str, float]:
    """The resolver's own modelplane_write_to_visible_seconds (a change's
    commit to its apply): cumulative count per bucket bound, and "+Inf"."""
    def fetch() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{resolver.metrics_port}/metrics", timeout=5) as reply:
            return str(reply.read().decode())

    text = await asyncio.to_thread(fetch)
    return {s.labels["le"]: s.value for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == "modelplane_write_to_visible_seconds_bucket"}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def write_to_visible(config: Proc, resolvers: list[Proc], admin: Metadata, member: Metadata
                           ) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """(from sent, from acknowledged) ms per resolver."""
    stub = config_service_pb2_grpc.ConfigServiceStub(config.channel)
    stubs = {r.name: resolver_service_pb2_grpc.ResolverServiceStub(r.channel) for r in resolvers}
    sent_ms: dict[str, list[float]] = {r.name: [] for r in resolvers}
    acked_ms: dict[str, list[float]] = {r.name: [] for r in resolvers}
    for i in range(WRITES):
        target = "anthropic-m2" if i % 2 == 0 else "openai-m1"
        sent = time.perf_counter()
        written = await stub.SetModelOverride(cs.SetModelOverrideRequest(context=GENERAL, model=target),
                                              metadata=admin)
        acked = time.perf_counter()

        async def visible(name: str) -> float:
            answer = await stubs[name].ResolveModel(
                rs.ResolveModelRequest(context=GENERAL, min_revision=written.revision), metadata=member, timeout=10)
            if answer.model.name != target:
                raise SystemExit(f"resolver {name} answered {answer.model.name} at revision {written.revision}")
            return time.perf_counter()

        for name, at in zip(stubs, await asyncio.gather(*(visible(n) for n in stubs))):
            sent_ms[name].append((at - sent) * 1000)
            acked_ms[name].append((at - acked) * 1000)
    return sent_ms, acked_ms


async def stale_without(config: Proc, resolvers: list[Proc], admin: Metadata, member: Metadata) -> tuple[int, int]:
    """For scale, after the timed part: plain reads (no min_revision) sent on
    every resolver right after a write's answer, and how many of them still
    saw the old model."""
    stub = config_service_pb2_grpc.ConfigServiceStub(config.channel)
    stubs = [resolver_service_pb2_grpc.ResolverServiceStub(r.channel) for r in resolvers]
    stale = plain = 0
    for i in range(max(1, WRITES // 4)):
        target = "anthropic-m1" if i % 2 == 0 else "openai-m0"
        await stub.SetModelOverride(cs.SetModelOverrideRequest(context=GENERAL, model=target), metadata=admin)
        answers = await asyncio.gather(*(s.ResolveModel(rs.ResolveModelRequest(context=GENERAL), metadata=member)
                                         for s in stubs))
        stale += sum(a.model.name != target for a in answers)
        plain += len(answers)
    return stale, plain


async def satisfied_cost(resolver: Proc, member_token: str, revision: int) -> list[dict[str, Any]]:
    phases = [{"round": n, "mix": [PLAIN, GUARDED], "concurrency": c, "seconds": PHASE_SECONDS}
              for c in CONCURRENCIES for n in range(ROUNDS)]
    plan = json.dumps({"address": resolver.address, "token": member_token, "user": "", "min_revision": revision,
                       "phases": phases}).encode()
    child = await asyncio.create_subprocess_exec(sys.executable, "-m", "bench.loadgen", stdin=asyncio.subprocess.PIPE,
                                                 stdout=asyncio.subprocess.PIPE, cwd=str(ROOT))
    out, _ = await child.communicate(plan)
    if child.returncode != 0:
        raise SystemExit(f"load generator failed with exit code {child.returncode}")
    results: list[dict[str, Any]] = json.loads(out)
    return results


async def watched(config: Proc, admin: Metadata, resolvers: list[Proc]) -> dict[str, str]:
    """Resolver name -> the port of the config_svc it watches (the map knows;
    a resolver's id ends with its process id)."""
    stub = config_service_pb2_grpc.ConfigServiceStub(config.channel)
    by_pid = {str(r.process.pid): r.name for r in resolvers}
    found: dict[str, str] = {}
    deadline = time.monotonic() + 30
    while len(found) < len(resolvers) and time.monotonic() < deadline:
        answer = await stub.ListResolvers(cs.ListResolversRequest(), metadata=admin)
        found = {by_pid[s.resolver.id.rsplit("-", 1)[1]]: s.config_svc.rsplit(":", 1)[1]
                 for s in answer.resolvers if s.watching and s.resolver.id.rsplit("-", 1)[1] in by_pid}
        await asyncio.sleep(0.2)
    return found


async def failover(configs: list[Proc], resolvers: list[Proc], admin: Metadata, member: Metadata
                   ) -> tuple[Proc, dict[str, str], dict[str, float]]:
    """Kill the config_svc the first resolver watches; ms from the kill until
    each resolver answers a write made through the survivor."""
    on = await watched(configs[0], admin, resolvers)
    victim = next(c for c in configs if c.port == on[resolvers[0].name])
    survivor = next(c for c in configs if c is not victim)
    stub = config_service_pb2_grpc.ConfigServiceStub(survivor.channel)
    killed = time.perf_counter()
    victim.process.send_signal(signal.SIGKILL)
    written = await stub.SetModelOverride(cs.SetModelOverrideRequest(context=GENERAL, model="anthropic-m3"),
                                          metadata=admin)

    async def visible(r: Proc) -> float:
        answer = await resolver_service_pb2_grpc.ResolverServiceStub(r.channel).ResolveModel(
            rs.ResolveModelRequest(context=GENERAL, min_revision=written.revision), metadata=member, timeout=10)
        assert answer.model.name == "anthropic-m3"
        return (time.perf_counter() - killed) * 1000

    times = await asyncio.gather(*(visible(r) for r in resolvers))
    return victim, on, {r.name: t for r, t in zip(resolvers, times)}


# ------------------------------------------------------------------ report


def report(configs: list[Proc], on: dict[str, str], sent: dict[str, list[float]], acked: dict[str, list[float]],
           applied: dict[str, dict[str, float]], stale: int, plain: int, cost: list[dict[str, Any]], victim: Proc, killed_on: dict[str, str],
           failover_ms: dict[str, float]) -> bool:
    ok = True
    names = {c.port: c.name for c in configs}
    print(f"\nWrite to visible: {WRITES} writes (SetModelOverride) through config_svc A, each read back on every "
          "resolver with ResolveModel(min_revision = the write's revision), all at once")
    print(f"{'resolver':<10}{'watches':<9}{'from sent p50':>15}{'p99':>9}{'max':>9}{'from answer p50':>17}{'p99':>9}")
    for name in sent:
        print(f"{name:<10}{names.get(on.get(name, ''), '?'):<9}{pct(sent[name], .5):>12.2f} ms{pct(sent[name], .99):>9.2f}"
              f"{max(sent[name]):>9.2f}{pct(acked[name], .5):>14.2f} ms{pct(acked[name], .99):>9.2f}")
        if pct(sent[name], .99) >= VISIBLE_P99_TARGET_MS:
            ok = False
            print(f"  {name}: above target")
    print(f"target: p99 < {VISIBLE_P99_TARGET_MS:.0f} ms from the write sent")
    print("the resolvers' own view (modelplane_write_to_visible_seconds, commit to apply): share of the changes "
          "applied within")
    print(f"{'':<10}" + "".join(f"{float(le) * 1000:>9g} ms" for le in VISIBLE_BUCKETS))
    for name, counts in applied.items():
        total = counts["+Inf"] or 1
        print(f"{name:<10}" + "".join(f"{counts[le] / total:>11.0%}" for le in VISIBLE_BUCKETS))
    print(f"for scale, after the timed part: {stale} of {plain} plain reads (no min_revision) sent right after a "
          "write's answer still saw the old model")

    print(f"\nAlready-satisfied min_revision vs a plain read: ResolveModel on one resolver, both sent together "
          f"(each caller alternating), {ROUNDS} rounds of {PHASE_SECONDS:g} s, load from a child process; "
          "medians over rounds")
    print(f"{'callers':>8}{'calls/s':>9}{'plain p50':>11}{'mean':>8}{'min_rev p50':>13}{'mean':>8}"
          f"{'p50 extra':>11}{'mean extra':>12}")
    for c in CONCURRENCIES:
        rounds = [r["mix"] for r in cost if r["concurrency"] == c]
        rate = statistics.median(rd[PLAIN]["per_second"] + rd[GUARDED]["per_second"] for rd in rounds)
        p50 = {k: statistics.median(rd[k]["p50_ms"] for rd in rounds) for k in (PLAIN, GUARDED)}
        mean = {k: statistics.median(rd[k]["mean_ms"] for rd in rounds) for k in (PLAIN, GUARDED)}
        p50_extra = statistics.median(rd[GUARDED]["p50_ms"] / rd[PLAIN]["p50_ms"] - 1 for rd in rounds)
        mean_extra = statistics.median(rd[GUARDED]["mean_ms"] / rd[PLAIN]["mean_ms"] - 1 for rd in rounds)
        mark = ""
        if mean_extra > SATISFIED_EXTRA_TARGET:
            mark, ok = "  above target", False
        print(f"{c:>8}{rate:>9.0f}{p50[PLAIN]:>8.3f} ms{mean[PLAIN]:>8.3f}{p50[GUARDED]:>10.3f} ms"
              f"{mean[GUARDED]:>8.3f}{p50_extra * 100:>+10.1f}%{mean_extra * 100:>+11.1f}%{mark}")
    print(f"target: mean latency within {SATISFIED_EXTRA_TARGET:.0%} of the plain read's")

    print(f"\nFailover: SIGKILL config_svc {victim.name} (watched by "
          f"{', '.join(n for n, port in killed_on.items() if port == victim.port)}), then a write through the other;"
          " time from the kill until each resolver answers that write")
    for name, ms in failover_ms.items():
        moved = " (failed over)" if killed_on.get(name) == victim.port else ""
        print(f"  {name:<10}{ms:8.1f} ms{moved}")
    return ok


# ------------------------------------------------------------------ main


async def run(server_dsn: str) -> bool:
    keys = crypto.generate_key_entry("bench")
    async with fresh_database(server_dsn) as database_url, token_store(database_url, keys) as store:
        procs: list[Proc] = []
        try:
            configs = [await start_config("A", database_url, keys)]
            procs += configs
            configs.append(await start_config("B", database_url, keys))
            procs.append(configs[1])
            service = await mint(store, Role.SERVICE, "resolver")
            resolvers = []
            for n in range(3):
                resolvers.append(await start_resolver(f"r{n + 1}", configs, service))
                procs.append(resolvers[-1])
            admin = bearer(await mint(store, Role.ADMIN, "bench-admin"))
            await seed(config_service_pb2_grpc.ConfigServiceStub(configs[0].channel), admin)
            member_token = await mint(store, Role.MEMBER, "alice")
            member = bearer(member_token)
            print(f"config_svc A {configs[0].address}, B {configs[1].address}; resolvers "
                  f"{', '.join(r.address for r in resolvers)}", flush=True)
            on = await watched(configs[0], admin, resolvers)
            before = [await applied_within(r) for r in resolvers]
            sent, acked = await write_to_visible(configs[0], resolvers, admin, member)
            after = [await applied_within(r) for r in resolvers]
            applied = {r.name: {le: a.get(le, 0) - b.get(le, 0) for le in (*VISIBLE_BUCKETS, "+Inf")}
                       for r, b, a in zip(resolvers, before, after)}
            stale, plain = await stale_without(configs[0], resolvers, admin, member)
            revision = await store.current_revision()
            cost = await satisfied_cost(resolvers[0], member_token, revision)
            victim, killed_on, failover_ms = await failover(configs, resolvers, admin, member)
            return report(configs, on, sent, acked, applied, stale, plain, cost, victim, killed_on, failover_ms)
        finally:
            await stop(procs)


def main() -> int:
    return main_on_postgres(run)


if __name__ == "__main__":
    sys.exit(main())
