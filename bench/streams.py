"""Streaming fan-out (issue 14, point 5): time to first token through
StreamChat under many concurrent streams, against the same streams read
straight from the fake upstream.

Three processes besides Postgres, so no one's CPU is charged to another:
this one runs config_svc and the resolver; one child runs the fake upstream
(OpenAI-compatible, the FakeUpstream the tests use, sending 20 one-character
deltas 100 ms apart); another child is the load generator.

1. TTFT at 256 concurrent streams: 256 workers open streams back to back
   for a few seconds, first directly against the fake (each worker with its
   own httpx client and connection: the best a direct caller can do), then
   through StreamChat (one gRPC channel), in interleaved rounds. Worker
   starts are spread over one stream's length, so 256 streams are open at
   any moment without all of them starting together (bursts are part 2's).
   TTFT is the time from the call to the first text delta. Target:
   StreamChat p50 within 1.5x of direct.
2. 1,024 concurrent StreamChat calls at once: how many finished with every
   delta, and the longest silence of any (a stream silent > 2 s, or
   unfinished, is stalled). Target: all finish, none stalled. The same
   1,024 read directly show how much of any silence is the load
   generator's own.

Run: python -m bench.streams (BENCH_QUICK=1: tiny sizes, figures meaningless;
STREAMS_PROFILE=tottime or =cumulative also prints a cProfile of the resolver
process during the load).
"""

from __future__ import annotations

import asyncio
import cProfile
import multiprocessing
import multiprocessing.connection
import os
import pstats
import sys
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import grpc
import grpc.aio
import httpx

from bench.gateway import MODEL_ID, QUESTION, chat_stack
from bench.resolution import postgres
from modelplane.v1 import resolver_service_pb2 as rs
from modelplane.v1 import resolver_service_pb2_grpc
from modelplane_server.runtime import logs
from modelplane_server.resolver_svc.upstream import ChatMessage, TextDelta, UpstreamClient, UpstreamTarget, protocol_for

QUICK = os.environ.get("BENCH_QUICK") == "1"
CONCURRENT = 8 if QUICK else 256
MANY = 16 if QUICK else 1024
ROUNDS = 1 if QUICK else 3
PHASE_S = 0.5 if QUICK else 5.0
DELTAS, GAP_S = 20, 0.1
STALL_GAP_S = 2.0
TTFT_RATIO_TARGET = 1.5
# Above MANY: over HTTP/1.1 each stream holds its own upstream connection.
UPSTREAM_CONNECTIONS = 1100


@dataclass(frozen=True)
class Plan:
    resolver_address: str
    token: str
    upstream_url: str
    api_key: str


# ------------------------------------------------------------------ child: the fake upstream


def run_fake(conn: multiprocessing.connection.Connection) -> None:
    asyncio.run(_fake(conn))


async def _fake(conn: multiprocessing.connection.Connection) -> None:
    from tests.fakes import Canned, FakeUpstream

    async with FakeUpstream.start("openai-compatible") as fake:
        fake.default = Canned(text="x" * DELTAS, chunk_chars=1, delay_s=GAP_S)
        conn.send((fake.base_url, fake.api_key))
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # the load begins
        began = time.process_time()
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # ... and ends
        conn.send(time.process_time() - began)


# ------------------------------------------------------------------ child: the load generator


def run_loadgen(conn: multiprocessing.connection.Connection) -> None:
    plan: Plan = conn.recv()
    began = time.process_time()
    out = asyncio.run(_loadgen(plan))
    conn.send({**out, "cpu_s": time.process_time() - began})


@dataclass
class Stream:
    ttft_s: float = 0.0
    longest_silence_s: float = 0.0
    deltas: int = 0  # characters of text received: one per delta the fake sent
    finished: bool = False


OneStream = Callable[[], Awaitable[Stream]]


async def _loadgen(plan: Plan) -> dict[str, Any]:
    target = UpstreamTarget("openai-compatible", plan.upstream_url, plan.api_key, None, MODEL_ID)
    protocol = protocol_for(target)
    wire = protocol.build_request(target, [ChatMessage("user", QUESTION)], (), stream=True)
    md = (("authorization", f"Bearer {plan.token}"),)
    request = rs.ChatRequest(messages=[rs.ChatMessage(role=rs.CHAT_ROLE_USER, text=QUESTION)])

    def direct(http: httpx.AsyncClient) -> OneStream:
        async def one() -> Stream:
            s, parser = Stream(), protocol.stream_parser(target)
            start = last = time.perf_counter()
            async with http.stream("POST", wire.url, headers=dict(wire.headers), content=wire.body) as r:
                async for chunk in r.aiter_bytes():
                    now = time.perf_counter()
                    s.longest_silence_s, last = max(s.longest_silence_s, now - last), now
                    texts = sum(len(e.text) for e in parser.feed(chunk) if isinstance(e, TextDelta))
                    if texts and not s.deltas:
                        s.ttft_s = now - start
                    s.deltas += texts
            s.finished = True
            return s
        return one

    def gateway(stub: resolver_service_pb2_grpc.ResolverServiceStub) -> OneStream:
        async def one() -> Stream:
            s = Stream()
            start = last = time.perf_counter()
            try:
                async for event in stub.StreamChat(request, metadata=md, timeout=60):
                    now = time.perf_counter()
                    s.longest_silence_s, last = max(s.longest_silence_s, now - last), now
                    if event.HasField("text_delta"):
                        if not s.deltas:
                            s.ttft_s = now - start
                        # Coalesced deltas carry several characters: count what was sent.
                        s.deltas += len(event.text_delta)
                    s.finished = s.finished or event.HasField("finish")
            except grpc.aio.AioRpcError:
                s.finished = False
            return s
        return one

    def clients(n: int) -> list[httpx.AsyncClient]:
        one_connection = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        tls = httpx.create_ssl_context()  # unused on http://, but each client would build its own
        return [httpx.AsyncClient(limits=one_connection, trust_env=False, timeout=60, verify=tls) for _ in range(n)]

    out: dict[str, Any] = {"direct": [], "gateway": []}
    async with grpc.aio.insecure_channel(plan.resolver_address) as channel:
        stub = resolver_service_pb2_grpc.ResolverServiceStub(channel)
        https = clients(MANY)
        try:
            direct_workers = [direct(h) for h in https[:CONCURRENT]]
            gateway_workers = [gateway(stub)] * CONCURRENT
            await _closed_loop(direct_workers, PHASE_S / 2)  # warm-up: connections, caches
            await _closed_loop(gateway_workers, PHASE_S / 2)
            for _ in range(ROUNDS):
                out["direct"] += await _closed_loop(direct_workers, PHASE_S)
                out["gateway"] += await _closed_loop(gateway_workers, PHASE_S)
            out["many_gateway"] = await _at_once(gateway(stub), MANY)
            out["many_direct"] = await _at_once_each([direct(h) for h in https])
        finally:
            for h in https:
                await h.aclose()
    return out


async def _closed_loop(workers: list[OneStream], seconds: float) -> list[float]:
    """Each worker opens streams one after another until `seconds` pass;
    the TTFT of every stream that finished with all its deltas. Worker i
    first waits i/n of a stream's length, so streams start spread out as
    independent callers' do, not all at once every 2 s in lock-step."""
    stop_at = time.perf_counter() + seconds
    ttfts: list[float] = []

    async def worker(i: int, one: OneStream) -> None:
        await asyncio.sleep(i / len(workers) * DELTAS * GAP_S)
        while time.perf_counter() < stop_at:
            s = await one()
            if s.finished and s.deltas == DELTAS:
                ttfts.append(s.ttft_s)

    await asyncio.gather(*(worker(i, w) for i, w in enumerate(workers)))
    return ttfts


async def _at_once(one: OneStream, n: int) -> dict[str, Any]:
    return await _at_once_each([one] * n)


async def _at_once_each(ones: list[OneStream]) -> dict[str, Any]:
    started = time.perf_counter()
    results = await asyncio.gather(*(one() for one in ones))
    return {"wall_s": time.perf_counter() - started, "streams": len(results),
            "finished": sum(r.finished for r in results),
            "complete": sum(r.finished and r.deltas == DELTAS for r in results),
            "max_gap_s": max(r.longest_silence_s for r in results),
            "stalled": sum((not r.finished) or r.longest_silence_s > STALL_GAP_S for r in results)}


# ------------------------------------------------------------------ report


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")


def report(out: dict[str, Any]) -> bool:
    ok = True
    d, g = out["direct"], out["gateway"]
    print(f"\nTime to first token, {CONCURRENT} concurrent streams ({DELTAS} deltas {GAP_S * 1000:.0f} ms apart), "
          f"{ROUNDS} interleaved rounds of {PHASE_S:g} s")
    print(f"{'path':<12}{'streams':>9}{'p50 ms':>9}{'p99 ms':>9}{'x p50':>8}{'x p99':>8}")
    d50, d99, g50, g99 = _pct(d, .5), _pct(d, .99), _pct(g, .5), _pct(g, .99)
    print(f"{'direct':<12}{len(d):>9}{d50:>9.1f}{d99:>9.1f}")
    mark = ""
    if not g50 / d50 <= TTFT_RATIO_TARGET:
        mark, ok = "  MISSED", False
    print(f"{'StreamChat':<12}{len(g):>9}{g50:>9.1f}{g99:>9.1f}{g50 / d50:>8.2f}{g99 / d99:>8.2f}{mark}")
    print(f"target: StreamChat TTFT p50 within {TTFT_RATIO_TARGET}x of direct")

    print(f"\n{MANY} concurrent streams at once (stalled: unfinished, or silent > {STALL_GAP_S:.0f} s)")
    for label, r in (("StreamChat", out["many_gateway"]), ("direct", out["many_direct"])):
        print(f"  {label:<11} finished {r['finished']}/{r['streams']}, all deltas {r['complete']}/{r['streams']}, "
              f"longest silence {r['max_gap_s'] * 1000:.0f} ms, wall {r['wall_s']:.2f} s, stalled {r['stalled']}")
    print("\nCPU over the whole load, % of one core: " + ", ".join(
        f"{name} {cpu / out['wall_s'] * 100:.0f}%" for name, cpu in out["cpu_s"].items()))
    many = out["many_gateway"]
    if many["stalled"] or many["complete"] != MANY:
        ok = False
    return ok


# ------------------------------------------------------------------ main


async def run() -> bool:
    ctx = multiprocessing.get_context("spawn")
    fake_conn, fake_child_conn = ctx.Pipe()
    load_conn, load_child_conn = ctx.Pipe()
    fake = ctx.Process(target=run_fake, args=(fake_child_conn,), daemon=True)
    loadgen = ctx.Process(target=run_loadgen, args=(load_child_conn,), daemon=True)
    fake.start()
    loadgen.start()
    upstream_url, api_key = fake_conn.recv()
    upstream = UpstreamClient(trust_env=False, max_connections_per_origin=UPSTREAM_CONNECTIONS)
    try:
        with postgres() as server_dsn:
            async with chat_stack(server_dsn, {"bench": upstream_url}, api_key, upstream) as (address, token):
                print("resolver here; the fake upstream and the load generator in two child processes ...",
                      flush=True)
                fake_conn.send("go")
                load_conn.send(Plan(address, token, upstream_url, api_key))
                began, cpu_began = time.perf_counter(), time.process_time()
                profiler = cProfile.Profile() if os.environ.get("STREAMS_PROFILE") else None
                if profiler is not None:
                    profiler.enable()
                out: dict[str, Any] = await asyncio.get_running_loop().run_in_executor(None, load_conn.recv)
                if profiler is not None:
                    profiler.disable()
                    pstats.Stats(profiler).sort_stats(os.environ["STREAMS_PROFILE"]).print_stats(50)
                fake_conn.send("done")
                out["cpu_s"] = {"resolver": time.process_time() - cpu_began, "fake": fake_conn.recv(),
                                "load generator": out["cpu_s"]}
                out["wall_s"] = time.perf_counter() - began
                return report(out)
    finally:
        await upstream.aclose()
        for child in (loadgen, fake):
            child.join(10)
            if child.is_alive():
                child.terminate()


def main() -> int:
    logs.configure_logging("WARNING")
    ok = asyncio.run(run())
    print("\nresult:", "all targets met" if ok else "SOME TARGETS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
