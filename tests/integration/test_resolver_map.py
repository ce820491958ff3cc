"""The live map of resolvers: a watch that names its resolver registers it,
acks say what it applied, every config_svc replica lists the same map (it
is in Postgres), and a resolver not heard from expires."""

from __future__ import annotations

import asyncio
import contextlib

import grpc
import pytest

from modelplane_server.domain.types import Role
from modelplane.v1 import config_service_pb2 as cs
from tests.harness import ConfigHarness, config_settings, start_config
from tests.integration.helpers import fails, provider, raw, revision
from tests.resolver_harness import eventually

pytestmark = pytest.mark.integration

config_running = contextlib.asynccontextmanager(start_config)
Code = grpc.StatusCode


def who(resolver_id: str) -> cs.ResolverIdentity:
    return cs.ResolverIdentity(id=resolver_id, host="node-1", version="0.2.0")


async def listed(cfg: ConfigHarness) -> dict[str, cs.ResolverStatus]:
    answer = await cfg.stub.ListResolvers(cs.ListResolversRequest(), metadata=cfg.admin)
    return {r.resolver.id: r for r in answer.resolvers}


async def test_watching_acking_and_leaving_as_both_replicas_see_it(database_url: str) -> None:
    async with config_running(config_settings(database_url)) as a, \
            config_running(config_settings(database_url)) as b:
        service = await a.md(Role.SERVICE, "resolver")
        await provider(a, "anthropic")
        stream = a.stub.WatchConfig(cs.WatchConfigRequest(resolver=who("r-1")), metadata=service)
        first = await stream.read()
        assert first.HasField("snapshot")

        seen = (await listed(b))["r-1"]  # on the other replica: the map is shared
        assert seen.watching and seen.config_svc.endswith(f":{a.server.port}")
        assert seen.resolver.host == "node-1" and seen.resolver.version == "0.2.0"
        assert seen.applied_revision == 0 and seen.lag == await revision(a) > 0
        assert seen.connect_time.seconds and seen.heartbeat_time.seconds

        await b.stub.AckConfig(cs.AckConfigRequest(resolver=who("r-1"), applied_revision=first.revision,
                                                   epoch=first.epoch), metadata=service)
        await provider(a, "openai")  # one revision it has not acknowledged yet
        answer = await a.stub.ListResolvers(cs.ListResolversRequest(), metadata=a.admin)
        (status,) = answer.resolvers
        assert status.applied_revision == first.revision and status.epoch == first.epoch == answer.epoch
        assert status.lag == answer.revision - first.revision == 1
        assert status.watching  # an ack through another replica leaves the stream's registration alone

        stream.cancel()

        async def left() -> None:
            assert not (await listed(b))["r-1"].watching

        await eventually(left)
        status = (await listed(b))["r-1"]
        assert status.config_svc == "" and not status.HasField("connect_time")  # still live: it acked lately


async def test_a_resolver_not_heard_from_expires(database_url: str) -> None:
    async with config_running(config_settings(database_url, resolver_expiry_seconds=1.0)) as cfg:
        service = await cfg.md(Role.SERVICE, "resolver")
        await cfg.stub.AckConfig(cs.AckConfigRequest(resolver=who("quiet")), metadata=service)
        await cfg.stub.AckConfig(cs.AckConfigRequest(resolver=who("chatty")), metadata=service)
        assert set(await listed(cfg)) == {"quiet", "chatty"}
        for _ in range(8):
            await asyncio.sleep(0.2)
            await cfg.stub.AckConfig(cs.AckConfigRequest(resolver=who("chatty"), applied_revision=1),
                                     metadata=service)
        assert set(await listed(cfg)) == {"chatty"}

        async def forgotten() -> None:  # config_svc's refresh loop deletes the row too
            await cfg.server.resolver_map.refresh()
            assert [r["id"] for r in await raw(cfg, "SELECT id FROM resolvers")] == ["chatty"]

        await eventually(forgotten)


async def test_bad_reports_are_refused_and_nothing_is_stored(cfg: ConfigHarness) -> None:
    service = await cfg.md(Role.SERVICE, "resolver")
    bad = [
        (cs.AckConfigRequest(), "resolver.id"),
        (cs.AckConfigRequest(resolver=cs.ResolverIdentity(id="has space")), "resolver.id"),
        (cs.AckConfigRequest(resolver=cs.ResolverIdentity(id="x" * 129)), "resolver.id"),
        (cs.AckConfigRequest(resolver=cs.ResolverIdentity(id="r", host="a\nb")), "resolver.host"),
        (cs.AckConfigRequest(resolver=cs.ResolverIdentity(id="r", version="v" * 65)), "resolver.version"),
        (cs.AckConfigRequest(resolver=cs.ResolverIdentity(id="r"), applied_revision=-1), "applied_revision"),
        (cs.AckConfigRequest(resolver=cs.ResolverIdentity(id="r"), epoch="e" * 129), "epoch"),
    ]
    for request, field in bad:
        await fails(cfg.stub.AckConfig(request, metadata=service), Code.INVALID_ARGUMENT, field=field)
    stream = cfg.stub.WatchConfig(cs.WatchConfigRequest(resolver=cs.ResolverIdentity(id="bad id")),
                                  metadata=service)
    await fails(stream.read(), Code.INVALID_ARGUMENT, field="resolver.id")
    assert await raw(cfg, "SELECT id FROM resolvers") == []
    await fails(cfg.stub.ListResolvers(cs.ListResolversRequest(page_size=501), metadata=cfg.admin),
                Code.INVALID_ARGUMENT, field="page_size")
    await fails(cfg.stub.ListResolvers(cs.ListResolversRequest(page_token="nope"), metadata=cfg.admin),
                Code.INVALID_ARGUMENT, field="page_token")


async def test_list_resolvers_pages_by_id(cfg: ConfigHarness) -> None:
    service = await cfg.md(Role.SERVICE, "resolver")
    for n in range(5):
        await cfg.stub.AckConfig(cs.AckConfigRequest(resolver=who(f"r-{n}")), metadata=service)
    ids, token = [], ""
    while True:
        page = await cfg.stub.ListResolvers(cs.ListResolversRequest(page_size=2, page_token=token),
                                            metadata=cfg.admin)
        ids += [r.resolver.id for r in page.resolvers]
        token = page.next_page_token
        if not token:
            break
    assert ids == [f"r-{n}" for n in range(5)]


async def test_an_anonymous_watch_is_not_listed(cfg: ConfigHarness) -> None:
    stream = cfg.stub.WatchConfig(cs.WatchConfigRequest(), metadata=cfg.admin)  # the CLI's `modelplane watch`
    assert (await stream.read()).HasField("snapshot")
    assert await listed(cfg) == {}
    stream.cancel()
