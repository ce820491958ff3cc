"""The replay rules each protocol applies to an assistant turn's parts
(docs/upstream.md "Reasoning state"), and the part folding StreamChat's
contract rests on. Pure: build_request and the fold, no HTTP."""

from __future__ import annotations

from typing import Any

import pytest

from modelplane_server.resolver_svc.upstream import (
    AnthropicOptions,
    ChatMessage,
    ChatResult,
    ModelOptions,
    OpenAIOptions,
    Part,
    ReasoningDelta,
    ReasoningPart,
    ReasoningState,
    RefusalDelta,
    RefusalPart,
    TextDelta,
    TextPart,
    ToolCall,
    ToolCallDelta,
    ToolResult,
    UpstreamTarget,
    Usage,
    fold,
    protocol_for,
)
from modelplane_server.resolver_svc.upstream.parts import part_events

CALL = ToolCall("call_1", "get_weather", '{"city":"Paris"}')
USER = ChatMessage("user", "Weather in Paris?")
RESULT = ChatMessage("tool", parts=(ToolResult("call_1", "18C", is_error=True),))


def body(kind: str, assistant: tuple[Part, ...], options: ModelOptions = ModelOptions(),
         after: tuple[ChatMessage, ...] = (RESULT,)) -> dict[str, Any]:
    target = UpstreamTarget(kind, "https://up.example/v1", "k", "us-east-1", "m", options)
    messages = [USER, ChatMessage("assistant", parts=assistant), *after]
    out: dict[str, Any] = protocol_for(target).build_request(target, messages, [], stream=False).json()
    return out


THINKING_ON = ModelOptions(anthropic=AnthropicOptions(thinking_budget_tokens=2048))


@pytest.mark.parametrize("kind", ["anthropic", "bedrock"])
def test_claude_keeps_own_thinking_first_and_thinking_on(kind: str) -> None:
    own = ReasoningPart("Weather first.", signature="sig", provider_type=kind)
    b = body(kind, (own, TextPart("Checking."), CALL), THINKING_ON)
    thinking = b["thinking"] if kind == "anthropic" else b["additionalModelRequestFields"]["thinking"]
    assert thinking == {"type": "enabled", "budget_tokens": 2048}
    first = b["messages"][1]["content"][0]
    assert first == ({"type": "thinking", "thinking": "Weather first.", "signature": "sig"} if kind == "anthropic"
                     else {"reasoningContent": {"reasoningText": {"text": "Weather first.", "signature": "sig"}}})
    result = b["messages"][2]["content"][0]
    assert result.get("is_error") is True or result.get("toolResult", {}).get("status") == "error"


@pytest.mark.parametrize("kind", ["anthropic", "bedrock"])
@pytest.mark.parametrize("why", ["foreign", "unsigned", "legacy"])
def test_claude_without_own_thinking_goes_out_with_thinking_off(kind: str, why: str) -> None:
    other = "bedrock" if kind == "anthropic" else "anthropic"
    assistant: tuple[Part, ...] = {
        "foreign": (ReasoningPart("x", signature="sig", provider_type=other), CALL),
        "unsigned": (ReasoningPart("readable only", provider_type=kind), CALL),
        "legacy": (CALL,),
    }[why]
    earlier = ReasoningPart("an earlier turn", signature="old", provider_type=kind)
    target = UpstreamTarget(kind, "https://up.example", "k", "us-east-1", "m", ModelOptions(
        temperature=0.2, anthropic=AnthropicOptions(thinking="adaptive")))
    messages = [USER, ChatMessage("assistant", parts=(earlier, TextPart("Hi."))), ChatMessage("user", "And?"),
                ChatMessage("assistant", parts=assistant), RESULT]
    b = protocol_for(target).build_request(target, messages, [], stream=False).json()
    fields = b if kind == "anthropic" else b.get("additionalModelRequestFields", {})
    assert "thinking" not in fields
    # thinking blocks go too (Claude refuses them with thinking off), and sampling stays out as configured
    assert "old" not in str(b) and "temperature" not in str(b)


def test_claude_without_tool_results_keeps_thinking_on() -> None:
    b = body("anthropic", (TextPart("Hi."),), THINKING_ON, after=(ChatMessage("user", "More?"),))
    assert b["thinking"]["type"] == "enabled"


def test_responses_replays_own_reasoning_with_ids_and_drops_the_rest() -> None:
    own = ReasoningPart("plan", summary=True, item_id="rs_1", encrypted_content="enc", provider_type="openai")
    raw = ReasoningPart("raw text", item_id="rs_1", provider_type="openai")
    call = ToolCall("call_1", "f", "{}", item_id="fc_1", provider_type="openai")
    options = ModelOptions(openai=OpenAIOptions(reasoning_effort="low"))
    b = body("openai", (own, raw, TextPart("Checking."), call, RefusalPart("no more")), options)
    assert b["input"][1:4] == [
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "plan"}],
         "content": [{"type": "reasoning_text", "text": "raw text"}], "encrypted_content": "enc"},
        {"role": "assistant", "content": "Checking."},
        {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}", "id": "fc_1"},
    ]
    assert "no more" not in str(b)  # refusals are not replayed
    # Azure is another provider type: OpenAI's state means nothing there.
    azure = body("azure-openai", (own, call), options)
    assert [i.get("type") for i in azure["input"]] == [None, "function_call", "function_call_output"]
    assert "id" not in azure["input"][1]


@pytest.mark.parametrize("assistant", [
    # no encrypted content (the reasoning was not asked for): nothing to replay
    (ReasoningPart("plan", summary=True, item_id="rs_1", provider_type="openai"),
     ToolCall("call_1", "f", "{}", item_id="fc_1", provider_type="openai")),
    # nothing follows it in the turn: the API refuses a reasoning item without its following item
    (ToolCall("call_1", "f", "{}", item_id="fc_1", provider_type="openai"),
     ReasoningPart("plan", summary=True, item_id="rs_1", encrypted_content="enc", provider_type="openai")),
])
def test_responses_leaves_out_reasoning_it_cannot_pair_and_then_the_call_ids(assistant: tuple[Part, ...]) -> None:
    b = body("openai", assistant)
    assert [i.get("type") for i in b["input"]] == [None, "function_call", "function_call_output"]
    assert "id" not in b["input"][1]


def test_openai_chat_completions_replays_refusals_only() -> None:
    options = ModelOptions(openai=OpenAIOptions(api="chat_completions"))
    b = body("openai", (ReasoningPart("x", provider_type="openai"), RefusalPart("No."), CALL), options)
    assert b["messages"][1] == {"role": "assistant", "content": None, "refusal": "No.", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]}


def test_gemini_signs_only_the_first_call_of_a_step() -> None:
    own = ToolCall("call_1", "f", "{}", signature="sig-g", provider_type="google")
    second = ToolCall("call_2", "f", "{}")
    b = body("google", (own, second), after=(ChatMessage("tool", parts=(ToolResult("call_1"), ToolResult("call_2"))),))
    calls = b["messages"][1]["tool_calls"]
    assert calls[0]["extra_content"] == {"google": {"thought_signature": "sig-g"}}
    assert "extra_content" not in calls[1]
    assert [m["role"] for m in b["messages"]] == ["user", "assistant", "tool", "tool"]


# --- folding: what StreamChat's part_index promises ------------------------------------


def test_fold_rebuilds_parts_in_index_order() -> None:
    events = [
        ReasoningState(0, provider_type="anthropic"),
        ReasoningDelta("Thinking ", 0), ReasoningDelta("hard.", 0),
        ReasoningState(0, signature_delta="sig-"), ReasoningState(0, signature_delta="1"),
        ToolCallDelta(0, "call_1", "f", "", 2, item_id="fc_1", provider_type="openai"),
        TextDelta("Let me ", 1), ToolCallDelta(0, None, None, '{"a":', 2), TextDelta("check.", 1),
        ToolCallDelta(0, None, None, "1}", 2), RefusalDelta("No more.", 3),
        ReasoningState(0, redacted_data="blob"),
    ]
    assert fold(events) == (
        ReasoningPart("Thinking hard.", signature="sig-1", redacted_data="blob", provider_type="anthropic"),
        TextPart("Let me check."),
        ToolCall("call_1", "f", '{"a":1}', item_id="fc_1", provider_type="openai"),
        RefusalPart("No more."),
    )


def test_fold_of_a_parts_events_is_the_parts() -> None:
    parts: tuple[Part, ...] = (
        ReasoningPart("s", summary=True, item_id="rs", encrypted_content="e", provider_type="openai"),
        ReasoningPart(redacted_data="r", format="anthropic-claude-v1", provider_type="openrouter"),
        TextPart("t"), ToolCall("c", "f", "{}", signature="g", provider_type="google"), RefusalPart("no"),
    )
    assert fold(part_events(parts)) == parts


def test_a_refusal_turn_finishes_with_refusal() -> None:
    result = ChatResult.of((TextPart("Partial"), RefusalPart("I can't.")), "stop", Usage(), None)
    assert (result.finish_reason, result.refusal, result.text) == ("refusal", "I can't.", "Partial")


def test_fold_refuses_gaps_and_kind_changes() -> None:
    with pytest.raises(ValueError):
        fold([TextDelta("a", 1)])
    with pytest.raises(ValueError):
        fold([TextDelta("a", 0), ReasoningDelta("b", 0)])


def test_responses_stream_takes_reasoning_sent_only_in_the_finished_item() -> None:
    """Some servers send no summary deltas: the finished item's texts count."""
    import json as _json

    from modelplane_server.resolver_svc.upstream.openai_responses import ResponsesStreamParser

    target = UpstreamTarget("openai", "https://x", "k", None, "m")
    item = {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "A"},
                                                           {"type": "summary_text", "text": "B"}],
            "content": [{"type": "reasoning_text", "text": "raw"}], "encrypted_content": "enc"}
    events = [{"type": "response.output_item.added", "output_index": 0, "item": {**item, "summary": []}},
              {"type": "response.output_item.done", "output_index": 0, "item": item},
              {"type": "response.completed", "response": {"status": "completed", "output": [item]}}]
    parser = ResponsesStreamParser(target)
    out = parser.feed(b"".join(b"data: " + _json.dumps(e).encode() + b"\n\n" for e in events)) + parser.finish()
    assert fold(out) == protocol_for(target).parse_response(
        _json.dumps({"status": "completed", "output": [item]}).encode(), None, target).parts
