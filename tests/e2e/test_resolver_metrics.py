"""The resolver's /metrics after real traffic: upstream latency, attempts
and retries, time to first token, tokens by kind and cost per provider and
model, cache hit ratios, snapshot revision and freshness."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from typing import AsyncIterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelplane_server.domain.types import Role
from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import resolver_service_pb2 as rs
from modelplane.v1 import resources_pb2 as pb
from tests.fakes import Canned, Fail, FakeUpstream
from tests.fakes.canned import CannedUsage
from tests.harness import ConfigHarness, bearer
from tests.resolver_harness import ResolverHarness, eventually, start_resolver

pytestmark = pytest.mark.e2e

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(port: int) -> Samples:
    def fetch() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            return str(reply.read().decode())

    text = await asyncio.to_thread(fetch)
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
async def resolver(cfg: ConfigHarness) -> AsyncIterator[ResolverHarness]:
    service_token = await cfg.token(Role.SERVICE, "resolver")
    async for harness in start_resolver(cfg.address, service_token, metrics_listen="127.0.0.1:0"):
        yield harness


async def test_chat_traffic_shows_in_resolver_metrics(cfg: ConfigHarness, resolver: ResolverHarness) -> None:
    async with FakeUpstream.start("openai-compatible") as fake:
        fake.default = Canned(text="hi", usage=CannedUsage(input=1200, output=34, reasoning=10, cache_read=100))
        # The first attempt is refused once (rate limited, retry at once): one retry, two attempts.
        fake.script(Fail(429, headers={"retry-after": "0"}))
        await cfg.stub.CreateProvider(cs.CreateProviderRequest(provider=pb.Provider(
            name="local", type=pb.PROVIDER_TYPE_OPENAI_COMPATIBLE, base_url=fake.base_url,
            api_key=fake.api_key)), metadata=cfg.admin)
        await cfg.stub.CreateModel(cs.CreateModelRequest(model=pb.Model(
            name="llama", provider="local", model_identifier="llama-test", display_name="Llama",
            context_limit=8000, pricing=pb.Pricing(input_per_mtok=1.0, output_per_mtok=2.0))),
            metadata=cfg.admin)
        alice = bearer(await cfg.token(Role.MEMBER, "alice"))
        revision = await cfg.server.store.current_revision()

        async def caught_up() -> bool:
            assert resolver.server.snapshot.revision >= revision
            return True

        await eventually(caught_up)
        request = rs.ChatRequest(messages=[rs.ChatMessage(role=rs.CHAT_ROLE_USER, text="hello")])
        for _ in range(2):
            await resolver.stub.Chat(request, metadata=alice)
        events = [e async for e in resolver.stub.StreamChat(request, metadata=alice)]
        assert events[-1].HasField("finish")

    port = resolver.server.metrics_endpoint.port  # type: ignore[union-attr]
    samples = await scrape(port)
    labels = {"provider": "local", "model": "llama"}
    assert value(samples, "modelplane_upstream_request_seconds_count", status="OK", **labels) == 3
    # Kinds that do not overlap: output 34 is 10 reasoning + 24 other.
    tokens = {kind: value(samples, "modelplane_upstream_tokens_total", kind=kind, **labels)
              for kind in ("input", "cache_read", "cache_write", "output_non_reasoning", "reasoning")}
    assert tokens == {"input": 3600, "cache_read": 300, "cache_write": 0, "output_non_reasoning": 72,
                      "reasoning": 30}
    # Without a cache price, cache reads cost what input does.
    assert value(samples, "modelplane_upstream_cost_usd_total", **labels) == pytest.approx(
        3 * ((1200 + 100) * 1.0 + 34 * 2.0) / 1e6)
    assert value(samples, "modelplane_upstream_attempts_total", outcome="rate_limited", **labels) == 1
    assert value(samples, "modelplane_upstream_attempts_total", outcome="ok", **labels) == 3
    assert value(samples, "modelplane_upstream_retries_total", reason="rate_limited", **labels) == 1
    # Only the stream has a first token to time.
    assert value(samples, "modelplane_upstream_time_to_first_token_seconds_count", **labels) == 1
    assert value(samples, "modelplane_upstream_time_to_first_token_seconds_sum", **labels) > 0
    # One miss then one hit for alice's token, her user data and the central key.
    for cache in ("tokens", "users", "credentials"):
        assert value(samples, "modelplane_cache_requests_total", cache=cache, result="miss") == 1, cache
        assert value(samples, "modelplane_cache_requests_total", cache=cache, result="hit") >= 1, cache
    # Each cache's memory against its budget, read at scrape time.
    for cache, budget in (("tokens", 64 * 2**20), ("users", 64 * 2**20), ("credentials", 4 * 2**20),
                          ("answers", 64 * 2**20)):
        assert value(samples, "modelplane_cache_budget_bytes", cache=cache) == budget, cache
        assert value(samples, "modelplane_cache_evictions_total", cache=cache) == 0, cache
    for cache in ("tokens", "users", "credentials"):
        assert value(samples, "modelplane_cache_entries", cache=cache) == 1, cache
        assert 0 < value(samples, "modelplane_cache_bytes", cache=cache) < 2000, cache
    assert value(samples, "modelplane_snapshot_revision") == resolver.server.snapshot.revision
    # The watch is open: the snapshot is current as of the scrape.
    assert abs(value(samples, "modelplane_snapshot_synced_timestamp_seconds") - time.time()) < 5
    assert value(samples, "grpc_server_handled_total", grpc_service="modelplane.v1.ResolverService",
                 grpc_method="Chat", grpc_type="unary", grpc_code="OK") == 2
