"""OpenAI-shaped wire formats: Chat Completions (with each provider's
quirks and reasoning state) and the Responses API (stateless encrypted
reasoning), plus the replay rules each endpoint enforces."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from tests.fakes import sealing
from tests.fakes.anthropic_wire import expected_thinking_message, modified_message
from tests.fakes.canned import Canned, CannedToolCall, CannedUsage, Fail, chunks_of
from tests.fakes.http_server import RawReply, StreamReply
from tests.fakes.sse import DONE, SSE_HEADERS, comment, data, named

CREATED = 1_760_000_000
GATEWAYS = ("openrouter", "vercel-ai-gateway")
# Gemini's documented values for a function call it did not sign.
GEMINI_DUMMY_SIGNATURES = ("skip_thought_signature_validator", "context_engineering_is_the_way_to_go")


@dataclass
class ReplayMemory:
    """What a fake handed out, so it can hold the client to the provider's
    replay rules (and show what it remembers)."""

    # tool call id -> the reasoning text issued in the same turn
    reasoning_by_call: dict[str, str] = field(default_factory=dict)
    # Responses: function_call item id -> its reasoning item id
    reasoning_of_item: dict[str, str] = field(default_factory=dict)
    # Responses: per request, the reasoning the client replayed (decrypted),
    # in order; what the model "remembers" of its earlier thinking.
    remembered_reasoning: list[list[str]] = field(default_factory=list)


# --- errors -----------------------------------------------------------------

_DEFAULT_CODES = {401: "invalid_api_key", 404: "model_not_found", 429: "rate_limit_exceeded"}


def error_reply(kind: str, fail: Fail, error_type: str | None = None) -> RawReply:
    code = fail.code or _DEFAULT_CODES.get(fail.status)
    if kind == "google":
        body: Any = [{"error": {"code": fail.status, "message": fail.message, "status": code or "ERROR"}}]
    elif kind == "azure-openai":
        body = {"error": {"code": code or str(fail.status), "message": fail.message}}
    elif kind == "openrouter":
        body = {"error": {"code": fail.status, "message": fail.message, "metadata": {"raw": code}}}
    else:
        body = {
            "error": {"message": fail.message, "type": error_type or "invalid_request_error", "param": None,
                      "code": code}
        }
    headers = {"Content-Type": "application/json", **fail.headers}
    return RawReply(fail.status, json.dumps(body).encode(), headers)


def models_reply(models: list[str]) -> RawReply:
    body = {"object": "list", "data": [{"id": m, "object": "model", "owned_by": "fake", "created": CREATED}
                                       for m in models]}
    return RawReply(200, json.dumps(body).encode(), {"Content-Type": "application/json"})


# --- Chat Completions ---------------------------------------------------------


def chat_usage(u: CannedUsage, kind: str) -> dict[str, Any]:
    prompt = u.input + u.cache_read + u.cache_write
    details: dict[str, int] = {"cached_tokens": u.cache_read}
    if kind != "google" and u.cache_write:  # Gemini's implicit caching reports no writes
        details["cache_write_tokens"] = u.cache_write
    if kind == "google":
        # Gemini's endpoint leaves thoughts out of completion_tokens but not out of the total.
        completion = u.output - u.reasoning
        total = prompt + completion + u.reasoning
    else:
        completion = u.output
        total = prompt + completion
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": total,
        "prompt_tokens_details": details,
        "completion_tokens_details": {"reasoning_tokens": u.reasoning},
    }


def _reasoning_field(kind: str) -> str | None:
    if kind in GATEWAYS:
        return "reasoning"
    if kind == "openai-compatible":
        return "reasoning_content"
    return None  # openai/azure return no reasoning text on chat; google uses <thought> tags


def gateway_signature(kind: str, text: str) -> str:
    return sealing.sign(kind, "reasoning.text:" + text)


def reasoning_details(c: Canned, kind: str) -> list[dict[str, Any]]:
    """OpenRouter/Vercel's structured reasoning of a Claude model behind them."""
    details: list[dict[str, Any]] = []
    if c.reasoning:
        details.append({"type": "reasoning.text", "text": c.reasoning, "signature": gateway_signature(kind, c.reasoning),
                        "id": None, "format": "anthropic-claude-v1", "index": 0})
    if c.redacted:
        details.append({"type": "reasoning.encrypted", "data": sealing.seal(kind, {"redacted": c.redacted}),
                        "id": None, "format": "anthropic-claude-v1", "index": len(details)})
    return details


def gemini_signature(tool: CannedToolCall) -> str:
    return sealing.sign("google", f"call:{tool.id}:{tool.name}:{json.dumps(tool.arguments)}")


def _tool_call(c: Canned, kind: str, index: int, tool: CannedToolCall) -> dict[str, Any]:
    call: dict[str, Any] = {
        "id": tool.id,
        "type": "function",
        "function": {"name": tool.name, "arguments": json.dumps(tool.arguments)},
    }
    if kind == "google" and index == 0:  # Gemini signs the first call of a step
        call["extra_content"] = {"google": {"thought_signature": gemini_signature(tool)}}
    return call


def chat_completion(c: Canned, kind: str, model: str) -> RawReply:
    content = c.text
    if kind == "google" and c.reasoning:
        content = f"<thought>{c.reasoning}</thought>{c.text}"
    message: dict[str, Any] = {"role": "assistant", "content": content or None, "refusal": c.refusal or None}
    field_name = _reasoning_field(kind)
    if field_name and c.reasoning:
        message[field_name] = c.reasoning
    if kind in GATEWAYS and (c.reasoning or c.redacted):
        message["reasoning_details"] = reasoning_details(c, kind)
    if c.tool_calls:
        message["tool_calls"] = [_tool_call(c, kind, i, t) for i, t in enumerate(c.tool_calls)]
    choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": c.finish, "logprobs": None}
    body: dict[str, Any] = {
        "id": c.response_id,
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "choices": [choice],
        "usage": chat_usage(c.usage, kind),
    }
    if kind == "azure-openai":
        body["prompt_filter_results"] = [{"prompt_index": 0, "content_filter_results": {}}]
        choice["content_filter_results"] = {}
    return RawReply(
        200, json.dumps(body).encode(), {"Content-Type": "application/json", "x-request-id": c.request_id}
    )


def chat_stream(c: Canned, kind: str, model: str) -> StreamReply:
    def chunk(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        return data(
            {
                "id": c.response_id,
                "object": "chat.completion.chunk",
                "created": CREATED,
                "model": model,
                "choices": choices,
                **extra,
            }
        )

    def delta(d: dict[str, Any], finish: str | None = None) -> bytes:
        return chunk([{"index": 0, "delta": d, "finish_reason": finish}])

    events: list[bytes] = []
    if kind == "openrouter":
        events.append(comment("OPENROUTER PROCESSING"))
    if kind == "azure-openai":
        # Azure's first chunk carries prompt filter results and no choices.
        events.append(chunk([], prompt_filter_results=[{"prompt_index": 0, "content_filter_results": {}}]))
    events.append(delta({"role": "assistant", "content": ""}))
    field_name = _reasoning_field(kind)
    if c.reasoning and kind == "google":
        # Split mid-tag on purpose: the client must reassemble "<thought>".
        tagged = f"<thought>{c.reasoning}</thought>"
        events += [delta({"content": piece}) for piece in chunks_of(tagged, 4)]
    elif kind in GATEWAYS and (c.reasoning or c.redacted):
        # Text pieces of one detail share its index; the signature comes with
        # the last piece, as OpenRouter streams Claude's thinking.
        details = reasoning_details(c, kind)
        for detail in details:
            if detail["type"] == "reasoning.text":
                pieces = chunks_of(detail["text"], c.chunk_chars)
                for n, piece in enumerate(pieces):
                    d = {k: v for k, v in detail.items() if k != "signature"} | {"text": piece}
                    if n == len(pieces) - 1:
                        d["signature"] = detail["signature"]
                    events.append(delta({"reasoning": piece, "reasoning_details": [d]}))
            else:
                events.append(delta({"reasoning_details": [detail]}))
    elif c.reasoning and field_name:
        events += [delta({field_name: piece}) for piece in chunks_of(c.reasoning, c.chunk_chars)]
    events += [delta({"content": piece}) for piece in chunks_of(c.text, c.chunk_chars)]
    events += [delta({"refusal": piece}) for piece in chunks_of(c.refusal, c.chunk_chars)]
    for index, tool in enumerate(c.tool_calls):
        first = _tool_call(c, kind, index, tool)
        first["function"]["arguments"] = ""
        events.append(delta({"tool_calls": [{"index": index, **first}]}))
        for piece in chunks_of(json.dumps(tool.arguments), 7):
            events.append(delta({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}))
    events.append(delta({}, c.finish))
    events.append(chunk([], usage=chat_usage(c.usage, kind)))
    if not c.omit_done:
        events.append(DONE)
    if c.error_after is not None:
        error_chunk = chunk([{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}], error=c.error)
        events = events[: c.error_after] + [error_chunk]
    if c.cut_after is not None:
        events = events[: c.cut_after]
    headers = {**SSE_HEADERS, "x-request-id": c.request_id}
    return StreamReply(events, headers=headers, delay_s=c.delay_s, stall_after=c.stall_after)


# --- Chat Completions: the replay rules -----------------------------------------


def _current_turn(messages: list[dict[str, Any]]) -> int:
    users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
    return users[-1] + 1 if users else 0


def check_chat(kind: str, body: dict[str, Any], memory: ReplayMemory) -> RawReply | None:
    messages: list[dict[str, Any]] = body.get("messages") or []
    open_calls: set[str] = set()
    for m in messages:
        if m.get("role") == "assistant":
            open_calls = {c.get("id") for c in m.get("tool_calls") or []}
        elif m.get("role") == "tool" and m.get("tool_call_id") not in open_calls:
            return error_reply(kind, Fail(400, "Invalid parameter: messages with role 'tool' must be a response "
                                          "to a preceeding message with 'tool_calls'."))
    start = _current_turn(messages)
    if kind == "google":
        return _check_gemini(messages, start)
    if kind in GATEWAYS:
        return _check_gateway(kind, messages, memory)
    if kind == "openai-compatible":
        return _check_reasoning_content(messages, start, memory)
    return None


def _check_gemini(messages: list[dict[str, Any]], start: int) -> RawReply | None:
    """Gemini 3 validates the current turn: the first function call of each
    model step must carry the thought signature it was given (or a
    documented dummy); a signature it did not issue is refused too."""
    for position, m in enumerate(messages):
        calls = m.get("tool_calls") or [] if m.get("role") == "assistant" else []
        for n, call in enumerate(calls):
            signature = ((call.get("extra_content") or {}).get("google") or {}).get("thought_signature")
            function = call.get("function") or {}
            tool = CannedToolCall(call.get("id"), function.get("name"), json.loads(function.get("arguments") or "{}"))
            if signature is not None and signature not in GEMINI_DUMMY_SIGNATURES \
                    and signature != gemini_signature(tool):
                return error_reply("google", Fail(400, "Corrupted thought signature.", code="INVALID_ARGUMENT"))
            if n == 0 and position >= start and signature is None:
                return error_reply("google", Fail(
                    400, "Function call is missing a thought_signature in functionCall parts. This is required "
                         "for tools to work correctly, and missing thought_signature may lead to degraded model "
                         f"performance. Additional data, function call `{function.get('name')}` , position "
                         f"{position + 1}. Please refer to https://ai.google.dev/gemini-api/docs/thought-signatures "
                         "for more details.", code="INVALID_ARGUMENT"))
    return None


def _check_gateway(kind: str, messages: list[dict[str, Any]], memory: ReplayMemory) -> RawReply | None:
    """OpenRouter/Vercel in front of Claude with thinking: reasoning_details
    go back to Claude as its thinking blocks, so Claude's rules apply and
    its errors come back wrapped in the gateway's."""
    assistants = [i for i, m in enumerate(messages) if m.get("role") == "assistant"]
    problem: str | None = None
    for i in assistants:
        for j, d in enumerate(messages[i].get("reasoning_details") or []):
            intact = (d.get("type") == "reasoning.text"
                      and d.get("signature") == gateway_signature(kind, str(d.get("text")))) or (
                d.get("type") == "reasoning.encrypted" and sealing.unseal(kind, d.get("data")) is not None)
            if not intact and d.get("type") in ("reasoning.text", "reasoning.encrypted"):
                problem = modified_message(f"messages.{i}.content.{j}")
    last = assistants[-1] if assistants else None
    if problem is None and last is not None and messages[-1].get("role") == "tool":
        issued = any(c.get("id") in memory.reasoning_by_call for c in messages[last].get("tool_calls") or [])
        if issued and not messages[last].get("reasoning_details"):
            found = "text" if messages[last].get("content") else "tool_use"
            problem = expected_thinking_message(f"messages.{last}.content.0", found)
    if problem is None:
        return None
    body = {"error": {"code": 400, "message": "Provider returned error",
                      "metadata": {"raw": json.dumps({"type": "error", "error": {
                          "type": "invalid_request_error", "message": problem}}), "provider_name": "Anthropic"}}}
    return RawReply(400, json.dumps(body).encode(), {"Content-Type": "application/json"})


def _check_reasoning_content(messages: list[dict[str, Any]], start: int, memory: ReplayMemory) -> RawReply | None:
    """DeepSeek-style thinking with tools: within the tool loop in progress,
    each assistant step must bring its reasoning_content back."""
    for position, m in enumerate(messages[start:], start):
        if m.get("role") != "assistant":
            continue
        issued = {memory.reasoning_by_call.get(c.get("id")) for c in m.get("tool_calls") or []} - {None}
        if issued and m.get("reasoning_content") not in issued:
            return error_reply("openai-compatible", Fail(
                400, f"Missing `reasoning_content` field in the assistant message at message index {position}."))
    return None


# --- Responses API ------------------------------------------------------------


def responses_usage(u: CannedUsage) -> dict[str, Any]:
    return {
        "input_tokens": u.input + u.cache_read + u.cache_write,
        "input_tokens_details": {"cached_tokens": u.cache_read, "cache_write_tokens": u.cache_write},
        "output_tokens": u.output,
        "output_tokens_details": {"reasoning_tokens": u.reasoning},
        "total_tokens": u.input + u.cache_read + u.cache_write + u.output,
    }


def item_ids(c: Canned) -> tuple[str, str, list[str]]:
    """(reasoning id, message id, function call ids) of a response, derived
    from its response_id so the same reply has the same ids, streamed or not."""
    suffix = c.response_id.removeprefix("resp_")
    return f"rs_{suffix}", f"msg_{suffix}", [f"fc_{suffix}_{n}" for n in range(len(c.tool_calls))]


def _response_items(c: Canned, kind: str, encrypted: bool) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    rs_id, msg_id, fc_ids = item_ids(c)
    if c.reasoning:
        reasoning: dict[str, Any] = {"type": "reasoning", "id": rs_id,
                                     "summary": [{"type": "summary_text", "text": c.reasoning}]}
        if encrypted:
            reasoning["encrypted_content"] = sealing.seal(kind, {"id": rs_id, "reasoning": c.reasoning})
        items.append(reasoning)
    if c.text or c.refusal:
        content: list[dict[str, Any]] = []
        if c.text:
            content.append({"type": "output_text", "text": c.text, "annotations": []})
        if c.refusal:
            content.append({"type": "refusal", "refusal": c.refusal})
        items.append({"type": "message", "id": msg_id, "role": "assistant", "status": "completed",
                      "content": content})
    for n, tool in enumerate(c.tool_calls):
        items.append(
            {
                "type": "function_call",
                "id": fc_ids[n],
                "call_id": tool.id,
                "name": tool.name,
                "arguments": json.dumps(tool.arguments),
                "status": "completed",
            }
        )
    return items


def _response(c: Canned, model: str, status: str, output: list[dict[str, Any]]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": c.response_id,
        "object": "response",
        "created_at": CREATED,
        "model": model,
        "status": status,
        "output": output,
        "usage": None,
        "incomplete_details": None,
        "error": None,
        "instructions": None,
        "metadata": {},
        "parallel_tool_calls": True,
        "temperature": None,
        "tool_choice": "auto",
        "tools": [],
        "top_p": None,
    }
    if status != "in_progress":
        body["usage"] = responses_usage(c.usage)
        if c.finish == "length":
            body["status"] = "incomplete"
            body["incomplete_details"] = {"reason": "max_output_tokens"}
        elif c.finish == "content_filter":
            body["status"] = "incomplete"
            body["incomplete_details"] = {"reason": "content_filter"}
    return body


def register_response(c: Canned, memory: ReplayMemory) -> None:
    """Pair the response's function call items with its reasoning item."""
    rs_id, _, fc_ids = item_ids(c)
    if c.reasoning:
        for fc_id in fc_ids:
            memory.reasoning_of_item[fc_id] = rs_id


def responses_unary(c: Canned, kind: str, model: str, encrypted: bool) -> RawReply:
    body = _response(c, model, "completed", _response_items(c, kind, encrypted))
    return RawReply(
        200, json.dumps(body).encode(), {"Content-Type": "application/json", "x-request-id": c.request_id}
    )


def responses_stream(c: Canned, kind: str, model: str, encrypted: bool) -> StreamReply:
    counter = iter(range(10_000))

    def ev(event_type: str, **fields: Any) -> bytes:
        return named(event_type, {"type": event_type, "sequence_number": next(counter), **fields})

    events = [
        ev("response.created", response=_response(c, model, "in_progress", [])),
        ev("response.in_progress", response=_response(c, model, "in_progress", [])),
    ]
    items = _response_items(c, kind, encrypted)
    for index, item in enumerate(items):
        if item["type"] == "reasoning":
            # output_item.added carries no (or partial) encrypted content; the done item has it all.
            events.append(ev("response.output_item.added", output_index=index,
                             item={"type": "reasoning", "id": item["id"], "summary": []}))
            part = {"type": "summary_text", "text": ""}
            events.append(ev("response.reasoning_summary_part.added", item_id=item["id"], output_index=index,
                             summary_index=0, part=part))
            for piece in chunks_of(c.reasoning, c.chunk_chars):
                events.append(ev("response.reasoning_summary_text.delta", item_id=item["id"],
                                 output_index=index, summary_index=0, delta=piece))
            events.append(ev("response.reasoning_summary_text.done", item_id=item["id"], output_index=index,
                             summary_index=0, text=c.reasoning))
            events.append(ev("response.reasoning_summary_part.done", item_id=item["id"], output_index=index,
                             summary_index=0, part={"type": "summary_text", "text": c.reasoning}))
        elif item["type"] == "message":
            events.append(ev("response.output_item.added", output_index=index,
                             item={**item, "status": "in_progress", "content": []}))
            for content_index, content in enumerate(item["content"]):
                is_text = content["type"] == "output_text"
                text = content["text"] if is_text else content["refusal"]
                empty = {"type": "output_text", "text": "", "annotations": []} if is_text else \
                    {"type": "refusal", "refusal": ""}
                events.append(ev("response.content_part.added", item_id=item["id"], output_index=index,
                                 content_index=content_index, part=empty))
                delta_type = "response.output_text.delta" if is_text else "response.refusal.delta"
                for piece in chunks_of(text, c.chunk_chars):
                    extra = {"logprobs": []} if is_text else {}
                    events.append(ev(delta_type, item_id=item["id"], output_index=index,
                                     content_index=content_index, delta=piece, **extra))
                if is_text:
                    events.append(ev("response.output_text.done", item_id=item["id"], output_index=index,
                                     content_index=content_index, text=text, logprobs=[]))
                else:
                    events.append(ev("response.refusal.done", item_id=item["id"], output_index=index,
                                     content_index=content_index, refusal=text))
                events.append(ev("response.content_part.done", item_id=item["id"], output_index=index,
                                 content_index=content_index, part=content))
        else:
            events.append(ev("response.output_item.added", output_index=index,
                             item={**item, "arguments": "", "status": "in_progress"}))
            for piece in chunks_of(item["arguments"], 7):
                events.append(ev("response.function_call_arguments.delta", item_id=item["id"],
                                 output_index=index, delta=piece))
            events.append(ev("response.function_call_arguments.done", item_id=item["id"], output_index=index,
                             arguments=item["arguments"], name=item["name"]))
        events.append(ev("response.output_item.done", output_index=index, item=item))
    final = _response(c, model, "completed", items)
    events.append(
        ev("response.incomplete" if final["status"] == "incomplete" else "response.completed", response=final)
    )
    if c.error_after is not None:
        events = events[: c.error_after] + [
            ev("error", code="server_error", message=str(c.error.get("message")), param=None)
        ]
    if c.cut_after is not None:
        events = events[: c.cut_after]
    headers = {**SSE_HEADERS, "x-request-id": c.request_id}
    return StreamReply(events, headers=headers, delay_s=c.delay_s, stall_after=c.stall_after)


def check_responses(kind: str, body: dict[str, Any], memory: ReplayMemory) -> RawReply | None:
    """The stateless (store: false) input rules, with the API's own errors.
    Replayed reasoning is decrypted and remembered; reasoning that is not
    replayed is simply gone (memory.remembered_reasoning shows which)."""
    given = body.get("input")
    items: list[dict[str, Any]] = given if isinstance(given, list) else []  # a string is one user message
    stateless = body.get("store") is False
    remembered: list[str] = []
    calls: set[str] = set()
    given_reasoning: set[str] = set()

    def bad(message: str, status: int = 400) -> RawReply:
        return error_reply(kind, Fail(status, message, code=None))

    for n, item in enumerate(items):
        item_type = item.get("type") or ("message" if "role" in item else None)
        if item_type == "reasoning":
            item_id = str(item.get("id"))
            if stateless and "encrypted_content" not in item:
                return bad(f"Item with id '{item_id}' not found. Items are not persisted when `store` is set to "
                           "false. Try again with `store` set to true, or remove this item from your input.", 404)
            content = sealing.unseal(kind, item.get("encrypted_content"))
            if content is None or content.get("id") != item_id:
                return bad(f"The encrypted content for item {item_id} could not be verified.")
            following = items[n + 1] if n + 1 < len(items) else None
            if following is None or following.get("type") == "reasoning" or \
                    following.get("type") == "function_call_output":
                return bad(f"Item '{item_id}' of type 'reasoning' was provided without its required following "
                           "item.")
            given_reasoning.add(item_id)
            remembered.append(str(content.get("reasoning")))
        elif item_type == "function_call":
            calls.add(str(item.get("call_id")))
            needs = memory.reasoning_of_item.get(str(item.get("id")))
            if item.get("id") and needs and needs not in given_reasoning:
                return bad(f"Item '{item.get('id')}' of type 'function_call' was provided without its required "
                           f"'reasoning' item: '{needs}'.")
        elif item_type == "function_call_output" and str(item.get("call_id")) not in calls:
            return bad(f"No tool call found for function call output with call_id {item.get('call_id')}.")
    memory.remembered_reasoning.append(remembered)
    return None
