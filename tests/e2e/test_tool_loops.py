"""Agent tool loops with thinking on, end to end, for every provider type.

Three turns (think -> call -> result -> think -> call -> result -> answer)
through Chat and through StreamChat, the caller replaying exactly what it
received: Chat's parts, or the parts folded from StreamChat's events. The
fakes enforce their provider's replay rules (signed thinking, thought
signatures, encrypted reasoning), so a turn that lost its state fails.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from modelplane.v1 import resolver_service_pb2 as rs
from modelplane.v1 import resources_pb2 as pb
from modelplane_server.domain.types import Role
from tests.e2e.chat_fold import fold
from tests.e2e.test_chat import (
    IDENTIFIERS,
    PRICING,
    ChatStack,
    add_model,
    add_provider,
    rpc_error,
    start_chat_stack,
    wait_for_model,
)
from tests.fakes import KINDS, Canned, CannedToolCall, CannedUsage, FakeUpstream
from tests.harness import ConfigHarness, Metadata
from tests.resolver_harness import error_reason

pytestmark = pytest.mark.e2e

WEATHER = rs.ToolDefinition(name="get_weather", description="Current weather for a city")
WEATHER.parameters.update({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
CLOCK = rs.ToolDefinition(name="get_time", description="Local time in a city")
CLOCK.parameters.update({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
TOOLS = (WEATHER, CLOCK)

# Thinking on, the way each provider type is configured for it.
THINKING: dict[str, dict[str, Any]] = {
    "anthropic": {"options": pb.GenerationOptions(max_output_tokens=8000),
                  "anthropic": pb.AnthropicOptions(thinking_budget_tokens=2048)},
    "bedrock": {"options": pb.GenerationOptions(max_output_tokens=8000),
                "anthropic": pb.AnthropicOptions(thinking="adaptive", effort="high")},
    "openai": {"openai": pb.OpenAIOptions(reasoning_effort="high")},
    "azure-openai": {"openai": pb.OpenAIOptions(reasoning_effort="medium")},
    "google": {"google": pb.GoogleOptions(thinking_level="high", include_thoughts=True)},
    "openai-compatible": {},
    "openrouter": {"openrouter": pb.ReasoningOptions(reasoning_enabled=True, reasoning_effort="high")},
    "vercel-ai-gateway": {"vercel": pb.ReasoningOptions(reasoning_enabled=True, reasoning_effort="xhigh")},
}
USAGE = CannedUsage(input=900, cache_read=3000, cache_write=200, output=400, reasoning=150)
# Gemini's implicit caching reports reads only.
GEMINI_USAGE = CannedUsage(input=900, cache_read=3000, cache_write=0, output=400, reasoning=150)


def script(fake: FakeUpstream) -> None:
    """The three turns, once for Chat and once for StreamChat."""
    usage = GEMINI_USAGE if fake.kind == "google" else USAGE
    turns = [
        Canned(reasoning="The user wants weather and time; weather first.", text="",
               tool_calls=(CannedToolCall("call_w", "get_weather", {"city": "Paris"}),), finish="tool_calls",
               response_id="resp_turn1", usage=usage),
        Canned(reasoning="18C. Now the local time.", redacted="hidden deliberation", text="Checking the clock.",
               tool_calls=(CannedToolCall("call_t", "get_time", {"city": "Paris"}),), finish="tool_calls",
               response_id="resp_turn2", usage=usage),
        Canned(reasoning="I have both answers.", text="It is 18C and 14:05 in Paris.", response_id="resp_turn3",
               usage=usage, chunk_chars=4),
    ]
    fake.script(*turns, *turns)


RESULTS = {"call_w": "18C, sunny", "call_t": "14:05"}


@dataclass
class Turn:
    parts: list[rs.ChatPart]
    text: str
    reasoning: str
    refusal: str
    finish: int
    usage: rs.Usage
    cost: float | None


async def unary_turn(stack: ChatStack, request: rs.ChatRequest, md: Metadata) -> Turn:
    reply = await stack.stub.Chat(request, metadata=md)
    return Turn(list(reply.parts), reply.text, reply.reasoning, reply.refusal, reply.finish_reason, reply.usage,
                reply.cost_usd if reply.HasField("cost_usd") else None)


async def streamed_turn(stack: ChatStack, request: rs.ChatRequest, md: Metadata) -> Turn:
    events = [e async for e in stack.stub.StreamChat(request, metadata=md)]
    finish = events[-1].finish
    [usage] = [e.usage for e in events if e.HasField("usage")]
    return Turn(fold(events), "".join(e.text_delta for e in events), "".join(e.reasoning_delta for e in events),
                "".join(e.refusal_delta for e in events), finish.finish_reason, usage,
                finish.cost_usd if finish.HasField("cost_usd") else None)


async def tool_loop(stack: ChatStack, md: Metadata, *, streamed: bool, chat_model: str = "") -> list[Turn]:
    conversation = [rs.ChatMessage(role=rs.CHAT_ROLE_USER, parts=[rs.ChatPart(text="Weather and time in Paris?")])]
    turns: list[Turn] = []
    for _ in range(3):
        request = rs.ChatRequest(messages=conversation, tools=TOOLS, chat_model=chat_model)
        turn = await (streamed_turn if streamed else unary_turn)(stack, request, md)
        turns.append(turn)
        # The caller stores the assistant turn exactly as received ...
        conversation.append(rs.ChatMessage(role=rs.CHAT_ROLE_ASSISTANT, parts=turn.parts))
        calls = [p.tool_call for p in turn.parts if p.HasField("tool_call")]
        if not calls:
            break
        # ... runs the tools and answers each call.
        conversation.append(rs.ChatMessage(role=rs.CHAT_ROLE_TOOL, parts=[
            rs.ChatPart(tool_result=rs.ToolResult(tool_call_id=c.id, text=RESULTS[c.id])) for c in calls]))
    return turns


def opaque_state(parts: list[rs.ChatPart]) -> list[str]:
    """The opaque pieces a turn carries, to see each protocol hand some out."""
    out = []
    for p in parts:
        if p.HasField("reasoning"):
            r = p.reasoning
            out += [v for v in (r.signature, r.redacted_data, r.encrypted_content, r.item_id) if v]
        elif p.HasField("tool_call"):
            out += [v for v in (p.tool_call.signature, p.tool_call.item_id) if v]
    return out


@pytest.mark.parametrize("kind", KINDS)
async def test_three_turn_tool_loop_with_thinking(kind: str, cfg: ConfigHarness) -> None:
    async with FakeUpstream.start(kind) as fake, start_chat_stack(cfg) as stack:
        await add_provider(cfg, fake, "up")
        await add_model(cfg, "up", "thinker", IDENTIFIERS[kind], pricing=PRICING, **THINKING[kind])
        alice = await cfg.md(Role.MEMBER, "alice")
        await wait_for_model(stack, alice, "thinker")
        script(fake)

        unary = await tool_loop(stack, alice, streamed=False)
        streamed = await tool_loop(stack, alice, streamed=True)

    assert len(unary) == len(streamed) == 3, "the loop ended early"
    for n, (u, s) in enumerate(zip(unary, streamed)):
        # Folding StreamChat's events by part_index gives exactly Chat's parts,
        # and the legacy fields, usage and cost agree.
        assert s.parts == u.parts, (n, s.parts, u.parts)
        assert (s.text, s.reasoning, s.refusal, s.finish) == (u.text, u.reasoning, u.refusal, u.finish)
        assert s.usage == u.usage and s.cost == pytest.approx(u.cost)
    assert [t.finish for t in unary] == [rs.FINISH_REASON_TOOL_CALLS] * 2 + [rs.FINISH_REASON_STOP]
    assert unary[2].text == "It is 18C and 14:05 in Paris."
    assert unary[0].reasoning == "The user wants weather and time; weather first."
    # Every thinking provider but plain openai-compatible hands out opaque state to carry.
    assert bool(opaque_state(unary[0].parts)) == (kind != "openai-compatible"), unary[0].parts
    usage = unary[0].usage
    assert (usage.input_tokens, usage.cache_read_tokens, usage.cache_write_tokens, usage.output_tokens) == (
        900, 3000, 0 if kind == "google" else 200, 400)
    assert usage.reasoning_tokens == (0 if kind == "bedrock" else 150)

    # What went upstream on the last turn: the state of both earlier steps.
    last = fake.requests[-1].json()
    sent = json.dumps(last)
    for state in opaque_state(unary[0].parts) + opaque_state(unary[1].parts):
        assert state in sent, (state, sent)
    assert len(fake.requests) == 6  # no request was refused and retried
    if kind == "anthropic":  # thinking stayed on: the replay satisfied Claude's rule
        assert last["thinking"] == {"type": "enabled", "budget_tokens": 2048}
        assert [b["type"] for b in last["messages"][3]["content"]] == ["thinking", "redacted_thinking", "text",
                                                                        "tool_use"]
    if kind == "bedrock":
        assert last["additionalModelRequestFields"]["thinking"] == {"type": "adaptive"}
        assert last["outputConfig"] == {"effort": "high"}
    if kind == "google":
        assert [m["tool_calls"][0]["extra_content"]["google"]["thought_signature"].startswith("sig_")
                for m in last["messages"] if m.get("tool_calls")] == [True, True]
    if kind in ("openai", "azure-openai"):
        # Stateless Responses: the model remembers exactly the reasoning replayed to it.
        assert fake.remembered_reasoning[-1] == ["The user wants weather and time; weather first.",
                                                 "18C. Now the local time."]
        assert last["store"] is False and last["include"] == ["reasoning.encrypted_content"]


TAMPER: dict[str, tuple[str, str]] = {
    # kind -> (field of the first turn's state to alter, what the provider says)
    "anthropic": ("signature", "cannot be modified"),
    "bedrock": ("signature", "cannot be modified"),
    "openrouter": ("signature", "cannot be modified"),
    "vercel-ai-gateway": ("signature", "cannot be modified"),
    "openai": ("encrypted_content", "could not be verified"),
    "azure-openai": ("encrypted_content", "could not be verified"),
    "google": ("tool_call.signature", "Corrupted thought signature"),
}


@pytest.mark.parametrize("kind", sorted(TAMPER))
async def test_altered_state_is_refused_by_the_provider(kind: str, cfg: ConfigHarness) -> None:
    """The fakes hold the caller to the rules: replaying a turn whose opaque
    state was altered fails the provider's way (here UPSTREAM_BAD_REQUEST)."""
    field, says = TAMPER[kind]
    async with FakeUpstream.start(kind) as fake, start_chat_stack(cfg) as stack:
        await add_provider(cfg, fake, "up")
        await add_model(cfg, "up", "thinker", IDENTIFIERS[kind], **THINKING[kind])
        alice = await cfg.md(Role.MEMBER, "alice")
        await wait_for_model(stack, alice, "thinker")
        script(fake)
        first = await unary_turn(stack, rs.ChatRequest(messages=[
            rs.ChatMessage(role=rs.CHAT_ROLE_USER, text="Weather and time in Paris?")], tools=TOOLS), alice)
        parts = [rs.ChatPart().FromString(p.SerializeToString()) for p in first.parts]
        for p in parts:
            if field == "tool_call.signature":
                if p.HasField("tool_call"):
                    p.tool_call.signature = p.tool_call.signature[:-4] + "AAA="
            elif p.HasField("reasoning") and getattr(p.reasoning, field):
                setattr(p.reasoning, field, getattr(p.reasoning, field)[:-4] + "AAA=")
        follow_up = rs.ChatRequest(tools=TOOLS, messages=[
            rs.ChatMessage(role=rs.CHAT_ROLE_USER, text="Weather and time in Paris?"),
            rs.ChatMessage(role=rs.CHAT_ROLE_ASSISTANT, parts=parts),
            rs.ChatMessage(role=rs.CHAT_ROLE_TOOL, tool_call_id="call_w", text="18C")])
        err = await rpc_error(stack.stub.Chat(follow_up, metadata=alice))
    assert (err.code(), error_reason(err)) == (grpc.StatusCode.INVALID_ARGUMENT, "UPSTREAM_BAD_REQUEST")
    assert says in (err.details() or ""), err.details()


async def test_legacy_replay_without_state(cfg: ConfigHarness) -> None:
    """A caller that replays only the legacy fields (no reasoning state)
    still completes the loop: Claude gets the request with thinking off
    (the fix its own error names), Gemini gets the documented bypass
    signature, and Responses simply forgets the reasoning."""
    async with (FakeUpstream.start("anthropic") as claude, FakeUpstream.start("google") as gemini,
                FakeUpstream.start("openai") as gpt, start_chat_stack(cfg) as stack):
        for fake, name in ((claude, "claude"), (gemini, "gemini"), (gpt, "gpt")):
            await add_provider(cfg, fake, name)
            await add_model(cfg, name, name, IDENTIFIERS[fake.kind], **THINKING[fake.kind])
            script(fake)
        alice = await cfg.md(Role.MEMBER, "alice")
        await wait_for_model(stack, alice, "claude")
        for fake, name in ((claude, "claude"), (gemini, "gemini"), (gpt, "gpt")):
            first = await stack.stub.Chat(rs.ChatRequest(chat_model=name, tools=TOOLS, messages=[
                rs.ChatMessage(role=rs.CHAT_ROLE_USER, text="Weather and time in Paris?")]), metadata=alice)
            [call] = first.tool_calls
            legacy_call = rs.ToolCall(id=call.id, name=call.name, arguments_json=call.arguments_json)
            second = await stack.stub.Chat(rs.ChatRequest(chat_model=name, tools=TOOLS, messages=[
                rs.ChatMessage(role=rs.CHAT_ROLE_USER, text="Weather and time in Paris?"),
                rs.ChatMessage(role=rs.CHAT_ROLE_ASSISTANT, tool_calls=[legacy_call]),
                rs.ChatMessage(role=rs.CHAT_ROLE_TOOL, tool_call_id=call.id, text="18C")]), metadata=alice)
            assert second.finish_reason == rs.FINISH_REASON_TOOL_CALLS, name
            body = fake.requests[-1].json()
            if name == "claude":
                assert "thinking" not in body
                assert all(b["type"] != "thinking" for m in body["messages"] for b in m["content"]
                           if isinstance(m["content"], list))
            elif name == "gemini":
                sent_call = body["messages"][1]["tool_calls"][0]
                assert sent_call["extra_content"]["google"]["thought_signature"] == "skip_thought_signature_validator"
            else:
                assert gpt.remembered_reasoning[-1] == []


async def test_model_switch_mid_loop_drops_foreign_state(cfg: ConfigHarness) -> None:
    """Claude starts the loop, GPT (Responses) and Gemini continue it, Claude
    finishes: each provider gets only its own type's state, and every
    request succeeds."""
    async with (FakeUpstream.start("anthropic") as claude, FakeUpstream.start("openai") as gpt,
                FakeUpstream.start("google") as gemini, start_chat_stack(cfg) as stack):
        for fake, name in ((claude, "claude"), (gpt, "gpt"), (gemini, "gemini")):
            await add_provider(cfg, fake, name)
            await add_model(cfg, name, name, IDENTIFIERS[fake.kind], **THINKING[fake.kind])
        alice = await cfg.md(Role.MEMBER, "alice")
        await wait_for_model(stack, alice, "claude")
        claude.script(Canned(reasoning="Weather first.", text="", finish="tool_calls", response_id="resp_c1",
                             tool_calls=(CannedToolCall("call_w", "get_weather", {"city": "Paris"}),)),
                      Canned(reasoning="Done.", text="18C at 14:05.", response_id="resp_c2"))
        gpt.script(Canned(reasoning="Time next.", text="", finish="tool_calls", response_id="resp_g1",
                          tool_calls=(CannedToolCall("call_t", "get_time", {"city": "Paris"}),)))
        gemini.script(Canned(reasoning="Also the date.", text="", finish="tool_calls", response_id="resp_m1",
                             tool_calls=(CannedToolCall("call_d", "get_time", {"city": "Paris"}),)))

        conversation = [rs.ChatMessage(role=rs.CHAT_ROLE_USER, text="Weather and time in Paris?")]
        for model, result in (("claude", "18C"), ("gpt", "14:05"), ("gemini", "Tuesday"), ("claude", None)):
            reply = await stack.stub.Chat(rs.ChatRequest(chat_model=model, tools=TOOLS, messages=conversation),
                                          metadata=alice)
            conversation.append(rs.ChatMessage(role=rs.CHAT_ROLE_ASSISTANT, parts=reply.parts))
            if result is not None:
                [call] = reply.tool_calls
                conversation.append(rs.ChatMessage(role=rs.CHAT_ROLE_TOOL, parts=[
                    rs.ChatPart(tool_result=rs.ToolResult(tool_call_id=call.id, text=result))]))
        assert reply.text == "18C at 14:05."

    # GPT saw Claude's call but none of Claude's thinking, and no reasoning item to remember.
    gpt_input = gpt.requests[-1].json()["input"]
    assert [i.get("type") for i in gpt_input if i.get("type")] == ["function_call", "function_call_output"]
    assert gpt.remembered_reasoning[-1] == []
    # Gemini: its own call needs no bypass, the others' first calls get one; no foreign state.
    gemini_sent = json.dumps(gemini.requests[-1].json())
    assert "sig_" not in gemini_sent and "rs_" not in gemini_sent and "fc_" not in gemini_sent
    # Claude at the end: its own first step keeps its thinking; the last step
    # (Gemini's) has none, so the request goes with thinking off.
    final = claude.requests[-1].json()
    assert "thinking" not in final
    assert "rs_" not in json.dumps(final) and "Also the date." not in json.dumps(final)


async def test_refusals_come_through_both_paths(cfg: ConfigHarness) -> None:
    """A refusal is a refusal part and FINISH_REASON_REFUSAL, never an empty
    answer, the same through Chat and StreamChat."""
    async with (FakeUpstream.start("openai") as gpt, FakeUpstream.start("anthropic") as claude,
                FakeUpstream.start("openai-compatible") as local, start_chat_stack(cfg) as stack):
        for fake, name in ((gpt, "gpt"), (claude, "claude"), (local, "local")):
            await add_provider(cfg, fake, name)
            await add_model(cfg, name, name, IDENTIFIERS[fake.kind], pricing=PRICING)
            no = Canned(text="", refusal="I can't help with that.")
            fake.script(no, no)
        alice = await cfg.md(Role.MEMBER, "alice")
        await wait_for_model(stack, alice, "gpt")
        for name in ("gpt", "claude", "local"):
            request = rs.ChatRequest(chat_model=name, messages=[rs.ChatMessage(role=rs.CHAT_ROLE_USER, text="?")])
            u = await unary_turn(stack, request, alice)
            s = await streamed_turn(stack, request, alice)
            assert u.refusal == s.refusal == "I can't help with that.", name
            assert u.finish == s.finish == rs.FINISH_REASON_REFUSAL, name
            assert u.parts == s.parts == [rs.ChatPart(refusal="I can't help with that.")], name
            assert u.usage == s.usage and u.cost == pytest.approx(s.cost)
