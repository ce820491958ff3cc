"""Providers over real gRPC and Postgres: CRUD, validation, masks, etags, pagination."""

from __future__ import annotations

import grpc
import pytest

from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import resources_pb2 as pb
from tests.harness import ConfigHarness
from tests.integration.helpers import audit_count, fails, model, provider, raw

pytestmark = pytest.mark.integration

INVALID = grpc.StatusCode.INVALID_ARGUMENT


async def test_provider_crud_happy_path(cfg: ConfigHarness) -> None:
    created = await provider(cfg, "openai-main", pb.PROVIDER_TYPE_OPENAI, display_name="OpenAI",
                             api_key="sk-test-1234567890")
    assert created.name == "openai-main" and created.type == pb.PROVIDER_TYPE_OPENAI
    assert created.display_name == "OpenAI"
    assert created.base_url == "" and created.effective_base_url == "https://api.openai.com/v1"
    assert created.enabled and created.api_key_set and created.api_key == ""
    assert created.key_policy == pb.KeyPolicy(central_key_enabled=True, allow_user_keys=True,
                                              central_key_fallback=True)
    assert created.etag and created.HasField("create_time")

    got = await cfg.stub.GetProvider(cs.GetProviderRequest(name="openai-main"), metadata=cfg.admin)
    assert got == created

    updated = await cfg.stub.UpdateProvider(cs.UpdateProviderRequest(
        provider=pb.Provider(name="openai-main", display_name="OpenAI EU",
                             base_url="https://eu.example.com/v1", etag=got.etag),
        update_mask={"paths": ["display_name", "base_url"]}), metadata=cfg.admin)
    assert updated.display_name == "OpenAI EU"
    assert updated.effective_base_url == "https://eu.example.com/v1"
    assert updated.etag != got.etag and updated.api_key_set

    listed = await cfg.stub.ListProviders(cs.ListProvidersRequest(), metadata=cfg.admin)
    assert [p.name for p in listed.providers] == ["openai-main"] and listed.next_page_token == ""

    await cfg.stub.DeleteProvider(cs.DeleteProviderRequest(name="openai-main", etag=updated.etag),
                                  metadata=cfg.admin)
    await fails(cfg.stub.GetProvider(cs.GetProviderRequest(name="openai-main"), metadata=cfg.admin),
                grpc.StatusCode.NOT_FOUND, "PROVIDER_NOT_FOUND")
    assert await raw(cfg, "SELECT * FROM providers") == []


async def test_provider_defaults_per_type(cfg: ConfigHarness) -> None:
    expected = {
        pb.PROVIDER_TYPE_ANTHROPIC: "https://api.anthropic.com",
        pb.PROVIDER_TYPE_OPENAI: "https://api.openai.com/v1",
        pb.PROVIDER_TYPE_GOOGLE: "https://generativelanguage.googleapis.com/v1beta/openai/",
        pb.PROVIDER_TYPE_OPENROUTER: "https://openrouter.ai/api/v1",
        pb.PROVIDER_TYPE_VERCEL_AI_GATEWAY: "https://ai-gateway.vercel.sh/v1",
        pb.PROVIDER_TYPE_BEDROCK: "https://bedrock-runtime.us-east-1.amazonaws.com",
    }
    for i, (ptype, url) in enumerate(expected.items()):
        p = await provider(cfg, f"p{i}", ptype)
        assert p.effective_base_url == url
    bedrock = await provider(cfg, "bedrock-eu", pb.PROVIDER_TYPE_BEDROCK, region="eu-west-1")
    assert bedrock.effective_base_url == "https://bedrock-runtime.eu-west-1.amazonaws.com"
    assert bedrock.display_name == "bedrock-eu"  # defaults to the name


async def test_create_provider_errors_store_nothing(cfg: ConfigHarness) -> None:
    before = await audit_count(cfg)
    bad = [
        (pb.Provider(name="Bad_Name", type=pb.PROVIDER_TYPE_OPENAI), "provider.name"),
        (pb.Provider(name="", type=pb.PROVIDER_TYPE_OPENAI), "provider.name"),
        (pb.Provider(name="a" * 64, type=pb.PROVIDER_TYPE_OPENAI), "provider.name"),
        (pb.Provider(name="-x", type=pb.PROVIDER_TYPE_OPENAI), "provider.name"),
        (pb.Provider(name="nametype"), "provider.type"),
        (pb.Provider(name="azure", type=pb.PROVIDER_TYPE_AZURE_OPENAI), "provider.base_url"),
        (pb.Provider(name="compat", type=pb.PROVIDER_TYPE_OPENAI_COMPATIBLE), "provider.base_url"),
        (pb.Provider(name="x", type=pb.PROVIDER_TYPE_OPENAI, base_url="ftp://example.com"), "provider.base_url"),
        (pb.Provider(name="x", type=pb.PROVIDER_TYPE_OPENAI, base_url="example.com/v1"), "provider.base_url"),
        (pb.Provider(name="x", type=pb.PROVIDER_TYPE_OPENAI, base_url="https://u:p@example.com/v1"),
         "provider.base_url"),
        (pb.Provider(name="x", type=pb.PROVIDER_TYPE_OPENAI, base_url="https://example.com/v1?a=b"),
         "provider.base_url"),
        (pb.Provider(name="x", type=pb.PROVIDER_TYPE_OPENAI, base_url="https://example.com/v1#f"),
         "provider.base_url"),
        (pb.Provider(name="x", type=pb.PROVIDER_TYPE_OPENAI, region="us-east-1"), "provider.region"),
        (pb.Provider(name="x", type=pb.PROVIDER_TYPE_BEDROCK, region="mars"), "provider.region"),
        (pb.Provider(name="x", type=pb.PROVIDER_TYPE_OPENAI,
                     key_policy=pb.KeyPolicy(central_key_enabled=False, allow_user_keys=False,
                                             central_key_fallback=False)), "provider.key_policy"),
        (pb.Provider(name="x", type=pb.PROVIDER_TYPE_OPENAI,
                     key_policy=pb.KeyPolicy(allow_user_keys=False, central_key_fallback=True)),
         "provider.key_policy.central_key_fallback"),
        (pb.Provider(name="x", type=pb.PROVIDER_TYPE_OPENAI, api_key=" sk-padded-key "), "provider.api_key"),
        (pb.Provider(name="x", type=pb.PROVIDER_TYPE_OPENAI, api_key="sk-with\nnewline"), "provider.api_key"),
    ]
    for p, field in bad:
        await fails(cfg.stub.CreateProvider(cs.CreateProviderRequest(provider=p), metadata=cfg.admin),
                    INVALID, field=field)
    assert await raw(cfg, "SELECT name FROM providers") == []
    assert await audit_count(cfg) == before

    # Several problems at once: one violation each, so a form is fixed in one round trip.
    f = await fails(cfg.stub.CreateProvider(cs.CreateProviderRequest(provider=pb.Provider(
        name="Bad Name", type=pb.PROVIDER_TYPE_AZURE_OPENAI, region="us-east-1")), metadata=cfg.admin), INVALID)
    assert {"provider.name", "provider.base_url", "provider.region"} <= set(f.violations)


async def test_key_policy_fallback_defaults_follow_sources(cfg: ConfigHarness) -> None:
    p = await provider(cfg, "byok-only", pb.PROVIDER_TYPE_OPENAI,
                       key_policy=pb.KeyPolicy(central_key_enabled=False))
    assert p.key_policy == pb.KeyPolicy(central_key_enabled=False, allow_user_keys=True,
                                        central_key_fallback=False)


async def test_duplicate_provider_is_already_exists(cfg: ConfigHarness) -> None:
    await provider(cfg, "dup", pb.PROVIDER_TYPE_OPENAI, display_name="first")
    before = await audit_count(cfg)
    await fails(provider(cfg, "dup", pb.PROVIDER_TYPE_ANTHROPIC, display_name="second"),
                grpc.StatusCode.ALREADY_EXISTS, "PROVIDER_EXISTS")
    rows = await raw(cfg, "SELECT type, display_name FROM providers")
    assert [(r["type"], r["display_name"]) for r in rows] == [("openai", "first")]
    assert await audit_count(cfg) == before


@pytest.mark.parametrize("base_url", [
    "http://127.0.0.1:50051/v1",          # the harness's own listen address
    "http://localhost:50051/v1",          # the same machine and port by another name
    "http://[::1]:50051",
    "https://modelplane.internal/v1",     # own address, default https port 443
    "https://modelplane.internal:443/v1",
    "https://gateway.example.com/api/v2/aibridge/openai/v1",  # the gateway route
    "https://gateway.example.com/api/v2/aibridge",
])
async def test_self_loop_base_urls_are_refused(cfg: ConfigHarness, base_url: str) -> None:
    f = await fails(provider(cfg, "loop", pb.PROVIDER_TYPE_OPENAI_COMPATIBLE, base_url=base_url),
                    INVALID, field="provider.base_url")
    assert "modelplane" in f.violations["provider.base_url"]
    assert await raw(cfg, "SELECT name FROM providers") == []


async def test_metadata_and_allowed_addresses(cfg: ConfigHarness) -> None:
    for url in ["http://169.254.169.254/latest", "http://metadata.google.internal/v1",
                "http://[fd00:ec2::254]/", "http://0xA9FEA9FE/", "http://[::ffff:169.254.169.254]/"]:
        f = await fails(provider(cfg, "meta", pb.PROVIDER_TYPE_OPENAI_COMPATIBLE, base_url=url),
                        INVALID, field="provider.base_url")
        assert "metadata" in f.violations["provider.base_url"]
    # Not self-loops: another port of the same host, another host.
    ok = await provider(cfg, "other-port", pb.PROVIDER_TYPE_OPENAI_COMPATIBLE,
                        base_url="http://127.0.0.1:50052/v1")
    assert ok.effective_base_url == "http://127.0.0.1:50052/v1"
    await provider(cfg, "proxy", pb.PROVIDER_TYPE_OPENAI_COMPATIBLE, base_url="https://llm-proxy.internal:8443/v1")


async def test_update_provider_mask_rules(cfg: ConfigHarness) -> None:
    p = await provider(cfg, "compat", pb.PROVIDER_TYPE_OPENAI_COMPATIBLE, base_url="https://a.example.com/v1",
                       display_name="Compat", api_key="sk-compat-abcdefgh")
    upd = cfg.stub.UpdateProvider

    # No mask, unknown path, immutable fields.
    await fails(upd(cs.UpdateProviderRequest(provider=pb.Provider(name="compat", display_name="x")),
                    metadata=cfg.admin), INVALID, field="update_mask")
    for path in ["nope", "name", "type", "api_key_set", "key_policy.nope", "etag"]:
        await fails(upd(cs.UpdateProviderRequest(provider=pb.Provider(name="compat"),
                                                 update_mask={"paths": [path]}), metadata=cfg.admin),
                    INVALID, field="update_mask")
    # Missing name; unknown provider.
    await fails(upd(cs.UpdateProviderRequest(provider=pb.Provider(display_name="x"),
                                             update_mask={"paths": ["display_name"]}), metadata=cfg.admin),
                INVALID, field="provider.name")
    await fails(upd(cs.UpdateProviderRequest(provider=pb.Provider(name="ghost", display_name="x"),
                                             update_mask={"paths": ["display_name"]}), metadata=cfg.admin),
                grpc.StatusCode.NOT_FOUND, "PROVIDER_NOT_FOUND")

    # Fields outside the mask are ignored.
    same = await upd(cs.UpdateProviderRequest(
        provider=pb.Provider(name="compat", display_name="Ignored", base_url="https://b.example.com/v1"),
        update_mask={"paths": ["base_url"]}), metadata=cfg.admin)
    assert same.display_name == "Compat" and same.base_url == "https://b.example.com/v1"

    # Masked but unset clears (display_name falls back to the name) ...
    cleared = await upd(cs.UpdateProviderRequest(provider=pb.Provider(name="compat"),
                                                 update_mask={"paths": ["display_name"]}), metadata=cfg.admin)
    assert cleared.display_name == "compat"
    assert (await raw(cfg, "SELECT display_name FROM providers"))[0]["display_name"] == ""
    # ... but a base URL the type requires cannot be cleared.
    await fails(upd(cs.UpdateProviderRequest(provider=pb.Provider(name="compat"),
                                             update_mask={"paths": ["base_url"]}), metadata=cfg.admin),
                INVALID, field="provider.base_url")
    # Validation on update: the self-loop is refused there too, and nothing changes.
    await fails(upd(cs.UpdateProviderRequest(
        provider=pb.Provider(name="compat", base_url="http://127.0.0.1:50051/v1"),
        update_mask={"paths": ["base_url"]}), metadata=cfg.admin), INVALID, field="provider.base_url")
    await fails(upd(cs.UpdateProviderRequest(provider=pb.Provider(name="compat", region="us-east-1"),
                                             update_mask={"paths": ["region"]}), metadata=cfg.admin),
                INVALID, field="provider.region")
    now = await cfg.stub.GetProvider(cs.GetProviderRequest(name="compat"), metadata=cfg.admin)
    assert now.base_url == "https://b.example.com/v1"

    # api_key: a masked empty key removes it; a padded one is refused.
    await fails(upd(cs.UpdateProviderRequest(provider=pb.Provider(name="compat", api_key="sk-key-with-space "),
                                             update_mask={"paths": ["api_key"]}), metadata=cfg.admin),
                INVALID, field="provider.api_key")
    assert (await cfg.stub.GetProvider(cs.GetProviderRequest(name="compat"), metadata=cfg.admin)).api_key_set
    removed = await upd(cs.UpdateProviderRequest(provider=pb.Provider(name="compat"),
                                                 update_mask={"paths": ["api_key"]}), metadata=cfg.admin)
    assert not removed.api_key_set
    row = (await raw(cfg, "SELECT api_key_key_id, api_key_ciphertext FROM providers"))[0]
    assert row["api_key_key_id"] is None and row["api_key_ciphertext"] is None
    # An api_key outside the mask is not stored.
    kept = await upd(cs.UpdateProviderRequest(provider=pb.Provider(name="compat", api_key="sk-ignored-12345678",
                                                                   display_name="C"),
                                              update_mask={"paths": ["display_name"]}), metadata=cfg.admin)
    assert not kept.api_key_set

    # enabled
    disabled = await upd(cs.UpdateProviderRequest(provider=pb.Provider(name="compat", enabled=False),
                                                  update_mask={"paths": ["enabled"]}), metadata=cfg.admin)
    assert not disabled.enabled
    assert p.enabled


async def test_update_key_policy_paths(cfg: ConfigHarness) -> None:
    await provider(cfg, "pol", pb.PROVIDER_TYPE_OPENAI)
    upd = cfg.stub.UpdateProvider

    def req(policy: pb.KeyPolicy, *paths: str) -> cs.UpdateProviderRequest:
        return cs.UpdateProviderRequest(provider=pb.Provider(name="pol", key_policy=policy),
                                        update_mask={"paths": list(paths)})

    # Turning user keys off alone takes the fallback with it (as creating with
    # that policy would); the fallback is never left on without both sources.
    p = await upd(req(pb.KeyPolicy(allow_user_keys=False), "key_policy.allow_user_keys"), metadata=cfg.admin)
    assert p.key_policy == pb.KeyPolicy(central_key_enabled=True, allow_user_keys=False,
                                        central_key_fallback=False)
    # Asked for explicitly without both sources, it is refused, named.
    await fails(upd(req(pb.KeyPolicy(central_key_fallback=True), "key_policy.central_key_fallback"),
                    metadata=cfg.admin), INVALID, field="provider.key_policy.central_key_fallback")
    # A sub-path leaves the other flags alone.
    p = await upd(req(pb.KeyPolicy(allow_user_keys=True, central_key_enabled=False),
                      "key_policy.allow_user_keys"), metadata=cfg.admin)
    assert p.key_policy == pb.KeyPolicy(central_key_enabled=True, allow_user_keys=True,
                                        central_key_fallback=False)
    # The whole key_policy: flags left unset keep their stored values (never
    # switched back on by a default nobody asked for).
    p = await upd(req(pb.KeyPolicy(central_key_enabled=False), "key_policy"), metadata=cfg.admin)
    assert p.key_policy == pb.KeyPolicy(central_key_enabled=False, allow_user_keys=True,
                                        central_key_fallback=False)
    p = await upd(req(pb.KeyPolicy(), "key_policy"), metadata=cfg.admin)
    assert p.key_policy == pb.KeyPolicy(central_key_enabled=False, allow_user_keys=True,
                                        central_key_fallback=False)
    # Both sources off: refused.
    await fails(upd(req(pb.KeyPolicy(central_key_enabled=False, allow_user_keys=False,
                                     central_key_fallback=False), "key_policy"), metadata=cfg.admin),
                INVALID, field="provider.key_policy")
    rows = await raw(cfg, "SELECT central_key_enabled, allow_user_keys, central_key_fallback FROM providers")
    assert tuple(rows[0]) == (False, True, False)


async def test_provider_etags(cfg: ConfigHarness) -> None:
    p = await provider(cfg, "et", pb.PROVIDER_TYPE_OPENAI)
    v2 = await cfg.stub.UpdateProvider(cs.UpdateProviderRequest(
        provider=pb.Provider(name="et", display_name="two", etag=p.etag),
        update_mask={"paths": ["display_name"]}), metadata=cfg.admin)
    before = await audit_count(cfg)
    await fails(cfg.stub.UpdateProvider(cs.UpdateProviderRequest(
        provider=pb.Provider(name="et", display_name="stale", etag=p.etag),
        update_mask={"paths": ["display_name"]}), metadata=cfg.admin), grpc.StatusCode.ABORTED, "ETAG_MISMATCH")
    await fails(cfg.stub.DeleteProvider(cs.DeleteProviderRequest(name="et", etag=p.etag), metadata=cfg.admin),
                grpc.StatusCode.ABORTED, "ETAG_MISMATCH")
    assert (await raw(cfg, "SELECT display_name FROM providers"))[0]["display_name"] == "two"
    assert await audit_count(cfg) == before
    # Without an etag the write is unconditional.
    await cfg.stub.DeleteProvider(cs.DeleteProviderRequest(name="et"), metadata=cfg.admin)
    assert v2.etag != p.etag
    await fails(cfg.stub.DeleteProvider(cs.DeleteProviderRequest(name="et"), metadata=cfg.admin),
                grpc.StatusCode.NOT_FOUND, "PROVIDER_NOT_FOUND")
    await fails(cfg.stub.DeleteProvider(cs.DeleteProviderRequest(), metadata=cfg.admin), INVALID, field="name")
    await fails(cfg.stub.GetProvider(cs.GetProviderRequest(), metadata=cfg.admin), INVALID, field="name")


async def test_delete_provider_with_models_needs_force(cfg: ConfigHarness) -> None:
    await provider(cfg, "anthropic")
    await model(cfg, "anthropic", "claude-a")
    await model(cfg, "anthropic", "claude-b")
    f = await fails(cfg.stub.DeleteProvider(cs.DeleteProviderRequest(name="anthropic"), metadata=cfg.admin),
                    grpc.StatusCode.FAILED_PRECONDITION, "PROVIDER_HAS_MODELS")
    assert "anthropic-claude-a" in f.message
    assert len(await raw(cfg, "SELECT name FROM models")) == 2
    await cfg.stub.DeleteProvider(cs.DeleteProviderRequest(name="anthropic", force=True), metadata=cfg.admin)
    assert await raw(cfg, "SELECT name FROM models") == []
    assert await raw(cfg, "SELECT name FROM providers") == []


async def test_list_providers_pagination(cfg: ConfigHarness) -> None:
    names = sorted(f"prov-{i:02d}" for i in range(23))
    for name in reversed(names):
        await provider(cfg, name, pb.PROVIDER_TYPE_OPENAI)
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = await cfg.stub.ListProviders(cs.ListProvidersRequest(page_size=5, page_token=token),
                                            metadata=cfg.admin)
        assert len(page.providers) <= 5
        seen += [p.name for p in page.providers]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert seen == names and pages == 5
    everything = await cfg.stub.ListProviders(cs.ListProvidersRequest(), metadata=cfg.admin)
    assert [p.name for p in everything.providers] == names and not everything.next_page_token
    exact = await cfg.stub.ListProviders(cs.ListProvidersRequest(page_size=23), metadata=cfg.admin)
    assert len(exact.providers) == 23 and exact.next_page_token == ""

    for bad_token in ["garbage!", "bm90LWpzb24", "WyJhIiwiYiJd", "MTI"]:  # not json, a list, an int
        await fails(cfg.stub.ListProviders(cs.ListProvidersRequest(page_token=bad_token), metadata=cfg.admin),
                    INVALID, field="page_token")
    for bad_size in [-1, 501]:
        await fails(cfg.stub.ListProviders(cs.ListProvidersRequest(page_size=bad_size), metadata=cfg.admin),
                    INVALID, field="page_size")
