"""Provider-neutral descriptions of what a fake upstream should answer.

Each fake renders these into its own wire format, so one test can script
"the same reply" on every provider.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class CannedUsage:
    """Token counts in modelplane's normalised sense (input excludes cache;
    output includes reasoning). Renderers turn them into each provider's
    own, differently-shaped counters."""

    input: int = 12
    cache_read: int = 0
    cache_write: int = 0
    output: int = 7
    reasoning: int = 0


@dataclass(frozen=True)
class CannedToolCall:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Canned:
    """A successful reply, unary or streamed depending on the request.

    Streaming knobs: `chunk_chars` splits text into deltas of that size;
    `delay_s` spaces the events; `stall_after` stops sending after that many
    events and holds the connection; `error_after` sends the provider's
    in-stream error after that many events; `omit_done` drops the final
    [DONE] line; `cut_after` ends the body after that many events without
    any finish.
    """

    text: str = "Hello from the fake."
    reasoning: str = ""
    # Opaque reasoning the provider hides (Anthropic redacted_thinking,
    # Bedrock redactedContent, OpenRouter reasoning.encrypted); sealed by the fake.
    redacted: str = ""
    # The model declines: OpenAI refusal content, Anthropic stop_reason
    # "refusal" (this text as stop_details.explanation).
    refusal: str = ""
    tool_calls: tuple[CannedToolCall, ...] = ()
    finish: str = "stop"  # stop | length | tool_calls | content_filter
    usage: CannedUsage = CannedUsage()
    response_id: str = "resp_fake_1"
    request_id: str = "req_fake_1"
    chunk_chars: int = 5
    delay_s: float = 0.0
    stall_after: int | None = None
    error_after: int | None = None
    error: dict[str, Any] = field(default_factory=lambda: {"code": 502, "message": "Provider returned error"})
    omit_done: bool = False
    cut_after: int | None = None


@dataclass(frozen=True)
class Fail:
    """An HTTP error in the provider's own error format.

    `code` is the provider's code/type (OpenAI `code`, Anthropic error
    `type`, Bedrock exception name); defaults suit the status."""

    status: int
    message: str = "scripted failure"
    code: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # OpenAI-shaped error.type (e.g. insufficient_quota next to code
    # credit_balance_exhausted); default invalid_request_error.
    error_type: str | None = None
    # Anthropic error.details.error_code (e.g. enforced_spend_limit_reached).
    error_code: str | None = None


def chunks_of(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] if text else []
