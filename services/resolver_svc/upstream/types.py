"""Plain data exchanged with the upstream layer.

Nothing here knows about gRPC, protobuf or HTTP: the servicer converts its
messages into these dataclasses and back.
"""

from __future__ import annotations

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

FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "other"]
Role = Literal["system", "user", "assistant", "tool"]
OpenAIApi = Literal["responses", "chat_completions"]


@dataclass(frozen=True)
class AnthropicOptions:
    """Options of the anthropic type; bedrock uses them too."""

    thinking_budget_tokens: int | None = None
    effort: str | None = None  # low | medium | high | xhigh | max


@dataclass(frozen=True)
class OpenAIOptions:
    """Options of the openai type; azure-openai uses them too."""

    reasoning_effort: str | None = None  # minimal | low | medium | high | xhigh
    max_completion_tokens: int | None = None
    parallel_tool_calls: bool | None = None
    api: OpenAIApi | None = None  # None means the default, "responses"


@dataclass(frozen=True)
class GoogleOptions:
    thinking_budget: int | None = None
    include_thoughts: bool | None = None


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
    id: str
    name: str
    arguments_json: str


@dataclass(frozen=True)
class ToolDefinition:
    name: str
    description: str
    parameters: dict[str, object]


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None  # set on role="tool"


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
    text: str
    reasoning: str
    tool_calls: tuple[ToolCall, ...]
    finish_reason: FinishReason
    usage: Usage
    upstream_request_id: str | None


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class ReasoningDelta:
    text: str


@dataclass(frozen=True)
class ToolCallDelta:
    """A piece of a tool call. index counts tool calls in this reply from 0;
    id and name come with the first piece of each call."""

    index: int
    id: str | None
    name: str | None
    arguments_delta: str


@dataclass(frozen=True)
class UsageEvent:
    usage: Usage


@dataclass(frozen=True)
class Finish:
    finish_reason: FinishReason
    upstream_request_id: str | None


StreamEvent = Union[TextDelta, ReasoningDelta, ToolCallDelta, UsageEvent, Finish]
