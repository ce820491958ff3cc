"""Unary and streamed replies from every fake, incl. tools, reasoning and
each provider's stream quirks."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from dataclasses import replace

from modelplane_server.resolver_svc.upstream import (
    ChatResult,
    Finish,
    ModelOptions,
    OpenAIOptions,
    Part,
    ReasoningPart,
    StreamEvent,
    TextDelta,
    TextPart,
    ToolCall,
    ToolCallDelta,
    UpstreamClient,
    Usage,
    UsageEvent,
    collect,
)
from tests.fakes import KINDS, Canned, CannedToolCall, CannedUsage, FakeUpstream, anthropic_wire, bedrock_wire, openai_wire
from tests.unit.upstream.conftest import CONVERSATION, WEATHER_TOOL, target_for

RICH = Canned(
    text="It is sunny in Paris.",
    reasoning="The user wants weather; call the tool.",
    tool_calls=(CannedToolCall("call_7", "get_weather", {"city": "Paris"}),),
    finish="tool_calls",
    usage=CannedUsage(input=100, cache_read=20, output=50, reasoning=10),
    chunk_chars=3,
)


REASONING = "The user wants weather; call the tool."


def expected_parts(kind: str) -> tuple[Part, ...]:
    """RICH as each protocol's parts: the reasoning with the opaque state
    that provider attaches, the text, the call (with its own state)."""
    call = ToolCall("call_7", "get_weather", '{"city": "Paris"}')
    reasoning = {
        "anthropic": ReasoningPart(REASONING, signature=anthropic_wire.thinking_signature(REASONING),
                                   provider_type=kind),
        "bedrock": ReasoningPart(REASONING, signature=bedrock_wire.thinking_signature(REASONING), provider_type=kind),
        "openai": ReasoningPart(REASONING, summary=True, item_id="rs_fake_1", provider_type=kind),
        "azure-openai": ReasoningPart(REASONING, summary=True, item_id="rs_fake_1", provider_type=kind),
        "openrouter": ReasoningPart(REASONING, signature=openai_wire.gateway_signature(kind, REASONING),
                                    format="anthropic-claude-v1", provider_type=kind),
        "vercel-ai-gateway": ReasoningPart(REASONING, signature=openai_wire.gateway_signature(kind, REASONING),
                                           format="anthropic-claude-v1", provider_type=kind),
    }.get(kind, ReasoningPart(REASONING, provider_type=kind))
    if kind in ("openai", "azure-openai"):
        call = replace(call, item_id="fc_fake_1_0", provider_type=kind)
    if kind == "google":
        signature = openai_wire.gemini_signature(CannedToolCall("call_7", "get_weather", {"city": "Paris"}))
        call = replace(call, signature=signature, provider_type=kind)
    return (reasoning, TextPart("It is sunny in Paris."), call)


def expected_rich(kind: str) -> ChatResult:
    # Bedrock does not count thinking tokens separately.
    reasoning_tokens = 0 if kind == "bedrock" else 10
    return ChatResult.of(
        expected_parts(kind),
        "tool_calls",
        Usage(
            input_tokens=100,
            cache_read_tokens=20,
            cache_write_tokens=0,
            output_tokens=50,
            reasoning_tokens=reasoning_tokens,
        ),
        "req_fake_1",
    )


@pytest.mark.parametrize("kind", KINDS)
async def test_unary_reply(kind: str, client: UpstreamClient) -> None:
    async with FakeUpstream.start(kind) as fake:
        fake.default = RICH
        result = await client.chat(target_for(fake), CONVERSATION, [WEATHER_TOOL])
    assert result == expected_rich(kind)


@pytest.mark.parametrize("kind", KINDS)
async def test_streamed_reply_equals_unary(kind: str, client: UpstreamClient) -> None:
    async with FakeUpstream.start(kind) as fake:
        fake.default = RICH
        events = [e async for e in client.stream(target_for(fake), CONVERSATION, [WEATHER_TOOL])]
    assert isinstance(events[-1], Finish)
    assert isinstance(events[-2], UsageEvent)
    assert sum(isinstance(e, TextDelta) for e in events) > 1  # really incremental
    first_call_piece = next(e for e in events if isinstance(e, ToolCallDelta))
    assert (first_call_piece.index, first_call_piece.id, first_call_piece.name) == (
        0,
        "call_7",
        "get_weather",
    )

    async def replay() -> AsyncIterator[StreamEvent]:
        for e in events:
            yield e

    assert await collect(replay()) == expected_rich(kind)


@pytest.mark.parametrize("kind", ["openai", "azure-openai"])
async def test_openai_family_on_chat_completions(kind: str, client: UpstreamClient) -> None:
    async with FakeUpstream.start(kind) as fake:
        fake.default = RICH
        target = target_for(fake, ModelOptions(openai=OpenAIOptions(api="chat_completions")))
        unary = await client.chat(target, CONVERSATION, [WEATHER_TOOL])
        streamed = await collect(client.stream(target, CONVERSATION, [WEATHER_TOOL]))
        assert [r.path for r in fake.requests] == [
            fake.base_url.removeprefix(fake.origin) + "/chat/completions"
        ] * 2
    # Chat Completions on OpenAI returns no reasoning text, only its token count.
    assert unary.reasoning == "" and unary.usage.reasoning_tokens == 10
    assert [type(p).__name__ for p in unary.parts] == ["TextPart", "ToolCall"]
    assert streamed == unary


async def test_azure_stream_with_empty_choices_chunk(client: UpstreamClient) -> None:
    async with FakeUpstream.start("azure-openai") as fake:
        fake.default = Canned(text="abc")
        target = target_for(fake, ModelOptions(openai=OpenAIOptions(api="chat_completions")))
        result = await collect(client.stream(target, CONVERSATION))
    assert (result.text, result.finish_reason, result.usage.output_tokens) == ("abc", "stop", 7)


async def test_missing_done_is_not_an_error(client: UpstreamClient) -> None:
    async with FakeUpstream.start("openai-compatible") as fake:
        fake.default = Canned(text="no done line", omit_done=True)
        result = await collect(client.stream(target_for(fake), CONVERSATION))
    assert (result.text, result.finish_reason) == ("no done line", "stop")


@pytest.mark.parametrize("kind", ["openrouter", "anthropic", "bedrock", "openai"])
async def test_stream_cut_short_raises(kind: str, client: UpstreamClient) -> None:
    from modelplane_server.resolver_svc.upstream import UpstreamError

    async with FakeUpstream.start(kind) as fake:
        fake.default = Canned(text="abcdefghij", cut_after=5, chunk_chars=1)
        with pytest.raises(UpstreamError) as info:
            await collect(client.stream(target_for(fake), CONVERSATION))
    assert info.value.kind == "unavailable"


@pytest.mark.parametrize(
    ("finish", "expected"), [("length", "length"), ("content_filter", "content_filter"), ("stop", "stop")]
)
@pytest.mark.parametrize("kind", ["openai", "anthropic", "bedrock", "openrouter"])
async def test_finish_reasons(kind: str, finish: str, expected: str, client: UpstreamClient) -> None:
    if kind == "anthropic" and finish == "content_filter":
        expected = "refusal"  # Anthropic's only filter stop is stop_reason "refusal"
    async with FakeUpstream.start(kind) as fake:
        fake.default = Canned(finish=finish)
        unary = await client.chat(target_for(fake), CONVERSATION)
        streamed = await collect(client.stream(target_for(fake), CONVERSATION))
    assert unary.finish_reason == streamed.finish_reason == expected
    assert unary == streamed


@pytest.mark.parametrize("kind", KINDS)
async def test_list_models(kind: str, client: UpstreamClient) -> None:
    async with FakeUpstream.start(kind) as fake:
        fake.models = ["alpha", "beta-2"]
        assert await client.list_models(target_for(fake)) == ["alpha", "beta-2"]
        [request] = fake.requests
    assert request.method == "GET"
    assert request.path.endswith(
        {"anthropic": "/v1/models", "bedrock": "/foundation-models"}.get(kind, "/models")
    )
    assert "//" not in request.path
