"""Distributed tracing with OpenTelemetry: W3C trace context in and out,
spans exported over OTLP/gRPC when the standard variables ask for it.

Off unless an OTEL_EXPORTER_OTLP_* variable is set (or OTEL_TRACES_EXPORTER
is otlp), and off whatever else is set when OTEL_SDK_DISABLED is true or
OTEL_TRACES_EXPORTER is none. Off means free: `tracing_from_env` then
returns None, nothing of OpenTelemetry is imported, no stage is added to
the pipeline and no interceptor to the resolver's channel, so the hot path
runs exactly the code it ran before tracing existed (bench/tracing.py
profiles it).

On, `Tracing` owns one TracerProvider per server (never the global one, so
several servers in one test process keep their spans apart) with a batch
processor and the OTLP/gRPC exporter; the exporter reads the rest of the
standard variables itself (headers, certificate, timeout, compression), the
provider reads OTEL_TRACES_SAMPLER and OTEL_RESOURCE_ATTRIBUTES.

What gets a span:
- every RPC a server answers (`Tracing.stage()`, the outermost pipeline
  stage): SERVER, `{service}/{method}`, child of the caller's traceparent;
- the resolver's unary calls to config_svc made for an RPC
  (`Tracing.client_interceptors()`): CLIENT, context sent as metadata;
- every upstream attempt (resolver_svc.chat.telemetry): CLIENT, GenAI
  attributes, context sent as the `traceparent` HTTP header.
`trace_ids` adds trace_id and span_id to every log line written inside a span.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping, cast

import grpc
import grpc.aio
from structlog.typing import EventDict, WrappedLogger

from modelplane_server.runtime.context import current_call
from modelplane_server.runtime.env import Env, SettingsError, env_bool, env_str
from modelplane_server.runtime.pipeline import CompletionHooks, HookInterceptor, Hooks

if TYPE_CHECKING:  # imported for real only when tracing starts
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

TRACE_HEADERS = ("traceparent", "tracestate")
OTLP_PREFIX = "OTEL_EXPORTER_OTLP_"
# gRPC codes that mean the server failed (OpenTelemetry's RPC conventions):
# a caller's mistake (INVALID_ARGUMENT, NOT_FOUND, ...) is not a server error.
_SERVER_ERRORS = frozenset({grpc.StatusCode.UNKNOWN, grpc.StatusCode.DEADLINE_EXCEEDED,
                            grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.INTERNAL,
                            grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DATA_LOSS})


# -- settings ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TracingConfig:
    """Where spans go. endpoint None: the exporter's own default
    (http://localhost:4317, or its variables)."""

    service_name: str
    endpoint: str | None = None


def tracing_from_env(env: Env, default_service_name: str) -> TracingConfig | None:
    """The tracing settings; None (off) unless the environment asks for OTLP."""
    disabled = env_bool(env, "OTEL_SDK_DISABLED", False, "true turns tracing off whatever else is set")
    exporter = env_str(env, "OTEL_TRACES_EXPORTER", "", "otlp or none; empty: otlp when any "
                                                         "OTEL_EXPORTER_OTLP_* variable is set").strip().lower()
    endpoint = env_str(env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "",
                       "OTLP/gRPC collector for spans, e.g. http://otel-collector:4317 (http:// is plaintext)")
    endpoint = endpoint or env_str(env, "OTEL_EXPORTER_OTLP_ENDPOINT", "",
                                   "OTLP/gRPC collector for every signal; setting any OTEL_EXPORTER_OTLP_* "
                                   "variable turns tracing on (headers, certificate, timeout: see "
                                   "docs/operations.md)")
    protocol = env_str(env, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "", "grpc (the only protocol shipped)")
    protocol = protocol or env_str(env, "OTEL_EXPORTER_OTLP_PROTOCOL", "", "grpc (the only protocol shipped)")
    service_name = env_str(env, "OTEL_SERVICE_NAME", default_service_name, "service.name of the spans")
    if env.describe_only:
        return None
    if exporter not in ("", "otlp", "none"):
        raise SettingsError(f"OTEL_TRACES_EXPORTER must be otlp or none, got {exporter!r}")
    if protocol.strip().lower() not in ("", "grpc"):
        raise SettingsError(f"OTEL_EXPORTER_OTLP_PROTOCOL: only grpc is supported, got {protocol!r}; point "
                            "the exporter at the collector's OTLP/gRPC port (4317)")
    asked = exporter == "otlp" or any(name.startswith(OTLP_PREFIX) and value.strip()
                                      for name, value in env.environ.items())
    if disabled or exporter == "none" or not asked:
        return None
    return TracingConfig(service_name=service_name, endpoint=endpoint or None)


# -- the tracer -------------------------------------------------------------------------------


class Tracing:
    """One server's tracer provider, exporter and W3C propagator."""

    def __init__(self, config: TracingConfig) -> None:
        from opentelemetry import context, trace
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.config = config
        self._trace = trace
        self._context = context
        self._propagator = TraceContextTextMapPropagator()
        self.provider: TracerProvider = TracerProvider(
            resource=Resource.create({"service.name": config.service_name}))
        self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=config.endpoint)))
        self.tracer: Tracer = self.provider.get_tracer("modelplane")

    # Spans and context.

    def extract(self, carrier: Mapping[str, str]) -> Context:
        """The caller's context from traceparent/tracestate (empty when absent or malformed)."""
        return self._propagator.extract(carrier)

    def inject(self, span: Span, carrier: dict[str, str]) -> None:
        """Add `span`'s traceparent (and tracestate) to an outgoing carrier."""
        self._propagator.inject(carrier, context=self._trace.set_span_in_context(span))

    def current_span_valid(self) -> bool:
        return bool(self._trace.get_current_span().get_span_context().is_valid)

    def start_client_span(self, name: str, attributes: Mapping[str, Any]) -> Span:
        """A CLIENT span, child of the current one; not made current."""
        return self.tracer.start_span(name, kind=self._trace.SpanKind.CLIENT, attributes=dict(attributes))

    def end_span(self, span: Span, error_type: str | None = None, description: str | None = None) -> None:
        if error_type:
            span.set_attribute("error.type", error_type)
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, description))
        span.end()

    # Wiring.

    def stage(self) -> HookInterceptor:
        """The server span stage; put it first among the pipeline's stages."""
        return _ServerSpans(self)

    def client_interceptors(self) -> list[grpc.aio.ClientInterceptor]:
        """For the resolver's channel to config_svc."""
        return [cast(grpc.aio.ClientInterceptor, _ClientSpans(self))]

    async def shutdown(self) -> None:
        """Export what is buffered and stop (blocking work, done in a thread)."""
        import asyncio

        await asyncio.to_thread(self.provider.shutdown)

    def force_flush(self, timeout_millis: int = 5000) -> bool:
        return bool(self.provider.force_flush(timeout_millis))


# -- server spans -----------------------------------------------------------------------------


class _ServerSpans(HookInterceptor):
    def __init__(self, tracing: Tracing) -> None:
        self.tracing = tracing

    def hooks_for(self, details: grpc.HandlerCallDetails, handler: grpc.RpcMethodHandler[Any, Any]) -> Hooks:
        carrier: dict[str, str] = {}
        for key, value in details.invocation_metadata or ():
            if key in TRACE_HEADERS and isinstance(value, str):
                carrier.setdefault(key, value)
        return _ServerSpanHooks(self.tracing, details.method, carrier)


class _ServerSpanHooks(CompletionHooks):
    def __init__(self, tracing: Tracing, method: str, carrier: dict[str, str]) -> None:
        self.tracing = tracing
        self.method = method
        self.carrier = carrier

    async def begin(self, context: grpc.aio.ServicerContext[Any, Any], *, streaming: bool) -> Span:
        t = self.tracing
        service, _, method = self.method.lstrip("/").rpartition("/")
        parent = t.extract(self.carrier)
        span = t.tracer.start_span(f"{service}/{method}", context=parent, kind=t._trace.SpanKind.SERVER,
                                   attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": method})
        # Each grpc.aio call runs in its own task, so the context set here
        # ends with the call; nothing needs detaching (runtime.context does
        # the same for the request id).
        t._context.attach(t._trace.set_span_in_context(span, parent))
        ids = span.get_span_context()
        _span_ids.set((format(ids.trace_id, "032x"), format(ids.span_id, "016x")))
        return span

    def end(self, context: grpc.aio.ServicerContext[Any, Any], state: Any, code: grpc.StatusCode) -> None:
        span: Span = state
        span.set_attribute("rpc.grpc.status_code", code.value[0])
        record = current_call()
        if record is not None:
            span.set_attribute("modelplane.request_id", record.request_id)
            if record.reason:
                span.set_attribute("modelplane.error_reason", record.reason)
        self.tracing.end_span(span, code.name if code in _SERVER_ERRORS else None)


# -- client spans (the resolver's calls to config_svc) ----------------------------------------


if TYPE_CHECKING:  # generic in the stubs only
    _UnaryUnaryClientInterceptor = grpc.aio.UnaryUnaryClientInterceptor[Any, Any]
else:
    _UnaryUnaryClientInterceptor = grpc.aio.UnaryUnaryClientInterceptor


class _ClientSpans(_UnaryUnaryClientInterceptor):
    """A CLIENT span around each unary call made inside a span, with the
    context in the call's metadata. Calls made outside any span (the watch
    loop's background work) go out untouched: a root span per heartbeat
    would be noise."""

    def __init__(self, tracing: Tracing) -> None:
        self.tracing = tracing

    async def intercept_unary_unary(self, continuation: Callable[[Any, Any], Any],
                                    client_call_details: grpc.aio.ClientCallDetails, request: Any) -> Any:
        t = self.tracing
        if not t.current_span_valid():
            return await continuation(client_call_details, request)
        method = client_call_details.method
        name = method.decode() if isinstance(method, bytes) else str(method)
        service, _, rpc = name.lstrip("/").rpartition("/")
        span = t.start_client_span(f"{service}/{rpc}", {"rpc.system": "grpc", "rpc.service": service,
                                                        "rpc.method": rpc})
        carrier: dict[str, str] = {}
        t.inject(span, carrier)
        metadata = grpc.aio.Metadata(*(client_call_details.metadata or ()), *carrier.items())
        d = client_call_details
        details = grpc.aio.ClientCallDetails(d.method, d.timeout, metadata, d.credentials, d.wait_for_ready)
        try:
            call = await continuation(details, request)
            response = await call
        except grpc.aio.AioRpcError as exc:
            span.set_attribute("rpc.grpc.status_code", exc.code().value[0])
            t.end_span(span, exc.code().name if exc.code() in _SERVER_ERRORS else None)
            raise
        except BaseException as exc:
            t.end_span(span, type(exc).__name__)
            raise
        span.set_attribute("rpc.grpc.status_code", grpc.StatusCode.OK.value[0])
        t.end_span(span)
        return response


# -- log lines --------------------------------------------------------------------------------


# (trace id, span id) of the RPC span of the call this task serves, set by
# the server span stage; a plain ContextVar, so reading it involves no
# OpenTelemetry code (and with tracing off it is never set).
_span_ids: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar(
    "modelplane_span_ids", default=None)


def trace_ids(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: trace_id and span_id of the RPC's span, so a
    log line finds its trace and a trace its log lines."""
    found = _span_ids.get()
    if found is not None:
        event_dict.setdefault("trace_id", found[0])
        event_dict.setdefault("span_id", found[1])
    return event_dict
