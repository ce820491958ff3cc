"""Telemetry of upstream calls: one `CallTelemetry` per chat or probe sees
its attempts (as the engine's AttemptObserver) and its outcome (from the
gateway), and turns them into attempt metrics and client spans.

Spans follow the OpenTelemetry GenAI semantic conventions for a client
inference span: named "{gen_ai.operation.name} {gen_ai.request.model}",
kind CLIENT, with gen_ai.provider.name (and the older gen_ai.system),
request and response model, usage, finish reasons and error.type, plus
modelplane.attempt (1, 2, ...) and modelplane.retry_reason (the error kind
of the attempt before). Each attempt is its own span, so a retried chat
shows every try with what ended it. Nothing from the conversation or the
credential goes into a span: attributes are names, numbers and kinds.

The trace context goes upstream as the W3C `traceparent` header. Every
supported provider ignores headers it does not know, and Azure OpenAI
records it; for bedrock it is added after SigV4 signing, so it is not part
of the signature.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlsplit

from modelplane_server.runtime.metrics import ResolverMetrics
from modelplane_server.runtime.tracing import Span, Tracing
from modelplane_server.resolver_svc.upstream import UpstreamError, UpstreamTarget, Usage

# gen_ai.provider.name's well-known values; other types keep modelplane's name.
GENAI_PROVIDER: Final[Mapping[str, str]] = {
    "openai": "openai",
    "azure-openai": "azure.ai.openai",
    "anthropic": "anthropic",
    "bedrock": "aws.bedrock",
    "google": "gcp.gemini",
}
CANCELLED: Final = "cancelled"
# The model a reply names comes in its first bytes (OpenAI's "model",
# Anthropic's message_start, Responses' response.created); no need to parse
# the whole body a second time.
_MODEL_FIELD = re.compile(rb'"model"\s*:\s*"([^"\\]{1,200})"')
_SCAN_BYTES: Final = 4096


class UpstreamTelemetry:
    """The resolver's metrics and tracing (either may be None) for upstream calls."""

    def __init__(self, metrics: ResolverMetrics | None, tracing: Tracing | None) -> None:
        self.metrics = metrics
        self.tracing = tracing

    def chat(self, provider: str, model: str, target: UpstreamTarget, *, stream: bool) -> CallTelemetry:
        return CallTelemetry(self.metrics, self.tracing, "chat", provider, model, target, stream=stream)

    def probe(self, provider: str, target: UpstreamTarget) -> CallTelemetry:
        """A probe's /models request: spans only (the per-model metrics are about chats)."""
        return CallTelemetry(None, self.tracing, "list_models", provider, "", target, stream=False)


class CallTelemetry:
    """One upstream call. The engine calls attempt/failed/received; the
    gateway calls first_token, succeeded, failed (for errors after the
    engine gave up) and close (always, last)."""

    def __init__(self, metrics: ResolverMetrics | None, tracing: Tracing | None, operation: str,
                 provider: str, model: str, target: UpstreamTarget, *, stream: bool) -> None:
        self.metrics = metrics
        self.tracing = tracing
        self.operation = operation
        self.provider = provider
        self.model = model
        self.target = target
        self.stream = stream
        self.started = time.perf_counter()
        self.attempts = 0
        self.retry_reason: str | None = None
        self._open = False
        self._span: Span | None = None
        self._scanned = 0
        self._response_model: str | None = None
        self._first_token = False

    # --- the engine ----------------------------------------------------------

    def attempt(self) -> Mapping[str, str]:
        if self._open:  # the engine never starts one without ending the last; stay consistent if it did
            self._end("unknown")
        self.attempts += 1
        self._open = True
        self._scanned = 0
        if self.tracing is None:
            return {}
        span = self.tracing.client_span(self._span_name(), self._attributes())
        self._span = span
        return span.headers()

    def responded(self, status: int) -> None:
        if self._span is not None:
            self._span.set_attribute("http.response.status_code", status)

    def failed(self, error: UpstreamError, retry_in_s: float | None) -> None:
        if self._open:
            if self._span is not None:
                if error.http_status is not None:
                    self._span.set_attribute("http.response.status_code", error.http_status)
                if retry_in_s is not None:
                    self._span.set_attribute("modelplane.retry_in_s", round(retry_in_s, 3))
            # The kind, never the provider's message: a provider may quote
            # part of a key back, and spans leave the process.
            self._end(error.kind)
        if retry_in_s is not None:
            self.retry_reason = error.kind
            if self.metrics is not None:
                self.metrics.upstream_retry(self.provider, self.model, error.kind)

    def received(self, data: bytes) -> None:
        if self._span is None or self._response_model is not None or self._scanned >= _SCAN_BYTES:
            return
        found = _MODEL_FIELD.search(data, 0, _SCAN_BYTES - self._scanned)
        self._scanned += len(data)
        if found:
            self._response_model = found.group(1).decode("utf-8", "replace")

    # --- the gateway ---------------------------------------------------------

    def first_token(self) -> None:
        if self._first_token:
            return
        self._first_token = True
        seconds = time.perf_counter() - self.started
        if self.metrics is not None:
            self.metrics.first_token(self.provider, self.model, seconds)
        if self._span is not None:
            self._span.set_attribute("gen_ai.response.time_to_first_chunk", seconds)

    def succeeded(self, usage: Usage | None, finish_reason: str | None) -> None:
        if not self._open:
            return
        span = self._span
        if span is not None:
            if self._response_model:
                span.set_attribute("gen_ai.response.model", self._response_model)
            if finish_reason:
                span.set_attribute("gen_ai.response.finish_reasons", (finish_reason,))
            if usage is not None:
                for name, value in _usage_attributes(usage).items():
                    span.set_attribute(name, value)
        self._end(None)

    def close(self) -> None:
        """The call is over; an attempt still open was cancelled (the caller
        went away, the deadline passed, or something unexpected broke it)."""
        if self._open:
            self._end(CANCELLED)

    # --- internals -----------------------------------------------------------

    def _end(self, error_kind: str | None) -> None:
        self._open = False
        if self.metrics is not None:
            self.metrics.upstream_attempt(self.provider, self.model, error_kind or "ok")
        span, self._span = self._span, None
        if span is not None:
            span.end(error_kind)

    def _span_name(self) -> str:
        if self.operation == "chat":
            return f"chat {self.target.model_identifier}"
        return f"{self.operation} {self.provider}"

    def _attributes(self) -> dict[str, Any]:
        kind = self.target.provider_type
        system = GENAI_PROVIDER.get(kind, kind)
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": self.operation,
            "gen_ai.provider.name": system,
            "gen_ai.system": system,
            "modelplane.provider": self.provider,
            "modelplane.provider_type": kind,
            "modelplane.attempt": self.attempts,
        }
        if self.operation == "chat":
            attributes["gen_ai.request.model"] = self.target.model_identifier
            attributes["gen_ai.request.stream"] = self.stream
            attributes["modelplane.model"] = self.model
        if self.retry_reason is not None:
            attributes["modelplane.retry_reason"] = self.retry_reason
        url = urlsplit(self.target.base_url)
        if url.hostname:
            attributes["server.address"] = url.hostname
            attributes["server.port"] = url.port or (443 if url.scheme == "https" else 80)
        return attributes


def _usage_attributes(usage: Usage) -> dict[str, int]:
    """GenAI usage: input_tokens counts every input token, cached ones too
    (modelplane's Usage.input_tokens excludes cache reads and writes);
    output_tokens includes reasoning, as Usage.output_tokens does."""
    return {
        "gen_ai.usage.input_tokens": usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens,
        "gen_ai.usage.output_tokens": usage.output_tokens,
        "gen_ai.usage.cache_read.input_tokens": usage.cache_read_tokens,
        "gen_ai.usage.cache_creation.input_tokens": usage.cache_write_tokens,
        "gen_ai.usage.reasoning.output_tokens": usage.reasoning_tokens,
    }
