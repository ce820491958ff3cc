"""The option definitions agree with the proto contract and the domain types."""

from __future__ import annotations

import dataclasses
import json

import pytest
from google.protobuf.descriptor import FieldDescriptor
from modelplane.v1 import resources_pb2

from modelplane_server.domain.types import OPTIONS_FAMILY, GenerationOptions, Pricing, ProviderType
from modelplane_server.domain.options import (
    ALL_OPTIONS,
    FAMILY_OPTIONS,
    GENERAL_OPTIONS,
    GENERATION_OPTIONS,
    OPTIONS_BY_PATH,
    PRICING_OPTIONS,
    OptionDef,
    OptionKind,
    schema_for,
)

PROTO_KIND = {
    FieldDescriptor.TYPE_INT32: OptionKind.INTEGER,
    FieldDescriptor.TYPE_INT64: OptionKind.INTEGER,
    FieldDescriptor.TYPE_DOUBLE: OptionKind.NUMBER,
    FieldDescriptor.TYPE_BOOL: OptionKind.BOOLEAN,
    FieldDescriptor.TYPE_STRING: OptionKind.ENUM,  # every string option is a closed set
}


def _proto_fields(message: str) -> dict[str, int]:
    return {f.name: f.type for f in resources_pb2.DESCRIPTOR.message_types_by_name[message].fields}


def _oneof_messages() -> dict[str, str]:
    oneof = resources_pb2.Model.DESCRIPTOR.oneofs_by_name["provider_options"]
    return {f.name: f.message_type.name for f in oneof.fields if f.message_type is not None}


@pytest.mark.parametrize(
    ("definitions", "message", "domain_type"),
    [
        (GENERATION_OPTIONS, "GenerationOptions", GenerationOptions),
        (PRICING_OPTIONS, "Pricing", Pricing),
    ],
)
def test_general_options_cover_exactly_the_proto_and_domain_fields(
    definitions: tuple[OptionDef, ...], message: str, domain_type: type
) -> None:
    assert set(definitions) <= set(GENERAL_OPTIONS)
    defined = {d.field_name: d.kind for d in definitions}
    proto = {name: PROTO_KIND[t] for name, t in _proto_fields(message).items()}
    assert defined == proto
    assert set(defined) == {f.name for f in dataclasses.fields(domain_type)}


def test_families_are_exactly_the_model_oneof() -> None:
    assert set(FAMILY_OPTIONS) == set(_oneof_messages())
    assert set(OPTIONS_FAMILY.values()) <= set(FAMILY_OPTIONS)


@pytest.mark.parametrize("family", sorted(FAMILY_OPTIONS))
def test_family_options_match_their_proto_message(family: str) -> None:
    defined = {d.field_name: d.kind for d in FAMILY_OPTIONS[family]}
    proto = {name: PROTO_KIND[t] for name, t in _proto_fields(_oneof_messages()[family]).items()}
    assert defined == proto
    assert all(d.path == f"{family}.{d.field_name}" for d in FAMILY_OPTIONS[family])


def test_paths_are_unique() -> None:
    assert len(OPTIONS_BY_PATH) == len(ALL_OPTIONS)


@pytest.mark.parametrize("d", ALL_OPTIONS, ids=lambda d: d.path)
def test_definition_is_self_consistent(d: OptionDef) -> None:
    assert d.display_name and d.description.endswith(".")
    assert d.description.count(". ") == 0, "one sentence"
    assert (d.kind is OptionKind.ENUM) == bool(d.enum_values)
    if d.kind in (OptionKind.BOOLEAN, OptionKind.ENUM):
        assert d.minimum is None and d.maximum is None
    if d.minimum is not None and d.maximum is not None:
        assert d.minimum < d.maximum
    if d.default is not None:
        assert json.loads(d.default_json) == d.default
    else:
        assert d.default_json == ""


@pytest.mark.parametrize(
    ("path", "kind", "minimum", "maximum", "default", "enum_values"),
    [
        ("options.compression_threshold", OptionKind.INTEGER, 0, 100, 70, ()),
        ("options.max_output_tokens", OptionKind.INTEGER, 1, None, None, ()),
        ("options.temperature", OptionKind.NUMBER, 0, 2, None, ()),
        ("options.top_p", OptionKind.NUMBER, 0, 1, None, ()),
        ("options.top_k", OptionKind.INTEGER, 1, None, None, ()),
        ("options.presence_penalty", OptionKind.NUMBER, -2, 2, None, ()),
        ("options.frequency_penalty", OptionKind.NUMBER, -2, 2, None, ()),
        ("pricing.input_per_mtok", OptionKind.NUMBER, 0, None, None, ()),
        ("pricing.output_per_mtok", OptionKind.NUMBER, 0, None, None, ()),
        ("pricing.cache_read_per_mtok", OptionKind.NUMBER, 0, None, None, ()),
        ("pricing.cache_write_per_mtok", OptionKind.NUMBER, 0, None, None, ()),
        ("anthropic.thinking_budget_tokens", OptionKind.INTEGER, 1024, None, None, ()),
        ("anthropic.effort", OptionKind.ENUM, None, None, None, ("low", "medium", "high", "xhigh", "max")),
        ("anthropic.thinking", OptionKind.ENUM, None, None, None, ("adaptive", "disabled", "between_tools")),
        ("openai.reasoning_effort", OptionKind.ENUM, None, None, None,
         ("none", "minimal", "low", "medium", "high", "xhigh", "max")),
        ("openai.max_completion_tokens", OptionKind.INTEGER, 1, None, None, ()),
        ("openai.parallel_tool_calls", OptionKind.BOOLEAN, None, None, None, ()),
        ("openai.api", OptionKind.ENUM, None, None, "responses", ("responses", "chat_completions")),
        ("google.thinking_budget", OptionKind.INTEGER, -1, 32768, None, ()),
        ("google.include_thoughts", OptionKind.BOOLEAN, None, None, None, ()),
        ("google.thinking_level", OptionKind.ENUM, None, None, None, ("minimal", "low", "medium", "high", "xhigh")),
        ("openrouter.reasoning_enabled", OptionKind.BOOLEAN, None, None, None, ()),
        ("openrouter.reasoning_effort", OptionKind.ENUM, None, None, None,
         ("none", "minimal", "low", "medium", "high", "xhigh")),
        ("vercel.reasoning_enabled", OptionKind.BOOLEAN, None, None, None, ()),
        ("vercel.reasoning_effort", OptionKind.ENUM, None, None, None,
         ("none", "minimal", "low", "medium", "high", "xhigh")),
    ],
)
def test_option_table(
    path: str, kind: OptionKind, minimum: float | None, maximum: float | None,
    default: object, enum_values: tuple[str, ...],
) -> None:
    d = OPTIONS_BY_PATH[path]
    assert (d.kind, d.minimum, d.maximum, d.default, d.enum_values) == (
        kind, minimum, maximum, default, enum_values)


@pytest.mark.parametrize(
    ("provider_type", "family", "specific"),
    [
        (ProviderType.ANTHROPIC, "anthropic", ["anthropic.thinking_budget_tokens", "anthropic.effort",
                                               "anthropic.thinking"]),
        (ProviderType.BEDROCK, "anthropic", ["anthropic.thinking_budget_tokens", "anthropic.effort",
                                             "anthropic.thinking"]),
        (ProviderType.OPENAI, "openai", ["openai.reasoning_effort", "openai.max_completion_tokens",
                                         "openai.parallel_tool_calls", "openai.api"]),
        (ProviderType.AZURE_OPENAI, "openai", ["openai.reasoning_effort", "openai.max_completion_tokens",
                                               "openai.parallel_tool_calls", "openai.api"]),
        (ProviderType.GOOGLE, "google", ["google.thinking_budget", "google.include_thoughts",
                                         "google.thinking_level"]),
        (ProviderType.OPENROUTER, "openrouter", ["openrouter.reasoning_enabled", "openrouter.reasoning_effort"]),
        (ProviderType.VERCEL_AI_GATEWAY, "vercel", ["vercel.reasoning_enabled", "vercel.reasoning_effort"]),
        (ProviderType.OPENAI_COMPATIBLE, None, []),
    ],
)
def test_schema_for(provider_type: ProviderType, family: str | None, specific: list[str]) -> None:
    schema = schema_for(provider_type)
    assert schema.family == family
    assert [d.path for d in schema.provider_specific] == specific
    assert [d.path for d in schema.general] == [d.path for d in GENERAL_OPTIONS]
    assert len(schema.general) == 11


def test_schema_for_hands_out_copies() -> None:
    schema_for(ProviderType.OPENAI).general.clear()
    assert len(schema_for(ProviderType.OPENAI).general) == len(GENERAL_OPTIONS)
