"""Models over real gRPC and Postgres: CRUD, validation, masks, etags,
pagination, the default model (the star) and the options schema RPC."""

from __future__ import annotations

import asyncio

import asyncpg
import grpc
import pytest

from modelplane_server.domain.types import Role
from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import resources_pb2 as pb
from tests.harness import ConfigHarness
from tests.integration.helpers import audit_count, fails, model, provider, raw, unstamped

pytestmark = pytest.mark.integration

INVALID = grpc.StatusCode.INVALID_ARGUMENT


async def test_model_crud_and_first_model_is_default(cfg: ConfigHarness) -> None:
    await provider(cfg, "anthropic")
    first = await model(cfg, "anthropic", "claude-opus-4.6", display_name="Claude Opus",
                        options=pb.GenerationOptions(max_output_tokens=32000, compression_threshold=80),
                        pricing=pb.Pricing(input_per_mtok=5.0, output_per_mtok=25.0, cache_read_per_mtok=0.0),
                        anthropic=pb.AnthropicOptions(thinking_budget_tokens=4096, effort="high"))
    assert first.name == "anthropic-claude-opus-4-6"  # derived from provider and identifier
    assert first.is_default and first.enabled and first.etag
    assert first.options.max_output_tokens == 32000 and first.options.compression_threshold == 80
    assert not first.options.HasField("temperature")
    assert first.pricing.HasField("cache_read_per_mtok") and first.pricing.cache_read_per_mtok == 0.0
    assert not first.pricing.HasField("cache_write_per_mtok")  # unpriced, not zero
    assert first.WhichOneof("provider_options") == "anthropic"
    assert first.anthropic.thinking_budget_tokens == 4096 and first.anthropic.effort == "high"

    second = await model(cfg, "anthropic", "claude-haiku", name="haiku")
    assert second.name == "haiku" and not second.is_default
    got = await cfg.stub.GetModel(cs.GetModelRequest(name=first.name), metadata=cfg.admin)
    assert unstamped(got) == unstamped(first) and got.revision > first.revision  # haiku was created between

    await fails(cfg.stub.GetModel(cs.GetModelRequest(name="nope"), metadata=cfg.admin),
                grpc.StatusCode.NOT_FOUND, "MODEL_NOT_FOUND")
    await fails(cfg.stub.GetModel(cs.GetModelRequest(), metadata=cfg.admin), INVALID, field="name")
    await fails(model(cfg, "anthropic", "claude-haiku", name="haiku"), grpc.StatusCode.ALREADY_EXISTS,
                "MODEL_EXISTS")
    await fails(model(cfg, "ghost", "x"), grpc.StatusCode.NOT_FOUND, "PROVIDER_NOT_FOUND")

    await cfg.stub.DeleteModel(cs.DeleteModelRequest(name="haiku", etag=second.etag), metadata=cfg.admin)
    await fails(cfg.stub.DeleteModel(cs.DeleteModelRequest(name="haiku"), metadata=cfg.admin),
                grpc.StatusCode.NOT_FOUND, "MODEL_NOT_FOUND")
    # Deleting the default leaves no star; the next model created becomes the default.
    await cfg.stub.DeleteModel(cs.DeleteModelRequest(name=first.name), metadata=cfg.admin)
    third = await model(cfg, "anthropic", "claude-sonnet")
    assert third.is_default


async def test_model_validation_errors_store_nothing(cfg: ConfigHarness) -> None:
    await provider(cfg, "anthropic")
    await provider(cfg, "openai", pb.PROVIDER_TYPE_OPENAI)
    await provider(cfg, "compat", pb.PROVIDER_TYPE_OPENAI_COMPATIBLE, base_url="https://c.example.com/v1")
    await provider(cfg, "gem", pb.PROVIDER_TYPE_GOOGLE)
    await provider(cfg, "bedrock", pb.PROVIDER_TYPE_BEDROCK)
    before = await audit_count(cfg)

    def m(provider_name: str = "anthropic", **fields: object) -> pb.Model:
        base: dict[str, object] = {"provider": provider_name, "model_identifier": "m-1",
                                   "display_name": "M", "context_limit": 1000}
        base.update(fields)
        return pb.Model(**base)  # type: ignore[arg-type]

    cases = [
        (m(context_limit=0), "model.context_limit"),
        (m(context_limit=-5), "model.context_limit"),
        (m(display_name=""), "model.display_name"),
        (m(model_identifier=""), "model.model_identifier"),
        (m(model_identifier="has space"), "model.model_identifier"),
        (m(name="Bad_Name"), "model.name"),
        (m(options=pb.GenerationOptions(compression_threshold=101)), "model.options.compression_threshold"),
        (m(options=pb.GenerationOptions(compression_threshold=-1)), "model.options.compression_threshold"),
        (m(options=pb.GenerationOptions(temperature=2.5)), "model.options.temperature"),
        (m(options=pb.GenerationOptions(top_p=1.5)), "model.options.top_p"),
        (m(options=pb.GenerationOptions(top_k=0)), "model.options.top_k"),
        (m(options=pb.GenerationOptions(presence_penalty=-3)), "model.options.presence_penalty"),
        (m(options=pb.GenerationOptions(frequency_penalty=2.1)), "model.options.frequency_penalty"),
        (m(options=pb.GenerationOptions(max_output_tokens=0)), "model.options.max_output_tokens"),
        (m(options=pb.GenerationOptions(max_output_tokens=2000)), "model.options.max_output_tokens"),  # > context
        (m(pricing=pb.Pricing(input_per_mtok=-0.01)), "model.pricing.input_per_mtok"),
        (m(pricing=pb.Pricing(output_per_mtok=-1)), "model.pricing.output_per_mtok"),
        (m(pricing=pb.Pricing(cache_read_per_mtok=-1)), "model.pricing.cache_read_per_mtok"),
        (m(pricing=pb.Pricing(cache_write_per_mtok=float("nan"))), "model.pricing.cache_write_per_mtok"),
        # Option family vs provider type.
        (m(openai=pb.OpenAIOptions(reasoning_effort="low")), "model.openai"),
        (m("openai", anthropic=pb.AnthropicOptions(effort="low")), "model.anthropic"),
        (m("compat", openai=pb.OpenAIOptions(reasoning_effort="low")), "model.openai"),
        (m("gem", openrouter=pb.ReasoningOptions(reasoning_enabled=True)), "model.openrouter"),
        (m("bedrock", google=pb.GoogleOptions(thinking_budget=10)), "model.google"),
        # Enums and ranges inside a family.
        (m(anthropic=pb.AnthropicOptions(effort="extreme")), "model.anthropic.effort"),
        (m("openai", openai=pb.OpenAIOptions(reasoning_effort="maximal")), "model.openai.reasoning_effort"),
        # What the provider would refuse at call time: sampling with reasoning.
        (m("openai", options=pb.GenerationOptions(temperature=0.3), openai=pb.OpenAIOptions(reasoning_effort="high")),
         "model.options.temperature"),
        (m(anthropic=pb.AnthropicOptions(thinking="adaptive", thinking_budget_tokens=2048)), "model.anthropic.thinking"),
        (m("openai", openai=pb.OpenAIOptions(max_completion_tokens=0)), "model.openai.max_completion_tokens"),
        (m("gem", google=pb.GoogleOptions(thinking_budget=-2)), "model.google.thinking_budget"),
        # Thinking budget vs max output tokens (and Anthropic's minimum).
        (m(context_limit=200000, options=pb.GenerationOptions(max_output_tokens=4000),
           anthropic=pb.AnthropicOptions(thinking_budget_tokens=4000)), "model.anthropic.thinking_budget_tokens"),
        (m("bedrock", context_limit=200000, options=pb.GenerationOptions(max_output_tokens=4000),
           anthropic=pb.AnthropicOptions(thinking_budget_tokens=8000)), "model.anthropic.thinking_budget_tokens"),
        (m(anthropic=pb.AnthropicOptions(thinking_budget_tokens=512)), "model.anthropic.thinking_budget_tokens"),
    ]
    for request_model, field in cases:
        await fails(cfg.stub.CreateModel(cs.CreateModelRequest(model=request_model), metadata=cfg.admin),
                    INVALID, field=field)
    await fails(cfg.stub.CreateModel(cs.CreateModelRequest(model=m("")), metadata=cfg.admin),
                INVALID, field="model.provider")
    assert await raw(cfg, "SELECT name FROM models") == []
    assert await audit_count(cfg) == before

    # The valid counterparts are accepted.
    ok = await cfg.stub.CreateModel(cs.CreateModelRequest(model=m(
        "bedrock", context_limit=200000, options=pb.GenerationOptions(max_output_tokens=16000),
        anthropic=pb.AnthropicOptions(thinking_budget_tokens=8000, effort="max"))), metadata=cfg.admin)
    assert ok.anthropic.thinking_budget_tokens == 8000
    ok2 = await cfg.stub.CreateModel(cs.CreateModelRequest(model=m(
        "gem", google=pb.GoogleOptions(thinking_budget=-1, include_thoughts=True))), metadata=cfg.admin)
    assert ok2.google.thinking_budget == -1 and ok2.google.include_thoughts


async def test_update_model_masks(cfg: ConfigHarness) -> None:
    await provider(cfg, "anthropic")
    await provider(cfg, "openai", pb.PROVIDER_TYPE_OPENAI)
    m = await model(cfg, "anthropic", "claude", name="claude", context_limit=200000,
                    options=pb.GenerationOptions(temperature=0.5, max_output_tokens=8000, top_k=40),
                    pricing=pb.Pricing(input_per_mtok=3, output_per_mtok=15),
                    anthropic=pb.AnthropicOptions(effort="low"))
    upd = cfg.stub.UpdateModel

    def req(paths: list[str], **fields: object) -> cs.UpdateModelRequest:
        return cs.UpdateModelRequest(model=pb.Model(name="claude", **fields),  # type: ignore[arg-type]
                                     update_mask={"paths": paths})

    for bad in [[], ["nope"], ["name"], ["provider"], ["is_default"], ["options.nope"], ["pricing.x"],
                ["anthropic.nope"]]:
        await fails(upd(req(bad), metadata=cfg.admin), INVALID, field="update_mask")
    await fails(upd(cs.UpdateModelRequest(model=pb.Model(name="ghost", display_name="x"),
                                          update_mask={"paths": ["display_name"]}), metadata=cfg.admin),
                grpc.StatusCode.NOT_FOUND, "MODEL_NOT_FOUND")

    # One general option: the others stay; masked but unset clears.
    out = await upd(req(["options.temperature"]), metadata=cfg.admin)
    assert not out.options.HasField("temperature")
    assert out.options.max_output_tokens == 8000 and out.options.top_k == 40
    out = await upd(req(["options.top_p", "pricing.input_per_mtok"], options=pb.GenerationOptions(top_p=0.9)),
                    metadata=cfg.admin)
    assert out.options.top_p == pytest.approx(0.9) and not out.pricing.HasField("input_per_mtok")
    assert out.pricing.output_per_mtok == 15
    # The whole options message replaces all general options.
    out = await upd(req(["options"], options=pb.GenerationOptions(compression_threshold=50)), metadata=cfg.admin)
    assert out.options == pb.GenerationOptions(compression_threshold=50)
    stored = (await raw(cfg, "SELECT options, pricing FROM models"))[0]
    assert stored["options"] == {"compression_threshold": 50}
    # A family field; then the whole family cleared.
    out = await upd(req(["anthropic.thinking_budget_tokens"], context_limit=1,
                        anthropic=pb.AnthropicOptions(thinking_budget_tokens=2048)), metadata=cfg.admin)
    assert out.anthropic.thinking_budget_tokens == 2048 and out.anthropic.effort == "low"
    assert out.context_limit == 200000  # not in the mask
    out = await upd(req(["anthropic"]), metadata=cfg.admin)
    assert out.WhichOneof("provider_options") is None
    # Validation runs on the merged model: a budget not below the max output tokens.
    await upd(req(["options.max_output_tokens"], options=pb.GenerationOptions(max_output_tokens=4000)),
              metadata=cfg.admin)
    await fails(upd(req(["anthropic"], anthropic=pb.AnthropicOptions(thinking_budget_tokens=4000)),
                    metadata=cfg.admin), INVALID, field="model.anthropic.thinking_budget_tokens")
    await fails(upd(req(["openai"], openai=pb.OpenAIOptions(reasoning_effort="low")), metadata=cfg.admin),
                INVALID, field="model.openai")
    await fails(upd(req(["context_limit"], context_limit=100), metadata=cfg.admin), INVALID,
                field="model.options.max_output_tokens")
    await fails(upd(req(["display_name"]), metadata=cfg.admin), INVALID, field="model.display_name")
    out = await upd(req(["display_name", "enabled"], display_name="Claude!", enabled=False), metadata=cfg.admin)
    assert out.display_name == "Claude!" and not out.enabled and out.is_default
    assert m.etag != out.etag


async def test_model_etags(cfg: ConfigHarness) -> None:
    await provider(cfg, "anthropic")
    m = await model(cfg, name="etm")
    fresh = await cfg.stub.UpdateModel(cs.UpdateModelRequest(
        model=pb.Model(name="etm", display_name="v2", etag=m.etag), update_mask={"paths": ["display_name"]}),
        metadata=cfg.admin)
    before = await audit_count(cfg)
    await fails(cfg.stub.UpdateModel(cs.UpdateModelRequest(
        model=pb.Model(name="etm", display_name="stale", etag=m.etag), update_mask={"paths": ["display_name"]}),
        metadata=cfg.admin), grpc.StatusCode.ABORTED, "ETAG_MISMATCH")
    await fails(cfg.stub.DeleteModel(cs.DeleteModelRequest(name="etm", etag=m.etag), metadata=cfg.admin),
                grpc.StatusCode.ABORTED, "ETAG_MISMATCH")
    assert (await raw(cfg, "SELECT display_name FROM models"))[0]["display_name"] == "v2"
    assert await audit_count(cfg) == before
    await cfg.stub.DeleteModel(cs.DeleteModelRequest(name="etm", etag=fresh.etag), metadata=cfg.admin)


async def test_list_models_pagination_and_filter(cfg: ConfigHarness) -> None:
    await provider(cfg, "bbb", pb.PROVIDER_TYPE_OPENAI)
    await provider(cfg, "aaa", pb.PROVIDER_TYPE_OPENAI)
    expected = []
    for prov in ["bbb", "aaa"]:
        for i in range(7):
            made = await model(cfg, prov, f"m{i}", name=f"{prov}-m{6 - i}")
            expected.append((prov, made.name))
    expected.sort()
    seen, token = [], ""
    while True:
        page = await cfg.stub.ListModels(cs.ListModelsRequest(page_size=4, page_token=token), metadata=cfg.admin)
        seen += [(m.provider, m.name) for m in page.models]
        token = page.next_page_token
        if not token:
            break
    assert seen == expected
    only = await cfg.stub.ListModels(cs.ListModelsRequest(provider="bbb"), metadata=cfg.admin)
    assert [m.name for m in only.models] == [n for p, n in expected if p == "bbb"]
    first = await cfg.stub.ListModels(cs.ListModelsRequest(page_size=3, provider="aaa"), metadata=cfg.admin)
    second = await cfg.stub.ListModels(cs.ListModelsRequest(page_size=10, provider="aaa",
                                                            page_token=first.next_page_token), metadata=cfg.admin)
    assert [m.name for m in [*first.models, *second.models]] == [n for p, n in expected if p == "aaa"]
    # A providers-list token, a garbled one, and a list token with the wrong element types.
    prov_token = (await cfg.stub.ListProviders(cs.ListProvidersRequest(page_size=1), metadata=cfg.admin)
                  ).next_page_token
    for bad in [prov_token, "%%%", "WyJhIiwxXQ", "WzEsMl0"]:  # '["a",1]', '[1,2]'
        await fails(cfg.stub.ListModels(cs.ListModelsRequest(page_token=bad), metadata=cfg.admin),
                    INVALID, field="page_token")


async def test_set_default_model(cfg: ConfigHarness) -> None:
    await provider(cfg, "anthropic")
    a = await model(cfg, name="a")
    b = await model(cfg, name="b")
    assert a.is_default and not b.is_default
    starred = await cfg.stub.SetDefaultModel(cs.SetDefaultModelRequest(model="b"), metadata=cfg.admin)
    assert starred.name == "b" and starred.is_default
    assert not (await cfg.stub.GetModel(cs.GetModelRequest(name="a"), metadata=cfg.admin)).is_default
    await fails(cfg.stub.SetDefaultModel(cs.SetDefaultModelRequest(model="ghost"), metadata=cfg.admin),
                grpc.StatusCode.NOT_FOUND, "MODEL_NOT_FOUND")
    assert [r["name"] for r in await raw(cfg, "SELECT name FROM models WHERE is_default")] == ["b"]
    # An empty model clears the star.
    cleared = await cfg.stub.SetDefaultModel(cs.SetDefaultModelRequest(), metadata=cfg.admin)
    assert unstamped(cleared) == pb.Model() and cleared.revision > starred.revision
    assert await raw(cfg, "SELECT name FROM models WHERE is_default") == []


async def test_set_default_model_concurrently(cfg: ConfigHarness) -> None:
    await provider(cfg, "anthropic")
    names = [f"m{i}" for i in range(10)]
    for name in names:
        await model(cfg, name=name)
    calls = [cfg.stub.SetDefaultModel(cs.SetDefaultModelRequest(model=names[i % len(names)]), metadata=cfg.admin)
             for i in range(50)]
    results = await asyncio.gather(*calls)
    assert all(r.is_default for r in results)
    rows = await raw(cfg, "SELECT name FROM models WHERE is_default")
    assert len(rows) == 1
    listed = await cfg.stub.ListModels(cs.ListModelsRequest(), metadata=cfg.admin)
    assert [m.name for m in listed.models if m.is_default] == [rows[0]["name"]]
    # Every call was its own committed revision and audit event.
    events = await raw(cfg, "SELECT revision FROM audit_events WHERE action = 'SetDefaultModel' ORDER BY id")
    assert len(events) == 50 and len({e["revision"] for e in events}) == 50


async def test_partial_unique_index_refuses_second_default(cfg: ConfigHarness) -> None:
    await provider(cfg, "anthropic")
    await model(cfg, name="a")
    await model(cfg, name="b")
    with pytest.raises(asyncpg.UniqueViolationError):
        await cfg.server.store.pool.execute("UPDATE models SET is_default = true WHERE name = 'b'")
    with pytest.raises(asyncpg.UniqueViolationError):
        await cfg.server.store.pool.execute("UPDATE models SET is_default = true")
    assert [r["name"] for r in await raw(cfg, "SELECT name FROM models WHERE is_default")] == ["a"]


EXPECTED_FAMILIES = {
    pb.PROVIDER_TYPE_ANTHROPIC: ("anthropic", {"anthropic.thinking_budget_tokens", "anthropic.effort",
                                               "anthropic.thinking"}),
    pb.PROVIDER_TYPE_BEDROCK: ("anthropic", {"anthropic.thinking_budget_tokens", "anthropic.effort",
                                             "anthropic.thinking"}),
    pb.PROVIDER_TYPE_OPENAI: ("openai", {"openai.reasoning_effort", "openai.max_completion_tokens",
                                         "openai.parallel_tool_calls", "openai.api"}),
    pb.PROVIDER_TYPE_AZURE_OPENAI: ("openai", {"openai.reasoning_effort", "openai.max_completion_tokens",
                                               "openai.parallel_tool_calls", "openai.api"}),
    pb.PROVIDER_TYPE_GOOGLE: ("google", {"google.thinking_budget", "google.include_thoughts",
                                         "google.thinking_level"}),
    pb.PROVIDER_TYPE_OPENROUTER: ("openrouter", {"openrouter.reasoning_enabled", "openrouter.reasoning_effort"}),
    pb.PROVIDER_TYPE_VERCEL_AI_GATEWAY: ("vercel", {"vercel.reasoning_enabled", "vercel.reasoning_effort"}),
    pb.PROVIDER_TYPE_OPENAI_COMPATIBLE: ("", set()),
}


async def test_options_schema_for_every_type(cfg: ConfigHarness) -> None:
    member = await cfg.md(Role.MEMBER, "dev")
    assert set(EXPECTED_FAMILIES) == set(pb.ProviderType.values()) - {pb.PROVIDER_TYPE_UNSPECIFIED}
    for ptype, (family, specific) in EXPECTED_FAMILIES.items():
        schema = await cfg.stub.GetModelOptionsSchema(cs.GetModelOptionsSchemaRequest(provider_type=ptype),
                                                      metadata=member)
        assert schema.provider_type == ptype and schema.provider_options_field == family
        assert {f.path for f in schema.provider_specific} == specific
        general = {f.path: f for f in schema.general}
        assert {"options.compression_threshold", "options.max_output_tokens", "options.temperature",
                "options.top_p", "options.top_k", "options.presence_penalty", "options.frequency_penalty",
                "pricing.input_per_mtok", "pricing.output_per_mtok", "pricing.cache_read_per_mtok",
                "pricing.cache_write_per_mtok"} == set(general)
        ct = general["options.compression_threshold"]
        assert ct.kind == cs.OptionField.KIND_INTEGER and (ct.minimum, ct.maximum) == (0, 100)
        assert ct.default_json == "70"
        temp = general["options.temperature"]
        assert temp.kind == cs.OptionField.KIND_NUMBER and (temp.minimum, temp.maximum) == (0, 2)
        price = general["pricing.input_per_mtok"]
        assert price.minimum == 0 and not price.HasField("maximum")
        assert all(f.description and f.display_name for f in [*schema.general, *schema.provider_specific])
    anth = await cfg.stub.GetModelOptionsSchema(cs.GetModelOptionsSchemaRequest(
        provider_type=pb.PROVIDER_TYPE_ANTHROPIC), metadata=member)
    effort = next(f for f in anth.provider_specific if f.path == "anthropic.effort")
    assert effort.kind == cs.OptionField.KIND_ENUM
    assert list(effort.enum_values) == ["low", "medium", "high", "xhigh", "max"]
    budget = next(f for f in anth.provider_specific if f.path == "anthropic.thinking_budget_tokens")
    assert budget.minimum == 1024
    oai = await cfg.stub.GetModelOptionsSchema(cs.GetModelOptionsSchemaRequest(
        provider_type=pb.PROVIDER_TYPE_OPENAI), metadata=member)
    assert list(next(f for f in oai.provider_specific if f.path == "openai.reasoning_effort").enum_values) == [
        "none", "minimal", "low", "medium", "high", "xhigh", "max"]
    # Every schema path is a path UpdateModel accepts in its mask.
    from modelplane_server.config_svc.wire import MODEL_MASK
    for ptype in EXPECTED_FAMILIES:
        schema = await cfg.stub.GetModelOptionsSchema(cs.GetModelOptionsSchemaRequest(provider_type=ptype),
                                                      metadata=member)
        assert {f.path for f in [*schema.general, *schema.provider_specific]} <= MODEL_MASK
    await fails(cfg.stub.GetModelOptionsSchema(cs.GetModelOptionsSchemaRequest(), metadata=member),
                INVALID, field="provider_type")
    await fails(cfg.stub.GetModelOptionsSchema(cs.GetModelOptionsSchemaRequest(provider_type=99),
                                               metadata=member), INVALID, field="provider_type")
