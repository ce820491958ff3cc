"""Every ConfigService answer says which config revision it reflects: a
write the revision it committed, a read the one it saw, in the trailing
metadata x-modelplane-revision and in the answer's revision field."""

from __future__ import annotations

import asyncio
from typing import Any, Callable

import grpc
import pytest

from modelplane_server.domain.types import Role
from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import resources_pb2 as pb
from tests.harness import ConfigHarness, Metadata
from tests.integration.helpers import fails, provider, revision

pytestmark = pytest.mark.integration

REVISION_KEY = "x-modelplane-revision"
Call = Callable[..., Any]


async def answered(method: Call, request: Any, md: Metadata) -> tuple[Any, dict[str, str]]:
    """The answer and its trailing metadata."""
    call = method(request, metadata=md)
    response = await call
    return response, {k: v for k, v in (await call.trailing_metadata() or ()) if isinstance(v, str)}


async def last_audited(cfg: ConfigHarness) -> int:
    return int(await cfg.server.store.pool.fetchval("SELECT max(revision) FROM audit_events"))


async def test_a_write_answers_the_revision_it_committed(cfg: ConfigHarness) -> None:
    stub, admin = cfg.stub, cfg.admin
    writes: list[tuple[Call, Any, Metadata]] = [
        (stub.CreateProvider, cs.CreateProviderRequest(provider=pb.Provider(
            name="openai", type=pb.PROVIDER_TYPE_OPENAI, api_key="sk-central-0123456789")), admin),
        (stub.CreateModel, cs.CreateModelRequest(model=pb.Model(
            provider="openai", model_identifier="gpt-x", display_name="GPT X", context_limit=1000)), admin),
        (stub.UpdateSettings, cs.UpdateSettingsRequest(settings=pb.Settings(byok_enabled=True),
                                                       update_mask={"paths": ["byok_enabled"]}), admin),
        (stub.SetModelOverride, cs.SetModelOverrideRequest(context=pb.OVERRIDE_CONTEXT_GENERAL,
                                                           model="openai-gpt-x"), admin),
        (stub.SetUserKey, cs.SetUserKeyRequest(provider="openai", api_key="sk-alice-0123456789"),
         await cfg.md(Role.MEMBER, "alice")),
        (stub.CreateApiToken, cs.CreateApiTokenRequest(token=pb.ApiToken(role=pb.ROLE_MEMBER, subject="bob")), admin),
        (stub.ClearModelOverride, cs.ClearModelOverrideRequest(context=pb.OVERRIDE_CONTEXT_GENERAL), admin),
        (stub.DeleteModel, cs.DeleteModelRequest(name="openai-gpt-x"), admin),
        # Governance writes are configuration like the rest.
        (stub.CreateGroup, cs.CreateGroupRequest(group=pb.Group(name="platform", members=["alice"])), admin),
        (stub.UpdateGroup, cs.UpdateGroupRequest(group=pb.Group(name="platform", description="the platform team"),
                                                 update_mask={"paths": ["description"]}), admin),
        (stub.AddGroupMembers, cs.AddGroupMembersRequest(group="platform", users=["bob"]), admin),
        (stub.RemoveGroupMembers, cs.RemoveGroupMembersRequest(group="platform", users=["alice"]), admin),
        (stub.SetSpendLimit, cs.SetSpendLimitRequest(limit=pb.SpendLimit(
            group="platform", period=pb.SPEND_PERIOD_DAY, limit_micro_usd=5_000_000)), admin),
        (stub.ClearSpendLimit, cs.ClearSpendLimitRequest(group="platform", period=pb.SPEND_PERIOD_DAY), admin),
        (stub.DeleteGroup, cs.DeleteGroupRequest(name="platform"), admin),
    ]
    seen = []
    for method, request, md in writes:
        response, trailers = await answered(method, request, md)
        committed = await last_audited(cfg)  # the audit event of this very write
        assert trailers[REVISION_KEY] == str(committed), method
        assert trailers["x-request-id"]  # the request id is kept beside it
        if "revision" in response.DESCRIPTOR.fields_by_name:
            assert response.revision == committed, method
        seen.append(committed)
    assert seen == sorted(seen) and len(set(seen)) == len(seen)


async def test_a_read_answers_the_revision_it_saw(cfg: ConfigHarness) -> None:
    stub, admin = cfg.stub, cfg.admin
    created = await provider(cfg, "anthropic")
    service = await cfg.md(Role.SERVICE, "resolver")  # a later write: reads see a newer revision than the create
    now = await revision(cfg)
    assert now > created.revision
    reads: list[tuple[Call, Any, Metadata]] = [
        (stub.GetProvider, cs.GetProviderRequest(name="anthropic"), admin),
        (stub.ListProviders, cs.ListProvidersRequest(), admin),
        (stub.GetSettings, cs.GetSettingsRequest(), admin),
        (stub.ListModelOverrides, cs.ListModelOverridesRequest(), admin),
        (stub.ListAuditEvents, cs.ListAuditEventsRequest(page_size=2), admin),
        (stub.ListUserKeys, cs.ListUserKeysRequest(user="alice"), admin),
        (stub.ListResolvers, cs.ListResolversRequest(), admin),
        (stub.GetUserConfig, cs.GetUserConfigRequest(user="alice"), service),
        (stub.ListGroups, cs.ListGroupsRequest(), admin),
        (stub.ListSpendLimits, cs.ListSpendLimitsRequest(), admin),
    ]
    for method, request, md in reads:
        response, trailers = await answered(method, request, md)
        assert trailers[REVISION_KEY] == str(now), method
        assert response.revision == now, method
    # A deletion answers google.protobuf.Empty: the trailer alone says it.
    deleted, trailers = await answered(stub.DeleteProvider, cs.DeleteProviderRequest(name="anthropic"), admin)
    assert deleted.ByteSize() == 0 and trailers[REVISION_KEY] == str(await last_audited(cfg)) == str(now + 1)


async def test_no_revision_where_nothing_was_read_or_done(cfg: ConfigHarness) -> None:
    _, trailers = await answered(cfg.stub.GetModelOptionsSchema,
                                 cs.GetModelOptionsSchemaRequest(provider_type=pb.PROVIDER_TYPE_OPENAI), cfg.admin)
    assert REVISION_KEY not in trailers and trailers["x-request-id"]
    # Usage is not configuration: recording it commits no revision and reports none.
    recorded, trailers = await answered(cfg.stub.RecordUsage, cs.RecordUsageRequest(records=[cs.UsageRecord(
        id="u-1", user="alice", provider="openai", model="gpt", credential_source=cs.CREDENTIAL_SOURCE_CENTRAL_KEY,
        outcome=cs.USAGE_OUTCOME_FINISHED, end_time={"seconds": 1_750_000_000})]),
        await cfg.md(Role.SERVICE, "resolver"))
    assert recorded.inserted == 1 and REVISION_KEY not in trailers and trailers["x-request-id"]
    before = await revision(cfg)
    failed = await fails(cfg.stub.GetProvider(cs.GetProviderRequest(name="ghost"), metadata=cfg.admin),
                         grpc.StatusCode.NOT_FOUND)
    assert failed.reason == "PROVIDER_NOT_FOUND"
    try:
        await cfg.stub.DeleteModel(cs.DeleteModelRequest(name="ghost"), metadata=cfg.admin)
    except grpc.aio.AioRpcError as err:
        assert REVISION_KEY not in dict(err.trailing_metadata() or ())
    assert await revision(cfg) == before  # a failed write commits nothing


async def test_a_read_never_reports_less_than_it_showed(cfg: ConfigHarness) -> None:
    """The revision is read after the answer's rows: every row the answer
    shows is in that revision, however writes interleave."""
    stub, admin = cfg.stub, cfg.admin

    async def writer() -> None:
        for i in range(20):
            await provider(cfg, f"p{i}")

    async def reader() -> None:
        for _ in range(20):
            listed, trailers = await answered(stub.ListProviders, cs.ListProvidersRequest(), admin)
            created = {p.name: p for p in listed.providers}
            revision_seen = int(trailers[REVISION_KEY])
            assert listed.revision == revision_seen
            # Each provider the list shows was created at a revision it reports as reached.
            rows = await cfg.server.store.pool.fetch(
                "SELECT resource, revision FROM audit_events WHERE action = 'CreateProvider'")
            for row in rows:
                name = row["resource"].removeprefix("providers/")
                if name in created:
                    assert row["revision"] <= revision_seen

    await asyncio.gather(writer(), reader())
