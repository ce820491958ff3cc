"""Distributed tracing, OpenTelemetry-compatible: W3C trace context in and
out, spans exported over OTLP/gRPC when the standard variables ask for it.

Off unless an OTEL_EXPORTER_OTLP_* variable is set (or OTEL_TRACES_EXPORTER
is otlp), and off whatever else is set when OTEL_SDK_DISABLED is true or
OTEL_TRACES_EXPORTER is none. Off means free: `tracing_from_env` returns
None, nothing of OpenTelemetry is imported, no stage joins the pipeline and
no interceptor the resolver's channel, so the hot path runs the code it ran
before tracing existed (bench/tracing.py profiles it).

On, spans are small objects recorded here and encoded by runtime.otlp
(the OpenTelemetry SDK's own span pipeline cost ResolveModel 45% of its
throughput; see runtime.otlp), exported by opentelemetry-exporter-otlp's
OTLPSpanExporter, with the SDK's Resource (service.name,
OTEL_RESOURCE_ATTRIBUTES) and the SDK's variables for sampling
(OTEL_TRACES_SAMPLER, _ARG) and batching (OTEL_BSP_*).

What gets a span:
- every RPC a server answers (`Tracing.stage()`, the outermost pipeline
  stage): SERVER, `{service}/{method}`, child of the caller's traceparent;
- the resolver's unary calls to config_svc made for an RPC
  (`Tracing.client_interceptors()`): CLIENT, context sent as metadata;
- every upstream attempt (resolver_svc.chat.telemetry): CLIENT, GenAI
  attributes, context sent as the `traceparent` HTTP header.
Every log line of a traced RPC carries its trace_id and span_id (bound in
structlog's context, which every line merges: runtime.logs).
"""

from __future__ import annotations

import contextvars
import random
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping, cast

import grpc
import grpc.aio
import structlog

from modelplane_server.runtime.context import current_call
from modelplane_server.runtime.env import Env, SettingsError, env_bool, env_float, env_int, env_str
from modelplane_server.runtime.pipeline import CompletionHooks, HookInterceptor, Hooks

if TYPE_CHECKING:
    from modelplane_server.runtime.otlp import BatchExport

TRACE_HEADERS = ("traceparent", "tracestate")
OTLP_PREFIX = "OTEL_EXPORTER_OTLP_"
SPAN_KIND_SERVER, SPAN_KIND_CLIENT = 2, 3  # OTLP's Span.SpanKind
# gRPC codes that mean the server failed (OpenTelemetry's RPC conventions):
# a caller's mistake (INVALID_ARGUMENT, NOT_FOUND, ...) is not a server error.
SERVER_ERRORS = frozenset({grpc.StatusCode.UNKNOWN, grpc.StatusCode.DEADLINE_EXCEEDED,
                           grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.INTERNAL,
                           grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DATA_LOSS})
SAMPLERS = ("always_on", "always_off", "traceidratio", "parentbased_always_on", "parentbased_always_off",
            "parentbased_traceidratio")


# -- settings ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TracingConfig:
    """Where spans go and which are kept. endpoint None: the exporter's
    default (http://localhost:4317, or its own variables)."""

    service_name: str
    endpoint: str | None = None
    sampler: str = "parentbased_always_on"
    sampler_ratio: float = 1.0
    schedule_delay_ms: int = 5000
    max_queue_size: int = 2048
    max_export_batch_size: int = 512


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
    sampler = env_str(env, "OTEL_TRACES_SAMPLER", "parentbased_always_on",
                      "Which traces are recorded: " + ", ".join(SAMPLERS)).strip().lower()
    ratio_text = env_str(env, "OTEL_TRACES_SAMPLER_ARG", "1.0", "The ratio of the traceidratio samplers (0..1)")
    delay = env_int(env, "OTEL_BSP_SCHEDULE_DELAY", 5000, "Milliseconds between span exports", minimum=1)
    queue = env_int(env, "OTEL_BSP_MAX_QUEUE_SIZE", 2048, "Spans buffered for export; more are dropped",
                    minimum=1)
    batch = env_int(env, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512, "Spans per export", minimum=1)
    if env.describe_only:
        return None
    if exporter not in ("", "otlp", "none"):
        raise SettingsError(f"OTEL_TRACES_EXPORTER must be otlp or none, got {exporter!r}")
    if protocol.strip().lower() not in ("", "grpc"):
        raise SettingsError(f"OTEL_EXPORTER_OTLP_PROTOCOL: only grpc is supported, got {protocol!r}; point "
                            "the exporter at the collector's OTLP/gRPC port (4317)")
    if sampler not in SAMPLERS:
        raise SettingsError(f"OTEL_TRACES_SAMPLER must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
    ratio = env_float(env, "OTEL_TRACES_SAMPLER_ARG", 1.0, minimum=0.0) if "ratio" in sampler else 1.0
    if not 0.0 <= ratio <= 1.0:
        raise SettingsError(f"OTEL_TRACES_SAMPLER_ARG must be between 0 and 1, got {ratio_text!r}")
    asked = exporter == "otlp" or any(name.startswith(OTLP_PREFIX) and value.strip()
                                      for name, value in env.environ.items())
    if disabled or exporter == "none" or not asked:
        return None
    return TracingConfig(service_name=service_name, endpoint=endpoint or None, sampler=sampler,
                         sampler_ratio=ratio, schedule_delay_ms=delay, max_queue_size=queue,
                         max_export_batch_size=min(batch, queue))


# -- trace context ----------------------------------------------------------------------------


_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


@dataclass(frozen=True, slots=True)
class Parent:
    """A caller's span, from its W3C traceparent."""

    trace_id: bytes
    span_id: bytes
    sampled: bool
    tracestate: str = ""


def parse_traceparent(value: str | None, tracestate: str | None = None) -> Parent | None:
    """W3C Trace Context: version 00 exactly; later versions by their first
    four fields (the spec's forward compatibility); None when invalid."""
    if not value:
        return None
    found = _TRACEPARENT.match(value.strip())
    if found is None:
        return None
    version, trace_hex, span_hex, flags = found.groups()
    rest = value.strip()[found.end():]
    if version == "ff" or (version == "00" and rest) or (rest and not rest.startswith("-")):
        return None
    if trace_hex == "0" * 32 or span_hex == "0" * 16:
        return None
    return Parent(bytes.fromhex(trace_hex), bytes.fromhex(span_hex), bool(int(flags, 16) & 1),
                  (tracestate or "").strip())


class Span:
    """One span: recorded here, exported when it ends (if sampled)."""

    __slots__ = ("trace_id", "span_id", "parent_id", "remote_parent", "sampled", "tracestate", "name", "kind",
                 "start_ns", "end_ns", "attributes", "error_type", "_export")

    def __init__(self, export: BatchExport, trace_id: bytes, span_id: bytes, parent_id: bytes, *,
                 remote_parent: bool, sampled: bool, tracestate: str, name: str, kind: int,
                 attributes: dict[str, Any]) -> None:
        self._export: BatchExport | None = export
        self.trace_id, self.span_id, self.parent_id = trace_id, span_id, parent_id
        self.remote_parent, self.sampled, self.tracestate = remote_parent, sampled, tracestate
        self.name, self.kind, self.attributes = name, kind, attributes
        self.start_ns, self.end_ns = time.time_ns(), 0
        self.error_type: str | None = None

    def set_attribute(self, key: str, value: Any) -> None:
        self.attributes[key] = value

    def headers(self) -> dict[str, str]:
        """The W3C context that makes a callee's span this span's child."""
        flags = "01" if self.sampled else "00"
        carrier = {"traceparent": f"00-{self.trace_id.hex()}-{self.span_id.hex()}-{flags}"}
        if self.tracestate:
            carrier["tracestate"] = self.tracestate
        return carrier

    def end(self, error_type: str | None = None) -> None:
        """Once; error_type marks the span failed (OpenTelemetry's error.type)."""
        export, self._export = self._export, None
        if export is None:
            return
        self.end_ns = time.time_ns()
        if error_type:
            self.error_type = error_type
            self.attributes["error.type"] = error_type
        if self.sampled:
            export.add(self)


# The span of the RPC this task serves (each grpc.aio call is its own task,
# so it ends with the call). A plain ContextVar: reading it runs no tracing code.
_current: contextvars.ContextVar[Span | None] = contextvars.ContextVar("modelplane_span", default=None)


# -- the tracer -------------------------------------------------------------------------------


class Tracing:
    """One server's spans: ids, sampling, and the export thread."""

    def __init__(self, config: TracingConfig) -> None:
        from opentelemetry.sdk.resources import Resource

        from modelplane_server.runtime import otlp

        self.config = config
        resource = Resource.create({"service.name": config.service_name})
        # Resource.attributes 1; the scope names this code.
        exporter = otlp.otlp_exporter(config.endpoint, otlp.encode_attributes(b"\x0a", resource.attributes),
                                      otlp.encode_scope("modelplane", _version()))
        self.export = otlp.BatchExport(exporter, max_queue=config.max_queue_size,
                                       max_batch=config.max_export_batch_size,
                                       schedule_delay_s=config.schedule_delay_ms / 1000)
        self._bits = random.Random().getrandbits  # ids need to be unique, not secret (the SDK does the same)
        self._sample_root = _root_sampler(config.sampler, config.sampler_ratio)
        self._follow_parent = config.sampler.startswith("parentbased")

    def server_span(self, name: str, carrier: Mapping[str, str], attributes: dict[str, Any]) -> Span:
        """A SERVER span, child of the caller's context when it sent one."""
        parent = parse_traceparent(carrier.get("traceparent"), carrier.get("tracestate"))
        if parent is None:
            trace_id = self._trace_id()
            return Span(self.export, trace_id, self._span_id(), b"", remote_parent=False,
                        sampled=self._sample_root(trace_id), tracestate="", name=name, kind=SPAN_KIND_SERVER,
                        attributes=attributes)
        sampled = parent.sampled if self._follow_parent else self._sample_root(parent.trace_id)
        return Span(self.export, parent.trace_id, self._span_id(), parent.span_id, remote_parent=True,
                    sampled=sampled, tracestate=parent.tracestate, name=name, kind=SPAN_KIND_SERVER,
                    attributes=attributes)

    def client_span(self, name: str, attributes: dict[str, Any], parent: Span | None = None) -> Span:
        """A CLIENT span, child of `parent` (default: the current RPC's span)."""
        parent = parent or _current.get()
        if parent is None:
            trace_id = self._trace_id()
            return Span(self.export, trace_id, self._span_id(), b"", remote_parent=False,
                        sampled=self._sample_root(trace_id), tracestate="", name=name, kind=SPAN_KIND_CLIENT,
                        attributes=attributes)
        return Span(self.export, parent.trace_id, self._span_id(), parent.span_id, remote_parent=False,
                    sampled=parent.sampled, tracestate=parent.tracestate, name=name, kind=SPAN_KIND_CLIENT,
                    attributes=attributes)

    def stage(self) -> HookInterceptor:
        """The server span stage; put it first among the pipeline's stages."""
        return _ServerSpans(self)

    def client_interceptors(self) -> list[grpc.aio.ClientInterceptor]:
        """For the resolver's channel to config_svc."""
        return [cast(grpc.aio.ClientInterceptor, _ClientSpans(self))]

    def force_flush(self, timeout_s: float = 30.0) -> bool:
        """Export everything ended so far (blocking: call it from a thread in async code)."""
        return self.export.force_flush(timeout_s)

    async def shutdown(self) -> None:
        """Export what is buffered and stop (blocking work, done in a thread)."""
        import asyncio

        await asyncio.to_thread(self.export.shutdown)

    def _trace_id(self) -> bytes:
        return (self._bits(127) | 1).to_bytes(16, "big")  # never all zeros

    def _span_id(self) -> bytes:
        return (self._bits(63) | 1).to_bytes(8, "big")


def _root_sampler(sampler: str, ratio: float) -> Callable[[bytes], bool]:
    """OpenTelemetry's samplers for a trace this process starts: traceidratio
    keeps a trace when the low 64 bits of its id fall under ratio * 2^64, so
    every process keeps the same traces."""
    if sampler.endswith("always_off"):
        return lambda trace_id: False
    if sampler.endswith("traceidratio"):
        bound = round(ratio * (1 << 64))
        return lambda trace_id: int.from_bytes(trace_id[8:], "big") < bound
    return lambda trace_id: True


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("modelplane-server")
    except metadata.PackageNotFoundError:
        return "0"


# -- server spans -----------------------------------------------------------------------------


class _ServerSpans(HookInterceptor):
    def __init__(self, tracing: Tracing) -> None:
        self.tracing = tracing
        self._methods: dict[str, tuple[str, dict[str, Any]]] = {}  # per method: span name, attributes

    def hooks_for(self, details: grpc.HandlerCallDetails, handler: grpc.RpcMethodHandler[Any, Any]) -> Hooks:
        carrier: dict[str, str] = {}
        for key, value in details.invocation_metadata or ():
            if key in TRACE_HEADERS and isinstance(value, str):
                carrier.setdefault(key, value)
        named = self._methods.get(details.method)
        if named is None:
            service, _, method = details.method.lstrip("/").rpartition("/")
            named = (f"{service}/{method}", {"rpc.system": "grpc", "rpc.service": service, "rpc.method": method})
            if len(self._methods) < 1000:  # a server's methods, not whatever callers invent
                self._methods[details.method] = named
        return _ServerSpanHooks(self.tracing, named, carrier)


class _ServerSpanHooks(CompletionHooks):
    def __init__(self, tracing: Tracing, named: tuple[str, dict[str, Any]], carrier: dict[str, str]) -> None:
        self.tracing = tracing
        self.named = named
        self.carrier = carrier

    async def begin(self, context: grpc.aio.ServicerContext[Any, Any], *, streaming: bool) -> Span:
        name, attributes = self.named
        span = self.tracing.server_span(name, self.carrier, dict(attributes))
        _current.set(span)  # the call's own task: nothing to reset
        # Every log line of the call, structlog's and the stdlib's, merges these.
        structlog.contextvars.bind_contextvars(trace_id=span.trace_id.hex(), span_id=span.span_id.hex())
        return span

    def end(self, context: grpc.aio.ServicerContext[Any, Any], state: Any, code: grpc.StatusCode) -> None:
        span: Span = state
        span.attributes["rpc.grpc.status_code"] = code.value[0]
        record = current_call()
        if record is not None:
            span.attributes["modelplane.request_id"] = record.request_id
            if record.reason:
                span.attributes["modelplane.error_reason"] = record.reason
        span.end(code.name if code in SERVER_ERRORS else None)


# -- client spans (the resolver's calls to config_svc) ----------------------------------------


if TYPE_CHECKING:  # generic in the stubs only
    _UnaryUnaryClientInterceptor = grpc.aio.UnaryUnaryClientInterceptor[Any, Any]
else:
    _UnaryUnaryClientInterceptor = grpc.aio.UnaryUnaryClientInterceptor


class _ClientSpans(_UnaryUnaryClientInterceptor):
    """A CLIENT span around each unary call made while serving an RPC, with
    the context in the call's metadata. Calls made outside any RPC (the
    watch loop's background work) go out untouched: a root span per
    heartbeat would be noise."""

    def __init__(self, tracing: Tracing) -> None:
        self.tracing = tracing

    async def intercept_unary_unary(self, continuation: Callable[[Any, Any], Any],
                                    client_call_details: grpc.aio.ClientCallDetails, request: Any) -> Any:
        parent = _current.get()
        if parent is None:
            return await continuation(client_call_details, request)
        method = client_call_details.method
        name = method.decode() if isinstance(method, bytes) else str(method)
        service, _, rpc = name.lstrip("/").rpartition("/")
        span = self.tracing.client_span(f"{service}/{rpc}", {"rpc.system": "grpc", "rpc.service": service,
                                                              "rpc.method": rpc}, parent)
        d = client_call_details
        metadata = grpc.aio.Metadata(*(d.metadata or ()), *span.headers().items())
        details = grpc.aio.ClientCallDetails(d.method, d.timeout, metadata, d.credentials, d.wait_for_ready)
        try:
            response = await (await continuation(details, request))
        except grpc.aio.AioRpcError as exc:
            span.attributes["rpc.grpc.status_code"] = exc.code().value[0]
            span.end(exc.code().name if exc.code() in SERVER_ERRORS else None)
            raise
        except BaseException as exc:
            span.end(type(exc).__name__)
            raise
        span.attributes["rpc.grpc.status_code"] = 0
        span.end()
        return response
