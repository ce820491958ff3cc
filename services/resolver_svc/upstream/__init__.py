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
    ProviderType,
    ReasoningDelta,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolDefinition,
    UpstreamTarget,
    Usage,
    UsageEvent,
)
from modelplane_server.resolver_svc.upstream.usage import Prices, context_usage, cost_usd

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
    "Prices",
    "ProviderType",
    "ReasoningDelta",
    "RetryPolicy",
    "StreamEvent",
    "StreamStalled",
    "TextDelta",
    "Timeouts",
    "ToolCall",
    "ToolCallDelta",
    "ToolDefinition",
    "UpstreamClient",
    "UpstreamError",
    "UpstreamTarget",
    "Usage",
    "UsageEvent",
    "collect",
    "context_usage",
    "cost_usd",
    "deadline_in",
    "protocol_for",
    "scrub",
]
