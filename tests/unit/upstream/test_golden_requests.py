"""Exact request bodies per protocol and option combination.

build_request is pure, so most goldens compare its JSON directly; one test
per protocol checks that the bytes that crossed the wire are the same.
"""

from __future__ import annotations

from typing import Any

import pytest

from modelplane_server.resolver_svc.upstream import (
    AnthropicOptions,
    ChatMessage,
    GatewayReasoningOptions,
    GoogleOptions,
    ModelOptions,
    OpenAIOptions,
    ToolCall,
    UpstreamClient,
    UpstreamTarget,
    protocol_for,
)
from tests.fakes import KINDS, FakeUpstream
from tests.unit.upstream.conftest import CONVERSATION, WEATHER_TOOL, target_for

ALL_GENERAL = ModelOptions(
    max_output_tokens=1000, temperature=0.2, top_p=0.9, top_k=40, presence_penalty=0.1, frequency_penalty=0.3
)
TOOL_ROUND_TRIP = (
    ChatMessage("system", "You are terse."),
    ChatMessage("user", "Weather in Paris?"),
    ChatMessage(
        "assistant", "Checking.", tool_calls=(ToolCall("call_1", "get_weather", '{"city":"Paris"}'),)
    ),
    ChatMessage("tool", "18C, sunny", tool_call_id="call_1"),
    ChatMessage("user", "Thanks"),
)


def body(
    provider: str,
    options: ModelOptions = ModelOptions(),
    *,
    messages: Any = CONVERSATION,
    tools: Any = (),
    stream: bool = False,
    base_url: str = "https://up.example/v1",
) -> dict[str, Any]:
    target = UpstreamTarget(provider, base_url, "k", "us-east-1", "model-x", options)
    return protocol_for(target).build_request(target, messages, tools, stream=stream).json()  # type: ignore[no-any-return]


def without_messages(b: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in b.items() if k not in ("messages", "input", "system")}


# --- Chat Completions: per provider, what each general option becomes ---------


@pytest.mark.parametrize(
    ("provider", "expected"),
    [
        (
            "openai-compatible",
            {
                "model": "model-x",
                "max_tokens": 1000,
                "temperature": 0.2,
                "top_p": 0.9,
                "top_k": 40,
                "presence_penalty": 0.1,
                "frequency_penalty": 0.3,
            },
        ),
        (
            "openrouter",
            {
                "model": "model-x",
                "max_tokens": 1000,
                "temperature": 0.2,
                "top_p": 0.9,
                "top_k": 40,
                "presence_penalty": 0.1,
                "frequency_penalty": 0.3,
            },
        ),
        (
            "vercel-ai-gateway",
            {
                "model": "model-x",
                "max_tokens": 1000,
                "temperature": 0.2,
                "top_p": 0.9,
                "presence_penalty": 0.1,
                "frequency_penalty": 0.3,
            },
        ),
        ("google", {"model": "model-x", "max_tokens": 1000, "temperature": 0.2, "top_p": 0.9}),
    ],
)
def test_chat_general_options(provider: str, expected: dict[str, Any]) -> None:
    assert without_messages(body(provider, ALL_GENERAL)) == expected


def test_openai_on_chat_completions_uses_max_completion_tokens_and_drops_top_k() -> None:
    options = ModelOptions(
        max_output_tokens=1000,
        temperature=0.2,
        top_p=0.9,
        top_k=40,
        presence_penalty=0.1,
        frequency_penalty=0.3,
        openai=OpenAIOptions(api="chat_completions"),
    )
    assert without_messages(body("openai", options)) == {
        "model": "model-x",
        "max_completion_tokens": 1000,
        "temperature": 0.2,
        "top_p": 0.9,
        "presence_penalty": 0.1,
        "frequency_penalty": 0.3,
    }


def test_openai_chat_reasoning_drops_sampling_and_keeps_effort() -> None:
    options = ModelOptions(
        max_output_tokens=1000,
        temperature=0.2,
        top_p=0.9,
        presence_penalty=0.1,
        openai=OpenAIOptions(
            api="chat_completions",
            reasoning_effort="high",
            max_completion_tokens=4000,
            parallel_tool_calls=False,
        ),
    )
    assert without_messages(body("azure-openai", options, tools=[WEATHER_TOOL])) == {
        "model": "model-x",
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Current weather for a city",
                    "parameters": WEATHER_TOOL.parameters,
                },
            }
        ],
        "max_completion_tokens": 4000,
        "reasoning_effort": "high",
        "parallel_tool_calls": False,
    }


def test_parallel_tool_calls_left_out_without_tools() -> None:
    options = ModelOptions(openai=OpenAIOptions(parallel_tool_calls=True))
    assert "parallel_tool_calls" not in body("openai", options)
    assert body("openai", options, tools=[WEATHER_TOOL])["parallel_tool_calls"] is True


def test_google_thinking_goes_in_extra_body() -> None:
    options = ModelOptions(google=GoogleOptions(thinking_budget=800, include_thoughts=True))
    assert without_messages(body("google", options)) == {
        "model": "model-x",
        "extra_body": {"google": {"thinking_config": {"thinking_budget": 800, "include_thoughts": True}}},
    }


@pytest.mark.parametrize("provider", ["openrouter", "vercel-ai-gateway"])
def test_gateway_reasoning_object(provider: str) -> None:
    options = ModelOptions(gateway=GatewayReasoningOptions(reasoning_enabled=True, reasoning_effort="medium"))
    assert without_messages(body(provider, options)) == {
        "model": "model-x",
        "reasoning": {"enabled": True, "effort": "medium"},
    }


def test_chat_stream_asks_for_usage() -> None:
    b = body("openrouter", stream=True)
    assert b["stream"] is True
    assert b["stream_options"] == {"include_usage": True}


def test_chat_messages_with_tool_round_trip() -> None:
    assert body("openai-compatible", messages=TOOL_ROUND_TRIP)["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18C, sunny"},
        {"role": "user", "content": "Thanks"},
    ]


# --- Responses API ---------------------------------------------------------------


def test_responses_general_options_leave_out_what_it_lacks() -> None:
    assert without_messages(body("openai", ALL_GENERAL)) == {
        "model": "model-x",
        "store": False,
        "max_output_tokens": 1000,
        "temperature": 0.2,
        "top_p": 0.9,
    }


def test_responses_reasoning_and_tools() -> None:
    options = ModelOptions(
        temperature=0.5,
        openai=OpenAIOptions(reasoning_effort="xhigh", max_completion_tokens=9000, parallel_tool_calls=True),
    )
    b = body("openai", options, messages=TOOL_ROUND_TRIP, tools=[WEATHER_TOOL], stream=True)
    assert b == {
        "model": "model-x",
        "input": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": "Checking."},
            {
                "type": "function_call",
                "call_id": "call_1",
                "name": "get_weather",
                "arguments": '{"city":"Paris"}',
            },
            {"type": "function_call_output", "call_id": "call_1", "output": "18C, sunny"},
            {"role": "user", "content": "Thanks"},
        ],
        "store": False,
        "tools": [
            {
                "type": "function",
                "name": "get_weather",
                "description": "Current weather for a city",
                "parameters": WEATHER_TOOL.parameters,
                "strict": False,
            }
        ],
        "max_output_tokens": 9000,
        "reasoning": {"effort": "xhigh", "summary": "auto"},
        "include": ["reasoning.encrypted_content"],
        "parallel_tool_calls": True,
        "stream": True,
    }


# --- Anthropic Messages -------------------------------------------------------------


def test_anthropic_without_thinking_keeps_sampling_drops_penalties() -> None:
    assert without_messages(body("anthropic", ALL_GENERAL)) == {
        "model": "model-x",
        "max_tokens": 1000,
        "temperature": 0.2,
        "top_p": 0.9,
        "top_k": 40,
    }


def test_anthropic_thinking_and_effort() -> None:
    options = ModelOptions(
        max_output_tokens=20000,
        temperature=0.2,
        top_p=0.9,
        top_k=40,
        anthropic=AnthropicOptions(thinking_budget_tokens=10000, effort="max"),
    )
    assert without_messages(body("anthropic", options)) == {
        "model": "model-x",
        "max_tokens": 20000,
        "thinking": {"type": "enabled", "budget_tokens": 10000},
        "output_config": {"effort": "max"},
    }


def test_anthropic_default_max_tokens_leaves_room_for_thinking() -> None:
    assert body("anthropic")["max_tokens"] == 8192
    options = ModelOptions(anthropic=AnthropicOptions(thinking_budget_tokens=4000))
    assert body("anthropic", options)["max_tokens"] == 12192


def test_anthropic_messages_merge_tool_results_into_user_turn() -> None:
    b = body("anthropic", messages=TOOL_ROUND_TRIP, tools=[WEATHER_TOOL])
    assert b["system"] == "You are terse."
    assert b["tools"] == [
        {
            "name": "get_weather",
            "description": "Current weather for a city",
            "input_schema": WEATHER_TOOL.parameters,
        }
    ]
    assert b["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "18C, sunny"},
                {"type": "text", "text": "Thanks"},
            ],
        },
    ]


# --- Bedrock Converse --------------------------------------------------------------


def test_bedrock_general_options() -> None:
    assert without_messages(body("bedrock", ALL_GENERAL)) == {
        "inferenceConfig": {"maxTokens": 1000, "temperature": 0.2, "topP": 0.9},
        "additionalModelRequestFields": {"top_k": 40},
    }


def test_bedrock_thinking_and_effort() -> None:
    options = ModelOptions(
        max_output_tokens=20000,
        temperature=0.2,
        top_k=40,
        anthropic=AnthropicOptions(thinking_budget_tokens=10000, effort="high"),
    )
    assert without_messages(body("bedrock", options)) == {
        "inferenceConfig": {"maxTokens": 20000},
        "additionalModelRequestFields": {"thinking": {"type": "enabled", "budget_tokens": 10000}},
        "outputConfig": {"effort": "high"},
    }


def test_bedrock_messages_system_and_tools() -> None:
    b = body("bedrock", messages=TOOL_ROUND_TRIP, tools=[WEATHER_TOOL])
    assert b == {
        "messages": [
            {"role": "user", "content": [{"text": "Weather in Paris?"}]},
            {
                "role": "assistant",
                "content": [
                    {"text": "Checking."},
                    {"toolUse": {"toolUseId": "call_1", "name": "get_weather", "input": {"city": "Paris"}}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"toolResult": {"toolUseId": "call_1", "content": [{"text": "18C, sunny"}]}},
                    {"text": "Thanks"},
                ],
            },
        ],
        "system": [{"text": "You are terse."}],
        "toolConfig": {
            "tools": [
                {
                    "toolSpec": {
                        "name": "get_weather",
                        "description": "Current weather for a city",
                        "inputSchema": {"json": WEATHER_TOOL.parameters},
                    }
                }
            ]
        },
    }


# --- URLs, headers, and what actually crossed the wire --------------------------------


@pytest.mark.parametrize(
    ("provider", "base", "options", "url"),
    [
        ("openai", "https://api.openai.com/v1", ModelOptions(), "https://api.openai.com/v1/responses"),
        (
            "openai",
            "https://api.openai.com/v1/",
            ModelOptions(openai=OpenAIOptions(api="chat_completions")),
            "https://api.openai.com/v1/chat/completions",
        ),
        (
            "google",
            "https://generativelanguage.googleapis.com/v1beta/openai/",
            ModelOptions(),
            "https://generativelanguage.googleapis.com/v1beta/openai/chat/completions",
        ),
        (
            "azure-openai",
            "https://res.openai.azure.com/openai/v1",
            ModelOptions(),
            "https://res.openai.azure.com/openai/v1/responses",
        ),
        ("anthropic", "https://api.anthropic.com", ModelOptions(), "https://api.anthropic.com/v1/messages"),
        (
            "bedrock",
            "https://bedrock-runtime.eu-west-1.amazonaws.com",
            ModelOptions(),
            "https://bedrock-runtime.eu-west-1.amazonaws.com/model/eu.anthropic.claude%3A0/converse",
        ),
    ],
)
def test_urls(provider: str, base: str, options: ModelOptions, url: str) -> None:
    model = "eu.anthropic.claude:0" if provider == "bedrock" else "m"
    target = UpstreamTarget(provider, base, "k", "eu-west-1", model, options)
    assert protocol_for(target).build_request(target, CONVERSATION, [], stream=False).url == url


@pytest.mark.parametrize(
    ("provider", "header", "value"),
    [
        ("openai", "Authorization", "Bearer k"),
        ("openrouter", "Authorization", "Bearer k"),
        ("azure-openai", "api-key", "k"),
        ("anthropic", "x-api-key", "k"),
        ("bedrock", "Authorization", "Bearer k"),
    ],
)
def test_auth_headers(provider: str, header: str, value: str) -> None:
    target = UpstreamTarget(provider, "https://h/v1", "k", "us-east-1", "m")
    headers = protocol_for(target).build_request(target, CONVERSATION, [], stream=False).headers
    assert headers[header] == value
    if provider == "azure-openai":
        assert "Authorization" not in headers
    if provider == "anthropic":
        assert headers["anthropic-version"] == "2023-06-01"


@pytest.mark.parametrize("kind", KINDS)
async def test_body_on_the_wire_matches_build_request(kind: str, client: UpstreamClient) -> None:
    options = ModelOptions(
        max_output_tokens=321,
        temperature=0.5,
        anthropic=AnthropicOptions(effort="low") if kind in ("anthropic", "bedrock") else AnthropicOptions(),
    )
    async with FakeUpstream.start(kind) as fake:
        target = target_for(fake, options)
        await client.chat(target, TOOL_ROUND_TRIP, [WEATHER_TOOL])
        expected = protocol_for(target).build_request(target, TOOL_ROUND_TRIP, [WEATHER_TOOL], stream=False)
        [sent] = fake.requests
        assert sent.body == expected.body
        assert sent.json()["temperature" if kind not in ("bedrock",) else "inferenceConfig"] is not None
