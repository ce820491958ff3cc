"""Logging's share of a Chat's CPU at the shipped INFO level.

The resolver and config_svc run in this process with logging configured as
`python -m modelplane_server.resolver_svc` configures it (JSON lines, level
from BENCH_LOG_LEVEL, default INFO) into /dev/null, so the log sink costs
what writing a line costs and nothing more. A child process runs the fake
upstream and the client, which sends Chat calls one at a time. cProfile
watches this process during the calls; the report gives the share of its
busy CPU (time in the event loop's poll excluded) spent in logging: from a
`log.info(...)` call site down (the logger structlog assembles for the call,
the processor chain, redaction, rendering and the write), the request context
bound for the lines, and stdlib records (httpx's own lines included).

Target (issue 14): under 5% at INFO. Then, without the servers: the
scrub of one line with 2,000 secrets known costs under 5x its cost with one. Run: python -m bench.log_cost
(LOG_COST_PROFILE=tottime also prints the top of the profile.)
"""

from __future__ import annotations

import asyncio
import cProfile
import multiprocessing
import multiprocessing.connection
import os
import pstats
import random
import secrets
import string
import sys
import timeit
from typing import Any

import grpc.aio

from bench.gateway import ANSWER, MODEL_ID, QUESTION, Plan
from bench.resolution import fresh_database, mint, postgres
from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import config_service_pb2_grpc
from modelplane.v1 import resolver_service_pb2 as rs
from modelplane.v1 import resolver_service_pb2_grpc
from modelplane.v1 import resources_pb2 as pb
from modelplane_server.config_svc.server import build_server as build_config
from modelplane_server.config_svc.settings import ConfigServiceSettings as ConfigSettings
from modelplane_server.domain.types import Role
from modelplane_server.resolver_svc.server import build_server as build_resolver
from modelplane_server.resolver_svc.server import resolver_servicer
from modelplane_server.resolver_svc.settings import ResolverSettings
from modelplane_server.resolver_svc.upstream import UpstreamClient
from modelplane_server.runtime import crypto, logs
from modelplane_server.runtime.scrub import SecretScrubber

QUICK = os.environ.get("BENCH_QUICK") == "1"
CALLS = 20 if QUICK else 2000
WARMUP = 5 if QUICK else 200
TARGET_SHARE = 0.05
SECRETS_KNOWN, SCRUB_RATIO_TARGET = 2000, 5.0

# Entry points into logging, by file: a call from one into another (exception
# into error, the lazy logger's __getattr__ into bind) is counted once.
_LOGGING_ENTRIES = {
    # The lazy logger `get_logger` returns: it hands out the bound logger
    # assembled on first use.
    "structlog/_config.py": {"__getattr__", "bind", "new"},
    # The bound logger's methods: processor chain, redaction, rendering, write.
    "structlog/stdlib.py": {"debug", "info", "warning", "error", "critical", "fatal", "exception", "log"},
    # What a call binds for its lines: request id, method, actor, provider, model.
    "structlog/contextvars.py": {"bind_contextvars", "unbind_contextvars", "clear_contextvars"},
    # stdlib records: handler, formatter, redaction, renderer, write.
    "logging/__init__.py": {"_log"},
}
_IDLE = ("select", "poll", "epoll")


def run_client(conn: multiprocessing.connection.Connection) -> None:
    asyncio.run(_fake_and_client(conn))


async def _fake_and_client(conn: multiprocessing.connection.Connection) -> None:
    from tests.fakes import Canned, FakeUpstream

    # A key shaped like a provider's (random after its prefix). The fakes'
    # default keys start "fake-", which the fake's request id (req_fake_1)
    # repeats on every line: the scrub's masked-form check would then run
    # on each line, as it would not for a real key.
    key = "sk-" + secrets.token_urlsafe(36)
    async with FakeUpstream.start("openai-compatible", api_key=key) as fast:
        fast.default = Canned(text=ANSWER, chunk_chars=24)
        conn.send((fast.base_url, fast.api_key))
        plan: Plan = await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        md = (("authorization", f"Bearer {plan.token}"),)
        chat = rs.ChatRequest(messages=[rs.ChatMessage(role=rs.CHAT_ROLE_USER, text=QUESTION)])
        async with grpc.aio.insecure_channel(plan.resolver_address) as channel:
            stub = resolver_service_pb2_grpc.ResolverServiceStub(channel)
            for _ in range(WARMUP):
                await stub.Chat(chat, metadata=md)
            conn.send("go")
            conn.recv()
            for _ in range(CALLS):
                await stub.Chat(chat, metadata=md)
        conn.send("done")


def _is_entry(func: tuple[str, int, str]) -> bool:
    filename, _line, name = func
    return any(filename.endswith(f) and name in names for f, names in _LOGGING_ENTRIES.items())


def logging_share(stats: pstats.Stats) -> tuple[float, float]:
    """(seconds in logging, busy seconds) from a profile."""
    raw: dict[tuple[str, int, str], Any] = stats.stats  # type: ignore[attr-defined]
    busy = logging_s = 0.0
    for func, (_cc, _nc, tottime, _cumtime, callers) in raw.items():
        if not any(idle in func[2] for idle in _IDLE):
            busy += tottime
        if _is_entry(func):
            # per caller: (calls, primitive calls, own time, cumulative time)
            logging_s += sum(by_caller[3] for caller, by_caller in callers.items() if not _is_entry(caller))
    return logging_s, busy


async def run(level: str) -> bool:
    ctx = multiprocessing.get_context("spawn")
    conn, child_conn = ctx.Pipe()
    child = ctx.Process(target=run_client, args=(child_conn,), daemon=True)
    child.start()
    url, api_key = conn.recv()
    upstream = UpstreamClient(trust_env=False)
    try:
        with postgres() as server_dsn:
            async with fresh_database(server_dsn) as database_url:
                return await _run(database_url, url, api_key, upstream, conn, level)
    finally:
        await upstream.aclose()
        child.join(10)
        if child.is_alive():
            child.terminate()


async def _run(database_url: str, url: str, api_key: str, upstream: UpstreamClient,
               conn: multiprocessing.connection.Connection, level: str) -> bool:
    config = await build_config(ConfigSettings(
        database_url=database_url, encryption_keys=crypto.generate_key_entry("bench"), listen="127.0.0.1:0",
        own_addresses=(), allow_metadata_addresses=False, aws_region=None, db_pool_size=4, log_level=level))
    service = await mint(config, Role.SERVICE, "resolver")
    resolver = await build_resolver(ResolverSettings(
        config_svc_address=f"127.0.0.1:{config.port}", service_token=service[0][1].removeprefix("Bearer "),
        listen="127.0.0.1:0", config_call_timeout_seconds=5.0, user_cache_size=1000, token_cache_size=1000,
        token_ttl_seconds=300.0, credential_cache_size=100, credential_ttl_seconds=600.0,
        stale_if_unavailable_seconds=900.0, reconnect_initial_seconds=0.2, reconnect_max_seconds=5.0,
        ambient_aws=False, ambient_aws_refresh_seconds=300.0, log_level=level),
        servicer_factory=lambda snap, users, creds: resolver_servicer(snap, users, creds, upstream=upstream))
    try:
        await resolver.wait_ready(30)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{config.port}") as cch:
            cstub = config_service_pb2_grpc.ConfigServiceStub(cch)
            admin = await mint(config, Role.ADMIN, "bench-admin")
            await cstub.CreateProvider(cs.CreateProviderRequest(provider=pb.Provider(
                name="fast", type=pb.PROVIDER_TYPE_OPENAI_COMPATIBLE, base_url=url, api_key=api_key)),
                metadata=admin)
            await cstub.CreateModel(cs.CreateModelRequest(model=pb.Model(
                name="fast", provider="fast", model_identifier=MODEL_ID, display_name="fast",
                context_limit=128_000, pricing=pb.Pricing(input_per_mtok=1, output_per_mtok=2))), metadata=admin)
            member = await mint(config, Role.MEMBER, "alice")
        while not resolver.snapshot.current().state.models:
            await asyncio.sleep(0.01)
        loop = asyncio.get_running_loop()
        conn.send(Plan(f"127.0.0.1:{resolver.port}", member[0][1].removeprefix("Bearer ")))
        await loop.run_in_executor(None, conn.recv)  # warmed up
        profiler = cProfile.Profile()
        profiler.enable()
        conn.send("start")
        await loop.run_in_executor(None, conn.recv)
        profiler.disable()
    finally:
        await resolver.stop(0)
        await config.stop(0)
    stats = pstats.Stats(profiler)
    if os.environ.get("LOG_COST_PROFILE"):
        stats.sort_stats(os.environ["LOG_COST_PROFILE"]).print_stats(40)
    logging_s, busy = logging_share(stats)
    share = logging_s / busy if busy else 0.0
    print(f"level {level}: {CALLS} Chat calls at one caller; resolver+config process busy {busy * 1000:.0f} ms "
          f"({busy / CALLS * 1e6:.0f} us/call under the profiler), in logging {logging_s * 1000:.0f} ms "
          f"({logging_s / CALLS * 1e6:.0f} us/call): {share:.1%} of busy CPU (target < {TARGET_SHARE:.0%})")
    return share < TARGET_SHARE


def scrub_scaling() -> bool:
    """A line's scrub with 2,000 secrets known against one: every line is
    scrubbed against all the keys the process holds, so its cost must follow
    the line, not the count (looked up the wrong way round, 2,000 secrets
    cost 25 times one)."""
    rng = random.Random(14)
    keys = ["".join(rng.choices(string.ascii_letters + string.digits, k=40)) for _ in range(SECRETS_KNOWN)]
    line = '{"event": "rpc", "method": "/modelplane.v1.ResolverService/Chat", "actor": "member:alice", "code": "OK"}'
    one, many = SecretScrubber(keys[:1]), SecretScrubber(keys)
    cost = {n: min(timeit.repeat(lambda s=s: s.scrub(line), number=200, repeat=5)) / 200  # type: ignore[misc]
            for n, s in ((1, one), (SECRETS_KNOWN, many))}
    ratio = cost[SECRETS_KNOWN] / cost[1]
    print(f"scrubbing a line: {cost[1] * 1e6:.1f} us with 1 secret known, {cost[SECRETS_KNOWN] * 1e6:.1f} us with "
          f"{SECRETS_KNOWN:,}: {ratio:.2f}x (target < {SCRUB_RATIO_TARGET:g}x)")
    return ratio < SCRUB_RATIO_TARGET


def main() -> int:
    level = os.environ.get("BENCH_LOG_LEVEL", "INFO")
    with open(os.devnull, "w") as sink:
        logs.configure_logging(level, json=True, stream=sink)
        ok = asyncio.run(run(level))
    ok = scrub_scaling() and ok
    print("\nresult:", "target met" if ok else "TARGET MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
