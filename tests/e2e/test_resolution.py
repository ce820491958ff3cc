"""Both services, real Postgres: what is written through config_svc is what
the resolver answers, without a restart, and the resolver keeps answering
while config_svc is away."""

from __future__ import annotations

from typing import Any, Awaitable

import grpc
import pytest
from google.protobuf import field_mask_pb2

from modelplane.client import NO_RETRY, AsyncModelplaneClient
from modelplane_server.domain import paging
from modelplane_server.runtime import tokens
from modelplane_server.domain.types import Role
from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import resolver_service_pb2 as rs
from modelplane.v1 import resources_pb2 as pb
from tests.e2e.conftest import Stack
from tests.harness import ConfigHarness, Metadata
from tests.integration.helpers import fails
from tests.resolver_harness import error_reason, eventually

pytestmark = pytest.mark.e2e

ROOT = pb.OVERRIDE_CONTEXT_ROOT
GENERAL = pb.OVERRIDE_CONTEXT_GENERAL


async def failure(call: Awaitable[object]) -> grpc.aio.AioRpcError:
    """The error a call fails with; AssertionError (which eventually() retries) if it succeeds."""
    try:
        await call
    except grpc.aio.AioRpcError as err:
        return err
    raise AssertionError("the call succeeded")


async def seed(cfg: ConfigHarness) -> None:
    """anthropic (central key) with opus (the default) and haiku; openrouter
    (no central key: users' own keys only) with llama."""
    admin = cfg.admin
    await cfg.stub.CreateProvider(cs.CreateProviderRequest(provider=pb.Provider(
        name="anthropic", type=pb.PROVIDER_TYPE_ANTHROPIC, api_key="sk-ant-central-canary")), metadata=admin)
    await cfg.stub.CreateProvider(cs.CreateProviderRequest(provider=pb.Provider(
        name="openrouter", type=pb.PROVIDER_TYPE_OPENROUTER)), metadata=admin)
    for name, provider, ident, label in [("opus", "anthropic", "claude-opus-4-6", "Claude Opus"),
                                         ("haiku", "anthropic", "claude-haiku-4-5", "Claude Haiku"),
                                         ("llama", "openrouter", "meta/llama-4", "Llama 4")]:
        await cfg.stub.CreateModel(cs.CreateModelRequest(model=pb.Model(
            name=name, provider=provider, model_identifier=ident, display_name=label,
            context_limit=200_000)), metadata=admin)


async def set_settings(cfg: ConfigHarness, **flags: bool) -> None:
    await cfg.stub.UpdateSettings(cs.UpdateSettingsRequest(
        settings=pb.Settings(**flags), update_mask=field_mask_pb2.FieldMask(paths=list(flags))),
        metadata=cfg.admin)


async def expect_model(stack: Stack, md: Metadata, name: str, layer: int, context: int = ROOT,
                       **kw: str) -> rs.ResolvedModel:
    async def check() -> rs.ResolvedModel:
        got = await stack.resolver.resolve_model(md, context, **kw)
        assert (got.model.name, got.layer) == (name, layer), (got.model.name, got.layer)
        return got
    return await eventually(check)


async def test_resolves_from_the_snapshot(stack: Stack) -> None:
    await seed(stack.cfg)
    alice = await stack.cfg.md(Role.MEMBER, "alice")
    got = await expect_model(stack, alice, "opus", rs.RESOLUTION_LAYER_DEFAULT_MODEL)
    assert got.provider.name == "anthropic" and not got.provider.api_key
    assert got.provider.effective_base_url == "https://api.anthropic.com"
    assert got.credential == cs.CREDENTIAL_SOURCE_CENTRAL_KEY
    assert got.compaction_threshold_tokens == 140_000
    assert [s.outcome for s in got.trace] == [
        rs.LAYER_OUTCOME_NOT_SET, rs.LAYER_OUTCOME_NOT_APPLICABLE, rs.LAYER_OUTCOME_NOT_SET,
        rs.LAYER_OUTCOME_USED, rs.LAYER_OUTCOME_NOT_REACHED]

    async def both_listed() -> rs.ListAvailableModelsResponse:
        # The seed is several writes: opus resolving says nothing of haiku's arrival.
        listed = await stack.resolver.available(alice)
        assert [(g.provider, [m.name for m in g.models]) for g in listed.groups] == \
            [("anthropic", ["haiku", "opus"])]
        return listed
    listed = await eventually(both_listed)
    assert (listed.preselected_model, listed.preselection) == ("opus", rs.PRESELECTION_DEFAULT)
    listed = await stack.resolver.available(alice, last_used="haiku")
    assert (listed.preselected_model, listed.preselection) == ("haiku", rs.PRESELECTION_LAST_USED)

    cred = await stack.resolver.credential(alice, "openrouter")
    assert (cred.source, cred.fixable_by) == (cs.CREDENTIAL_SOURCE_UNAVAILABLE, rs.FIXABLE_BY_ADMIN)
    status = await stack.resolver.key_status(alice)
    assert not status.byok_enabled
    assert [(p.provider, p.status) for p in status.providers] == [
        ("anthropic", rs.KEY_STATUS_USING_SHARED_KEY), ("openrouter", rs.KEY_STATUS_NO_KEY)]


async def test_model_changes_are_reflected(stack: Stack) -> None:
    cfg = stack.cfg
    await seed(cfg)
    alice = await cfg.md(Role.MEMBER, "alice")
    await expect_model(stack, alice, "opus", rs.RESOLUTION_LAYER_DEFAULT_MODEL)

    await cfg.stub.UpdateModel(cs.UpdateModelRequest(
        model=pb.Model(name="opus", enabled=False), update_mask=field_mask_pb2.FieldMask(paths=["enabled"])),
        metadata=cfg.admin)
    got = await expect_model(stack, alice, "haiku", rs.RESOLUTION_LAYER_FIRST_AVAILABLE)
    default_step = got.trace[3]
    assert (default_step.outcome, default_step.skip_reason) == (rs.LAYER_OUTCOME_SKIPPED,
                                                               rs.SKIP_REASON_MODEL_DISABLED)

    # The chat's model wins over the (disabled) default; deleting it falls through.
    await expect_model(stack, alice, "haiku", rs.RESOLUTION_LAYER_CHAT_MODEL, chat_model="haiku")
    await cfg.stub.DeleteModel(cs.DeleteModelRequest(name="haiku"), metadata=cfg.admin)

    async def nothing_usable() -> None:
        err = await failure(stack.resolver.resolve_model(alice, ROOT, chat_model="haiku"))
        assert (err.code(), error_reason(err)) == (grpc.StatusCode.FAILED_PRECONDITION, "NO_USABLE_MODEL")
    await eventually(nothing_usable)

    listed = await stack.resolver.available(alice)
    assert not listed.groups and listed.empty_reason == rs.EMPTY_REASON_NONE_WITH_CREDENTIALS


async def test_admin_override_set_and_cleared(stack: Stack) -> None:
    cfg = stack.cfg
    await seed(cfg)
    alice = await cfg.md(Role.MEMBER, "alice")
    await cfg.stub.SetModelOverride(cs.SetModelOverrideRequest(context=GENERAL, model="haiku"), metadata=cfg.admin)
    await expect_model(stack, alice, "haiku", rs.RESOLUTION_LAYER_ADMIN_OVERRIDE, GENERAL)
    # Admin overrides never apply to root chats.
    await expect_model(stack, alice, "opus", rs.RESOLUTION_LAYER_DEFAULT_MODEL, ROOT)
    await cfg.stub.ClearModelOverride(cs.ClearModelOverrideRequest(context=GENERAL), metadata=cfg.admin)
    await expect_model(stack, alice, "opus", rs.RESOLUTION_LAYER_DEFAULT_MODEL, GENERAL)


async def test_user_keys_and_byok_switch(stack: Stack) -> None:
    cfg = stack.cfg
    await seed(cfg)
    alice = await cfg.md(Role.MEMBER, "alice")
    await set_settings(cfg, byok_enabled=True)

    async def openrouter_is(source: int, fixable_by: int = rs.FIXABLE_BY_UNSPECIFIED) -> None:
        async def check() -> None:
            cred = await stack.resolver.credential(alice, "openrouter")
            assert (cred.source, cred.fixable_by) == (source, fixable_by), cred
        await eventually(check)

    await openrouter_is(cs.CREDENTIAL_SOURCE_UNAVAILABLE, rs.FIXABLE_BY_USER)
    await cfg.stub.SetUserKey(cs.SetUserKeyRequest(provider="openrouter", api_key="sk-or-alice-canary"),
                              metadata=alice)
    await openrouter_is(cs.CREDENTIAL_SOURCE_USER_KEY)
    listed = await stack.resolver.available(alice)
    assert [g.provider for g in listed.groups] == ["anthropic", "openrouter"]
    status = await stack.resolver.key_status(alice)
    assert status.byok_enabled and status.providers[1].status == rs.KEY_STATUS_KEY_SAVED

    # The resolver can read the plaintext for upstream calls (and drops it on change).
    assert await stack.resolver.server.credentials.get("openrouter", "alice") == "sk-or-alice-canary"

    await cfg.stub.DeleteUserKey(cs.DeleteUserKeyRequest(provider="openrouter"), metadata=alice)
    await openrouter_is(cs.CREDENTIAL_SOURCE_UNAVAILABLE, rs.FIXABLE_BY_USER)
    assert len(stack.resolver.server.credentials) == 0

    await cfg.stub.SetUserKey(cs.SetUserKeyRequest(provider="openrouter", api_key="sk-or-alice-canary"),
                              metadata=alice)
    await openrouter_is(cs.CREDENTIAL_SOURCE_USER_KEY)
    await set_settings(cfg, byok_enabled=False)
    await openrouter_is(cs.CREDENTIAL_SOURCE_UNAVAILABLE, rs.FIXABLE_BY_ADMIN)
    listed = await stack.resolver.available(alice)
    assert [g.provider for g in listed.groups] == ["anthropic"]


async def test_personal_override_gate(stack: Stack) -> None:
    cfg = stack.cfg
    await seed(cfg)
    alice = await cfg.md(Role.MEMBER, "alice")
    await set_settings(cfg, personal_overrides_enabled=True)
    await cfg.stub.SetPersonalOverride(cs.SetPersonalOverrideRequest(context=ROOT, model="haiku"), metadata=alice)
    await expect_model(stack, alice, "haiku", rs.RESOLUTION_LAYER_PERSONAL_OVERRIDE)

    await set_settings(cfg, personal_overrides_enabled=False)
    got = await expect_model(stack, alice, "opus", rs.RESOLUTION_LAYER_DEFAULT_MODEL)
    assert (got.trace[0].outcome, got.trace[0].skip_reason) == (
        rs.LAYER_OUTCOME_SKIPPED, rs.SKIP_REASON_PERSONAL_OVERRIDES_DISABLED)

    # Another user is unaffected by alice's override.
    await set_settings(cfg, personal_overrides_enabled=True)
    await expect_model(stack, alice, "haiku", rs.RESOLUTION_LAYER_PERSONAL_OVERRIDE)
    bob = await cfg.md(Role.MEMBER, "bob")
    await expect_model(stack, bob, "opus", rs.RESOLUTION_LAYER_DEFAULT_MODEL)


async def test_members_ask_only_about_themselves(stack: Stack) -> None:
    cfg = stack.cfg
    await seed(cfg)
    alice = await cfg.md(Role.MEMBER, "alice")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.resolver.resolve_model(alice, ROOT, user="bob")
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED and error_reason(err.value) == "OTHER_USER"

    service = await cfg.md(Role.SERVICE, "agent-runner")
    got = await stack.resolver.resolve_model(service, ROOT, user="bob")
    assert got.model.name == "opus"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.resolver.resolve_model(service, ROOT)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.resolver.resolve_model((("authorization", "Bearer mp_000000000000_" + "x" * 43),), ROOT)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED and error_reason(err.value) == "TOKEN_INVALID"


async def test_revoked_token_stops_working(stack: Stack) -> None:
    cfg = stack.cfg
    await seed(cfg)
    token = await cfg.token(Role.MEMBER, "alice")
    alice = (("authorization", f"Bearer {token}"),)
    await stack.resolver.resolve_model(alice)  # verified and cached
    await cfg.stub.RevokeApiToken(cs.RevokeApiTokenRequest(id=tokens.parse(token)[0]), metadata=cfg.admin)

    async def refused() -> None:
        err = await failure(stack.resolver.resolve_model(alice))
        assert (err.code(), error_reason(err)) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID")
    await eventually(refused)


async def test_hot_path_makes_no_config_calls(stack: Stack) -> None:
    await seed(stack.cfg)
    alice = await stack.cfg.md(Role.MEMBER, "alice")
    await expect_model(stack, alice, "opus", rs.RESOLUTION_LAYER_DEFAULT_MODEL)
    def calls() -> dict[str, int]:
        # Events config_svc pushes on the open watch (heartbeats on a loaded
        # machine) are not calls the hot path makes.
        return {k: v for k, v in stack.resolver.server.config_calls().items() if k != "WatchConfig.events"}
    before = calls()
    assert before, "the counters must see the calls made so far"
    for _ in range(20):
        await stack.resolver.resolve_model(alice)
        await stack.resolver.available(alice)
        await stack.resolver.key_status(alice)
        await stack.resolver.credential(alice, "anthropic")
    assert calls() == before


async def test_a_refused_service_token_is_the_resolvers_fault_not_the_callers(stack: Stack) -> None:
    """config_svc refusing the resolver's own token is UNAVAILABLE for
    callers (an operator must fix it), never UNAUTHENTICATED, which would
    make a client throw away a good token. Only config_svc's verdict about
    the caller's token is UNAUTHENTICATED."""
    cfg = stack.cfg
    await seed(cfg)
    unknown = (("authorization", f"Bearer {tokens.mint().token}"),)  # well-formed, never stored
    err = await failure(stack.resolver.resolve_model(unknown))
    assert (err.code(), error_reason(err)) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID")

    await cfg.stub.RevokeApiToken(cs.RevokeApiTokenRequest(id=tokens.parse(stack.service_token)[0]),
                                  metadata=cfg.admin)
    alice = await cfg.md(Role.MEMBER, "alice")  # a good token the resolver has not verified yet
    for md in (alice, unknown):
        err = await failure(stack.resolver.resolve_model(md))
        assert (err.code(), error_reason(err)) == (grpc.StatusCode.UNAVAILABLE, "CONFIG_UNAVAILABLE")
        assert "RESOLVER_SERVICE_TOKEN" in (err.details() or "")


async def test_available_models_come_a_page_at_a_time(stack: Stack) -> None:
    """page_size models a page; a provider split across pages heads a group
    on each; a token continues after its page's last model, and the client
    joins every page into one answer."""
    cfg = stack.cfg
    await seed(cfg)
    alice = await cfg.md(Role.MEMBER, "alice")
    await cfg.stub.CreateModel(cs.CreateModelRequest(model=pb.Model(
        name="sonnet", provider="anthropic", model_identifier="claude-sonnet-4-6", display_name="Claude Sonnet",
        context_limit=200_000)), metadata=cfg.admin)
    whole = [("anthropic", ["haiku", "opus", "sonnet"])]

    async def listed() -> None:
        got = await stack.resolver.available(alice)
        assert [(g.provider, [m.name for m in g.models]) for g in got.groups] == whole
        assert got.next_page_token == ""
    await eventually(listed)

    pages: list[rs.ListAvailableModelsResponse] = []
    token = ""
    while True:
        page = await stack.resolver.stub.ListAvailableModels(
            rs.ListAvailableModelsRequest(page_size=2, page_token=token), metadata=alice)
        pages.append(page)
        token = page.next_page_token
        if not token:
            break
    assert [[(g.provider, [m.name for m in g.models]) for g in p.groups] for p in pages] == [
        [("anthropic", ["haiku", "opus"])], [("anthropic", ["sonnet"])]]
    # Every page speaks for the whole list.
    assert {(p.preselected_model, p.preselection) for p in pages} == {("opus", rs.PRESELECTION_DEFAULT)}

    # A model listed on the first page goes away: the second page is unchanged.
    await cfg.stub.DeleteModel(cs.DeleteModelRequest(name="haiku"), metadata=cfg.admin)

    async def haiku_gone() -> None:
        got = await stack.resolver.available(alice)
        assert [m.name for g in got.groups for m in g.models] == ["opus", "sonnet"]
    await eventually(haiku_gone)
    second = await stack.resolver.stub.ListAvailableModels(
        rs.ListAvailableModelsRequest(page_size=2, page_token=pages[0].next_page_token), metadata=alice)
    assert [m.name for g in second.groups for m in g.models] == ["sonnet"]

    async with AsyncModelplaneClient(cfg.address, stack.resolver.address, token=await cfg.token(Role.MEMBER, "alice"),
                                     retry=NO_RETRY) as mp:
        joined = await mp.list_available_models(page_size=1)
    assert [(g.provider, [m.name for m in g.models]) for g in joined.groups] == [("anthropic", ["opus", "sonnet"])]
    assert (joined.preselected_model, joined.next_page_token) == ("opus", "")


@pytest.mark.parametrize(("request_fields", "field"), [
    ({"page_size": -1}, "page_size"),
    ({"page_size": 501}, "page_size"),
    ({"page_token": "not a token"}, "page_token"),
    ({"page_token": paging.encode(["anthropic", "x"])}, "page_token"),  # a token of another shape
])
async def test_bad_pages_of_available_models_name_the_field(stack: Stack, request_fields: dict[str, Any],
                                                            field: str) -> None:
    alice = await stack.cfg.md(Role.MEMBER, "alice")
    failed = await fails(stack.resolver.stub.ListAvailableModels(
        rs.ListAvailableModelsRequest(**request_fields), metadata=alice), grpc.StatusCode.INVALID_ARGUMENT,
        field=field)
    assert list(failed.violations) == [field]
