"""Plain data exchanged with the upstream layer.

Nothing here knows about gRPC, protobuf or HTTP: the servicer converts its
messages into these dataclasses and back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Literal, Union

ProviderType = Literal[
    "anthropic",
    "openai",
    "google",
    "azure-openai",
    "bedrock",
    "openai-compatible",
    "openrouter",
    "vercel-ai-gateway",
]
PROVIDER_TYPES: Final[tuple[str, ...]] = (
    "anthropic",
    "openai",
    "google",
    "azure-openai",
    "bedrock",
    "openai-compatible",
    "openrouter",
    "vercel-ai-gateway",
)

FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "refusal", "other"]
Role = Literal["system", "user", "assistant", "tool"]
OpenAIApi = Literal["responses", "chat_completions"]


@dataclass(frozen=True)
class AnthropicOptions:
    """Options of the anthropic type; bedrock uses them too."""

    thinking_budget_tokens: int | None = None
    effort: str | None = None  # low | medium | high | xhigh | max
    thinking: str | None = None  # adaptive | disabled | between_tools ("enabled" is a budget)

    @property
    def thinking_type(self) -> str | None:
        """The thinking.type to send: the explicit mode, else "enabled" when
        a budget is set."""
        if self.thinking is not None:
            return self.thinking
        return "enabled" if self.thinking_budget_tokens is not None else None

    @property
    def thinking_on(self) -> bool:
        """Thinking that Anthropic's tool-loop and sampling rules apply to."""
        return self.thinking_type in ("enabled", "adaptive")


@dataclass(frozen=True)
class OpenAIOptions:
    """Options of the openai type; azure-openai uses them too."""

    reasoning_effort: str | None = None  # none | minimal | low | medium | high | xhigh | max
    max_completion_tokens: int | None = None
    parallel_tool_calls: bool | None = None
    api: OpenAIApi | None = None  # None means the default, "responses"


@dataclass(frozen=True)
class GoogleOptions:
    thinking_budget: int | None = None
    include_thoughts: bool | None = None
    thinking_level: str | None = None  # minimal | low | medium | high | xhigh


@dataclass(frozen=True)
class GatewayReasoningOptions:
    """Options of openrouter and vercel-ai-gateway (same `reasoning` object)."""

    reasoning_enabled: bool | None = None
    reasoning_effort: str | None = None


@dataclass(frozen=True)
class ModelOptions:
    """A model's generation options; None means "not set, send nothing"."""

    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    anthropic: AnthropicOptions = field(default_factory=AnthropicOptions)
    openai: OpenAIOptions = field(default_factory=OpenAIOptions)
    google: GoogleOptions = field(default_factory=GoogleOptions)
    gateway: GatewayReasoningOptions = field(default_factory=GatewayReasoningOptions)


@dataclass(frozen=True)
class UpstreamTarget:
    """Where and as whom to call, already resolved by the resolver.

    base_url is the effective URL (defaults applied). For bedrock, api_key is
    the bearer token; None means ambient AWS credentials (SigV4). The key is
    left out of the repr, so logging a target (or anything holding one, such
    as the resolver's ChatCall) never prints it.
    """

    provider_type: str
    base_url: str
    api_key: str | None = field(repr=False)
    region: str | None
    model_identifier: str
    options: ModelOptions = field(default_factory=ModelOptions)


@dataclass(frozen=True)
class ToolCall:
    """A call the model made. signature and item_id are the provider's opaque
    state for it (Gemini thought signature, Responses `fc_` item id),
    produced by provider_type and replayed only to that type."""

    id: str
    name: str
    arguments_json: str
    signature: str = ""
    item_id: str = ""
    provider_type: str = ""


@dataclass(frozen=True)
class TextPart:
    text: str


@dataclass(frozen=True)
class RefusalPart:
    text: str


@dataclass(frozen=True)
class ReasoningPart:
    """Reasoning: readable text (a summary when summary is set) and/or the
    provider's opaque state, tagged with the provider type that produced it.
    See docs/upstream.md "Reasoning state" for what each protocol fills."""

    text: str = ""
    summary: bool = False
    signature: str = ""
    redacted_data: str = ""
    encrypted_content: str = ""
    item_id: str = ""
    provider_type: str = ""
    format: str = ""


@dataclass(frozen=True)
class ToolResult:
    tool_call_id: str
    text: str = ""
    is_error: bool = False


Part = Union[TextPart, ReasoningPart, ToolCall, ToolResult, RefusalPart]


@dataclass(frozen=True)
class ToolDefinition:
    name: str
    description: str
    parameters: dict[str, object]


@dataclass(frozen=True)
class ChatMessage:
    """One turn: either the legacy fields (text, tool_calls, tool_call_id) or
    parts. Protocols read content_parts(), which turns legacy into parts."""

    role: Role
    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None  # set on role="tool"
    parts: tuple[Part, ...] = ()

    def content_parts(self) -> tuple[Part, ...]:
        if self.parts:
            return self.parts
        if self.role == "tool":
            return (ToolResult(self.tool_call_id or "", self.text),)
        legacy: tuple[Part, ...] = (TextPart(self.text),) if self.text else ()
        return legacy + self.tool_calls


@dataclass(frozen=True)
class Usage:
    """Normalised token counts; see docs/upstream.md "Usage semantics".

    input_tokens excludes cache reads and writes; output_tokens includes the
    reasoning tokens, which reasoning_tokens reports as a subset.
    """

    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0


@dataclass(frozen=True)
class ChatResult:
    """The assistant turn (parts, in order, exactly as received) plus the
    legacy views of it: text, reasoning (readable reasoning texts) and
    refusal are the parts' texts concatenated, tool_calls the calls in order."""

    text: str
    reasoning: str
    tool_calls: tuple[ToolCall, ...]
    finish_reason: FinishReason
    usage: Usage
    upstream_request_id: str | None
    parts: tuple[Part, ...] = ()
    refusal: str = ""

    @classmethod
    def of(cls, parts: Sequence[Part], finish_reason: FinishReason, usage: Usage,
           upstream_request_id: str | None) -> ChatResult:
        """The result of an assistant turn. A turn holding a refusal
        finishes with "refusal" whatever the wire said."""
        refusal = "".join(p.text for p in parts if isinstance(p, RefusalPart))
        return cls(
            text="".join(p.text for p in parts if isinstance(p, TextPart)),
            reasoning="".join(p.text for p in parts if isinstance(p, ReasoningPart)),
            tool_calls=tuple(p for p in parts if isinstance(p, ToolCall)),
            finish_reason="refusal" if any(isinstance(p, RefusalPart) for p in parts) else finish_reason,
            usage=usage,
            upstream_request_id=upstream_request_id,
            parts=tuple(parts),
            refusal=refusal,
        )


# Stream events. part_index is the index, in the turn's parts, of the part a
# delta belongs to (docs/upstream.md "Parts in streams").


@dataclass(frozen=True)
class TextDelta:
    text: str
    part_index: int = 0


@dataclass(frozen=True)
class ReasoningDelta:
    text: str
    part_index: int = 0


@dataclass(frozen=True)
class ReasoningState:
    """Opaque pieces of the reasoning part at part_index: signature_delta
    pieces concatenate; any other field, when set, is the part's value."""

    part_index: int
    signature_delta: str = ""
    redacted_data: str = ""
    encrypted_content: str = ""
    item_id: str = ""
    summary: bool = False
    provider_type: str = ""
    format: str = ""


@dataclass(frozen=True)
class RefusalDelta:
    text: str
    part_index: int = 0


@dataclass(frozen=True)
class ToolCallDelta:
    """A piece of a tool call. index counts tool calls in this reply from 0;
    id and name come with the first piece of each call; signature, item_id
    and provider_type when the provider sends them."""

    index: int
    id: str | None
    name: str | None
    arguments_delta: str
    part_index: int = 0
    signature: str = ""
    item_id: str = ""
    provider_type: str = ""


@dataclass(frozen=True)
class UsageEvent:
    usage: Usage


@dataclass(frozen=True)
class Finish:
    finish_reason: FinishReason
    upstream_request_id: str | None


StreamEvent = Union[TextDelta, ReasoningDelta, ReasoningState, RefusalDelta, ToolCallDelta, UsageEvent, Finish]
