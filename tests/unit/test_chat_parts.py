"""Chat parts at the edge: ChatMessage.parts in (validated, field by
field), the engine's parts and part events out."""

from __future__ import annotations

import pytest

from modelplane.v1 import resolver_service_pb2 as rs
from modelplane.v1 import resources_pb2 as pb
from modelplane_server.domain.errors import InvalidArgument
from modelplane_server.resolver_svc.api import chat_parts
from modelplane_server.resolver_svc.api import chat_pb as chat_convert
from modelplane_server.resolver_svc import upstream as up

ASSISTANT_PARTS = [
    rs.ChatPart(reasoning=rs.ReasoningPart(text="Thinking.", signature="sig", provider_type=pb.PROVIDER_TYPE_ANTHROPIC)),
    rs.ChatPart(reasoning=rs.ReasoningPart(redacted_data="blob", provider_type=pb.PROVIDER_TYPE_ANTHROPIC)),
    rs.ChatPart(reasoning=rs.ReasoningPart(text="s", summary=True, item_id="rs_1", encrypted_content="enc",
                                           provider_type=pb.PROVIDER_TYPE_AZURE_OPENAI, format="f")),
    rs.ChatPart(text="Checking."),
    rs.ChatPart(tool_call=rs.ToolCall(id="c1", name="get_weather", arguments_json='{"city":"Paris"}',
                                      signature="g", item_id="fc_1", provider_type=pb.PROVIDER_TYPE_GOOGLE)),
    rs.ChatPart(refusal="No more."),
]


def request(*messages: rs.ChatMessage) -> rs.ChatRequest:
    return rs.ChatRequest(messages=messages)


def violations(req: rs.ChatRequest) -> list[str]:
    with pytest.raises(InvalidArgument) as info:
        chat_convert.conversation(req)
    return [v.field for v in info.value.violations]


def test_parts_come_in_as_engine_parts_and_go_back_out_unchanged() -> None:
    messages, _ = chat_convert.conversation(request(
        rs.ChatMessage(role=rs.CHAT_ROLE_USER, parts=[rs.ChatPart(text="Weather?")]),
        rs.ChatMessage(role=rs.CHAT_ROLE_ASSISTANT, parts=ASSISTANT_PARTS),
        rs.ChatMessage(role=rs.CHAT_ROLE_TOOL, parts=[
            rs.ChatPart(tool_result=rs.ToolResult(tool_call_id="c1", text="boom", is_error=True))]),
    ))
    assert messages[1].parts == (
        up.ReasoningPart("Thinking.", signature="sig", provider_type="anthropic"),
        up.ReasoningPart(redacted_data="blob", provider_type="anthropic"),
        up.ReasoningPart("s", summary=True, item_id="rs_1", encrypted_content="enc", provider_type="azure-openai",
                         format="f"),
        up.TextPart("Checking."),
        up.ToolCall("c1", "get_weather", '{"city":"Paris"}', signature="g", item_id="fc_1", provider_type="google"),
        up.RefusalPart("No more."),
    )
    assert messages[2].parts == (up.ToolResult("c1", "boom", is_error=True),)
    assert chat_parts.parts_pb(messages[1].parts) == ASSISTANT_PARTS


def test_legacy_messages_mean_what_they_meant() -> None:
    call = rs.ToolCall(id="c1", name="get_weather", arguments_json="{}", signature="g",
                       provider_type=pb.PROVIDER_TYPE_GOOGLE)
    messages, _ = chat_convert.conversation(request(
        rs.ChatMessage(role=rs.CHAT_ROLE_ASSISTANT, text="Checking.", tool_calls=[call]),
        rs.ChatMessage(role=rs.CHAT_ROLE_TOOL, tool_call_id="c1", text="18C"),
    ))
    assert messages[0].content_parts() == (up.TextPart("Checking."),
                                           up.ToolCall("c1", "get_weather", "{}", signature="g",
                                                       provider_type="google"))
    assert messages[1].content_parts() == (up.ToolResult("c1", "18C"),)


def test_parts_and_legacy_fields_do_not_mix() -> None:
    assert violations(request(
        rs.ChatMessage(role=rs.CHAT_ROLE_ASSISTANT, text="x", parts=[rs.ChatPart(text="y")],
                       tool_calls=[rs.ToolCall(id="c", name="f")]),
        rs.ChatMessage(role=rs.CHAT_ROLE_TOOL, tool_call_id="c", parts=[
            rs.ChatPart(tool_result=rs.ToolResult(tool_call_id="c"))]),
    )) == ["messages[0].text", "messages[0].tool_calls", "messages[1].tool_call_id"]


def test_each_part_must_suit_its_role_and_be_well_formed() -> None:
    assert violations(request(
        rs.ChatMessage(role=rs.CHAT_ROLE_USER, parts=[rs.ChatPart(tool_call=rs.ToolCall(id="c", name="f")),
                                                      rs.ChatPart()]),
        rs.ChatMessage(role=rs.CHAT_ROLE_SYSTEM, parts=[rs.ChatPart(reasoning=rs.ReasoningPart(text="x"))]),
        rs.ChatMessage(role=rs.CHAT_ROLE_TOOL, parts=[rs.ChatPart(text="x"),
                                                      rs.ChatPart(tool_result=rs.ToolResult(text="no id"))]),
        rs.ChatMessage(role=rs.CHAT_ROLE_ASSISTANT, parts=[
            rs.ChatPart(tool_call=rs.ToolCall(id="", name="bad name", arguments_json="[]")),
            rs.ChatPart(reasoning=rs.ReasoningPart(item_id="x" * 257, format="f" * 65,
                                                   signature="s" * 1_000_001)),
        ]),
    )) == [
        "messages[0].parts[0].tool_call", "messages[0].parts[1]", "messages[1].parts[0].reasoning",
        "messages[2].parts[0].text", "messages[2].parts[1].tool_result.tool_call_id",
        "messages[3].parts[0].tool_call.id", "messages[3].parts[0].tool_call.name",
        "messages[3].parts[0].tool_call.arguments_json", "messages[3].parts[1].reasoning.signature",
        "messages[3].parts[1].reasoning.item_id", "messages[3].parts[1].reasoning.format",
    ]


def test_part_events_carry_their_part_index() -> None:
    state = chat_parts.part_event_pb(up.ReasoningState(2, signature_delta="ab", provider_type="bedrock", summary=True))
    assert state == rs.ChatEvent(part_index=2, reasoning_state=rs.ReasoningState(
        signature_delta="ab", summary=True, provider_type=pb.PROVIDER_TYPE_BEDROCK))
    call = chat_parts.part_event_pb(up.ToolCallDelta(1, "c", "f", "{", 4, signature="s", provider_type="google"))
    assert call == rs.ChatEvent(part_index=4, tool_call_delta=rs.ToolCallDelta(
        index=1, id="c", name="f", arguments_delta="{", signature="s", provider_type=pb.PROVIDER_TYPE_GOOGLE))
    assert chat_parts.part_event_pb(up.RefusalDelta("no", 3)) == rs.ChatEvent(refusal_delta="no", part_index=3)
    assert chat_parts.part_event_pb(up.TextDelta("hi", 1)) == rs.ChatEvent(text_delta="hi", part_index=1)
    assert chat_convert.FINISH_REASONS["refusal"] == rs.FINISH_REASON_REFUSAL
