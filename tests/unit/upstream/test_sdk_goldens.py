"""Golden request bodies produced by the vendors' official SDKs.

For a tool loop in progress (an assistant turn with reasoning state, a tool
result), each test makes the call a developer would make with the vendor's
SDK (anthropic, openai, botocore's bedrock-runtime), captures the body the
SDK serialises, and requires the engine's body to be exactly that. The SDK
types also validate the engine's body (pydantic over the SDK's TypedDicts:
nothing unknown, nothing missing), and botocore validates its parameters
against the service model before sending.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any, Literal

from typing_extensions import TypedDict

import anthropic
import botocore.session
import httpx
import httpx2
import openai
import pydantic
import pytest
from anthropic.types import message_create_params
from botocore.awsrequest import AWSResponse
from openai.types.chat import completion_create_params
from openai.types.responses import response_create_params

from modelplane_server.resolver_svc.upstream import (
    AnthropicOptions,
    ChatMessage,
    GatewayReasoningOptions,
    GoogleOptions,
    ModelOptions,
    OpenAIOptions,
    Part,
    ReasoningPart,
    RefusalPart,
    TextPart,
    ToolCall,
    ToolDefinition,
    ToolResult,
    UpstreamTarget,
    protocol_for,
)

WEATHER = ToolDefinition("get_weather", "Current weather for a city",
                         {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
CALL = ToolCall("call_1", "get_weather", '{"city":"Paris"}')
REDACTED_BYTES = b"\x00opaque redacted thinking\xff"


def foreign(kind: str) -> ReasoningPart:
    """State another provider type produced: every protocol must leave it out."""
    return ReasoningPart("someone else's thoughts", signature="sig-foreign", redacted_data="red-foreign",
                         encrypted_content="enc-foreign", item_id="rs_foreign", format="unknown",
                         provider_type="bedrock" if kind != "bedrock" else "anthropic")


def conversation(kind: str, state: tuple[Part, ...], call: ToolCall = CALL,
                 extra: tuple[Part, ...] = ()) -> list[ChatMessage]:
    return [
        ChatMessage("system", parts=(TextPart("You are terse."),)),
        ChatMessage("user", parts=(TextPart("Weather in Paris?"),)),
        ChatMessage("assistant", parts=(foreign(kind), *state, TextPart("Checking."), call, *extra)),
        ChatMessage("tool", parts=(ToolResult("call_1", "18C, sunny"),)),
    ]


def engine_body(kind: str, options: ModelOptions, messages: list[ChatMessage], *, stream: bool = False,
                base_url: str = "https://up.example/v1") -> dict[str, Any]:
    target = UpstreamTarget(kind, base_url, "k", "us-east-1", "model-x", options)
    body: dict[str, Any] = protocol_for(target).build_request(target, messages, [WEATHER], stream=stream).json()
    return body


def captured_by(call: Callable[[Any], object], reply: dict[str, Any], http_module: Any = httpx) -> dict[str, Any]:
    """The JSON body an SDK call sends, through a transport that answers
    `reply` (the anthropic SDK ships its own httpx fork, httpx2)."""
    seen: list[Any] = []

    def handler(request: Any) -> Any:
        seen.append(request)
        return http_module.Response(200, json=reply)

    with http_module.Client(transport=http_module.MockTransport(handler)) as http:
        call(http)
    [request] = seen
    body: dict[str, Any] = json.loads(request.content)
    return body


def materialised(value: Any) -> Any:
    """pydantic validates Iterable fields lazily; make them lists to compare."""
    if isinstance(value, dict):
        return {k: materialised(v) for k, v in value.items()}
    if isinstance(value, (str, bytes, int, float, bool)) or value is None:
        return value
    return [materialised(v) for v in value]


def assert_sdk_types_accept(params_type: Any, body: dict[str, Any], fields: dict[str, Any]) -> None:
    """The SDK's parameter types take the body as is: every top-level key is
    one of the params TypedDict's, every required one is there, and the
    listed fields validate against their SDK types without losing a key
    (pydantic drops unknown TypedDict keys, so equality proves none). Fields
    are validated one by one, eagerly: pydantic-core panics iterating some
    lazily validated unions."""
    keys = params_type.__required_keys__ | params_type.__optional_keys__
    assert set(body) <= keys, set(body) - keys
    assert params_type.__required_keys__ <= set(body), params_type.__required_keys__ - set(body)
    for name, field_type in fields.items():
        validated = materialised(pydantic.TypeAdapter(field_type).validate_python(body[name]))
        assert validated == body[name], name


# --- Anthropic Messages ---------------------------------------------------------------

class _AnthropicMessage(TypedDict):
    """MessageParam with its content as a list, validated block by block
    (the SDK types content as a lazily validated Iterable)."""

    role: Literal["user", "assistant"]
    content: list[anthropic.types.ContentBlockParam]


ANTHROPIC_FIELDS: dict[str, Any] = {
    "messages": list[_AnthropicMessage],
    "tools": list[anthropic.types.ToolParam],
    "thinking": anthropic.types.ThinkingConfigParam,
    "output_config": anthropic.types.OutputConfigParam,
}
ANTHROPIC_MESSAGE = {"id": "msg_1", "type": "message", "role": "assistant", "model": "model-x", "content": [],
                     "stop_reason": "end_turn", "stop_sequence": None,
                     "usage": {"input_tokens": 1, "output_tokens": 1}}


def test_anthropic_thinking_tool_loop_is_the_sdks_request() -> None:
    state = (ReasoningPart("Let me look.", signature="sig-a", provider_type="anthropic"),
             ReasoningPart(redacted_data="ENCRYPTED-a", provider_type="anthropic"))
    options = ModelOptions(max_output_tokens=8000, anthropic=AnthropicOptions(thinking_budget_tokens=2048,
                                                                             effort="high"))
    ours = engine_body("anthropic", options, conversation("anthropic", state), base_url="https://up.example")

    golden = captured_by(lambda http: anthropic.Anthropic(api_key="k", base_url="https://up.example",
                                                          http_client=http).messages.create(
        model="model-x",
        max_tokens=8000,
        system="You are terse.",
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "Let me look.", "signature": "sig-a"},
                {"type": "redacted_thinking", "data": "ENCRYPTED-a"},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
            ]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": "18C, sunny"}]},
        ],
        tools=[{"name": "get_weather", "description": "Current weather for a city",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}],
        thinking={"type": "enabled", "budget_tokens": 2048},
        output_config={"effort": "high"},
    ), ANTHROPIC_MESSAGE, httpx2)
    assert ours == golden
    assert_sdk_types_accept(message_create_params.MessageCreateParamsNonStreaming, ours, ANTHROPIC_FIELDS)


def test_anthropic_adaptive_thinking_streaming_is_the_sdks_request() -> None:
    options = ModelOptions(anthropic=AnthropicOptions(thinking="adaptive", effort="max"))
    ours = engine_body("anthropic", options, conversation("anthropic", ()), stream=True, base_url="https://up.example")
    # Foreign state and a turn without its own thinking: thinking goes off for this request.
    assert "thinking" not in ours
    ours_fresh = engine_body("anthropic", options, conversation("anthropic", ())[:2], stream=True, base_url="https://up.example")

    seen: list[Any] = []

    def handler(request: Any) -> Any:
        seen.append(request)
        return httpx2.Response(200, text="", headers={"content-type": "text/event-stream"})

    with httpx2.Client(transport=httpx2.MockTransport(handler)) as http:
        stream = anthropic.Anthropic(api_key="k", base_url="https://up.example", http_client=http).messages.create(
            model="model-x", max_tokens=8192, system="You are terse.",
            messages=[{"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]}],
            tools=[{"name": "get_weather", "description": "Current weather for a city",
                    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                                     "required": ["city"]}}],
            thinking={"type": "adaptive"}, output_config={"effort": "max"}, stream=True)
        stream.close()
    assert ours_fresh == json.loads(seen[0].content)
    assert_sdk_types_accept(message_create_params.MessageCreateParamsStreaming, ours_fresh, ANTHROPIC_FIELDS)


# --- Bedrock Converse (botocore) ---------------------------------------------------------


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Any:
        yield self._body


def botocore_body(**params: Any) -> dict[str, Any]:
    """What botocore sends for bedrock-runtime Converse with these params
    (validated against the service model before it is serialised)."""
    session = botocore.session.get_session()
    client = session.create_client("bedrock-runtime", region_name="us-east-1", aws_access_key_id="AKIAFAKE",
                                   aws_secret_access_key="fake", endpoint_url="https://bedrock.example")
    seen: list[Any] = []

    def send(request: Any, **_: Any) -> AWSResponse:
        seen.append(request)
        reply = {"output": {"message": {"role": "assistant", "content": [{"text": "ok"}]}}, "stopReason": "end_turn",
                 "usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2}, "metrics": {"latencyMs": 1}}
        return AWSResponse(request.url, 200, {"content-type": "application/json"}, _Raw(json.dumps(reply).encode()))

    client.meta.events.register("before-send.bedrock-runtime.Converse", send)
    client.converse(**params)
    [request] = seen
    body: dict[str, Any] = json.loads(request.body)
    return body


def test_bedrock_thinking_tool_loop_is_botocores_request() -> None:
    redacted = base64.b64encode(REDACTED_BYTES).decode()  # a Blob, as Converse JSON carries it
    state = (ReasoningPart("Let me look.", signature="sig-b", provider_type="bedrock"),
             ReasoningPart(redacted_data=redacted, provider_type="bedrock"))
    options = ModelOptions(max_output_tokens=8000, anthropic=AnthropicOptions(thinking="adaptive", effort="xhigh"))
    ours = engine_body("bedrock", options, conversation("bedrock", state))
    golden = botocore_body(
        modelId="model-x",
        messages=[
            {"role": "user", "content": [{"text": "Weather in Paris?"}]},
            {"role": "assistant", "content": [
                {"reasoningContent": {"reasoningText": {"text": "Let me look.", "signature": "sig-b"}}},
                {"reasoningContent": {"redactedContent": REDACTED_BYTES}},
                {"text": "Checking."},
                {"toolUse": {"toolUseId": "call_1", "name": "get_weather", "input": {"city": "Paris"}}},
            ]},
            {"role": "user", "content": [{"toolResult": {"toolUseId": "call_1", "content": [{"text": "18C, sunny"}]}}]},
        ],
        system=[{"text": "You are terse."}],
        toolConfig={"tools": [{"toolSpec": {"name": "get_weather", "description": "Current weather for a city",
                                            "inputSchema": {"json": {"type": "object",
                                                                     "properties": {"city": {"type": "string"}},
                                                                     "required": ["city"]}}}}]},
        inferenceConfig={"maxTokens": 8000},
        additionalModelRequestFields={"thinking": {"type": "adaptive"}},
        outputConfig={"effort": "xhigh"},
    )
    assert ours == golden


# --- OpenAI Responses (openai, azure-openai) ---------------------------------------------

RESPONSES_FIELDS: dict[str, Any] = {
    "input": list[openai.types.responses.ResponseInputItemParam],
    "tools": list[openai.types.responses.FunctionToolParam],
    "reasoning": openai.types.shared_params.Reasoning,
}
RESPONSE = {"id": "resp_1", "object": "response", "created_at": 1, "model": "model-x", "status": "completed",
            "output": [], "parallel_tool_calls": True, "tool_choice": "auto", "tools": []}


@pytest.mark.parametrize("kind", ["openai", "azure-openai"])
def test_responses_stateless_reasoning_replay_is_the_sdks_request(kind: str) -> None:
    state = (ReasoningPart("**Planning**", summary=True, item_id="rs_1", encrypted_content="gAAAAenc",
                           provider_type=kind),
             ReasoningPart("**Checking**", summary=True, item_id="rs_1", provider_type=kind))
    call = ToolCall("call_1", "get_weather", '{"city":"Paris"}', item_id="fc_1", provider_type=kind)
    options = ModelOptions(max_output_tokens=4000, openai=OpenAIOptions(reasoning_effort="high",
                                                                       parallel_tool_calls=False))
    ours = engine_body(kind, options, conversation(kind, state, call))
    golden = captured_by(lambda http: openai.OpenAI(api_key="k", base_url="https://up.example/v1",
                                                    http_client=http).responses.create(
        model="model-x",
        input=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Weather in Paris?"},
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "**Planning**"},
                                                            {"type": "summary_text", "text": "**Checking**"}],
             "encrypted_content": "gAAAAenc"},
            {"role": "assistant", "content": "Checking."},
            {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city":"Paris"}',
             "id": "fc_1"},
            {"type": "function_call_output", "call_id": "call_1", "output": "18C, sunny"},
        ],
        store=False,
        include=["reasoning.encrypted_content"],
        reasoning={"effort": "high", "summary": "auto"},
        max_output_tokens=4000,
        parallel_tool_calls=False,
        tools=[{"type": "function", "name": "get_weather", "description": "Current weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
                "strict": False}],
    ), RESPONSE)
    assert ours == golden
    assert_sdk_types_accept(response_create_params.ResponseCreateParamsNonStreaming, ours, RESPONSES_FIELDS)


def test_responses_effort_none_takes_sampling_and_no_summary() -> None:
    ours = engine_body("openai", ModelOptions(temperature=0.3, openai=OpenAIOptions(reasoning_effort="none")),
                       conversation("openai", ())[:2])
    golden = captured_by(lambda http: openai.OpenAI(api_key="k", base_url="https://up.example/v1",
                                                    http_client=http).responses.create(
        model="model-x", input=[{"role": "system", "content": "You are terse."},
                                {"role": "user", "content": "Weather in Paris?"}],
        store=False, temperature=0.3, reasoning={"effort": "none"}, include=["reasoning.encrypted_content"],
        tools=[{"type": "function", "name": "get_weather", "description": "Current weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
                "strict": False}],
    ), RESPONSE)
    assert ours == golden
    assert_sdk_types_accept(response_create_params.ResponseCreateParamsNonStreaming, ours, RESPONSES_FIELDS)


# --- Chat Completions (openai-compatible, openrouter, vercel, google; openai on request) --

CHAT_TOOL_TYPE = list[openai.types.chat.ChatCompletionFunctionToolParam]
COMPLETION = {"id": "c1", "object": "chat.completion", "created": 1, "model": "model-x",
              "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}]}
CHAT_TOOLS: list[Any] = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
SYSTEM_AND_USER: list[Any] = [{"role": "system", "content": "You are terse."},
                              {"role": "user", "content": "Weather in Paris?"}]
TOOL_REPLY: list[Any] = [{"role": "tool", "tool_call_id": "call_1", "content": "18C, sunny"}]


def chat_golden(messages: list[Any], **kwargs: Any) -> dict[str, Any]:
    return captured_by(lambda http: openai.OpenAI(api_key="k", base_url="https://up.example/v1",
                                                  http_client=http).chat.completions.create(
        model="model-x", messages=SYSTEM_AND_USER + messages + TOOL_REPLY, tools=CHAT_TOOLS, **kwargs),
        COMPLETION)


def wire_call(**extra: Any) -> dict[str, Any]:
    return {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
            **extra}


def test_gemini_thought_signatures_are_the_sdks_request() -> None:
    state = (ReasoningPart("thought summary", provider_type="google"),)
    signed = ToolCall("call_1", "get_weather", '{"city":"Paris"}', signature="CiQBsig==", provider_type="google")
    options = ModelOptions(max_output_tokens=1000, google=GoogleOptions(thinking_level="high", include_thoughts=True))
    ours = engine_body("google", options, conversation("google", state, signed))
    golden = chat_golden(
        [{"role": "assistant", "content": "Checking.",
          "tool_calls": [wire_call(extra_content={"google": {"thought_signature": "CiQBsig=="}})]}],
        max_tokens=1000,
        # The Python SDK needs extra_body={"extra_body": ...} to produce Google's literal member.
        extra_body={"extra_body": {"google": {"thinking_config": {"include_thoughts": True, "thinking_level": "high"}}}},
    )
    assert ours == golden
    # extra_body and extra_content are Google's extensions, which the SDK passes through untyped.
    assert_sdk_types_accept(completion_create_params.CompletionCreateParamsNonStreaming,
                            {k: v for k, v in ours.items() if k != "extra_body"}, {"tools": CHAT_TOOL_TYPE})

    # A call Gemini did not sign (another model's, or a legacy replay) gets the documented bypass.
    unsigned = engine_body("google", options, conversation("google", (), ToolCall("call_1", "get_weather", '{"city":"Paris"}',
                                                                        signature="sig-x", provider_type="openai")))
    assert unsigned["messages"][2]["tool_calls"][0]["extra_content"] == {
        "google": {"thought_signature": "skip_thought_signature_validator"}}


@pytest.mark.parametrize("kind", ["openrouter", "vercel-ai-gateway"])
def test_gateway_reasoning_details_are_the_sdks_request(kind: str) -> None:
    state = (ReasoningPart("Let me look.", signature="sig-r", format="anthropic-claude-v1", provider_type=kind),
             ReasoningPart("A summary.", summary=True, item_id="rs_9", format="openai-responses-v1",
                           provider_type=kind),
             ReasoningPart(redacted_data="eyJlbmMi", item_id="call_1", format="google-gemini-v1", provider_type=kind),
             ReasoningPart("plain reasoning string", provider_type=kind))  # no format: not a detail, not replayed
    options = ModelOptions(gateway=GatewayReasoningOptions(reasoning_enabled=True, reasoning_effort="xhigh"))
    ours = engine_body(kind, options, conversation(kind, state))
    golden = chat_golden(
        [{"role": "assistant", "content": "Checking.", "tool_calls": [wire_call()], "reasoning_details": [
            {"type": "reasoning.text", "text": "Let me look.", "signature": "sig-r", "format": "anthropic-claude-v1",
             "index": 0},
            {"type": "reasoning.summary", "summary": "A summary.", "id": "rs_9", "format": "openai-responses-v1",
             "index": 1},
            {"type": "reasoning.encrypted", "data": "eyJlbmMi", "id": "call_1", "format": "google-gemini-v1",
             "index": 2},
        ]}],
        extra_body={"reasoning": {"enabled": True, "effort": "xhigh"}},
    )
    assert ours == golden


def test_openai_compatible_reasoning_content_in_the_current_turn() -> None:
    state = (ReasoningPart("Let me look.", provider_type="openai-compatible"),)
    ours = engine_body("openai-compatible", ModelOptions(), conversation("openai-compatible", state))
    golden = chat_golden([{"role": "assistant", "content": "Checking.", "tool_calls": [wire_call()],
                           "reasoning_content": "Let me look."}])
    assert ours == golden
    # A finished turn (a user message after it) goes back without its reasoning.
    later = engine_body("openai-compatible", ModelOptions(),
                        [*conversation("openai-compatible", state), ChatMessage("user", parts=(TextPart("Thanks"),))])
    assert "reasoning_content" not in later["messages"][2]


def test_openai_chat_completions_refusal_and_effort_are_the_sdks_request() -> None:
    options = ModelOptions(max_output_tokens=900, openai=OpenAIOptions(api="chat_completions", reasoning_effort="max",
                                                                      parallel_tool_calls=True))
    ours = engine_body("openai", options, conversation("openai", (), extra=(RefusalPart("I won't do the rest."),)))
    golden = chat_golden(
        [{"role": "assistant", "content": "Checking.", "refusal": "I won't do the rest.", "tool_calls": [wire_call()]}],
        max_completion_tokens=900, reasoning_effort="max", parallel_tool_calls=True)
    assert ours == golden
    assert_sdk_types_accept(completion_create_params.CompletionCreateParamsNonStreaming, ours,
                            {"messages": list[openai.types.chat.ChatCompletionMessageParam], "tools": CHAT_TOOL_TYPE})
