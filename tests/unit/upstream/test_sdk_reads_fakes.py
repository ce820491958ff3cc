"""The vendors' official SDKs read every fake's replies.

Each SDK client talks to the fake over loopback HTTP, unary and streamed;
the raw replies validate against the SDK's pydantic types (which the
clients themselves only construct, without validating), the SDK's own
stream accumulation gives the same message as the unary reply, and what the
SDK reads (signatures, encrypted reasoning, usage, refusals) is what the
engine reads from the same reply.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import anthropic
import botocore.session
import httpx
import openai
import pydantic
import pytest
from anthropic.types import Message, RawMessageStreamEvent
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response, ResponseStreamEvent

from modelplane_server.resolver_svc.upstream import (
    ModelOptions,
    OpenAIOptions,
    ReasoningPart,
    RefusalPart,
    ToolCall,
    UpstreamClient,
    collect,
)
from tests.fakes import TEST_AWS_CREDENTIALS, TEST_REGION, Canned, CannedToolCall, CannedUsage, FakeUpstream
from tests.unit.upstream.conftest import CONVERSATION, WEATHER_TOOL, target_for

THINKING_TURN = Canned(
    reasoning="The user wants the weather; call the tool.",
    redacted="hidden",
    text="Let me check.",
    tool_calls=(CannedToolCall("call_7", "get_weather", {"city": "Paris"}),),
    finish="tool_calls",
    usage=CannedUsage(input=100, cache_read=20, cache_write=30, output=50, reasoning=10),
    chunk_chars=4,
)
REFUSAL = Canned(text="", refusal="I can't help with that.", usage=CannedUsage(input=5, output=3))


def sse_payloads(body: bytes) -> list[dict[str, Any]]:
    """The JSON data of each SSE event (the fakes write one data line each)."""
    out = []
    for block in body.decode().split("\n\n"):
        for line in block.splitlines():
            if line.startswith("data: ") and line != "data: [DONE]":
                out.append(json.loads(line[len("data: "):]))
    return out


async def raw_stream(url: str, headers: dict[str, str], body: dict[str, Any]) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(trust_env=False) as http:
        reply = await http.post(url, headers=headers, json=body)
    assert reply.status_code == 200, reply.text
    return sse_payloads(reply.content)


# --- Anthropic -------------------------------------------------------------------------


@pytest.mark.parametrize("canned", [THINKING_TURN, REFUSAL], ids=["thinking", "refusal"])
async def test_anthropic_sdk_reads_the_fake(canned: Canned, client: UpstreamClient) -> None:
    async with FakeUpstream.start("anthropic") as fake:
        fake.default = canned
        sdk = anthropic.AsyncAnthropic(api_key=fake.api_key, base_url=fake.base_url, max_retries=0)
        params: dict[str, Any] = {"model": "claude-test", "max_tokens": 4096,
                                  "messages": [{"role": "user", "content": "Weather in Paris?"}]}
        raw = await sdk.messages.with_raw_response.create(**params)
        message = Message.model_validate(raw.http_response.json())  # strict: the SDK's reader only constructs
        async with sdk.messages.stream(**params) as stream:
            accumulated = await stream.get_final_message()
        events = await raw_stream(fake.base_url + "/v1/messages", {"x-api-key": fake.api_key or "",
                                                                   "anthropic-version": "2023-06-01"},
                                  {**params, "stream": True})
        ours = await client.chat(target_for(fake), CONVERSATION, [WEATHER_TOOL])
        ours_streamed = await collect(client.stream(target_for(fake), CONVERSATION, [WEATHER_TOOL]))
        await sdk.close()
    adapter = pydantic.TypeAdapter(RawMessageStreamEvent)
    for event in events:
        if event["type"] != "ping":  # documented, but not in the SDK's union
            adapter.validate_python(event)
    # The SDK's own accumulation of the fake's stream is the fake's unary message.
    assert [b.model_dump(exclude={"parsed_output"}) for b in accumulated.content] == [
        b.model_dump() for b in message.content]
    assert (accumulated.stop_reason, accumulated.usage.output_tokens) == (message.stop_reason, message.usage.output_tokens)
    assert ours == ours_streamed
    if canned.refusal:
        assert message.stop_reason == "refusal" and message.stop_details is not None
        assert ours.parts == (RefusalPart(canned.refusal),) and ours.finish_reason == "refusal"
        return
    thinking, redacted, _, tool_use = message.content
    assert thinking.type == "thinking" and redacted.type == "redacted_thinking" and tool_use.type == "tool_use"
    assert ours.parts[0] == ReasoningPart(thinking.thinking, signature=thinking.signature, provider_type="anthropic")
    assert ours.parts[1] == ReasoningPart(redacted_data=redacted.data, provider_type="anthropic")
    usage = message.usage
    assert usage.output_tokens_details is not None and usage.cache_creation is not None
    assert (ours.usage.input_tokens, ours.usage.cache_read_tokens, ours.usage.cache_write_tokens,
            ours.usage.output_tokens, ours.usage.reasoning_tokens) == (
        usage.input_tokens, usage.cache_read_input_tokens, usage.cache_creation_input_tokens, usage.output_tokens,
        usage.output_tokens_details.thinking_tokens)


# --- OpenAI Responses (openai, azure-openai) ---------------------------------------------


def openai_sdk(fake: FakeUpstream) -> openai.AsyncOpenAI:
    headers = {"api-key": fake.api_key or ""} if fake.kind == "azure-openai" else {}
    return openai.AsyncOpenAI(api_key=fake.api_key, base_url=fake.base_url, default_headers=headers,
                              max_retries=0, http_client=openai.DefaultAsyncHttpxClient(trust_env=False))


@pytest.mark.parametrize("kind", ["openai", "azure-openai"])
@pytest.mark.parametrize("canned", [THINKING_TURN, REFUSAL], ids=["thinking", "refusal"])
async def test_openai_sdk_reads_the_responses_fake(kind: str, canned: Canned, client: UpstreamClient) -> None:
    async with FakeUpstream.start(kind) as fake:
        fake.default = canned
        sdk = openai_sdk(fake)
        params: dict[str, Any] = {"model": "gpt-test", "input": "Weather in Paris?", "store": False,
                                  "include": ["reasoning.encrypted_content"], "reasoning": {"effort": "high"}}
        raw = await sdk.responses.with_raw_response.create(**params)
        response = Response.model_validate(raw.http_response.json())
        async with sdk.responses.stream(**params) as stream:
            accumulated = await stream.get_final_response()
        headers = {"Authorization": f"Bearer {fake.api_key}", "api-key": fake.api_key or ""}
        events = await raw_stream(fake.base_url + "/responses", headers, {**params, "stream": True})
        target = target_for(fake, ModelOptions(openai=OpenAIOptions(reasoning_effort="high")))
        ours = await client.chat(target, CONVERSATION, [WEATHER_TOOL])
        ours_streamed = await collect(client.stream(target, CONVERSATION, [WEATHER_TOOL]))
        await sdk.close()
    adapter = pydantic.TypeAdapter(ResponseStreamEvent)
    for event in events:
        adapter.validate_python(event)
    # (exclude_none: the stream helper adds parsed=None to text parts)
    assert [item.model_dump(exclude_none=True) for item in accumulated.output] == [
        item.model_dump(exclude_none=True) for item in response.output]
    assert ours == ours_streamed
    if canned.refusal:
        [message] = response.output
        assert message.type == "message" and message.content[0].type == "refusal"
        assert ours.refusal == canned.refusal and ours.finish_reason == "refusal"
        return
    reasoning, _, call = response.output
    assert reasoning.type == "reasoning" and call.type == "function_call"
    assert ours.parts[0] == ReasoningPart(reasoning.summary[0].text, summary=True, item_id=reasoning.id,
                                          encrypted_content=reasoning.encrypted_content or "", provider_type=kind)
    assert ours.parts[2] == ToolCall(call.call_id, call.name, call.arguments, item_id=call.id or "", provider_type=kind)
    usage = response.usage
    assert usage is not None
    assert (ours.usage.input_tokens + ours.usage.cache_read_tokens + ours.usage.cache_write_tokens,
            ours.usage.cache_read_tokens, ours.usage.cache_write_tokens, ours.usage.output_tokens,
            ours.usage.reasoning_tokens) == (
        usage.input_tokens, usage.input_tokens_details.cached_tokens, usage.input_tokens_details.cache_write_tokens,
        usage.output_tokens, usage.output_tokens_details.reasoning_tokens)


# --- Chat Completions ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["openai", "azure-openai", "google", "openai-compatible", "openrouter",
                                  "vercel-ai-gateway"])
@pytest.mark.parametrize("canned", [THINKING_TURN, REFUSAL], ids=["thinking", "refusal"])
async def test_openai_sdk_reads_the_chat_fakes(kind: str, canned: Canned, client: UpstreamClient) -> None:
    async with FakeUpstream.start(kind) as fake:
        fake.default = canned
        sdk = openai_sdk(fake)
        params: dict[str, Any] = {"model": "model-test", "messages": [{"role": "user", "content": "Weather?"}],
                                  "tools": [{"type": "function", "function": {
                                      "name": "get_weather", "parameters": WEATHER_TOOL.parameters}}]}
        raw = await sdk.chat.completions.with_raw_response.create(**params)
        completion = ChatCompletion.model_validate(raw.http_response.json())
        chunks = [ChatCompletionChunk.model_validate(chunk.model_dump()) async for chunk in
                  await sdk.chat.completions.create(**params, stream=True, stream_options={"include_usage": True})]
        target = target_for(fake, ModelOptions(openai=OpenAIOptions(api="chat_completions")))
        ours = await client.chat(target, CONVERSATION, [WEATHER_TOOL])
        ours_streamed = await collect(client.stream(target, CONVERSATION, [WEATHER_TOOL]))
        await sdk.close()
    assert ours == ours_streamed
    [choice] = completion.choices
    streamed_text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    streamed_refusal = "".join(c.choices[0].delta.refusal or "" for c in chunks if c.choices)
    assert streamed_text == (choice.message.content or "")
    assert streamed_refusal == (choice.message.refusal or "")
    assert completion.usage is not None and chunks[-1].usage == completion.usage
    if canned.refusal:
        assert ours.refusal == choice.message.refusal == canned.refusal and ours.finish_reason == "refusal"
        return
    [call] = choice.message.tool_calls or []
    assert [c for c in ours.parts if isinstance(c, ToolCall)][0].id == call.id
    extra = (call.model_extra or {}).get("extra_content")
    if kind == "google":  # the SDK keeps Gemini's extension; the engine reads the same signature
        assert ours.tool_calls[0].signature == extra["google"]["thought_signature"]
    details = (choice.message.model_extra or {}).get("reasoning_details")
    if kind in ("openrouter", "vercel-ai-gateway"):
        assert [p.signature or p.redacted_data for p in ours.parts if isinstance(p, ReasoningPart)] == [
            d.get("signature") or d.get("data") for d in details]
    details_usage = completion.usage.prompt_tokens_details
    assert details_usage is not None
    assert ours.usage.cache_read_tokens == details_usage.cached_tokens
    assert ours.usage.reasoning_tokens == (completion.usage.completion_tokens_details.reasoning_tokens
                                           if completion.usage.completion_tokens_details else 0)


# --- Bedrock (botocore) --------------------------------------------------------------------


def bedrock_client(fake: FakeUpstream) -> Any:
    session = botocore.session.get_session()
    creds = TEST_AWS_CREDENTIALS
    return session.create_client("bedrock-runtime", region_name=TEST_REGION, endpoint_url=fake.origin,
                                 aws_access_key_id=creds.access_key, aws_secret_access_key=creds.secret_key,
                                 aws_session_token=creds.token)


async def test_botocore_reads_the_bedrock_fake(client: UpstreamClient) -> None:
    async with FakeUpstream.start("bedrock", api_key=None) as fake:
        fake.default = THINKING_TURN
        boto = bedrock_client(fake)
        params = {"modelId": "us.anthropic.claude-test-1:0",
                  "messages": [{"role": "user", "content": [{"text": "Weather in Paris?"}]}]}
        unary = await asyncio.to_thread(boto.converse, **params)

        def streamed() -> list[dict[str, Any]]:
            return list(boto.converse_stream(**params)["stream"])

        events = await asyncio.to_thread(streamed)
        ours = await client.chat(target_for(fake, api_key=None), CONVERSATION, [WEATHER_TOOL])
        ours_streamed = await collect(client.stream(target_for(fake, api_key=None), CONVERSATION, [WEATHER_TOOL]))
    assert ours == ours_streamed
    reasoning, redacted, _, tool_use = unary["output"]["message"]["content"]
    text = reasoning["reasoningContent"]["reasoningText"]
    assert ours.parts[0] == ReasoningPart(text["text"], signature=text["signature"], provider_type="bedrock")
    # botocore decodes the Blob; the engine keeps it as the wire's base64 text, which replays unchanged.
    import base64
    assert base64.b64decode(ours.parts[1].redacted_data) == redacted["reasoningContent"]["redactedContent"]
    assert tool_use["toolUse"]["toolUseId"] == "call_7"
    usage = unary["usage"]
    assert (ours.usage.input_tokens, ours.usage.cache_read_tokens, ours.usage.cache_write_tokens,
            ours.usage.output_tokens) == (usage["inputTokens"], usage["cacheReadInputTokens"],
                                          usage["cacheWriteInputTokens"], usage["outputTokens"])
    kinds = [next(iter(e)) for e in events]
    assert kinds[0] == "messageStart" and kinds[-2:] == ["messageStop", "metadata"]
    signatures = [e["contentBlockDelta"]["delta"]["reasoningContent"].get("signature") for e in events
                  if "reasoningContent" in e.get("contentBlockDelta", {}).get("delta", {})]
    assert text["signature"] in signatures
    assert events[-1]["metadata"]["usage"] == usage
