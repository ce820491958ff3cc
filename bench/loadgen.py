"""Load generator, run as a child process so the client's CPU is not the
server's: reads a JSON plan on stdin, prints JSON results on stdout.

Plan: {"address", "token", "user", "phases": [{"rpc", "concurrency", "seconds", ...}]}
where rpc is health, resolve_model or list_available_models; other keys are
echoed back with each phase's results.
"""

from __future__ import annotations

import asyncio
import json
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


def _calls(channel: grpc.aio.Channel, token: str, user: str) -> dict[str, Callable[[], Awaitable[Any]]]:
    md = (("authorization", f"Bearer {token}"),)
    health = health_pb2_grpc.HealthStub(channel)
    resolver = resolver_service_pb2_grpc.ResolverServiceStub(channel)
    check = health_pb2.HealthCheckRequest(service="modelplane.v1.ResolverService")
    resolve = rs.ResolveModelRequest(user=user, context=pb.OVERRIDE_CONTEXT_GENERAL)
    listing = rs.ListAvailableModelsRequest(user=user)
    return {
        "health": lambda: health.Check(check),
        "resolve_model": lambda: resolver.ResolveModel(resolve, metadata=md),
        "list_available_models": lambda: resolver.ListAvailableModels(listing, metadata=md),
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


async def run(plan: dict[str, Any]) -> list[dict[str, Any]]:
    async with grpc.aio.insecure_channel(plan["address"]) as channel:
        calls = _calls(channel, plan["token"], plan["user"])
        results = []
        for phase in plan["phases"]:
            stats = await _phase(calls[phase["rpc"]], phase["concurrency"], phase["seconds"])
            results.append({**phase, **stats})
        return results


def main() -> int:
    plan = json.load(sys.stdin)
    json.dump(asyncio.run(run(plan)), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
