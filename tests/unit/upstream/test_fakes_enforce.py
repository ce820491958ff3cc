"""The fakes hold a client to each provider's replay rules, with the
provider's own status and error shape (raw HTTP, no engine in between)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.fakes import Canned, CannedToolCall, FakeUpstream, anthropic_wire, bedrock_wire, openai_wire

CALL = CannedToolCall("call_1", "get_weather", {"city": "Paris"})
TURN = Canned(reasoning="Weather first.", text="", tool_calls=(CALL,), finish="tool_calls", response_id="resp_a")


async def post(fake: FakeUpstream, path: str, body: dict[str, Any], **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(trust_env=False) as http:
        return await http.post(fake.base_url.rstrip("/") + path, json=body, headers=headers)


def anthropic_messages(assistant: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"role": "user", "content": "Weather?"}, {"role": "assistant", "content": assistant},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": "18C"}]}]


TOOL_USE = {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}}
THINKING = {"type": "thinking", "thinking": "Weather first.", "signature": anthropic_wire.thinking_signature(
    "Weather first.")}


@pytest.mark.parametrize(("assistant", "status", "says"), [
    ([THINKING, TOOL_USE], 200, None),
    ([TOOL_USE], 400, "Expected `thinking` or `redacted_thinking`, but found `tool_use`"),
    ([{**THINKING, "thinking": "Weather first!"}, TOOL_USE], 400, "cannot be modified"),
    ([{**THINKING, "signature": THINKING["signature"][:-2] + "x="}, TOOL_USE], 400, "cannot be modified"),
    ([{"type": "redacted_thinking", "data": "forged"}, TOOL_USE], 400, "cannot be modified"),
])
async def test_anthropic_fake_enforces_thinking_replay(assistant: list[dict[str, Any]], status: int,
                                                       says: str | None) -> None:
    async with FakeUpstream.start("anthropic") as fake:
        reply = await post(fake, "/v1/messages", {"model": "m", "max_tokens": 4096, "messages": anthropic_messages(
            assistant), "thinking": {"type": "enabled", "budget_tokens": 2048}},
            **{"x-api-key": fake.api_key or "", "anthropic-version": "2023-06-01"})
    assert reply.status_code == status, reply.text
    if says:
        assert reply.json()["error"]["type"] == "invalid_request_error"
        assert says in reply.json()["error"]["message"]


async def test_anthropic_fake_without_thinking_needs_no_block() -> None:
    async with FakeUpstream.start("anthropic") as fake:
        reply = await post(fake, "/v1/messages", {"model": "m", "max_tokens": 10,
                                                  "messages": anthropic_messages([TOOL_USE])},
                           **{"x-api-key": fake.api_key or "", "anthropic-version": "2023-06-01"})
    assert reply.status_code == 200


@pytest.mark.parametrize(("reasoning", "says"), [
    ({"reasoningText": {"text": "Weather first.", "signature": bedrock_wire.thinking_signature("Weather first.")}},
     None),
    (None, "Expected `thinking` or `redacted_thinking`, but found `tool_use`"),
    ({"reasoningText": {"text": "Weather first.", "signature": anthropic_wire.thinking_signature("Weather first.")}},
     "cannot be modified"),  # Anthropic's own signature is not Bedrock's
])
async def test_bedrock_fake_enforces_reasoning_content_replay(reasoning: dict[str, Any] | None,
                                                              says: str | None) -> None:
    async with FakeUpstream.start("bedrock") as fake:
        content: list[dict[str, Any]] = [{"reasoningContent": reasoning}] if reasoning else []
        content.append({"toolUse": {"toolUseId": "call_1", "name": "get_weather", "input": {"city": "Paris"}}})
        body = {"messages": [{"role": "user", "content": [{"text": "Weather?"}]},
                             {"role": "assistant", "content": content},
                             {"role": "user", "content": [{"toolResult": {"toolUseId": "call_1",
                                                                          "content": [{"text": "18C"}]}}]}],
                "additionalModelRequestFields": {"thinking": {"type": "adaptive"}}}
        reply = await post(fake, "/model/m/converse", body, Authorization=f"Bearer {fake.api_key}")
    if says is None:
        assert reply.status_code == 200, reply.text
        return
    assert reply.status_code == 400
    assert reply.headers["x-amzn-errortype"].startswith("ValidationException")
    assert reply.json()["message"].startswith("The model returned the following errors: ")
    assert says in reply.json()["message"]


def gemini_step(extra: dict[str, Any] | None) -> list[dict[str, Any]]:
    call: dict[str, Any] = {"id": "call_1", "type": "function",
                            "function": {"name": "get_weather", "arguments": json.dumps({"city": "Paris"})}}
    if extra is not None:
        call["extra_content"] = extra
    return [{"role": "user", "content": "Weather?"}, {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"}]


@pytest.mark.parametrize(("extra", "status", "says"), [
    ({"google": {"thought_signature": openai_wire.gemini_signature(CALL)}}, 200, None),
    ({"google": {"thought_signature": "skip_thought_signature_validator"}}, 200, None),
    (None, 400, "Function call is missing a thought_signature in functionCall parts"),
    ({"google": {"thought_signature": "sig_forged"}}, 400, "Corrupted thought signature"),
])
async def test_gemini_fake_enforces_thought_signatures(extra: dict[str, Any] | None, status: int,
                                                       says: str | None) -> None:
    async with FakeUpstream.start("google") as fake:
        reply = await post(fake, "/chat/completions", {"model": "gemini-3", "messages": gemini_step(extra)},
                           Authorization=f"Bearer {fake.api_key}")
    assert reply.status_code == status, reply.text
    if says:
        [error] = reply.json()  # Gemini's OpenAI endpoint wraps errors in a list
        assert error["error"]["status"] == "INVALID_ARGUMENT" and says in error["error"]["message"]


async def test_responses_fake_forgets_reasoning_that_is_not_replayed() -> None:
    async with FakeUpstream.start("openai") as fake:
        fake.script(TURN, Canned(text="18C."), Canned(text="18C."))
        headers = {"Authorization": f"Bearer {fake.api_key}"}
        first = await post(fake, "/responses", {"model": "m", "input": "Weather?", "store": False,
                                                "include": ["reasoning.encrypted_content"]}, **headers)
        reasoning, call = first.json()["output"]
        assert reasoning["encrypted_content"]  # asked for with include
        result = {"type": "function_call_output", "call_id": "call_1", "output": "18C"}
        call_item = {k: call[k] for k in ("type", "id", "call_id", "name", "arguments")}
        replayed = [{"role": "user", "content": "Weather?"},
                    {k: reasoning[k] for k in ("type", "id", "summary", "encrypted_content")}, call_item, result]
        assert (await post(fake, "/responses", {"model": "m", "input": replayed, "store": False}, **headers)
                ).status_code == 200
        without_ids = [replayed[0], {k: v for k, v in call_item.items() if k != "id"}, result]
        assert (await post(fake, "/responses", {"model": "m", "input": without_ids, "store": False}, **headers)
                ).status_code == 200
        assert fake.remembered_reasoning == [[], ["Weather first."], []]

        # The API's own refusals of a broken stateless replay.
        cases = [
            ([replayed[0], {"type": "reasoning", "id": reasoning["id"], "summary": []}, call_item, result], 404,
             "Items are not persisted when `store` is set to false"),
            ([replayed[0], replayed[1]], 400, "was provided without its required following item"),
            ([replayed[0], call_item, result], 400, "without its required 'reasoning' item"),
            ([replayed[0], {**replayed[1], "encrypted_content": "gAAAA-forged"}, call_item, result], 400,
             "could not be verified"),
            ([replayed[0], result], 400, "No tool call found for function call output with call_id call_1"),
        ]
        for items, status, says in cases:
            reply = await post(fake, "/responses", {"model": "m", "input": items, "store": False}, **headers)
            assert reply.status_code == status, (items, reply.text)
            assert says in reply.json()["error"]["message"]


async def test_responses_fake_needs_include_for_encrypted_reasoning() -> None:
    async with FakeUpstream.start("azure-openai") as fake:
        fake.default = TURN
        reply = await post(fake, "/responses", {"model": "m", "input": "Weather?", "store": False},
                           **{"api-key": fake.api_key or ""})
    assert "encrypted_content" not in reply.json()["output"][0]


@pytest.mark.parametrize("kind", ["openrouter", "vercel-ai-gateway"])
async def test_gateway_fakes_hold_claude_to_its_reasoning_details(kind: str) -> None:
    async with FakeUpstream.start(kind) as fake:
        fake.default = TURN
        headers = {"Authorization": f"Bearer {fake.api_key}"}
        first = await post(fake, "/chat/completions", {"model": "anthropic/claude", "messages": [
            {"role": "user", "content": "Weather?"}], "reasoning": {"enabled": True}}, **headers)
        message = first.json()["choices"][0]["message"]
        follow = [{"role": "user", "content": "Weather?"},
                  {"role": "assistant", "content": None, "tool_calls": message["tool_calls"],
                   "reasoning_details": message["reasoning_details"]},
                  {"role": "tool", "tool_call_id": "call_1", "content": "18C"}]
        ok = await post(fake, "/chat/completions", {"model": "anthropic/claude", "messages": follow}, **headers)
        del follow[1]["reasoning_details"]
        missing = await post(fake, "/chat/completions", {"model": "anthropic/claude", "messages": follow}, **headers)
    assert ok.status_code == 200, ok.text
    assert missing.status_code == 400
    assert "Expected `thinking` or `redacted_thinking`" in missing.json()["error"]["metadata"]["raw"]


async def test_deepseek_style_fake_wants_reasoning_content_in_the_tool_loop() -> None:
    async with FakeUpstream.start("openai-compatible") as fake:
        fake.default = TURN
        headers = {"Authorization": f"Bearer {fake.api_key}"}
        first = await post(fake, "/chat/completions", {"model": "deepseek", "messages": [
            {"role": "user", "content": "Weather?"}]}, **headers)
        message = first.json()["choices"][0]["message"]
        follow = [{"role": "user", "content": "Weather?"},
                  {"role": "assistant", "content": None, "tool_calls": message["tool_calls"],
                   "reasoning_content": message["reasoning_content"]},
                  {"role": "tool", "tool_call_id": "call_1", "content": "18C"}]
        ok = await post(fake, "/chat/completions", {"model": "deepseek", "messages": follow}, **headers)
        del follow[1]["reasoning_content"]
        missing = await post(fake, "/chat/completions", {"model": "deepseek", "messages": follow}, **headers)
        # Once the user speaks again, the finished turn's reasoning may go.
        later = await post(fake, "/chat/completions", {"model": "deepseek", "messages": [
            *follow, {"role": "user", "content": "Thanks"}]}, **headers)
    assert (ok.status_code, missing.status_code, later.status_code) == (200, 400, 200)
    assert "Missing `reasoning_content`" in missing.json()["error"]["message"]
