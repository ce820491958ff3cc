"""Inputs that reach Postgres only as bad parameters, and concurrent writers
without etags: clean errors, never INTERNAL, never a spurious ABORTED."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any, Callable

import grpc
import pytest

from modelplane_server.domain.types import Role
from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import resources_pb2 as pb
from tests.harness import ConfigHarness
from tests.integration.helpers import audit_count, fails, model, provider, raw, settings

pytestmark = pytest.mark.integration

Code = grpc.StatusCode


def _forged(position: Any) -> str:
    """A page token as paging.encode makes one, but in JSON's \\u escapes,
    which can carry what UTF-8 cannot (a lone surrogate)."""
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")


@pytest.mark.parametrize("text", ["a\x00", "\x00", "a\x01b", "a\nb", "\ud800"])
async def test_forged_page_tokens_with_unstorable_strings_are_invalid_arguments(
        cfg: ConfigHarness, text: str) -> None:
    """A token of the right shape whose strings Postgres cannot take (NUL,
    a lone surrogate) is the caller's mistake, not INTERNAL."""
    await provider(cfg, "p", pb.PROVIDER_TYPE_OPENAI, api_key="sk-central-0123456789")
    await model(cfg, "p", "gpt", name="m")
    admin, stub = cfg.admin, cfg.stub
    one, pair, mixed = _forged(text), _forged([text, "b"]), _forged(["p", text])
    calls: list[Callable[[], Any]] = [
        lambda: stub.ListProviders(cs.ListProvidersRequest(page_token=one), metadata=admin),
        lambda: stub.ListModels(cs.ListModelsRequest(page_token=pair), metadata=admin),
        lambda: stub.ListModels(cs.ListModelsRequest(page_token=mixed), metadata=admin),
        lambda: stub.ListApiTokens(cs.ListApiTokensRequest(page_token=one), metadata=admin),
    ]
    for call in calls:
        await fails(call(), Code.INVALID_ARGUMENT, field="page_token")


async def test_control_characters_and_bad_user_names_are_invalid_arguments(cfg: ConfigHarness) -> None:
    await provider(cfg, "p", pb.PROVIDER_TYPE_OPENAI, api_key="sk-central-0123456789")
    await model(cfg, "p", "gpt", name="m")
    await settings(cfg, byok_enabled=True, personal_overrides_enabled=True)
    svc = await cfg.md(Role.SERVICE, "svc")
    admin, stub = cfg.admin, cfg.stub
    nul = "a\x00b"
    cases: list[tuple[Callable[[], Any], str]] = [
        (lambda: stub.GetProvider(cs.GetProviderRequest(name=nul), metadata=admin), "name"),
        (lambda: stub.DeleteProvider(cs.DeleteProviderRequest(name=nul), metadata=admin), "name"),
        (lambda: stub.UpdateProvider(cs.UpdateProviderRequest(provider=pb.Provider(name=nul),
                                                              update_mask={"paths": ["display_name"]}),
                                     metadata=admin), "provider.name"),
        (lambda: stub.GetModel(cs.GetModelRequest(name=nul), metadata=admin), "name"),
        (lambda: stub.DeleteModel(cs.DeleteModelRequest(name=nul), metadata=admin), "name"),
        (lambda: stub.CreateModel(cs.CreateModelRequest(model=pb.Model(
            provider=nul, model_identifier="x", display_name="x", context_limit=1)), metadata=admin),
         "model.provider"),
        (lambda: stub.ListModels(cs.ListModelsRequest(provider=nul), metadata=admin), "provider"),
        (lambda: stub.ListAuditEvents(cs.ListAuditEventsRequest(resource_prefix=nul), metadata=admin),
         "resource_prefix"),
        (lambda: stub.SetDefaultModel(cs.SetDefaultModelRequest(model=nul), metadata=admin), "model"),
        (lambda: stub.SetModelOverride(cs.SetModelOverrideRequest(context=pb.OVERRIDE_CONTEXT_GENERAL, model=nul),
                                       metadata=admin), "model"),
        (lambda: stub.SetPersonalOverride(cs.SetPersonalOverrideRequest(
            user="u", context=pb.OVERRIDE_CONTEXT_ROOT, model=nul), metadata=svc), "model"),
        (lambda: stub.SetUserKey(cs.SetUserKeyRequest(user=nul, provider="p", api_key="sk-user-0123456789"),
                                 metadata=svc), "user"),
        (lambda: stub.SetUserKey(cs.SetUserKeyRequest(user=" bob", provider="p", api_key="sk-user-0123456789"),
                                 metadata=svc), "user"),
        (lambda: stub.SetUserKey(cs.SetUserKeyRequest(user="u" * 300, provider="p", api_key="sk-user-0123456789"),
                                 metadata=svc), "user"),
        (lambda: stub.SetUserKey(cs.SetUserKeyRequest(user="u", provider=nul, api_key="sk-user-0123456789"),
                                 metadata=svc), "provider"),
        (lambda: stub.DeleteUserKey(cs.DeleteUserKeyRequest(user="u", provider=nul), metadata=svc), "provider"),
        (lambda: stub.SetPersonalOverride(cs.SetPersonalOverrideRequest(
            user="bob\n", context=pb.OVERRIDE_CONTEXT_ROOT, model="m"), metadata=svc), "user"),
        (lambda: stub.ListUserKeys(cs.ListUserKeysRequest(user=nul), metadata=admin), "user"),
        (lambda: stub.GetUserConfig(cs.GetUserConfigRequest(user=nul), metadata=svc), "user"),
        (lambda: stub.ListPersonalOverrides(cs.ListPersonalOverridesRequest(user=nul), metadata=svc), "user"),
        (lambda: stub.AccessCredential(cs.AccessCredentialRequest(provider=nul), metadata=svc), "provider"),
        (lambda: stub.AccessCredential(cs.AccessCredentialRequest(provider="p", user=nul), metadata=svc), "user"),
        (lambda: stub.RevokeApiToken(cs.RevokeApiTokenRequest(id=nul), metadata=admin), "id"),
        (lambda: stub.CreateApiToken(cs.CreateApiTokenRequest(token=pb.ApiToken(
            role=pb.ROLE_MEMBER, subject="x", description=nul)), metadata=admin), "token.description"),
    ]
    before = await audit_count(cfg)
    for call, field in cases:
        await fails(call(), Code.INVALID_ARGUMENT, field=field)
    assert await audit_count(cfg) == before
    assert await raw(cfg, "SELECT * FROM user_keys") == []


async def test_concurrent_updates_without_etag_all_apply(cfg: ConfigHarness) -> None:
    """No etag means unconditional (AIP-154): concurrent writers queue, none is ABORTED."""
    await provider(cfg, "p", pb.PROVIDER_TYPE_ANTHROPIC)
    await model(cfg, "p", "x", name="m")
    start_p = (await raw(cfg, "SELECT version FROM providers"))[0]["version"]
    start_m = (await raw(cfg, "SELECT version FROM models"))[0]["version"]
    n = 20
    providers = await asyncio.gather(*[cfg.stub.UpdateProvider(cs.UpdateProviderRequest(
        provider=pb.Provider(name="p", display_name=f"d{i}"), update_mask={"paths": ["display_name"]}),
        metadata=cfg.admin) for i in range(n)])
    models = await asyncio.gather(*[cfg.stub.UpdateModel(cs.UpdateModelRequest(
        model=pb.Model(name="m", options=pb.GenerationOptions(top_k=i + 1)),
        update_mask={"paths": ["options.top_k"]}), metadata=cfg.admin) for i in range(n)])
    assert len({p.etag for p in providers}) == n and len({m.etag for m in models}) == n
    assert (await raw(cfg, "SELECT version FROM providers"))[0]["version"] == start_p + n
    assert (await raw(cfg, "SELECT version FROM models"))[0]["version"] == start_m + n
    # With etags, exactly one of several writers holding the same etag wins.
    etag = providers[-1].etag
    current = await cfg.stub.GetProvider(cs.GetProviderRequest(name="p"), metadata=cfg.admin)
    results = await asyncio.gather(*[cfg.stub.UpdateProvider(cs.UpdateProviderRequest(
        provider=pb.Provider(name="p", display_name=f"e{i}", etag=current.etag),
        update_mask={"paths": ["display_name"]}), metadata=cfg.admin) for i in range(5)], return_exceptions=True)
    assert etag
    ok = [r for r in results if not isinstance(r, Exception)]
    aborted = [r for r in results if isinstance(r, grpc.aio.AioRpcError) and r.code() == Code.ABORTED]
    assert len(ok) == 1 and len(aborted) == 4
