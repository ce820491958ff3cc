"""Claude's rules, shared by Anthropic Messages and Bedrock Converse (the
same models behind two wire formats): thinking configuration, the tool-loop
replay rule, refusals.

The replay rule (Anthropic's extended-thinking docs): with thinking on, a
request that ends with tool results must have its last assistant message
start with the thinking (or redacted_thinking) block that preceded its tool
calls, unmodified. Blocks from another provider type cannot satisfy it, so
such a request (a model switch mid tool loop, or a caller replaying legacy
messages without parts) is sent with thinking off instead, the fix
Anthropic's error message itself names ("To avoid this requirement,
disable thinking").
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from modelplane_server.resolver_svc.upstream.protocol import Condition, MappingContext

# The MappingContext flag set when the request goes out with thinking off
# because the last assistant step has no thinking block of its own.
WITHOUT_THINKING: Final = "claude.without_thinking"


def thinking_on(ctx: MappingContext) -> bool:
    """Thinking as configured (enabled or adaptive): sampling options stay
    out, whatever the replay fallback decides."""
    return ctx.target.options.anthropic.thinking_on


def sampling_allowed(ctx: MappingContext) -> bool:
    # With thinking on, Claude rejects temperature and top_k and narrows
    # top_p; leaving all three out is the safe mapping (validation refuses
    # configuring them together anyway).
    return not thinking_on(ctx)


def send_thinking(ctx: MappingContext) -> bool:
    return WITHOUT_THINKING not in ctx.flags


def send_budget(ctx: MappingContext) -> bool:
    return send_thinking(ctx) and ctx.target.options.anthropic.thinking_type == "enabled"


def thinking_rules(prefix: str) -> tuple[tuple[str, str, Condition | None], ...]:
    """(option, wire path, condition) rows for the thinking object under prefix."""
    return (
        ("anthropic.thinking_type", f"{prefix}thinking.type", send_thinking),
        ("anthropic.thinking_budget_tokens", f"{prefix}thinking.budget_tokens", send_budget),
    )


def tool_input(arguments_json: str) -> Any:
    try:
        value = json.loads(arguments_json) if arguments_json else {}
    except ValueError:
        value = {}
    return value if isinstance(value, dict) else {}


def replayable(
    messages: list[dict[str, Any]],
    thinking_on: bool,
    is_tool_result: Callable[[Mapping[str, Any]], bool],
    is_thinking: Callable[[Mapping[str, Any]], bool],
) -> tuple[list[dict[str, Any]], frozenset[str]]:
    """The wire messages to send, and the mapping flags: when Claude would
    refuse the conversation with thinking on (needs_own_thinking), the
    request goes out with thinking off (WITHOUT_THINKING) and without
    thinking blocks."""
    if thinking_on and needs_own_thinking(messages, is_tool_result, is_thinking):
        return without_blocks(messages, is_thinking), frozenset({WITHOUT_THINKING})
    return messages, frozenset()


def needs_own_thinking(
    messages: Sequence[Mapping[str, Any]],
    is_tool_result: Callable[[Mapping[str, Any]], bool],
    is_thinking: Callable[[Mapping[str, Any]], bool],
) -> bool:
    """Whether Claude would refuse this conversation with thinking on: it
    ends with tool results and the last assistant message does not start
    with a thinking block. messages are wire messages ({role, content})."""
    if not messages or messages[-1]["role"] != "user":
        return False
    if not any(is_tool_result(block) for block in messages[-1]["content"]):
        return False
    for message in reversed(messages):
        if message["role"] == "assistant":
            content = message["content"]
            return not content or not is_thinking(content[0])
    return False


def without_blocks(
    messages: list[dict[str, Any]], drop: Callable[[Mapping[str, Any]], bool]
) -> list[dict[str, Any]]:
    """The messages without the blocks `drop` selects (thinking blocks, when
    the request goes out with thinking off); messages left empty go too."""
    out = []
    for message in messages:
        content = [block for block in message["content"] if not drop(block)]
        if content:
            out.append({**message, "content": content})
    return out


def refusal_text(stop_details: Mapping[str, Any] | None) -> str:
    """A refusal part's text for stop_reason "refusal", which carries no
    content of its own: the provider's explanation, else a sentence naming
    the category, so a refusal is never an empty answer."""
    details = stop_details or {}
    explanation = details.get("explanation")
    if isinstance(explanation, str) and explanation:
        return explanation
    category = details.get("category")
    suffix = f" (category: {category})" if isinstance(category, str) and category else ""
    return f"The model declined to respond{suffix}."
