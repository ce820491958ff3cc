"""Prometheus metrics, scraped over HTTP as Prometheus would: per-RPC counts
by status code and latency histograms, database pool gauges, and the
resolver's ready-made metrics. Each server has its own registry, so two
servers in one process do not collide."""

from __future__ import annotations

import asyncio
import urllib.request
from typing import AsyncIterator

import grpc
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from modelplane_server.runtime import metrics
from modelplane_server.domain.types import Role
from modelplane_server.runtime.env import Env, SettingsError
from modelplane.v1 import config_service_pb2 as cs
from tests.harness import ConfigHarness, config_settings, start_config

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def scrape(port: int) -> Samples:
    return await asyncio.to_thread(_scrape, port)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def rpc_labels(method: str, rpc_type: str = "unary") -> dict[str, str]:
    return {"grpc_service": "modelplane.v1.ConfigService", "grpc_method": method, "grpc_type": rpc_type}


@pytest.fixture
async def served(database_url: str) -> AsyncIterator[ConfigHarness]:
    async for harness in start_config(config_settings(database_url, metrics_listen="127.0.0.1:0")):
        yield harness


async def test_rpc_counts_status_codes_and_latency(served: ConfigHarness) -> None:
    cfg = served
    endpoint = cfg.server.metrics_endpoint
    assert endpoint is not None
    for _ in range(3):
        await cfg.stub.GetSettings(cs.GetSettingsRequest(), metadata=cfg.admin)
    with pytest.raises(grpc.aio.AioRpcError):
        await cfg.stub.GetProvider(cs.GetProviderRequest(name="providers/nope"), metadata=cfg.admin)
    with pytest.raises(grpc.aio.AioRpcError):
        await cfg.stub.GetSettings(cs.GetSettingsRequest())  # no token: refused, and still counted
    member = await cfg.md(Role.MEMBER, "alice")
    stream = cfg.stub.WatchConfig(cs.WatchConfigRequest(), metadata=member)
    with pytest.raises(grpc.aio.AioRpcError):
        await stream.read()  # members may not watch

    samples = await scrape(endpoint.port)
    settings = rpc_labels("GetSettings")
    assert value(samples, "grpc_server_handled_total", **settings, grpc_code="OK") == 3
    assert value(samples, "grpc_server_handled_total", **settings, grpc_code="UNAUTHENTICATED") == 1
    assert value(samples, "grpc_server_started_total", **settings) == 4
    assert value(samples, "grpc_server_handled_total", **rpc_labels("GetProvider"), grpc_code="NOT_FOUND") == 1
    assert value(samples, "grpc_server_handled_total", **rpc_labels("WatchConfig", "server_stream"),
                 grpc_code="PERMISSION_DENIED") == 1
    assert value(samples, "grpc_server_handling_seconds_count", **settings) == 4
    assert value(samples, "grpc_server_handling_seconds_sum", **settings) > 0
    assert value(samples, "grpc_server_handling_seconds_bucket", **settings, le="+Inf") == 4

    assert value(samples, "modelplane_db_pool_max_connections") == 10
    in_use = value(samples, "modelplane_db_pool_connections", state="in_use")
    idle = value(samples, "modelplane_db_pool_connections", state="idle")
    assert in_use >= 0 and idle >= 1 and in_use + idle <= 10


async def test_two_servers_in_one_process_keep_their_own_counts(served: ConfigHarness, database_url: str) -> None:
    async for other in start_config(config_settings(database_url, metrics_listen="127.0.0.1:0")):
        await other.stub.GetSettings(cs.GetSettingsRequest(), metadata=other.admin)
        assert other.server.metrics_endpoint and served.server.metrics_endpoint
        ours = await scrape(served.server.metrics_endpoint.port)
        theirs = await scrape(other.server.metrics_endpoint.port)
        settings = rpc_labels("GetSettings")
        assert value(theirs, "grpc_server_handled_total", **settings, grpc_code="OK") == 1
        assert value(ours, "grpc_server_handled_total", **settings, grpc_code="OK") == 0


async def test_metrics_port_is_off_when_not_configured(database_url: str) -> None:
    async for cfg in start_config(config_settings(database_url)):
        assert cfg.server.metrics_endpoint is None


async def test_resolver_metrics_are_exposed() -> None:
    now = [100.0]
    registry = CollectorRegistry()
    resolver = metrics.ResolverMetrics(registry, clock=lambda: now[0])
    endpoint = metrics.serve("127.0.0.1:0", registry)
    assert endpoint is not None
    try:
        resolver.follow_watch(revision=lambda: 42, connected=lambda: False)
        now[0] += 7  # no watch stream yet: the lag grows from start-up
        resolver.cache_lookup("users", True)
        resolver.cache_lookup("users", True)
        resolver.cache_lookup("users", False)
        resolver.upstream_done("anthropic", "claude", "OK", 0.3, tokens={"input": 1200, "output": 80,
                               "reasoning": 0}, cost_usd=0.0042)
        resolver.upstream_done("local", "llama", "UNAVAILABLE", 1.5, cost_usd=None)
        samples = await scrape(endpoint.port)
        assert value(samples, "modelplane_snapshot_revision") == 42
        assert value(samples, "modelplane_snapshot_lag_seconds") == 7
        assert value(samples, "modelplane_cache_requests_total", cache="users", result="hit") == 2
        assert value(samples, "modelplane_cache_requests_total", cache="users", result="miss") == 1
        upstream = {"provider": "anthropic", "model": "claude", "status": "OK"}
        assert value(samples, "modelplane_upstream_request_seconds_count", **upstream) == 1
        assert value(samples, "modelplane_upstream_request_seconds_bucket", **upstream, le="0.5") == 1
        assert value(samples, "modelplane_upstream_request_seconds_bucket", **upstream, le="0.25") == 0
        assert value(samples, "modelplane_upstream_tokens_total", provider="anthropic", model="claude",
                     kind="input") == 1200
        assert value(samples, "modelplane_upstream_cost_usd_total", provider="anthropic",
                     model="claude") == pytest.approx(0.0042)
        assert value(samples, "modelplane_upstream_request_seconds_count", provider="local", model="llama",
                     status="UNAVAILABLE") == 1
        assert ("modelplane_upstream_cost_usd_total", frozenset({("provider", "local"), ("model", "llama")})) \
            not in samples  # unpriced: no cost, not zero

        resolver.watch_connected()
        assert value(await scrape(endpoint.port), "modelplane_snapshot_lag_seconds") == 0
        resolver.watch_lost()
        now[0] += 3
        assert value(await scrape(endpoint.port), "modelplane_snapshot_lag_seconds") == 3
    finally:
        endpoint.close()


def test_resolver_metrics_can_follow_the_watcher_at_scrape_time() -> None:
    now = [0.0]
    state = {"revision": 0, "connected": False}
    registry = CollectorRegistry()
    resolver = metrics.ResolverMetrics(registry, clock=lambda: now[0])
    resolver.follow_watch(revision=lambda: int(state["revision"]), connected=lambda: bool(state["connected"]))

    def read(name: str) -> float | None:
        return registry.get_sample_value(name)

    now[0] = 4
    assert read("modelplane_snapshot_lag_seconds") == 4  # never connected: since start-up
    state.update(revision=9, connected=True)
    assert read("modelplane_snapshot_revision") == 9 and read("modelplane_snapshot_lag_seconds") == 0
    state.update(connected=False)
    now[0] = 10
    assert read("modelplane_snapshot_lag_seconds") == 0  # first seen lost now
    now[0] = 25
    assert read("modelplane_snapshot_lag_seconds") == 15


@pytest.mark.parametrize(("raw", "expected"), [
    (None, "127.0.0.1:9464"), ("", ""), ("off", ""), ("0.0.0.0:9000", "0.0.0.0:9000"), ("[::1]:9464", "[::1]:9464"),
])
def test_metrics_listen_setting(raw: str | None, expected: str) -> None:
    environ = {} if raw is None else {"X_METRICS_LISTEN": raw}
    assert metrics.metrics_listen_from_env(Env(environ=environ), "X_METRICS_LISTEN", "127.0.0.1:9464") == expected


@pytest.mark.parametrize("raw", ["9464", "host:", "host:http", "host:70000"])
def test_bad_metrics_listen_names_the_variable(raw: str) -> None:
    with pytest.raises(SettingsError, match="X_METRICS_LISTEN"):
        metrics.metrics_listen_from_env(Env(environ={"X_METRICS_LISTEN": raw}), "X_METRICS_LISTEN", "127.0.0.1:9464")
