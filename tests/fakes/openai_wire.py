"""OpenAI-shaped wire formats: Chat Completions (with each provider's
quirks) and the Responses API."""

from __future__ import annotations

import json
from typing import Any

from tests.fakes.canned import Canned, CannedUsage, Fail, chunks_of
from tests.fakes.http_server import RawReply, StreamReply
from tests.fakes.sse import DONE, SSE_HEADERS, comment, data, named

CREATED = 1_760_000_000


# --- errors -----------------------------------------------------------------

_DEFAULT_CODES = {401: "invalid_api_key", 404: "model_not_found", 429: "rate_limit_exceeded"}


def error_reply(kind: str, fail: Fail) -> RawReply:
    code = fail.code or _DEFAULT_CODES.get(fail.status)
    if kind == "google":
        body: Any = [{"error": {"code": fail.status, "message": fail.message, "status": code or "ERROR"}}]
    elif kind == "azure-openai":
        body = {"error": {"code": code or str(fail.status), "message": fail.message}}
    elif kind == "openrouter":
        body = {"error": {"code": fail.status, "message": fail.message, "metadata": {"raw": code}}}
    else:
        body = {
            "error": {"message": fail.message, "type": "invalid_request_error", "param": None, "code": code}
        }
    headers = {"Content-Type": "application/json", **fail.headers}
    return RawReply(fail.status, json.dumps(body).encode(), headers)


def models_reply(models: list[str]) -> RawReply:
    body = {"object": "list", "data": [{"id": m, "object": "model", "owned_by": "fake"} for m in models]}
    return RawReply(200, json.dumps(body).encode(), {"Content-Type": "application/json"})


# --- Chat Completions ---------------------------------------------------------


def chat_usage(u: CannedUsage, kind: str) -> dict[str, Any]:
    prompt = u.input + u.cache_read + u.cache_write
    details: dict[str, int] = {"cached_tokens": u.cache_read}
    if kind == "openrouter" and u.cache_write:
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
    if kind in ("openrouter", "vercel-ai-gateway"):
        return "reasoning"
    if kind == "openai-compatible":
        return "reasoning_content"
    return None  # openai/azure return no reasoning text on chat; google uses <thought> tags


def chat_completion(c: Canned, kind: str, model: str) -> RawReply:
    content = c.text
    if kind == "google" and c.reasoning:
        content = f"<thought>{c.reasoning}</thought>{c.text}"
    message: dict[str, Any] = {"role": "assistant", "content": content or None}
    field = _reasoning_field(kind)
    if field and c.reasoning:
        message[field] = c.reasoning
    if c.tool_calls:
        message["tool_calls"] = [
            {
                "id": t.id,
                "type": "function",
                "function": {"name": t.name, "arguments": json.dumps(t.arguments)},
            }
            for t in c.tool_calls
        ]
    choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": c.finish}
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
    field = _reasoning_field(kind)
    if c.reasoning and kind == "google":
        # Split mid-tag on purpose: the client must reassemble "<thought>".
        tagged = f"<thought>{c.reasoning}</thought>"
        events += [delta({"content": piece}) for piece in chunks_of(tagged, 4)]
    elif c.reasoning and field:
        events += [delta({field: piece}) for piece in chunks_of(c.reasoning, c.chunk_chars)]
    events += [delta({"content": piece}) for piece in chunks_of(c.text, c.chunk_chars)]
    for index, tool in enumerate(c.tool_calls):
        events.append(
            delta(
                {
                    "tool_calls": [
                        {
                            "index": index,
                            "id": tool.id,
                            "type": "function",
                            "function": {"name": tool.name, "arguments": ""},
                        }
                    ]
                }
            )
        )
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


# --- Responses API ------------------------------------------------------------


def responses_usage(u: CannedUsage) -> dict[str, Any]:
    return {
        "input_tokens": u.input + u.cache_read,
        "input_tokens_details": {"cached_tokens": u.cache_read},
        "output_tokens": u.output,
        "output_tokens_details": {"reasoning_tokens": u.reasoning},
        "total_tokens": u.input + u.cache_read + u.output,
    }


def _response_items(c: Canned) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    if c.reasoning:
        items.append(
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": c.reasoning}]}
        )
    if c.text:
        items.append(
            {
                "type": "message",
                "id": "msg_1",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": c.text, "annotations": []}],
            }
        )
    for n, tool in enumerate(c.tool_calls):
        items.append(
            {
                "type": "function_call",
                "id": f"fc_{n}",
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


def responses_unary(c: Canned, model: str) -> RawReply:
    body = _response(c, model, "completed", _response_items(c))
    return RawReply(
        200, json.dumps(body).encode(), {"Content-Type": "application/json", "x-request-id": c.request_id}
    )


def responses_stream(c: Canned, model: str) -> StreamReply:
    seq = iter(range(10_000))

    def ev(kind: str, **fields: Any) -> bytes:
        return named(kind, {"type": kind, "sequence_number": next(seq), **fields})

    events = [
        ev("response.created", response=_response(c, model, "in_progress", [])),
        ev("response.in_progress", response=_response(c, model, "in_progress", [])),
    ]
    items = _response_items(c)
    for index, item in enumerate(items):
        if item["type"] == "reasoning":
            events.append(
                ev(
                    "response.output_item.added",
                    output_index=index,
                    item={"type": "reasoning", "id": item["id"], "summary": []},
                )
            )
            for piece in chunks_of(c.reasoning, c.chunk_chars):
                events.append(
                    ev(
                        "response.reasoning_summary_text.delta",
                        item_id=item["id"],
                        output_index=index,
                        summary_index=0,
                        delta=piece,
                    )
                )
        elif item["type"] == "message":
            events.append(
                ev(
                    "response.output_item.added",
                    output_index=index,
                    item={**item, "status": "in_progress", "content": []},
                )
            )
            events.append(
                ev(
                    "response.content_part.added",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    part={"type": "output_text", "text": "", "annotations": []},
                )
            )
            for piece in chunks_of(c.text, c.chunk_chars):
                events.append(
                    ev(
                        "response.output_text.delta",
                        item_id=item["id"],
                        output_index=index,
                        content_index=0,
                        delta=piece,
                    )
                )
            events.append(
                ev(
                    "response.output_text.done",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    text=c.text,
                )
            )
        else:
            events.append(
                ev(
                    "response.output_item.added",
                    output_index=index,
                    item={**item, "arguments": "", "status": "in_progress"},
                )
            )
            for piece in chunks_of(item["arguments"], 7):
                events.append(
                    ev(
                        "response.function_call_arguments.delta",
                        item_id=item["id"],
                        output_index=index,
                        delta=piece,
                    )
                )
            events.append(
                ev(
                    "response.function_call_arguments.done",
                    item_id=item["id"],
                    output_index=index,
                    arguments=item["arguments"],
                )
            )
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
