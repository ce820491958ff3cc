"""Anthropic Messages wire format: message/content-block events, pings,
error events, cache and thinking usage fields, signed thinking blocks, and
the extended-thinking replay rules (enforce_thinking_rules)."""

from __future__ import annotations

import json
from typing import Any

from tests.fakes import sealing
from tests.fakes.canned import Canned, Fail, chunks_of
from tests.fakes.http_server import RawReply, StreamReply
from tests.fakes.sse import SSE_HEADERS, named

KIND = "anthropic"
STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
THINKING_DOCS = "https://docs.claude.com/en/docs/build-with-claude/extended-thinking"


def error_reply(fail: Fail, error_code: str | None = None) -> RawReply:
    kind = fail.code or ERROR_TYPES.get(fail.status, "api_error")
    error: dict[str, Any] = {"type": kind, "message": fail.message}
    if error_code:
        error["details"] = {"error_code": error_code}
    body = {"type": "error", "error": error, "request_id": "req_err"}
    return RawReply(
        fail.status, json.dumps(body).encode(), {"Content-Type": "application/json", **fail.headers}
    )


def usage(c: Canned, output: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "input_tokens": c.usage.input,
        "cache_creation_input_tokens": c.usage.cache_write,
        "cache_read_input_tokens": c.usage.cache_read,
        "cache_creation": {"ephemeral_5m_input_tokens": c.usage.cache_write, "ephemeral_1h_input_tokens": 0},
        "output_tokens": output,
    }
    if c.usage.reasoning:
        out["output_tokens_details"] = {"thinking_tokens": c.usage.reasoning}
    return out


# --- opaque state ----------------------------------------------------------------


def thinking_signature(thinking: str) -> str:
    return sealing.sign(KIND, "thinking:" + thinking)


def redacted_data(redacted: str) -> str:
    return sealing.seal(KIND, {"redacted_thinking": redacted})


def _stop_reason(c: Canned) -> str:
    return "refusal" if c.refusal else STOP_REASONS[c.finish]


def _stop_details(c: Canned) -> dict[str, Any] | None:
    return {"type": "refusal", "category": "cyber", "explanation": c.refusal} if c.refusal else None


def content_blocks(c: Canned) -> list[dict[str, Any]]:
    content: list[dict[str, Any]] = []
    if c.reasoning:
        content.append({"type": "thinking", "thinking": c.reasoning, "signature": thinking_signature(c.reasoning)})
    if c.redacted:
        content.append({"type": "redacted_thinking", "data": redacted_data(c.redacted)})
    if c.text:
        content.append({"type": "text", "text": c.text, "citations": None})
    content += [{"type": "tool_use", "id": t.id, "name": t.name, "input": t.arguments} for t in c.tool_calls]
    return content


# --- replies ---------------------------------------------------------------------


def message(c: Canned, model: str) -> RawReply:
    body = {
        "id": c.response_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content_blocks(c),
        "stop_reason": _stop_reason(c),
        "stop_sequence": None,
        "stop_details": _stop_details(c),
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
            {"type": "thinking", "thinking": "", "signature": ""},
            [{"type": "thinking_delta", "thinking": p} for p in chunks_of(c.reasoning, c.chunk_chars)]
            + [{"type": "signature_delta", "signature": thinking_signature(c.reasoning)}],
        )
    if c.redacted:
        block({"type": "redacted_thinking", "data": redacted_data(c.redacted)}, [])
    if c.text:
        block(
            {"type": "text", "text": "", "citations": None},
            [{"type": "text_delta", "text": p} for p in chunks_of(c.text, c.chunk_chars)],
        )
        events.append(named("ping", {"type": "ping"}))
    for t in c.tool_calls:
        block(
            {"type": "tool_use", "id": t.id, "name": t.name, "input": {}},
            [{"type": "input_json_delta", "partial_json": p} for p in chunks_of(json.dumps(t.arguments), 7)],
        )
    # message_delta usage is cumulative: the final counts, input included.
    final_usage = {k: v for k, v in usage(c, c.usage.output).items() if k != "cache_creation"}
    events.append(
        named(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": _stop_reason(c), "stop_sequence": None, "stop_details": _stop_details(c)},
                "usage": final_usage,
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


# --- the replay rules -------------------------------------------------------------


def thinking_enabled(body: dict[str, Any]) -> bool:
    return (body.get("thinking") or {}).get("type") in ("enabled", "adaptive")


def modified_message(where: str) -> str:
    return (f"{where}: thinking or redacted_thinking blocks in the latest assistant message cannot be modified. "
            "These blocks must remain as they were in the original response.")


def expected_thinking_message(where: str, found: str) -> str:
    return (f"{where}.type: Expected `thinking` or `redacted_thinking`, but found `{found}`. When `thinking` is "
            "enabled, a final `assistant` message must start with a thinking block (preceeding the lastmost set "
            "of `tool_use` and `tool_result` blocks). We recommend you include thinking blocks from previous "
            "turns. To avoid this requirement, disable `thinking`. Please consult our documentation at "
            f"{THINKING_DOCS}")


def thinking_problem(messages: list[dict[str, Any]], thinking_on: bool, where: str = "messages",
                     kind: str = KIND) -> str | None:
    """The message Claude answers a broken thinking replay with (HTTP 400
    invalid_request_error), or None. Shared with the Bedrock fake, which
    sees the same model through Converse (its blocks translated first).
    Blocks: {"type": "thinking"|"redacted_thinking"|"tool_use"|"tool_result"|"text", ...}."""
    last_assistant = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
    for i, msg in enumerate(messages):
        content = msg["content"] if isinstance(msg["content"], list) else [{"type": "text"}]
        for j, block in enumerate(content):
            block_type = block.get("type")
            intact = (
                block_type == "thinking" and sealing.verify(kind, "thinking:" + str(block.get("thinking")),
                                                            block.get("signature"))
            ) or (block_type == "redacted_thinking" and sealing.unseal(kind, block.get("data")) is not None)
            if block_type in ("thinking", "redacted_thinking") and not intact:
                if i == last_assistant:
                    return modified_message(f"{where}.{i}.content.{j}")
                return f"{where}.{i}.content.{j}: Invalid `signature` in `thinking` block"
            if block_type == "tool_result":
                previous = messages[i - 1]["content"] if i > 0 and isinstance(messages[i - 1]["content"], list) \
                    else []
                ids = {b.get("id") for b in previous if b.get("type") == "tool_use"}
                if block.get("tool_use_id") not in ids:
                    return (f"{where}.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: "
                            f"{block.get('tool_use_id')}. Each `tool_result` block must have a corresponding "
                            "`tool_use` block in the previous message.")
    if not thinking_on or last_assistant is None or messages[-1]["role"] != "user":
        return None
    final = messages[-1]["content"]
    if not (isinstance(final, list) and any(b.get("type") == "tool_result" for b in final)):
        return None
    content = messages[last_assistant]["content"]
    first = content[0].get("type") if isinstance(content, list) and content else "text"
    if first in ("thinking", "redacted_thinking"):
        return None
    return expected_thinking_message(f"{where}.{last_assistant}.content.0", str(first))


def enforce_thinking_rules(body: dict[str, Any]) -> RawReply | None:
    problem = thinking_problem(body.get("messages") or [], thinking_enabled(body))
    return None if problem is None else error_reply(Fail(400, problem))
