"""Metrics of read-your-writes over real endpoints: the resolver's
write-to-visible histogram and min_revision outcomes; config_svc's live map
(each resolver's applied revision and lag)."""

from __future__ import annotations

import contextlib

import grpc
import pytest

from modelplane_server.domain.types import Role
from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import resolver_service_pb2 as rs
from modelplane.v1 import resources_pb2 as pb
from tests.e2e.test_resolver_metrics import scrape, value
from tests.harness import ConfigHarness, config_settings, start_config
from tests.resolver_harness import eventually, start_resolver

pytestmark = pytest.mark.e2e

config_running = contextlib.asynccontextmanager(start_config)
resolver_running = contextlib.asynccontextmanager(start_resolver)


async def create_provider(cfg: ConfigHarness, name: str) -> pb.Provider:
    provider: pb.Provider = await cfg.stub.CreateProvider(cs.CreateProviderRequest(provider=pb.Provider(
        name=name, type=pb.PROVIDER_TYPE_ANTHROPIC, api_key="sk-ant-0123456789")), metadata=cfg.admin)
    return provider


async def test_write_to_visible_min_revision_and_the_map_in_metrics(database_url: str) -> None:
    async with config_running(config_settings(database_url, metrics_listen="127.0.0.1:0")) as cfg:
        token = await cfg.token(Role.SERVICE, "resolver")
        async with resolver_running(cfg.address, token, metrics_listen="127.0.0.1:0") as resolver:
            assert resolver.server.metrics_endpoint is not None and cfg.server.metrics_endpoint is not None
            member = await cfg.md(Role.MEMBER, "alice")
            for n in range(5):
                written = await create_provider(cfg, f"p{n}")
                await resolver.stub.ListUserKeyStatus(rs.ListUserKeyStatusRequest(min_revision=written.revision),
                                                      metadata=member)
            await resolver.stub.ListUserKeyStatus(rs.ListUserKeyStatusRequest(min_revision=written.revision),
                                                  metadata=member)  # applied by now for sure
            with pytest.raises(grpc.aio.AioRpcError):
                await resolver.stub.ListUserKeyStatus(
                    rs.ListUserKeyStatusRequest(min_revision=written.revision + 100), metadata=member, timeout=0.2)

            samples = await scrape(resolver.server.metrics_endpoint.port)
            assert value(samples, "modelplane_write_to_visible_seconds_count") >= 5  # one per change event
            assert value(samples, "modelplane_write_to_visible_seconds_bucket", le="+Inf") >= 5
            asked = {result: value(samples, "modelplane_min_revision_requests_total", result=result)
                     for result in ("satisfied", "waited", "not_reached")}
            assert asked["satisfied"] + asked["waited"] == 6 and asked["satisfied"] >= 1
            assert asked["not_reached"] == 1
            assert value(samples, "modelplane_min_revision_wait_seconds_count") == asked["waited"] + 1

            resolver_id = resolver.server.reporter.identity.id
            host = resolver.server.reporter.identity.host

            async def mapped() -> None:
                await cfg.server.resolver_map.refresh()  # the loop does it every 2 s
                samples = await scrape(cfg.server.metrics_endpoint.port)  # type: ignore[union-attr]
                current = value(samples, "modelplane_config_revision")
                assert current == await cfg.server.store.current_revision()
                assert value(samples, "modelplane_resolver_applied_revision", resolver=resolver_id,
                             host=host) == current
                assert (("modelplane_resolver_lag_revisions", frozenset({("resolver", resolver_id),
                                                                        ("host", host)})) in samples)
                assert value(samples, "modelplane_resolver_lag_revisions", resolver=resolver_id, host=host) == 0

            await eventually(mapped, timeout=10, interval=0.2)
