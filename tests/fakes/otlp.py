"""A loopback OTLP collector: a real gRPC server implementing
opentelemetry.proto.collector.trace.v1.TraceService/Export, keeping every
span it receives. Services export to it exactly as they would to an
OpenTelemetry Collector on port 4317.

    async with OtlpReceiver.start() as otlp:
        ... run services with TracingConfig(endpoint=otlp.endpoint) ...
        spans = await otlp.wait_for(lambda spans: any(s.name == "chat x" for s in spans))
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable

import grpc
import grpc.aio
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2


@dataclass(frozen=True)
class ReceivedSpan:
    service: str  # the resource's service.name
    name: str
    kind: int  # trace_pb2.Span.SpanKind
    trace_id: str  # 32 hex digits
    span_id: str
    parent_span_id: str  # "" for a root
    attributes: dict[str, Any]
    status_code: int  # trace_pb2.Status.StatusCode
    status_message: str
    raw: trace_pb2.Span

    @property
    def is_server(self) -> bool:
        return self.kind == trace_pb2.Span.SPAN_KIND_SERVER

    @property
    def is_client(self) -> bool:
        return self.kind == trace_pb2.Span.SPAN_KIND_CLIENT


def _value(v: common_pb2.AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return tuple(_value(item) for item in v.array_value.values)
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, kind) if kind else None


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: OtlpReceiver) -> None:
        self.receiver = receiver

    async def Export(self, request: trace_service_pb2.ExportTraceServiceRequest,  # noqa: N802 (gRPC's name)
                     context: grpc.aio.ServicerContext[Any, Any]) -> trace_service_pb2.ExportTraceServiceResponse:
        self.receiver.requests += 1
        if not self.receiver.keep:  # counting only (the benchmark: a collector's work is not the service's)
            for resource_spans in request.resource_spans:
                for scope_spans in resource_spans.scope_spans:
                    self.receiver.names.update(span.name for span in scope_spans.spans)
            return trace_service_pb2.ExportTraceServiceResponse()
        self.receiver.raw_requests.append(request.SerializeToString())
        for resource_spans in request.resource_spans:
            resource = {kv.key: _value(kv.value) for kv in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.receiver.spans.append(ReceivedSpan(
                        service=str(resource.get("service.name", "")), name=span.name, kind=span.kind,
                        trace_id=span.trace_id.hex(), span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        attributes={kv.key: _value(kv.value) for kv in span.attributes},
                        status_code=span.status.code, status_message=span.status.message, raw=span))
        return trace_service_pb2.ExportTraceServiceResponse()


class OtlpReceiver:
    def __init__(self, keep: bool = True) -> None:
        self.keep = keep
        self.names: collections.Counter[str] = collections.Counter()  # keep=False: spans counted by name
        self.spans: list[ReceivedSpan] = []
        self.requests = 0
        self.raw_requests: list[bytes] = []  # every export as sent, to search for what must not be there
        self.port = 0
        self._server: grpc.aio.Server | None = None

    @classmethod
    @contextlib.asynccontextmanager
    async def start(cls, *, keep: bool = True) -> AsyncIterator[OtlpReceiver]:
        """keep=False: only count spans by name (no Python object per span)."""
        receiver = cls(keep)
        server = grpc.aio.server()
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceService(receiver), server)
        receiver.port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        receiver._server = server
        try:
            yield receiver
        finally:
            await server.stop(0)

    @property
    def endpoint(self) -> str:
        """What OTEL_EXPORTER_OTLP_ENDPOINT would say (http: plaintext)."""
        return f"http://127.0.0.1:{self.port}"

    async def wait_for(self, done: Callable[[list[ReceivedSpan]], bool], timeout: float = 15.0
                       ) -> list[ReceivedSpan]:
        deadline = time.monotonic() + timeout
        while not done(self.spans):
            if time.monotonic() > deadline:
                names = sorted({f"{s.service}:{s.name}" for s in self.spans})
                raise AssertionError(f"the expected spans did not arrive within {timeout} s; got {names}")
            await asyncio.sleep(0.05)
        return list(self.spans)

    def in_trace(self, trace_id: str) -> list[ReceivedSpan]:
        return [s for s in self.spans if s.trace_id == trace_id]
