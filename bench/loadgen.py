"""Load generator, run as a child process so the client's CPU is not the
server's: reads a JSON plan on stdin, prints JSON results on stdout.

Plan: {"address", "token", "user", "phases": [{"rpc", "concurrency", "seconds", ...}]}
where rpc is health, resolve_model, resolve_model_min_revision (ResolveModel
naming the plan's "min_revision", which the resolver must already have
applied), list_available_models (the first page) or list_available_models_all
(every page, 500 models a page); other keys are echoed back with each
phase's results. A phase with "mix": [rpc_a, rpc_b] instead of "rpc" sends
both kinds at once, each worker alternating between them (half the workers
starting with each), and reports {"mix": {rpc_a: stats, rpc_b: stats}}: the
two see the same load at every moment, so background noise cancels out. A
phase with "users": N calls as a random one of user-0 .. user-N-1 (the token
must be a service's); one with "warm_users": [first, last] resolves once for
each of those users.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from typing import Any, Awaitable, Callable

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from modelplane.v1 import resolver_service_pb2 as rs
from modelplane.v1 import resolver_service_pb2_grpc
from modelplane.v1 import resources_pb2 as pb

WARMUP_SECONDS = 0.1


def _calls(channel: grpc.aio.Channel, token: str, user: str,
           min_revision: int = 0) -> dict[str, Callable[[], Awaitable[Any]]]:
    md = (("authorization", f"Bearer {token}"),)
    health = health_pb2_grpc.HealthStub(channel)
    resolver = resolver_service_pb2_grpc.ResolverServiceStub(channel)
    check = health_pb2.HealthCheckRequest(service="modelplane.v1.ResolverService")
    resolve = rs.ResolveModelRequest(user=user, context=pb.OVERRIDE_CONTEXT_GENERAL)
    listing = rs.ListAvailableModelsRequest(user=user)

    async def every_page() -> None:
        """The whole list, 500 models a page (the most a page holds): what a caller that wants all of it pays."""
        token = ""
        while True:
            page = await resolver.ListAvailableModels(
                rs.ListAvailableModelsRequest(user=user, page_size=500, page_token=token), metadata=md)
            token = page.next_page_token
            if not token:
                return

    at_revision = rs.ResolveModelRequest(user=user, context=pb.OVERRIDE_CONTEXT_GENERAL, min_revision=min_revision)
    return {
        "health": lambda: health.Check(check),
        "resolve_model": lambda: resolver.ResolveModel(resolve, metadata=md),
        "resolve_model_min_revision": lambda: resolver.ResolveModel(at_revision, metadata=md),
        "list_available_models": lambda: resolver.ListAvailableModels(listing, metadata=md),  # the first page
        "list_available_models_all": every_page,
    }


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


async def _phase(call: Callable[[], Awaitable[Any]], concurrency: int, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    recording = False
    stop_at = 0.0
    completed = 0  # every call of the phase, warm-up included: what the server handled

    async def worker() -> None:
        nonlocal completed
        while True:
            start = time.perf_counter()
            if recording and start >= stop_at:
                return
            await call()
            completed += 1
            if recording:
                latencies.append(time.perf_counter() - start)

    async def run_for(duration: float) -> None:
        nonlocal stop_at
        stop_at = time.perf_counter() + duration
        workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
        await asyncio.sleep(duration)
        await asyncio.gather(*workers)

    # Warm-up: connections, caches, allocator; measured part afterwards.
    stop_at = time.perf_counter() + WARMUP_SECONDS
    recording = True
    warm = [asyncio.create_task(worker()) for _ in range(concurrency)]
    await asyncio.gather(*warm)
    latencies.clear()
    began = time.perf_counter()
    await run_for(seconds)
    elapsed = time.perf_counter() - began
    latencies.sort()
    return {
        "calls": len(latencies),
        "completed": completed,
        "per_second": len(latencies) / elapsed,
        "p50_ms": _percentile(latencies, 0.50) * 1000,
        "p99_ms": _percentile(latencies, 0.99) * 1000,
    }


def _stats(latencies: list[float], elapsed: float) -> dict[str, float]:
    latencies.sort()
    return {
        "calls": len(latencies),
        "per_second": len(latencies) / elapsed,
        "p50_ms": _percentile(latencies, 0.50) * 1000,
        "p99_ms": _percentile(latencies, 0.99) * 1000,
        "mean_ms": sum(latencies) / len(latencies) * 1000 if latencies else float("nan"),
    }


async def _mixed_phase(calls: dict[str, Callable[[], Awaitable[Any]]], concurrency: int,
                       seconds: float) -> dict[str, dict[str, float]]:
    names = list(calls)
    latencies: dict[str, list[float]] = {name: [] for name in names}
    stop_at = time.perf_counter() + WARMUP_SECONDS

    async def worker(first: int, record: bool) -> None:
        turn = first
        while True:
            start = time.perf_counter()
            if start >= stop_at:
                return
            name = names[turn % len(names)]
            await calls[name]()
            if record:
                latencies[name].append(time.perf_counter() - start)
            turn += 1

    await asyncio.gather(*(worker(n, False) for n in range(concurrency)))  # warm-up
    began = time.perf_counter()
    stop_at = began + seconds
    await asyncio.gather(*(worker(n, True) for n in range(concurrency)))
    elapsed = time.perf_counter() - began
    return {name: _stats(values, elapsed) for name, values in latencies.items()}
def _many_users(channel: grpc.aio.Channel, token: str, rpc: str, users: int) -> Callable[[], Awaitable[Any]]:
    """A call as a random one of `users` users (user-0 .. user-N-1): a
    service token resolving for its users."""
    md = (("authorization", f"Bearer {token}"),)
    resolver = resolver_service_pb2_grpc.ResolverServiceStub(channel)
    requests: Any = ([rs.ResolveModelRequest(user=f"user-{i}", context=pb.OVERRIDE_CONTEXT_GENERAL)
                      for i in range(users)] if rpc == "resolve_model"
                     else [rs.ListAvailableModelsRequest(user=f"user-{i}") for i in range(users)])
    method = resolver.ResolveModel if rpc == "resolve_model" else resolver.ListAvailableModels
    return lambda: method(random.choice(requests), metadata=md)


async def _warm(channel: grpc.aio.Channel, token: str, first: int, last: int, concurrency: int) -> dict[str, float]:
    """ResolveModel once for each of user-first .. user-last-1: the cold path."""
    md = (("authorization", f"Bearer {token}"),)
    resolver = resolver_service_pb2_grpc.ResolverServiceStub(channel)
    todo = iter(range(first, last))

    async def worker() -> None:
        for i in todo:
            await resolver.ResolveModel(rs.ResolveModelRequest(user=f"user-{i}", context=pb.OVERRIDE_CONTEXT_GENERAL),
                                        metadata=md)
    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {"users_per_second": (last - first) / (time.perf_counter() - began)}


async def run(plan: dict[str, Any]) -> list[dict[str, Any]]:
    async with grpc.aio.insecure_channel(plan["address"]) as channel:
        calls = _calls(channel, plan["token"], plan["user"], plan.get("min_revision", 0))
        results = []
        for phase in plan["phases"]:
            if "mix" in phase:
                mixed = await _mixed_phase({name: calls[name] for name in phase["mix"]}, phase["concurrency"],
                                           phase["seconds"])
                results.append({**phase, "mix": mixed})
                continue
            if "warm_users" in phase:
                first, last = phase["warm_users"]
                stats = await _warm(channel, plan["token"], first, last, phase["concurrency"])
            else:
                call = (_many_users(channel, plan["token"], phase["rpc"], phase["users"]) if "users" in phase
                        else calls[phase["rpc"]])
                stats = await _phase(call, phase["concurrency"], phase["seconds"])
            results.append({**phase, **stats})
        return results


def main() -> int:
    plan = json.load(sys.stdin)
    json.dump(asyncio.run(run(plan)), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
