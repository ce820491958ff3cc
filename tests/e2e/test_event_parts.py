"""An event larger than one part reaches the resolver whole: config_svc
sends a snapshot, or one revision's changes, in parts to a resolver that
accepts them, the resolver merges them and applies the whole at once."""

from __future__ import annotations

import pytest

from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import resolver_service_pb2 as rs
from modelplane.v1 import resources_pb2 as pb
from modelplane_server import event_parts
from modelplane_server.domain.types import Role
from tests.harness import ConfigHarness
from tests.resolver_harness import start_resolver

pytestmark = pytest.mark.e2e


async def test_a_snapshot_in_parts_is_applied_whole(cfg: ConfigHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    await cfg.stub.CreateProvider(cs.CreateProviderRequest(provider=pb.Provider(
        name="local", type=pb.PROVIDER_TYPE_OPENAI_COMPATIBLE, base_url="https://models.example.com/v1",
        api_key="sk-local-0123456789abcdef")), metadata=cfg.admin)
    for i in range(30):
        await cfg.stub.CreateModel(cs.CreateModelRequest(model=pb.Model(
            name=f"model-{i:02d}", provider="local", model_identifier=f"vendor/model-{i}",
            display_name=f"Model {i:02d}", context_limit=100_000)), metadata=cfg.admin)
    monkeypatch.setattr(event_parts, "PART_BYTES", 512)  # about 3 kB of models: five or more parts
    service_token = await cfg.token(Role.SERVICE, "resolver")
    async for resolver in start_resolver(cfg.address, service_token):
        client = resolver.server.config
        assert client.counters()["WatchConfig.events"] >= 4  # the parts, each counted as received
        assert len(resolver.server.snapshot.current().state.models) == 30
        member = await cfg.md(Role.MEMBER, "alice")
        listed = await resolver.stub.ListAvailableModels(rs.ListAvailableModelsRequest(), metadata=member)
        assert [m.name for g in listed.groups for m in g.models] == [f"model-{i:02d}" for i in range(30)]


async def test_one_revisions_changes_in_parts_are_applied_whole(cfg: ConfigHarness,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    await cfg.stub.CreateProvider(cs.CreateProviderRequest(provider=pb.Provider(
        name="local", type=pb.PROVIDER_TYPE_OPENAI_COMPATIBLE, base_url="https://models.example.com/v1",
        api_key="sk-local-0123456789abcdef")), metadata=cfg.admin)
    for i in range(30):
        await cfg.stub.CreateModel(cs.CreateModelRequest(model=pb.Model(
            name=f"model-{i:02d}", provider="local", model_identifier=f"vendor/model-{i}",
            display_name=f"Model {i:02d}", context_limit=100_000)), metadata=cfg.admin)
    service_token = await cfg.token(Role.SERVICE, "resolver")
    async for resolver in start_resolver(cfg.address, service_token):
        client = resolver.server.config
        snapshot = resolver.server.snapshot
        assert len(snapshot.current().state.models) == 30
        before = client.counters()["WatchConfig.events"]
        # Deleting the provider with force deletes its 30 models in one
        # revision: about 600 bytes of changes, so several 128-byte parts.
        monkeypatch.setattr(event_parts, "PART_BYTES", 128)
        applied: list[int] = []  # the models after each event the resolver applied
        apply = snapshot.apply

        def recording(event: cs.ConfigEvent) -> object:
            result = apply(event)
            applied.append(len(snapshot.current().state.models))
            return result

        monkeypatch.setattr(snapshot, "apply", recording)
        deleted = cfg.stub.DeleteProvider(cs.DeleteProviderRequest(name="local", force=True), metadata=cfg.admin)
        await deleted
        revision = int(dict(await deleted.trailing_metadata())["x-modelplane-revision"])
        assert await snapshot.applied.wait(revision, timeout=10)
        assert client.counters()["WatchConfig.events"] - before >= 4  # the parts, each counted as received
        assert snapshot.current().state.models == {}
        assert applied and set(applied) <= {0, 30}  # never a revision half applied
