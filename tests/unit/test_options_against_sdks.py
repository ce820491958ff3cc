"""Option values and mappings checked against the vendors' current SDKs
(openai, anthropic, google-genai, botocore's bedrock-runtime model), and
the configuration-time refusals of what a provider would reject."""

from __future__ import annotations

import gzip
import json
import typing
from pathlib import Path
from typing import Any

import anthropic.types
import botocore
import pytest
from google.genai import types as genai_types
from openai.types.shared import ReasoningEffort

from modelplane_server.domain.options import (
    ANTHROPIC_EFFORTS,
    ANTHROPIC_THINKING_TYPES,
    GOOGLE_THINKING_LEVELS,
    OPENAI_REASONING_EFFORTS,
    OPTIONS_BY_PATH,
)
from modelplane_server.domain.types import GenerationOptions, Model, ProviderOptions, ProviderType
from modelplane_server.domain.validation import model_violations
from modelplane_server.resolver_svc.upstream import anthropic_messages, bedrock_converse, openai_chat


def literal_values(tp: Any) -> set[str]:
    """Every string of a (possibly Optional, nested) Literal type."""
    out: set[str] = set()
    for arg in typing.get_args(tp):
        if isinstance(arg, str):
            out.add(arg)
        elif arg is not type(None):
            out |= literal_values(arg)
    return out


def bedrock_shapes() -> dict[str, Any]:
    path = Path(botocore.__file__).parent / "data" / "bedrock-runtime" / "2023-09-30" / "service-2.json.gz"
    shapes: dict[str, Any] = json.loads(gzip.decompress(path.read_bytes()))["shapes"]
    return shapes


def test_openai_reasoning_efforts_are_the_sdks() -> None:
    assert set(OPENAI_REASONING_EFFORTS) == literal_values(ReasoningEffort)
    assert OPTIONS_BY_PATH["openai.reasoning_effort"].enum_values == OPENAI_REASONING_EFFORTS


def test_anthropic_efforts_and_thinking_types_are_the_sdks() -> None:
    hints = typing.get_type_hints(anthropic.types.OutputConfigParam, include_extras=True)
    assert set(ANTHROPIC_EFFORTS) == literal_values(hints["effort"])
    sdk_types = {literal_values(typing.get_type_hints(cls)["type"]).pop()
                 for cls in typing.get_args(anthropic.types.ThinkingConfigParam)}
    # "enabled" is what thinking_budget_tokens means; the other modes are the thinking option.
    assert sdk_types == set(ANTHROPIC_THINKING_TYPES) | {"enabled"}


def test_bedrock_takes_the_same_efforts() -> None:
    doc = bedrock_shapes()["OutputConfig"]["members"]["effort"]["documentation"]
    assert all(f"<code>{e}</code>" in doc for e in ANTHROPIC_EFFORTS)


def test_google_thinking_levels_are_the_sdks() -> None:
    sdk = {level.value.lower() for level in genai_types.ThinkingLevel} - {"thinking_level_unspecified"}
    assert set(GOOGLE_THINKING_LEVELS) == sdk
    assert set(genai_types.ThinkingConfig.model_fields) >= {"thinking_budget", "include_thoughts", "thinking_level"}


def test_every_stop_reason_the_sdks_know_is_mapped() -> None:
    # Anthropic: pause_turn (server tools, which modelplane does not send) is "other".
    assert literal_values(anthropic.types.StopReason) - set(anthropic_messages._FINISH) == {"pause_turn"}
    # Converse: the malformed_* reasons are "other".
    converse = set(bedrock_shapes()["StopReason"]["enum"])
    assert converse - set(bedrock_converse._FINISH) == {"malformed_model_output", "malformed_tool_use"}
    from openai.types.chat import chat_completion
    finish = chat_completion.Choice.model_fields["finish_reason"].annotation
    assert literal_values(finish) <= set(openai_chat._FINISH)


def test_anthropic_sdk_no_longer_types_sampling_parameters() -> None:
    """anthropic 2.14's MessageCreateParams has no temperature, top_p or
    top_k (docs/upstream.md: modelplane still sends them, with thinking off,
    for the models that take them; validation refuses what Claude rejects)."""
    from anthropic.types import message_create_params
    keys = message_create_params.MessageCreateParamsNonStreaming.__optional_keys__
    assert not keys & {"temperature", "top_p", "top_k"}
    assert {"thinking", "output_config"} <= keys


# --- refused at configuration time -------------------------------------------------


def model(provider_type: ProviderType, family: str, values: dict[str, Any], **options: Any) -> tuple[Model, ProviderType]:
    return Model(name="m", provider="p", model_identifier="x", display_name="M", context_limit=200_000,
                 options=GenerationOptions(**options), provider_options=ProviderOptions(family, values)), provider_type


def fields(m: Model, provider_type: ProviderType) -> list[str]:
    return [v.field for v in model_violations(m, provider_type)]


@pytest.mark.parametrize(("case", "expected"), [
    # Claude: a budget means enabled thinking; modes are the alternative.
    (model(ProviderType.ANTHROPIC, "anthropic", {"thinking": "adaptive", "thinking_budget_tokens": 2048}),
     ["model.anthropic.thinking"]),
    (model(ProviderType.BEDROCK, "anthropic", {"thinking": "adaptive"}, temperature=0.5, top_k=5),
     ["model.options.temperature", "model.options.top_k"]),
    (model(ProviderType.ANTHROPIC, "anthropic", {"thinking": "disabled", "effort": "max"}),
     ["model.anthropic.effort"]),
    # Current Claude models take only one of temperature and top_p.
    (model(ProviderType.ANTHROPIC, "anthropic", {"effort": "low"}, temperature=0.5, top_p=0.9), ["model.options.top_p"]),
    # OpenAI reasoning models refuse sampling ...
    (model(ProviderType.OPENAI, "openai", {"reasoning_effort": "high"}, temperature=0.5, presence_penalty=0.1),
     ["model.options.temperature", "model.options.presence_penalty"]),
    (model(ProviderType.AZURE_OPENAI, "openai", {"reasoning_effort": "minimal"}, top_p=0.5, frequency_penalty=0.1),
     ["model.options.top_p", "model.options.frequency_penalty"]),
    # Gemini: a level or a budget, not both.
    (model(ProviderType.GOOGLE, "google", {"thinking_level": "low", "thinking_budget": 1024}),
     ["model.google.thinking_level"]),
])
def test_refused_what_the_provider_would_reject(case: tuple[Model, ProviderType], expected: list[str]) -> None:
    assert fields(*case) == expected


@pytest.mark.parametrize("case", [
    # ... except with effort none, where they are plain chat models.
    model(ProviderType.OPENAI, "openai", {"reasoning_effort": "none"}, temperature=0.5, top_p=0.9),
    model(ProviderType.ANTHROPIC, "anthropic", {"thinking": "adaptive", "effort": "max"}, max_output_tokens=64000),
    model(ProviderType.ANTHROPIC, "anthropic", {"thinking": "disabled"}, temperature=0.5),
    model(ProviderType.BEDROCK, "anthropic", {"thinking_budget_tokens": 2048}, temperature=1, top_p=0.95),
    model(ProviderType.GOOGLE, "google", {"thinking_level": "minimal", "include_thoughts": True}),
    model(ProviderType.OPENROUTER, "openrouter", {"reasoning_effort": "xhigh", "reasoning_enabled": True}),
    model(ProviderType.VERCEL_AI_GATEWAY, "vercel", {"reasoning_effort": "none"}),
])
def test_current_values_and_modes_are_accepted(case: tuple[Model, ProviderType]) -> None:
    assert fields(*case) == []
