"""Governance benchmark.

1. What spend limits and access lists cost resolution: ResolveModel and
   ListAvailableModels throughput for one member at 32 concurrent callers,
   in rounds that alternate the same deployment without any limit or access
   list and with them (a default daily limit, a group limit the caller is in,
   spend recorded against it, access lists on half the models, one of them
   the caller's). Load from a child process (bench.loadgen); the median of
   the per-round with/without ratios. Target: >= 0.95 (at most 5% slower).
2. Ledger ingestion: RecordUsage batches of 200 records (what resolvers
   send) from 4 concurrent senders; records per second stored in Postgres,
   each batch one transaction with its daily roll-up and spend totals.
   Target: >= 2,000 records/s.
3. A usage summary over 1,000,000 records of one month (stored with the same
   ingest code RecordUsage runs, in large batches): SummarizeUsage for the
   whole month by user, by user and model, by day, and for a range with
   partial days at both ends; p50 and max of 10 calls. Target: < 200 ms.
4. Spend propagation: a chat through resolver A until resolver B's budget
   shows its cost (the ledger's flush interval, the commit, the push).

Uses DATABASE_URL if set, else an embedded Postgres. BENCH_QUICK=1: tiny
sizes, only to prove it runs.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
from google.protobuf import timestamp_pb2

from bench.resolution import GENERAL, Metadata, fresh_database, mint, main_on_postgres, seed
from modelplane_server import governance_pb
from modelplane_server.config_svc.server import ConfigServer
from modelplane_server.config_svc.server import build_server as build_config
from modelplane_server.config_svc.settings import ConfigServiceSettings as ConfigSettings
from modelplane_server.config_svc.store import usage as usage_store
from modelplane_server.domain.types import CredentialSource, Principal, Role
from modelplane_server.domain.usage import Outcome, Tokens, UsageRecord
from modelplane_server.resolver_svc.server import ResolverServer
from modelplane_server.resolver_svc.server import build_server as build_resolver
from modelplane_server.resolver_svc.settings import ResolverSettings
from modelplane_server.resolver_svc.upstream import UpstreamClient
from modelplane_server.runtime import crypto, tokens
from modelplane_server.runtime.context import acting_as
from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import config_service_pb2_grpc
from modelplane.v1 import resolver_service_pb2 as rs
from modelplane.v1 import resolver_service_pb2_grpc
from modelplane.v1 import resources_pb2 as pb

QUICK = os.environ.get("BENCH_QUICK") == "1"
ROUNDS = 1 if QUICK else 7
PHASE_SECONDS = 0.05 if QUICK else 1.5
CONCURRENCY = 32
IN_PROCESS_CALLS = 200 if QUICK else 5000
INGEST_RECORDS = 400 if QUICK else 40_000
INGEST_BATCH, INGEST_SENDERS = 200, 4
SUMMARY_RECORDS = 2_000 if QUICK else 1_000_000
SUMMARY_CALLS = 2 if QUICK else 10
FILL_BATCH = 500 if QUICK else 10_000
PROPAGATION_CHATS = 2 if QUICK else 20
CHECK_TARGET, INGEST_TARGET, SUMMARY_TARGET_MS = 0.95, 2000.0, 200.0
USERS = 1000
UTC = dt.timezone.utc
RPCS = ("resolve_model", "list_available_models")
RESTRICTED = ("anthropic-m1", "anthropic-m3", "openai-m0", "openai-m2", "openrouter-m1", "openrouter-m3")


def ts(t: dt.datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(t)
    return out


def resolver_settings(config_address: str, token: str) -> ResolverSettings:
    return ResolverSettings(
        config_svc_address=config_address, service_token=token, listen="127.0.0.1:0",
        config_call_timeout_seconds=5.0, user_cache_size=10_000, token_cache_size=10_000, token_ttl_seconds=300.0,
        credential_cache_size=1000, credential_ttl_seconds=60.0, stale_if_unavailable_seconds=900.0,
        reconnect_initial_seconds=0.2, reconnect_max_seconds=5.0, ambient_aws=False,
        ambient_aws_refresh_seconds=300.0, log_level="WARNING")


async def caught_up(config: ConfigServer, *resolvers: ResolverServer) -> None:
    revision = await config.store.current_revision()
    while any(r.snapshot.revision < revision for r in resolvers):
        await asyncio.sleep(0.005)


# ------------------------------------------------------------------ 1. checks vs throughput


async def governance_on(stub: config_service_pb2_grpc.ConfigServiceStub, admin: Metadata) -> None:
    await stub.SetSpendLimit(cs.SetSpendLimitRequest(limit=pb.SpendLimit(
        period=pb.SPEND_PERIOD_DAY, limit_micro_usd=100_000_000)), metadata=admin)
    await stub.SetSpendLimit(cs.SetSpendLimitRequest(limit=pb.SpendLimit(
        group="bench-team", period=pb.SPEND_PERIOD_MONTH, limit_micro_usd=900_000_000)), metadata=admin)
    for i, name in enumerate(RESTRICTED):
        access = pb.ModelAccess(groups=["bench-team"]) if i % 2 else pb.ModelAccess(users=["someone-else"])
        await stub.UpdateModel(cs.UpdateModelRequest(model=pb.Model(name=name, access=access),
                                                     update_mask={"paths": ["access"]}), metadata=admin)


async def governance_off(stub: config_service_pb2_grpc.ConfigServiceStub, admin: Metadata) -> None:
    await stub.ClearSpendLimit(cs.ClearSpendLimitRequest(period=pb.SPEND_PERIOD_DAY), metadata=admin)
    await stub.ClearSpendLimit(cs.ClearSpendLimitRequest(group="bench-team", period=pb.SPEND_PERIOD_MONTH),
                               metadata=admin)
    for name in RESTRICTED:
        await stub.UpdateModel(cs.UpdateModelRequest(model=pb.Model(name=name), update_mask={"paths": ["access"]}),
                               metadata=admin)


async def load(address: str, token: str, rpc: str) -> dict[str, float]:
    """One phase of `rpc` from a child process: its wall-clock rate, and the
    CPU time this (server) process's event-loop thread spent per call."""
    plan = json.dumps({"address": address, "token": token, "user": "",
                       "phases": [{"rpc": rpc, "concurrency": CONCURRENCY, "seconds": PHASE_SECONDS}]}).encode()
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.loadgen", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        cwd=str(Path(__file__).resolve().parent.parent))
    cpu = time.thread_time()
    out, _ = await child.communicate(plan)
    cpu = time.thread_time() - cpu
    if child.returncode != 0:
        raise SystemExit(f"load generator failed with exit code {child.returncode}")
    (result,) = json.loads(out)
    return {"per_second": result["per_second"], "cpu_us": cpu / result["completed"] * 1e6}


async def checks(config: ConfigServer, resolver: ResolverServer, stub: config_service_pb2_grpc.ConfigServiceStub,
                 admin: Metadata, member_token: str) -> list[dict[str, dict[str, dict[str, float]]]]:
    """Per round: {state: {rpc: {"per_second", "cpu_us"}}}."""
    rounds = []
    current = "off"
    for n in range(ROUNDS):
        measured: dict[str, dict[str, dict[str, float]]] = {}
        # Alternate which goes first (on off, off on, ...), so a drift in
        # background load favours neither and every other switch is saved.
        for state in (("off", "on") if n % 2 else ("on", "off")):
            if state != current:
                await (governance_on if state == "on" else governance_off)(stub, admin)
                await caught_up(config, resolver)
                current = state
            measured[state] = {rpc: await load(f"127.0.0.1:{resolver.port}", member_token, rpc) for rpc in RPCS}
            for rpc, us in (await in_process(resolver)).items():
                measured[state][rpc]["servicer_us"] = us
        rounds.append(measured)
    return rounds


class _NoContext:
    """What the servicer reads of a call's context, for a call without gRPC:
    no metadata (so no min_revision to wait for) and no deadline."""

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return ()

    def time_remaining(self) -> float | None:
        return None


async def in_process(resolver: ResolverServer) -> dict[str, float]:
    """The servicer's own time per call (no gRPC), best of a few repetitions:
    where the checks are, without the network and with less noise."""
    servicer = resolver.servicer
    calls = {"resolve_model": (servicer.ResolveModel, rs.ResolveModelRequest(context=GENERAL)),
             "list_available_models": (servicer.ListAvailableModels, rs.ListAvailableModelsRequest())}
    out = {}
    context = _NoContext()
    with acting_as(Principal(Role.MEMBER, "alice")):
        for rpc, (method, request) in calls.items():
            await method(request, context)  # type: ignore[arg-type]
            best = float("inf")
            for _ in range(3 if QUICK else 7):
                began = time.perf_counter()
                for _ in range(IN_PROCESS_CALLS):
                    await method(request, context)  # type: ignore[arg-type]
                best = min(best, (time.perf_counter() - began) / IN_PROCESS_CALLS * 1e6)
            out[rpc] = best
    return out


# ------------------------------------------------------------------ 2. ingestion, 3. summaries


class Workload:
    """A busy deployment's chats: USERS users, each on 1-3 of 12 models
    (popular ones more often), a fifth of them sometimes on their own key,
    5% of chats on unpriced models."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        weights = [1 / (k + 1) for k in range(12)]
        self.users = []
        for u in range(USERS):
            models = sorted(set(self.rng.choices(range(12), weights, k=self.rng.randint(1, 3))))
            self.users.append((f"user-{u:04d}", models, self.rng.random() < 0.2))

    def record(self, i: int, end: dt.datetime, user: str | None = None) -> UsageRecord:
        rng = self.rng
        name, models, byok = self.users[rng.randrange(USERS)]
        model = rng.choice(models)
        own = byok and rng.random() < 0.3
        t = Tokens(rng.randrange(20_000), rng.randrange(50_000), rng.randrange(2_000), rng.randrange(4_000), 0)
        return UsageRecord(id=f"bench-{i}", user=user or name, provider=f"provider-{model % 3}",
                           model=f"model-{model}",
                           credential_source=CredentialSource.USER_KEY if own else CredentialSource.CENTRAL_KEY,
                           tokens=t, cost_micro_usd=rng.randrange(1, 200_000) if rng.random() > 0.05 else None,
                           outcome=Outcome.FINISHED, end_time=end, start_time=end - dt.timedelta(seconds=3),
                           request_id=f"req-{i}", upstream_latency_ms=3000, time_to_first_token_ms=400,
                           streamed=True)


async def ingestion(stub: config_service_pb2_grpc.ConfigServiceStub, service: Metadata) -> tuple[float, int]:
    work = Workload(1)
    now = dt.datetime.now(UTC)
    batches = [[governance_pb.record_to_pb(work.record(i, now)) for i in range(start, start + INGEST_BATCH)]
               for start in range(0, INGEST_RECORDS, INGEST_BATCH)]
    queue = list(batches)
    stored = 0

    async def sender() -> None:
        nonlocal stored
        while queue:
            batch = queue.pop()
            reply = await stub.RecordUsage(cs.RecordUsageRequest(records=batch), metadata=service, timeout=60)
            stored += reply.inserted

    started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(INGEST_SENDERS)))
    return stored / (time.perf_counter() - started), stored


async def fill_month(config: ConfigServer, month: dt.datetime) -> tuple[float, int]:
    """SUMMARY_RECORDS records over the month, in time order as they arrive,
    through store.usage.ingest (what RecordUsage runs). (seconds, roll-up rows)."""
    work = Workload(2)
    span = dt.timedelta(days=30)
    started = time.perf_counter()
    for start in range(0, SUMMARY_RECORDS, FILL_BATCH):
        batch = [work.record(10_000_000 + i, month + span * (i / SUMMARY_RECORDS))
                 for i in range(start, min(start + FILL_BATCH, SUMMARY_RECORDS))]
        async with config.store.pool.acquire() as conn, conn.transaction():
            await usage_store.ingest(conn, batch)
    elapsed = time.perf_counter() - started
    async with config.store.pool.acquire() as conn:
        # What autovacuum would do after such a load, done now so that it
        # does not run under the timed summaries (steady state, not the storm).
        await conn.execute("VACUUM (ANALYZE) usage_daily, usage_records, usage_spend")
        rows = int(await conn.fetchval("SELECT count(*) FROM usage_daily"))
    return elapsed, rows


async def summaries(stub: config_service_pb2_grpc.ConfigServiceStub, admin: Metadata,
                    month: dt.datetime) -> list[tuple[str, float, float, int]]:
    end = month + dt.timedelta(days=30)
    cases = [
        ("month by user", month, end, [cs.USAGE_DIMENSION_USER]),
        ("month by user, model", month, end, [cs.USAGE_DIMENSION_USER, cs.USAGE_DIMENSION_MODEL]),
        ("month by day", month, end, [cs.USAGE_DIMENSION_DAY]),
        ("partial days at both ends, by model", month + dt.timedelta(hours=13),
         end - dt.timedelta(hours=7), [cs.USAGE_DIMENSION_MODEL]),
    ]
    out = []
    for name, start, stop, dims in cases:
        request = cs.SummarizeUsageRequest(start_time=ts(start), end_time=ts(stop), group_by=dims, page_size=500)
        timings = []
        for _ in range(SUMMARY_CALLS):
            began = time.perf_counter()
            reply = await stub.SummarizeUsage(request, metadata=admin, timeout=60)
            timings.append((time.perf_counter() - began) * 1000)
        out.append((name, statistics.median(timings), min(timings), reply.total.requests))
    return out


# ------------------------------------------------------------------ 4. spend propagation


async def propagation(config: ConfigServer, stub: config_service_pb2_grpc.ConfigServiceStub, admin: Metadata,
                      service_token: str, member: Metadata) -> list[float]:
    from tests.fakes import FakeUpstream

    upstream = UpstreamClient(trust_env=False)
    settings = resolver_settings(f"127.0.0.1:{config.port}", service_token)
    a = await build_resolver(settings, upstream=upstream)
    b = await build_resolver(settings, upstream=upstream)
    seen: list[float] = []
    try:
        async with FakeUpstream.start("openai-compatible") as fake, \
                grpc.aio.insecure_channel(f"127.0.0.1:{a.port}") as ca, \
                grpc.aio.insecure_channel(f"127.0.0.1:{b.port}") as cb:
            await stub.CreateProvider(cs.CreateProviderRequest(provider=pb.Provider(
                name="fake", type=pb.PROVIDER_TYPE_OPENAI_COMPATIBLE, base_url=fake.base_url,
                api_key=fake.api_key or "")), metadata=admin)
            await stub.CreateModel(cs.CreateModelRequest(model=pb.Model(
                name="priced", provider="fake", model_identifier="m", display_name="Priced", context_limit=10_000,
                pricing=pb.Pricing(input_per_mtok=3.0, output_per_mtok=15.0))), metadata=admin)
            await stub.SetSpendLimit(cs.SetSpendLimitRequest(limit=pb.SpendLimit(
                period=pb.SPEND_PERIOD_DAY, limit_micro_usd=10**12)), metadata=admin)
            await a.wait_ready(30)
            await b.wait_ready(30)
            await caught_up(config, a, b)
            sa, sb = resolver_service_pb2_grpc.ResolverServiceStub(ca), resolver_service_pb2_grpc.ResolverServiceStub(cb)
            ask = rs.ChatRequest(chat_model="priced", messages=[rs.ChatMessage(role=rs.CHAT_ROLE_USER, text="hi")])
            probe = rs.ResolveModelRequest(context=GENERAL, chat_model="priced")

            async def spent() -> int:
                budget = (await sb.ResolveModel(probe, metadata=member)).budget
                return budget.periods[0].spent_micro_usd if budget.periods else 0

            for _ in range(PROPAGATION_CHATS):
                before = await spent()
                await sa.Chat(ask, metadata=member)
                done = time.perf_counter()
                while await spent() == before:
                    if time.perf_counter() - done > 10:
                        raise SystemExit("spend never reached the other resolver")
                    await asyncio.sleep(0.002)
                seen.append((time.perf_counter() - done) * 1000)
    finally:
        await a.stop(0)
        await b.stop(0)
        await upstream.aclose()
    return seen


# ------------------------------------------------------------------ report and main


def report(rounds: list[dict[str, Any]], ingest: tuple[float, int], fill_s: float, rollup_rows: int,
           summary: list[tuple[str, float, float, int]], seen: list[float]) -> bool:
    ok = True
    print(f"\n1. Limit and access checks: {ROUNDS} rounds of {PHASE_SECONDS:g} s per rpc at {CONCURRENCY} callers, "
          "load from a separate process;\n   without = no limit, no access list; with = default and group "
          "limits, recorded spend, access lists on 6 of 12 models.\n   Throughput is what this shared "
          "machine gave each phase (noisy); CPU/call is the resolver's event-loop\n   thread time per gRPC "
          "call, where the checks run: its inverse is the throughput the resolver can sustain;\n   servicer is "
          "the servicer method alone, called in-process.")
    print(f"   {'rpc':<24}{'without/s':>10}{'with/s':>8}{'CPU/call without':>18}{'with':>8}{'capacity':>10}"
          f"{'servicer without':>18}{'with':>9}")
    for rpc in RPCS:
        def best(state: str, key: str) -> float:
            return min(r[state][rpc][key] for r in rounds)

        def med(state: str, key: str) -> float:
            return statistics.median(r[state][rpc][key] for r in rounds)
        capacity = best("off", "cpu_us") / best("on", "cpu_us")
        mark = ""
        if capacity < CHECK_TARGET:
            mark, ok = "  below target", False
        print(f"   {rpc:<24}{med('off', 'per_second'):>10.0f}{med('on', 'per_second'):>8.0f}"
              f"{best('off', 'cpu_us'):>15.0f} us{best('on', 'cpu_us'):>5.0f} us{capacity:>9.3f}x"
              f"{best('off', 'servicer_us'):>15.1f} us{best('on', 'servicer_us'):>6.1f} us{mark}")
    print(f"   throughput: medians of the rounds; CPU/call and servicer: best of the rounds (contention only adds).\n"
          f"   capacity = CPU/call without / with; target >= {CHECK_TARGET} (the checks cost at most 5%)")

    rate, stored = ingest
    mark = "" if rate >= INGEST_TARGET else "  below target"
    ok = ok and rate >= INGEST_TARGET
    print(f"\n2. Ledger ingestion: {stored} records via RecordUsage, batches of {INGEST_BATCH}, "
          f"{INGEST_SENDERS} senders: {rate:,.0f} records/s{mark}  (target >= {INGEST_TARGET:,.0f}/s)")

    print(f"\n3. Usage summaries over {SUMMARY_RECORDS:,} records in one month (stored in {fill_s:.0f} s, "
          f"{SUMMARY_RECORDS / fill_s:,.0f} records/s in batches of {FILL_BATCH:,};\n   {USERS:,} users with 1-3 "
          f"models each out of 12, a fifth of them also on their own key: {rollup_rows:,} daily roll-up rows):")
    for name, p50, fastest, requests in summary:
        mark = "" if p50 < SUMMARY_TARGET_MS else "  above target"
        ok = ok and p50 < SUMMARY_TARGET_MS
        print(f"   {name:<40} p50 {p50:7.1f} ms   best {fastest:7.1f} ms   ({requests:,} requests){mark}")
    print(f"   target: p50 < {SUMMARY_TARGET_MS:.0f} ms")

    print(f"\n4. Spend propagation over {len(seen)} chats (chat answered on A -> its cost in B's budget):"
          f" p50 {statistics.median(seen):.0f} ms, max {max(seen):.0f} ms")
    return ok


async def run(server_dsn: str) -> bool:
    async with fresh_database(server_dsn) as database_url:
        config = await build_config(ConfigSettings(
            database_url=database_url, encryption_keys=crypto.generate_key_entry("bench"), listen="127.0.0.1:0",
            own_addresses=(), allow_metadata_addresses=False, aws_region=None, db_pool_size=10,
            log_level="WARNING"))
        resolver: ResolverServer | None = None
        try:
            service_token = tokens.mint()
            await config.store.create_token("bench", service_token.token_id, Role.SERVICE, "resolver", "",
                                            service_token.secret_hash)
            resolver = await build_resolver(resolver_settings(f"127.0.0.1:{config.port}", service_token.token))
            await resolver.wait_ready(30)
            async with grpc.aio.insecure_channel(f"127.0.0.1:{config.port}") as channel:
                stub = config_service_pb2_grpc.ConfigServiceStub(channel)
                admin = await mint(config, Role.ADMIN, "bench-admin")
                service = await mint(config, Role.SERVICE, "bench-ledger")
                await seed(stub, admin)
                member_token = tokens.mint()
                await config.store.create_token("bench", member_token.token_id, Role.MEMBER, "alice", "",
                                                member_token.secret_hash)
                member: Metadata = (("authorization", f"Bearer {member_token.token}"),)
                await stub.CreateGroup(cs.CreateGroupRequest(group=pb.Group(
                    name="bench-team", members=["alice", *(f"user-{i:03d}" for i in range(200))])), metadata=admin)
                spent = Workload(3).record(-1, dt.datetime.now(UTC), user="alice")
                await stub.RecordUsage(cs.RecordUsageRequest(records=[governance_pb.record_to_pb(spent)]),
                                       metadata=service)
                await caught_up(config, resolver)
                async with grpc.aio.insecure_channel(f"127.0.0.1:{resolver.port}") as warm:
                    # alice's token and data are fetched once here, not in the timed phases.
                    await resolver_service_pb2_grpc.ResolverServiceStub(warm).ResolveModel(
                        rs.ResolveModelRequest(context=GENERAL), metadata=member)
                print(f"config_svc 127.0.0.1:{config.port}, resolver 127.0.0.1:{resolver.port}; "
                      f"{ROUNDS} rounds ...", flush=True)
                rounds = await checks(config, resolver, stub, admin, member_token.token)
                await resolver.stop(0)
                resolver = None
                ingest = await ingestion(stub, service)
                month = dt.datetime(2025, 3, 1, tzinfo=UTC)
                print(f"storing {SUMMARY_RECORDS:,} records ...", flush=True)
                fill_s, rollup_rows = await fill_month(config, month)
                summary = await summaries(stub, admin, month)
                seen = await propagation(config, stub, admin, service_token.token, member)
            return report(rounds, ingest, fill_s, rollup_rows, summary, seen)
        finally:
            if resolver is not None:
                await resolver.stop(0)
            await config.stop(0)


def main() -> int:
    return main_on_postgres(run)


if __name__ == "__main__":
    sys.exit(main())
