"""Settings, BYOK rules at the config level, user keys, admin and personal overrides."""

from __future__ import annotations

import grpc
import pytest

from modelplane_server.domain.types import Role
from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import resources_pb2 as pb
from tests.harness import ConfigHarness
from tests.integration.helpers import audit_count, fails, model, provider, raw, settings

pytestmark = pytest.mark.integration

Code = grpc.StatusCode
ROOT, GENERAL, EXPLORE, TITLE = (pb.OVERRIDE_CONTEXT_ROOT, pb.OVERRIDE_CONTEXT_GENERAL,
                                 pb.OVERRIDE_CONTEXT_EXPLORE, pb.OVERRIDE_CONTEXT_TITLE_GENERATION)


async def test_settings_defaults_update_and_etag(cfg: ConfigHarness) -> None:
    member = await cfg.md(Role.MEMBER, "alice")
    s = await cfg.stub.GetSettings(cs.GetSettingsRequest(), metadata=member)
    assert not s.byok_enabled and not s.personal_overrides_enabled and s.etag
    on = await cfg.stub.UpdateSettings(cs.UpdateSettingsRequest(
        settings=pb.Settings(byok_enabled=True, personal_overrides_enabled=True, etag=s.etag),
        update_mask={"paths": ["byok_enabled"]}), metadata=cfg.admin)
    assert on.byok_enabled and not on.personal_overrides_enabled and on.etag != s.etag
    before = await audit_count(cfg)
    await fails(cfg.stub.UpdateSettings(cs.UpdateSettingsRequest(
        settings=pb.Settings(personal_overrides_enabled=True, etag=s.etag),
        update_mask={"paths": ["personal_overrides_enabled"]}), metadata=cfg.admin), Code.ABORTED, "ETAG_MISMATCH")
    for paths in ([], ["nope"], ["etag"], ["update_time"]):
        await fails(cfg.stub.UpdateSettings(cs.UpdateSettingsRequest(
            settings=pb.Settings(byok_enabled=False), update_mask={"paths": paths}), metadata=cfg.admin),
            Code.INVALID_ARGUMENT, field="update_mask")
    assert await audit_count(cfg) == before
    row = (await raw(cfg, "SELECT byok_enabled, personal_overrides_enabled FROM settings"))[0]
    assert tuple(row) == (True, False)
    # Masked but unset clears (to false).
    off = await cfg.stub.UpdateSettings(cs.UpdateSettingsRequest(
        settings=pb.Settings(), update_mask={"paths": ["byok_enabled"]}), metadata=cfg.admin)
    assert not off.byok_enabled
    assert (await cfg.stub.GetSettings(cs.GetSettingsRequest(), metadata=member)) == off


async def test_user_key_rules(cfg: ConfigHarness) -> None:
    await provider(cfg, "shared", pb.PROVIDER_TYPE_OPENAI, api_key="sk-central-0123456789")
    await provider(cfg, "central-only", pb.PROVIDER_TYPE_ANTHROPIC,
                   key_policy=pb.KeyPolicy(allow_user_keys=False, central_key_fallback=False))
    alice = await cfg.md(Role.MEMBER, "alice")
    service = await cfg.md(Role.SERVICE, "resolver")
    set_key = cfg.stub.SetUserKey

    def req(provider_name: str = "shared", key: str = "sk-alice-0123456789") -> cs.SetUserKeyRequest:
        return cs.SetUserKeyRequest(provider=provider_name, api_key=key)

    before = await audit_count(cfg)
    f = await fails(set_key(req(), metadata=alice), Code.FAILED_PRECONDITION, "BYOK_DISABLED")
    assert "BYOK" in f.message or "personal" in f.message
    await settings(cfg, byok_enabled=True)
    f = await fails(set_key(req("central-only"), metadata=alice), Code.FAILED_PRECONDITION, "USER_KEYS_NOT_ALLOWED")
    assert "central-only" in f.message
    await fails(set_key(req("ghost"), metadata=alice), Code.NOT_FOUND, "PROVIDER_NOT_FOUND")
    await fails(set_key(req(""), metadata=alice), Code.INVALID_ARGUMENT, field="provider")
    for bad in ("", " sk-padded-0123456789", "sk-padded-0123456789 ", "sk-two\nlines-0123"):
        await fails(set_key(req(key=bad), metadata=alice), Code.INVALID_ARGUMENT, field="api_key")
    assert await raw(cfg, "SELECT * FROM user_keys") == []
    assert await audit_count(cfg) == before + 1  # only the settings change

    saved = await set_key(req(), metadata=alice)
    assert (saved.user, saved.provider) == ("alice", "shared") and saved.HasField("update_time")
    again = await set_key(req(key="sk-alice-second-0123456789"), metadata=alice)
    assert again.update_time.ToDatetime() >= saved.update_time.ToDatetime()
    assert len(await raw(cfg, "SELECT * FROM user_keys")) == 1

    access = cfg.stub.AccessCredential
    own = await access(cs.AccessCredentialRequest(provider="shared", user="alice"), metadata=service)
    assert own.api_key == "sk-alice-second-0123456789" and own.source == cs.CREDENTIAL_SOURCE_USER_KEY
    assert own.revision == int(await cfg.server.store.current_revision())
    central = await access(cs.AccessCredentialRequest(provider="shared"), metadata=service)
    assert central.api_key == "sk-central-0123456789" and central.source == cs.CREDENTIAL_SOURCE_CENTRAL_KEY
    await fails(access(cs.AccessCredentialRequest(provider="shared", user="bob"), metadata=service),
                Code.NOT_FOUND, "USER_KEY_NOT_FOUND")
    await fails(access(cs.AccessCredentialRequest(provider="central-only"), metadata=service),
                Code.NOT_FOUND, "USER_KEY_NOT_FOUND")
    await fails(access(cs.AccessCredentialRequest(provider="ghost"), metadata=service),
                Code.NOT_FOUND, "PROVIDER_NOT_FOUND")
    await fails(access(cs.AccessCredentialRequest(), metadata=service), Code.INVALID_ARGUMENT, field="provider")

    # Switching BYOK off refuses new keys but keeps stored ones.
    await settings(cfg, byok_enabled=False)
    await fails(set_key(req(), metadata=alice), Code.FAILED_PRECONDITION, "BYOK_DISABLED")
    assert len(await raw(cfg, "SELECT * FROM user_keys")) == 1

    await cfg.stub.DeleteUserKey(cs.DeleteUserKeyRequest(provider="shared"), metadata=alice)
    await fails(cfg.stub.DeleteUserKey(cs.DeleteUserKeyRequest(provider="shared"), metadata=alice),
                Code.NOT_FOUND, "USER_KEY_NOT_FOUND")
    assert list((await cfg.stub.ListUserKeys(cs.ListUserKeysRequest(), metadata=alice)).keys) == []

    # Deleting a provider removes users' keys for it.
    await settings(cfg, byok_enabled=True)
    await set_key(req(), metadata=alice)
    await cfg.stub.DeleteProvider(cs.DeleteProviderRequest(name="shared"), metadata=cfg.admin)
    assert await raw(cfg, "SELECT * FROM user_keys") == []


async def test_admin_overrides(cfg: ConfigHarness) -> None:
    await provider(cfg, "anthropic")
    await model(cfg, name="big")
    await model(cfg, name="small", identifier="claude-haiku")
    stub = cfg.stub
    service = await cfg.md(Role.SERVICE, "resolver")
    for ctx, model_name in [(GENERAL, "big"), (EXPLORE, "small"), (TITLE, "small")]:
        o = await stub.SetModelOverride(cs.SetModelOverrideRequest(context=ctx, model=model_name), metadata=cfg.admin)
        assert (o.context, o.model, o.user) == (ctx, model_name, "")
    o = await stub.SetModelOverride(cs.SetModelOverrideRequest(context=GENERAL, model="small"), metadata=cfg.admin)
    assert o.model == "small"
    await fails(stub.SetModelOverride(cs.SetModelOverrideRequest(context=ROOT, model="big"), metadata=cfg.admin),
                Code.INVALID_ARGUMENT, field="context")
    await fails(stub.SetModelOverride(cs.SetModelOverrideRequest(model="big"), metadata=cfg.admin),
                Code.INVALID_ARGUMENT, field="context")
    await fails(stub.SetModelOverride(cs.SetModelOverrideRequest(context=GENERAL), metadata=cfg.admin),
                Code.INVALID_ARGUMENT, field="model")
    await fails(stub.SetModelOverride(cs.SetModelOverrideRequest(context=GENERAL, model="ghost"),
                                      metadata=cfg.admin), Code.NOT_FOUND, "MODEL_NOT_FOUND")
    listed = await stub.ListModelOverrides(cs.ListModelOverridesRequest(), metadata=service)
    assert sorted((o.context, o.model) for o in listed.overrides) == [
        (GENERAL, "small"), (EXPLORE, "small"), (TITLE, "small")]

    await stub.ClearModelOverride(cs.ClearModelOverrideRequest(context=EXPLORE), metadata=cfg.admin)
    await fails(stub.ClearModelOverride(cs.ClearModelOverrideRequest(context=EXPLORE), metadata=cfg.admin),
                Code.NOT_FOUND)
    await fails(stub.ClearModelOverride(cs.ClearModelOverrideRequest(context=ROOT), metadata=cfg.admin),
                Code.INVALID_ARGUMENT, field="context")

    # Deleting (or disabling) the model keeps the overrides naming it.
    await stub.DeleteModel(cs.DeleteModelRequest(name="small"), metadata=cfg.admin)
    listed = await stub.ListModelOverrides(cs.ListModelOverridesRequest(), metadata=cfg.admin)
    assert sorted((o.context, o.model) for o in listed.overrides) == [(GENERAL, "small"), (TITLE, "small")]
    await stub.DeleteProvider(cs.DeleteProviderRequest(name="anthropic", force=True), metadata=cfg.admin)
    assert len(await raw(cfg, "SELECT * FROM model_overrides")) == 2


async def test_personal_overrides(cfg: ConfigHarness) -> None:
    await provider(cfg, "anthropic")
    await model(cfg, name="big")
    await model(cfg, name="small", identifier="claude-haiku")
    alice = await cfg.md(Role.MEMBER, "alice")
    stub = cfg.stub

    def set_req(ctx: int, model_name: str = "big", user: str = "") -> cs.SetPersonalOverrideRequest:
        return cs.SetPersonalOverrideRequest(user=user, context=ctx, model=model_name)

    before = await audit_count(cfg)
    f = await fails(stub.SetPersonalOverride(set_req(ROOT), metadata=alice), Code.FAILED_PRECONDITION,
                    "PERSONAL_OVERRIDES_DISABLED")
    assert "administrator" in f.message
    await fails(stub.SetPersonalOverride(set_req(ROOT, user="alice"), metadata=cfg.admin),
                Code.FAILED_PRECONDITION, "PERSONAL_OVERRIDES_DISABLED")
    assert await raw(cfg, "SELECT * FROM personal_overrides") == []
    assert await audit_count(cfg) == before

    await settings(cfg, personal_overrides_enabled=True)
    for ctx in (ROOT, GENERAL, EXPLORE):
        o = await stub.SetPersonalOverride(set_req(ctx), metadata=alice)
        assert (o.context, o.model, o.user) == (ctx, "big", "alice")
    await fails(stub.SetPersonalOverride(set_req(TITLE), metadata=alice), Code.INVALID_ARGUMENT, field="context")
    await fails(stub.SetPersonalOverride(set_req(pb.OVERRIDE_CONTEXT_UNSPECIFIED), metadata=alice),
                Code.INVALID_ARGUMENT, field="context")
    await fails(stub.SetPersonalOverride(set_req(ROOT, "ghost"), metadata=alice), Code.NOT_FOUND, "MODEL_NOT_FOUND")
    await fails(stub.SetPersonalOverride(set_req(ROOT, ""), metadata=alice), Code.INVALID_ARGUMENT, field="model")
    await stub.SetPersonalOverride(set_req(ROOT, "small"), metadata=alice)
    listed = await stub.ListPersonalOverrides(cs.ListPersonalOverridesRequest(), metadata=alice)
    assert listed.enabled
    assert sorted((o.context, o.model) for o in listed.overrides) == [(ROOT, "small"), (GENERAL, "big"),
                                                                     (EXPLORE, "big")]

    # Gate off: stored values stay (listed, flagged as not applying); writes refused; clearing allowed.
    await settings(cfg, personal_overrides_enabled=False)
    listed = await stub.ListPersonalOverrides(cs.ListPersonalOverridesRequest(), metadata=alice)
    assert not listed.enabled and len(listed.overrides) == 3
    await fails(stub.SetPersonalOverride(set_req(ROOT, "big"), metadata=alice), Code.FAILED_PRECONDITION,
                "PERSONAL_OVERRIDES_DISABLED")
    await stub.ClearPersonalOverride(cs.ClearPersonalOverrideRequest(context=EXPLORE), metadata=alice)
    await fails(stub.ClearPersonalOverride(cs.ClearPersonalOverrideRequest(context=EXPLORE), metadata=alice),
                Code.NOT_FOUND)
    await fails(stub.ClearPersonalOverride(cs.ClearPersonalOverrideRequest(context=TITLE), metadata=alice),
                Code.INVALID_ARGUMENT, field="context")

    # A deleted model stays referenced.
    await stub.DeleteModel(cs.DeleteModelRequest(name="small"), metadata=cfg.admin)
    rows = await raw(cfg, "SELECT context, model FROM personal_overrides WHERE user_name = 'alice' ORDER BY context")
    assert [tuple(r) for r in rows] == [("general", "big"), ("root", "small")]
    conf = await stub.GetUserConfig(cs.GetUserConfigRequest(), metadata=alice)
    assert sorted((o.context, o.model) for o in conf.personal_overrides) == [(ROOT, "small"), (GENERAL, "big")]


async def test_several_users_data_in_one_call(cfg: ConfigHarness) -> None:
    await provider(cfg, "shared", pb.PROVIDER_TYPE_OPENAI, api_key="sk-central-0123456789")
    await provider(cfg, "other", pb.PROVIDER_TYPE_OPENROUTER, api_key="sk-or-central-0123456789")
    await model(cfg, name="big", provider_name="shared", identifier="gpt-big")
    await settings(cfg, byok_enabled=True, personal_overrides_enabled=True)
    for user, held in (("alice", ["shared", "other"]), ("carol", ["other"])):
        own = await cfg.md(Role.MEMBER, user)
        for name in held:
            await cfg.stub.SetUserKey(cs.SetUserKeyRequest(provider=name, api_key=f"sk-{user}-0123456789"),
                                      metadata=own)
    await cfg.stub.SetPersonalOverride(cs.SetPersonalOverrideRequest(context=ROOT, model="big"),
                                       metadata=await cfg.md(Role.MEMBER, "alice"))
    service = await cfg.md(Role.SERVICE, "resolver")
    got = await cfg.stub.GetUserConfigs(cs.GetUserConfigsRequest(users=["carol", "alice", "bob", "alice"]),
                                        metadata=service)
    assert [(c.user, list(c.key_providers), [(o.context, o.model) for o in c.personal_overrides]) for c in got.users] == [
        ("carol", ["other"], []), ("alice", ["other", "shared"], [(ROOT, "big")]), ("bob", [], [])]
    one = await cfg.stub.GetUserConfig(cs.GetUserConfigRequest(user="alice"), metadata=service)
    assert got.revision == one.revision > 0 and all(c.revision == got.revision for c in got.users)
    assert (list(got.users[1].key_providers), list(got.users[1].personal_overrides)) == (
        list(one.key_providers), list(one.personal_overrides))

    await fails(cfg.stub.GetUserConfigs(cs.GetUserConfigsRequest(), metadata=service), Code.INVALID_ARGUMENT,
                field="users")
    await fails(cfg.stub.GetUserConfigs(cs.GetUserConfigsRequest(users=["alice", " padded"]), metadata=service),
                Code.INVALID_ARGUMENT, field="users[1]")
    await fails(cfg.stub.GetUserConfigs(cs.GetUserConfigsRequest(users=["u"] * 1001), metadata=service),
                Code.INVALID_ARGUMENT, field="users")
