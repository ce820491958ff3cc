"""Upstream calls: the engine behind Chat, StreamChat and ProbeProvider.

Plain data in, plain data out; no gRPC or protobuf types. See
docs/upstream.md for the option mapping and the usage semantics.
"""

from modelplane_server.resolver_svc.upstream.client import Timeouts, UpstreamClient, deadline_in, protocol_for
from modelplane_server.resolver_svc.upstream.collect import collect
from modelplane_server.resolver_svc.upstream.errors import ErrorKind, StreamStalled, UpstreamError, scrub
from modelplane_server.resolver_svc.upstream.retry import RetryPolicy
from modelplane_server.resolver_svc.upstream.types import (
    PROVIDER_TYPES,
    AnthropicOptions,
    ChatMessage,
    ChatResult,
    Finish,
    FinishReason,
    GatewayReasoningOptions,
    GoogleOptions,
    ModelOptions,
    OpenAIOptions,
    Part,
    ProviderType,
    ReasoningDelta,
    ReasoningPart,
    ReasoningState,
    RefusalDelta,
    RefusalPart,
    StreamEvent,
    TextDelta,
    TextPart,
    ToolCall,
    ToolCallDelta,
    ToolDefinition,
    ToolResult,
    UpstreamTarget,
    Usage,
    UsageEvent,
)
from modelplane_server.resolver_svc.upstream.parts import PartFolder, fold
from modelplane_server.resolver_svc.upstream.usage import context_usage

__all__ = [
    "PROVIDER_TYPES",
    "AnthropicOptions",
    "ChatMessage",
    "ChatResult",
    "ErrorKind",
    "Finish",
    "FinishReason",
    "GatewayReasoningOptions",
    "GoogleOptions",
    "ModelOptions",
    "OpenAIOptions",
    "Part",
    "PartFolder",
    "ProviderType",
    "ReasoningDelta",
    "ReasoningPart",
    "ReasoningState",
    "RefusalDelta",
    "RefusalPart",
    "RetryPolicy",
    "StreamEvent",
    "StreamStalled",
    "TextDelta",
    "TextPart",
    "Timeouts",
    "ToolCall",
    "ToolCallDelta",
    "ToolDefinition",
    "ToolResult",
    "UpstreamClient",
    "UpstreamError",
    "UpstreamTarget",
    "Usage",
    "UsageEvent",
    "collect",
    "context_usage",
    "deadline_in",
    "fold",
    "protocol_for",
    "scrub",
]
