"""Anthropic Messages wire format: message/content-block events, pings,
error events and cache usage fields."""

from __future__ import annotations

import json
from typing import Any

from tests.fakes.canned import Canned, Fail, chunks_of
from tests.fakes.http_server import RawReply, StreamReply
from tests.fakes.sse import SSE_HEADERS, named

STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def error_reply(fail: Fail) -> RawReply:
    kind = fail.code or ERROR_TYPES.get(fail.status, "api_error")
    body = {"type": "error", "error": {"type": kind, "message": fail.message}, "request_id": "req_err"}
    return RawReply(
        fail.status, json.dumps(body).encode(), {"Content-Type": "application/json", **fail.headers}
    )


def usage(c: Canned, output: int) -> dict[str, int]:
    return {
        "input_tokens": c.usage.input,
        "cache_creation_input_tokens": c.usage.cache_write,
        "cache_read_input_tokens": c.usage.cache_read,
        "output_tokens": output,
    }


def message(c: Canned, model: str) -> RawReply:
    content: list[dict[str, Any]] = []
    if c.reasoning:
        content.append({"type": "thinking", "thinking": c.reasoning, "signature": "sig-fake"})
    if c.text:
        content.append({"type": "text", "text": c.text})
    content += [{"type": "tool_use", "id": t.id, "name": t.name, "input": t.arguments} for t in c.tool_calls]
    body = {
        "id": c.response_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": STOP_REASONS[c.finish],
        "stop_sequence": None,
        "usage": usage(c, c.usage.output),
    }
    return RawReply(
        200, json.dumps(body).encode(), {"Content-Type": "application/json", "request-id": c.request_id}
    )


def stream(c: Canned, model: str) -> StreamReply:
    events = [
        named(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": c.response_id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": usage(c, 1),
                },
            },
        )
    ]
    events.append(named("ping", {"type": "ping"}))
    index = 0

    def block(start: dict[str, Any], deltas: list[dict[str, Any]]) -> None:
        nonlocal index
        events.append(
            named(
                "content_block_start", {"type": "content_block_start", "index": index, "content_block": start}
            )
        )
        for d in deltas:
            events.append(
                named("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d})
            )
        events.append(named("content_block_stop", {"type": "content_block_stop", "index": index}))
        index += 1

    if c.reasoning:
        block(
            {"type": "thinking", "thinking": ""},
            [{"type": "thinking_delta", "thinking": p} for p in chunks_of(c.reasoning, c.chunk_chars)]
            + [{"type": "signature_delta", "signature": "sig-fake"}],
        )
    if c.text:
        block(
            {"type": "text", "text": ""},
            [{"type": "text_delta", "text": p} for p in chunks_of(c.text, c.chunk_chars)],
        )
        events.append(named("ping", {"type": "ping"}))
    for t in c.tool_calls:
        block(
            {"type": "tool_use", "id": t.id, "name": t.name, "input": {}},
            [{"type": "input_json_delta", "partial_json": p} for p in chunks_of(json.dumps(t.arguments), 7)],
        )
    events.append(
        named(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": STOP_REASONS[c.finish], "stop_sequence": None},
                "usage": {"output_tokens": c.usage.output},
            },
        )
    )
    events.append(named("message_stop", {"type": "message_stop"}))
    if c.error_after is not None:
        error = c.error if "type" in c.error else {"type": "overloaded_error", "message": "Overloaded"}
        events = events[: c.error_after] + [named("error", {"type": "error", "error": error})]
    if c.cut_after is not None:
        events = events[: c.cut_after]
    headers = {**SSE_HEADERS, "request-id": c.request_id}
    return StreamReply(events, headers=headers, delay_s=c.delay_s, stall_after=c.stall_after)


def models_reply(models: list[str]) -> RawReply:
    body = {
        "data": [
            {"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"}
            for m in models
        ],
        "has_more": False,
        "first_id": models[0] if models else None,
        "last_id": models[-1] if models else None,
    }
    return RawReply(200, json.dumps(body).encode(), {"Content-Type": "application/json"})
