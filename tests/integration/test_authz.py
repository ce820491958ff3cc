"""Authorization: each role (admin, member, service, no token, revoked token)
against each ConfigService RPC, as the proto documents it."""

from __future__ import annotations

from typing import Any, Callable

import grpc
import pytest

from modelplane_server.domain.types import Role
from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import resources_pb2 as pb
from tests.harness import ConfigHarness, Metadata, bearer
from tests.integration.helpers import audit_count, failure, fails, provider, settings

pytestmark = pytest.mark.integration

A, M, S = "admin", "member", "service"
Code = grpc.StatusCode

# RPC -> (request, roles allowed). Requests are built so an allowed caller gets
# a business answer (OK, NOT_FOUND, INVALID_ARGUMENT, ...) that is never an
# authentication or authorization error, and nothing is written.
TABLE: dict[str, tuple[Any, set[str]]] = {
    "CreateProvider": (cs.CreateProviderRequest(provider=pb.Provider(name="Bad Name")), {A}),
    "GetProvider": (cs.GetProviderRequest(name="ghost"), {A}),
    "ListProviders": (cs.ListProvidersRequest(), {A}),
    "UpdateProvider": (cs.UpdateProviderRequest(provider=pb.Provider(name="ghost"),
                                                update_mask={"paths": ["display_name"]}), {A}),
    "DeleteProvider": (cs.DeleteProviderRequest(name="ghost"), {A}),
    "CreateModel": (cs.CreateModelRequest(model=pb.Model(provider="ghost", model_identifier="x",
                                                         display_name="x", context_limit=1)), {A}),
    "GetModel": (cs.GetModelRequest(name="ghost"), {A}),
    "ListModels": (cs.ListModelsRequest(), {A}),
    "UpdateModel": (cs.UpdateModelRequest(model=pb.Model(name="ghost"), update_mask={"paths": ["display_name"]}),
                    {A}),
    "DeleteModel": (cs.DeleteModelRequest(name="ghost"), {A}),
    "SetDefaultModel": (cs.SetDefaultModelRequest(model="ghost"), {A}),
    "GetModelOptionsSchema": (cs.GetModelOptionsSchemaRequest(provider_type=pb.PROVIDER_TYPE_OPENAI), {A, M, S}),
    "GetSettings": (cs.GetSettingsRequest(), {A, M, S}),
    "UpdateSettings": (cs.UpdateSettingsRequest(update_mask={"paths": ["nope"]}), {A}),
    "SetModelOverride": (cs.SetModelOverrideRequest(context=pb.OVERRIDE_CONTEXT_GENERAL, model="ghost"), {A}),
    "ClearModelOverride": (cs.ClearModelOverrideRequest(context=pb.OVERRIDE_CONTEXT_GENERAL), {A}),
    "ListModelOverrides": (cs.ListModelOverridesRequest(), {A, S}),
    "SetPersonalOverride": (cs.SetPersonalOverrideRequest(user="alice", context=pb.OVERRIDE_CONTEXT_ROOT,
                                                          model="ghost"), {A, M, S}),
    "ClearPersonalOverride": (cs.ClearPersonalOverrideRequest(user="alice", context=pb.OVERRIDE_CONTEXT_ROOT),
                              {A, M, S}),
    "ListPersonalOverrides": (cs.ListPersonalOverridesRequest(user="alice"), {A, M, S}),
    "SetUserKey": (cs.SetUserKeyRequest(user="alice", provider="openai", api_key="sk-alice-0123456789"), {M, S}),
    "DeleteUserKey": (cs.DeleteUserKeyRequest(user="alice", provider="openai"), {A, M, S}),
    "ListUserKeys": (cs.ListUserKeysRequest(user="alice"), {A, M, S}),
    "ListAuditEvents": (cs.ListAuditEventsRequest(), {A}),
    "CreateApiToken": (cs.CreateApiTokenRequest(token=pb.ApiToken()), {A}),
    "ListApiTokens": (cs.ListApiTokensRequest(), {A}),
    "RevokeApiToken": (cs.RevokeApiTokenRequest(id="ghost"), {A}),
    "WatchConfig": (cs.WatchConfigRequest(), {A, S}),
    "GetUserConfig": (cs.GetUserConfigRequest(user="alice"), {A, M, S}),
    "GetUserConfigs": (cs.GetUserConfigsRequest(users=["alice"]), {A, S}),
    "AccessCredential": (cs.AccessCredentialRequest(provider="ghost"), {S}),
    "IntrospectToken": (None, {S}),  # filled in with a live token
    "AckConfig": (cs.AckConfigRequest(), {S}),  # no resolver id: refused, nothing recorded
    "ListResolvers": (cs.ListResolversRequest(), {A}),
    "CreateGroup": (cs.CreateGroupRequest(group=pb.Group(name="Bad Name")), {A}),
    "GetGroup": (cs.GetGroupRequest(name="ghost"), {A}),
    "ListGroups": (cs.ListGroupsRequest(), {A}),
    "UpdateGroup": (cs.UpdateGroupRequest(group=pb.Group(name="ghost"), update_mask={"paths": ["description"]}),
                    {A}),
    "DeleteGroup": (cs.DeleteGroupRequest(name="ghost"), {A}),
    "AddGroupMembers": (cs.AddGroupMembersRequest(group="ghost", users=["alice"]), {A}),
    "RemoveGroupMembers": (cs.RemoveGroupMembersRequest(group="ghost", users=["alice"]), {A}),
    "SetSpendLimit": (cs.SetSpendLimitRequest(limit=pb.SpendLimit(group="ghost", period=pb.SPEND_PERIOD_DAY)), {A}),
    "ClearSpendLimit": (cs.ClearSpendLimitRequest(period=pb.SPEND_PERIOD_DAY), {A}),
    "ListSpendLimits": (cs.ListSpendLimitsRequest(), {A}),
    "RecordUsage": (cs.RecordUsageRequest(), {S}),
    "SummarizeUsage": (cs.SummarizeUsageRequest(user="alice", start_time={"seconds": 0},
                                                end_time={"seconds": 86400}), {A, M, S}),
}

# What an allowed caller gets for the requests above.
ALLOWED_ANSWER: dict[str, Code] = {
    "CreateProvider": Code.INVALID_ARGUMENT, "GetProvider": Code.NOT_FOUND, "UpdateProvider": Code.NOT_FOUND,
    "DeleteProvider": Code.NOT_FOUND, "CreateModel": Code.NOT_FOUND, "GetModel": Code.NOT_FOUND,
    "UpdateModel": Code.NOT_FOUND, "DeleteModel": Code.NOT_FOUND, "SetDefaultModel": Code.NOT_FOUND,
    "UpdateSettings": Code.INVALID_ARGUMENT, "SetModelOverride": Code.NOT_FOUND,
    "ClearModelOverride": Code.NOT_FOUND, "SetPersonalOverride": Code.FAILED_PRECONDITION,
    "ClearPersonalOverride": Code.NOT_FOUND, "SetUserKey": Code.FAILED_PRECONDITION,
    "DeleteUserKey": Code.NOT_FOUND, "CreateApiToken": Code.INVALID_ARGUMENT, "RevokeApiToken": Code.NOT_FOUND,
    "AccessCredential": Code.NOT_FOUND, "AckConfig": Code.INVALID_ARGUMENT,
    "CreateGroup": Code.INVALID_ARGUMENT, "GetGroup": Code.NOT_FOUND, "UpdateGroup": Code.NOT_FOUND,
    "DeleteGroup": Code.NOT_FOUND, "AddGroupMembers": Code.NOT_FOUND, "RemoveGroupMembers": Code.NOT_FOUND,
    "SetSpendLimit": Code.NOT_FOUND, "ClearSpendLimit": Code.NOT_FOUND, "RecordUsage": Code.INVALID_ARGUMENT,
}


async def call(cfg: ConfigHarness, method: str, request: Any, metadata: Metadata) -> Code:
    """The status code of one call (OK on success); streams read their first event."""
    rpc: Callable[..., Any] = getattr(cfg.stub, method)
    try:
        if method == "WatchConfig":
            stream = rpc(request, metadata=metadata)
            try:
                first = await stream.read()
                assert first.HasField("snapshot")
            finally:
                stream.cancel()
        else:
            await rpc(request, metadata=metadata, timeout=10)
    except grpc.aio.AioRpcError as err:
        f = failure(err)
        if f.code == Code.PERMISSION_DENIED:
            assert f.reason in ("ROLE_FORBIDDEN", "OTHER_USER"), f.reason
        if f.code == Code.UNAUTHENTICATED:
            assert f.reason == "TOKEN_INVALID", f.reason
        return f.code
    return Code.OK


async def test_every_role_against_every_rpc(cfg: ConfigHarness) -> None:
    methods = set(cs.DESCRIPTOR.services_by_name["ConfigService"].methods_by_name)
    assert set(TABLE) == methods, "the authorization table must cover every RPC"

    await provider(cfg, "openai", pb.PROVIDER_TYPE_OPENAI)
    member_token = await cfg.token(Role.MEMBER, "alice")
    revoked = await cfg.token(Role.ADMIN, "old-admin")
    revoked_id = revoked.split("_")[1]
    await cfg.stub.RevokeApiToken(cs.RevokeApiTokenRequest(id=revoked_id), metadata=cfg.admin)
    callers: dict[str, Metadata] = {
        A: cfg.admin,
        M: bearer(member_token),
        S: await cfg.md(Role.SERVICE, "resolver"),
        "none": (),
        "revoked": bearer(revoked),
        "malformed": bearer("mp_nothex_short"),
        "unknown": bearer("mp_0123456789ab_" + "A" * 43),
        "basic": (("authorization", "Basic YWRtaW46YWRtaW4="),),
    }
    requests = dict(TABLE)
    requests["IntrospectToken"] = (cs.IntrospectTokenRequest(token=member_token), {S})
    before = await audit_count(cfg)
    problems = []
    for method, (request, allowed) in sorted(requests.items()):
        for who, metadata in callers.items():
            code = await call(cfg, method, request, metadata)
            if who in allowed:
                expected = ALLOWED_ANSWER.get(method, Code.OK)
            elif who in (A, M, S):
                expected = Code.PERMISSION_DENIED
            else:
                expected = Code.UNAUTHENTICATED
            if code != expected:
                problems.append(f"{method} as {who}: {code.name}, expected {expected.name}")
    assert problems == []
    assert await audit_count(cfg) == before, "a refused call wrote an audit event"


async def test_members_act_only_for_themselves(cfg: ConfigHarness) -> None:
    await provider(cfg, "openai", pb.PROVIDER_TYPE_OPENAI)
    await settings(cfg, byok_enabled=True, personal_overrides_enabled=True)
    await cfg.stub.CreateModel(cs.CreateModelRequest(model=pb.Model(
        provider="openai", name="gpt", model_identifier="gpt-5", display_name="GPT", context_limit=1000)),
        metadata=cfg.admin)
    alice = await cfg.md(Role.MEMBER, "alice")
    service = await cfg.md(Role.SERVICE, "resolver")
    stub = cfg.stub
    # Bob's data, written by a service acting for him.
    await stub.SetUserKey(cs.SetUserKeyRequest(user="bob", provider="openai", api_key="sk-bob-0123456789"),
                          metadata=service)
    await stub.SetPersonalOverride(cs.SetPersonalOverrideRequest(user="bob", context=pb.OVERRIDE_CONTEXT_ROOT,
                                                                 model="gpt"), metadata=service)
    before = await audit_count(cfg)
    other = [
        stub.SetPersonalOverride(cs.SetPersonalOverrideRequest(user="bob", context=pb.OVERRIDE_CONTEXT_ROOT,
                                                               model="gpt"), metadata=alice),
        stub.ClearPersonalOverride(cs.ClearPersonalOverrideRequest(user="bob", context=pb.OVERRIDE_CONTEXT_ROOT),
                                   metadata=alice),
        stub.ListPersonalOverrides(cs.ListPersonalOverridesRequest(user="bob"), metadata=alice),
        stub.SetUserKey(cs.SetUserKeyRequest(user="bob", provider="openai", api_key="sk-alice-0123456789"),
                        metadata=alice),
        stub.DeleteUserKey(cs.DeleteUserKeyRequest(user="bob", provider="openai"), metadata=alice),
        stub.ListUserKeys(cs.ListUserKeysRequest(user="bob"), metadata=alice),
        stub.GetUserConfig(cs.GetUserConfigRequest(user="bob"), metadata=alice),
    ]
    for c in other:
        await fails(c, Code.PERMISSION_DENIED, "OTHER_USER")
    assert await audit_count(cfg) == before
    bob = await stub.GetUserConfig(cs.GetUserConfigRequest(user="bob"), metadata=service)
    assert list(bob.key_providers) == ["openai"] and [o.model for o in bob.personal_overrides] == ["gpt"]

    # Alice, with or without naming herself, reaches only her own data.
    own = await stub.SetUserKey(cs.SetUserKeyRequest(provider="openai", api_key="sk-alice-0123456789"),
                                metadata=alice)
    assert own.user == "alice" and own.provider == "openai"
    await stub.SetPersonalOverride(cs.SetPersonalOverrideRequest(user="alice", context=pb.OVERRIDE_CONTEXT_GENERAL,
                                                                 model="gpt"), metadata=alice)
    keys = await stub.ListUserKeys(cs.ListUserKeysRequest(), metadata=alice)
    assert [(k.user, k.provider) for k in keys.keys] == [("alice", "openai")]
    mine = await stub.ListPersonalOverrides(cs.ListPersonalOverridesRequest(), metadata=alice)
    assert [(o.user, o.context) for o in mine.overrides] == [("alice", pb.OVERRIDE_CONTEXT_GENERAL)]
    assert mine.enabled
    conf = await stub.GetUserConfig(cs.GetUserConfigRequest(), metadata=alice)
    assert conf.user == "alice" and list(conf.key_providers) == ["openai"]

    # Services and admins must say whom they act for.
    for metadata in (service, cfg.admin):
        await fails(stub.ListUserKeys(cs.ListUserKeysRequest(), metadata=metadata), Code.INVALID_ARGUMENT,
                    field="user")
        await fails(stub.GetUserConfig(cs.GetUserConfigRequest(), metadata=metadata), Code.INVALID_ARGUMENT,
                    field="user")
    await fails(stub.SetUserKey(cs.SetUserKeyRequest(provider="openai", api_key="sk-x-0123456789"),
                                metadata=service), Code.INVALID_ARGUMENT, field="user")
    # An admin may remove a user's key and personal overrides but never set a key.
    await fails(stub.SetUserKey(cs.SetUserKeyRequest(user="bob", provider="openai", api_key="sk-x-0123456789"),
                                metadata=cfg.admin), Code.PERMISSION_DENIED, "ROLE_FORBIDDEN")
    await stub.DeleteUserKey(cs.DeleteUserKeyRequest(user="bob", provider="openai"), metadata=cfg.admin)
    await stub.ClearPersonalOverride(cs.ClearPersonalOverrideRequest(user="bob", context=pb.OVERRIDE_CONTEXT_ROOT),
                                     metadata=cfg.admin)
    bob = await stub.GetUserConfig(cs.GetUserConfigRequest(user="bob"), metadata=service)
    assert list(bob.key_providers) == [] and list(bob.personal_overrides) == []

    # AccessCredential: only the service reads plaintext.
    for metadata in (alice, cfg.admin):
        await fails(stub.AccessCredential(cs.AccessCredentialRequest(provider="openai", user="alice"),
                                          metadata=metadata), Code.PERMISSION_DENIED, "ROLE_FORBIDDEN")
    got = await stub.AccessCredential(cs.AccessCredentialRequest(provider="openai", user="alice"), metadata=service)
    assert got.api_key == "sk-alice-0123456789" and got.source == cs.CREDENTIAL_SOURCE_USER_KEY


async def test_tokens_create_list_revoke_introspect(cfg: ConfigHarness) -> None:
    service = await cfg.md(Role.SERVICE, "resolver")
    made = await cfg.stub.CreateApiToken(cs.CreateApiTokenRequest(token=pb.ApiToken(
        role=pb.ROLE_MEMBER, subject="carol", description="laptop")), metadata=cfg.admin)
    assert made.secret.startswith(f"mp_{made.token.id}_")
    assert made.token.role == pb.ROLE_MEMBER and made.token.subject == "carol"
    assert made.token.description == "laptop" and not made.token.HasField("revoke_time")
    row = (await cfg.server.store.pool.fetch("SELECT * FROM api_tokens WHERE id = $1", made.token.id))[0]
    assert made.secret.encode() not in bytes(row["secret_sha256"]) and len(row["secret_sha256"]) == 32
    carol = bearer(made.secret)
    # The new token works at once, for what a member may do.
    assert (await cfg.stub.GetSettings(cs.GetSettingsRequest(), metadata=carol)).etag
    seen = await cfg.stub.IntrospectToken(cs.IntrospectTokenRequest(token=made.secret), metadata=service)
    assert (seen.id, seen.role, seen.subject) == (made.token.id, pb.ROLE_MEMBER, "carol")

    for bad, field in [(pb.ApiToken(subject="x"), "token.role"), (pb.ApiToken(role=pb.ROLE_ADMIN), "token.subject"),
                       (pb.ApiToken(role=pb.ROLE_ADMIN, subject=" padded "), "token.subject"),
                       (pb.ApiToken(role=pb.ROLE_ADMIN, subject="x", description="d" * 501), "token.description")]:
        await fails(cfg.stub.CreateApiToken(cs.CreateApiTokenRequest(token=bad), metadata=cfg.admin),
                    Code.INVALID_ARGUMENT, field=field)

    revoked = await cfg.stub.RevokeApiToken(cs.RevokeApiTokenRequest(id=made.token.id), metadata=cfg.admin)
    assert revoked.HasField("revoke_time")
    await fails(cfg.stub.GetSettings(cs.GetSettingsRequest(), metadata=carol), Code.UNAUTHENTICATED,
                "TOKEN_INVALID")
    await fails(cfg.stub.IntrospectToken(cs.IntrospectTokenRequest(token=made.secret), metadata=service),
                Code.NOT_FOUND, "TOKEN_NOT_FOUND")
    await fails(cfg.stub.IntrospectToken(cs.IntrospectTokenRequest(token="garbage"), metadata=service),
                Code.NOT_FOUND, "TOKEN_NOT_FOUND")
    # A right id with a wrong secret is refused too.
    forged = f"mp_{made.token.id}_" + "B" * 43
    await fails(cfg.stub.IntrospectToken(cs.IntrospectTokenRequest(token=forged), metadata=service),
                Code.NOT_FOUND, "TOKEN_NOT_FOUND")
    await fails(cfg.stub.RevokeApiToken(cs.RevokeApiTokenRequest(id="000000000000"), metadata=cfg.admin),
                Code.NOT_FOUND, "TOKEN_NOT_FOUND")

    live = await cfg.stub.ListApiTokens(cs.ListApiTokensRequest(), metadata=cfg.admin)
    assert made.token.id not in {t.id for t in live.tokens}
    everything = await cfg.stub.ListApiTokens(cs.ListApiTokensRequest(include_revoked=True), metadata=cfg.admin)
    assert made.token.id in {t.id for t in everything.tokens}


async def test_list_tokens_pagination(cfg: ConfigHarness) -> None:
    for i in range(11):
        await cfg.token(Role.MEMBER, f"user-{i}")
    expected = sorted(r["id"] for r in await cfg.server.store.pool.fetch("SELECT id FROM api_tokens"))
    assert len(expected) == 12
    seen, token = [], ""
    while True:
        page = await cfg.stub.ListApiTokens(cs.ListApiTokensRequest(page_size=5, page_token=token),
                                            metadata=cfg.admin)
        seen += [t.id for t in page.tokens]
        token = page.next_page_token
        if not token:
            break
    assert seen == expected
    await fails(cfg.stub.ListApiTokens(cs.ListApiTokensRequest(page_token="MTI"), metadata=cfg.admin),
                Code.INVALID_ARGUMENT, field="page_token")
