"""Spans out of the process: OTLP protobuf encoding and a batching export
thread over opentelemetry-exporter-otlp-proto-grpc's OTLPSpanExporter.

Why not the SDK's span pipeline (TracerProvider, BatchSpanProcessor and the
exporter's own encoder): measured with bench/tracing.py on this 2-core
machine, it made ResolveModel 45% slower (a span cost ~50 us to start and end
and ~70-90 us to encode, under the machine's usual load; the RPC itself
costs a few hundred). The spans of runtime.tracing are plain slotted
objects, and this module writes the protobuf wire format directly, reusing
the bytes of attributes that repeat, and hands the bytes to the exporter's
gRPC channel as they are; the exporter still does what it is good at: the
channel, TLS and headers from OTEL_EXPORTER_OTLP_*, timeouts, compression,
retries with backoff, reconnection.

Wire format: opentelemetry/proto/collector/trace/v1/trace_service.proto and
trace/v1/trace.proto (field numbers quoted beside each tag below).
"""

from __future__ import annotations

import collections
import logging
import struct
import threading
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Protocol, Sequence

if TYPE_CHECKING:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

# stdlib logging (the one handler runtime.logs installs formats it): runtime.logs imports tracing.
log = logging.getLogger(__name__)

SPAN_KIND_SERVER = 2
SPAN_KIND_CLIENT = 3
STATUS_ERROR = 2
# Span.flags: the W3C trace flags in the low byte, and "the parent's remote-ness is known" / "it is remote".
_HAS_IS_REMOTE, _IS_REMOTE = 0x100, 0x200


class SpanData(Protocol):
    """What a finished span offers the encoder (runtime.tracing.Span)."""

    trace_id: bytes
    span_id: bytes
    parent_id: bytes
    remote_parent: bool
    name: str
    kind: int
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    error_type: str | None


# -- protobuf wire format -----------------------------------------------------------------------


def _varint(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field."""
    return tag + _varint(len(payload)) + payload


def _value(v: Any) -> bytes:
    """AnyValue: string_value 1, bool_value 2, int_value 3, double_value 4, array_value 5."""
    if isinstance(v, str):
        return _field(b"\x0a", v.encode())
    if isinstance(v, bool):
        return b"\x10\x01" if v else b"\x10\x00"
    if isinstance(v, int):
        return b"\x18" + _varint(v & 0xFFFFFFFFFFFFFFFF)  # int64: two's complement
    if isinstance(v, float):
        return b"\x21" + struct.pack("<d", v)
    if isinstance(v, (tuple, list)):
        return _field(b"\x2a", b"".join(_field(b"\x0a", _value(item)) for item in v))  # ArrayValue.values 1
    return _field(b"\x0a", str(v).encode())


# Attributes whose values are (nearly) unique per span: never worth keeping.
_UNIQUE = ("modelplane.request_id", "gen_ai.usage.", "gen_ai.response.time_to_first_chunk", "modelplane.retry_in_s")
_MAX_REMEMBERED = 4096
# (key, value) -> the encoded KeyValue field: method names, status codes,
# providers and models repeat on every span, their bytes need writing once.
_remembered: dict[tuple[str, Any], bytes] = {}


def _attribute(tag: bytes, key: str, value: Any) -> bytes:
    """A KeyValue field (key 1, value 2) under `tag`."""
    try:
        found = _remembered.get((key, value))
    except TypeError:  # an unhashable value (a list)
        found = None
    if found is not None:
        return found
    encoded = _field(tag, _field(b"\x0a", key.encode()) + _field(b"\x12", _value(value)))
    if (len(_remembered) < _MAX_REMEMBERED and isinstance(value, (str, int)) and tag == b"\x4a"
            and not key.startswith(_UNIQUE)):
        _remembered[key, value] = encoded
    return encoded


def encode_attributes(tag: bytes, attributes: Mapping[str, Any]) -> bytes:
    return b"".join([_attribute(tag, k, v) for k, v in attributes.items()])


def encode_span(span: SpanData) -> bytes:
    """Span: trace_id 1, span_id 2, parent_span_id 4, name 5, kind 6,
    start 7, end 8 (fixed64), attributes 9, status 15, flags 16 (fixed32)."""
    parts = [b"\x0a\x10", span.trace_id, b"\x12\x08", span.span_id]
    flags = 0x01 | _HAS_IS_REMOTE
    if span.parent_id:
        parts += [b"\x22\x08", span.parent_id]
        if span.remote_parent:
            flags |= _IS_REMOTE
    parts += [_name(span.name), b"\x30", _varint(span.kind),
              b"\x39", span.start_ns.to_bytes(8, "little"), b"\x41", span.end_ns.to_bytes(8, "little"),
              encode_attributes(b"\x4a", span.attributes)]
    if span.error_type is not None:
        parts.append(_field(b"\x7a", b"\x18" + _varint(STATUS_ERROR)))  # Status.code 3
    parts += [b"\x85\x01", flags.to_bytes(4, "little")]
    return b"".join(parts)


_names: dict[str, bytes] = {}


def _name(name: str) -> bytes:
    """Span.name 5; span names are few (methods, models), encoded once each."""
    found = _names.get(name)
    if found is None:
        found = _field(b"\x2a", name.encode())
        if len(_names) < _MAX_REMEMBERED:
            _names[name] = found
    return found


def encode_request(resource: bytes, scope: bytes, spans: Iterable[SpanData]) -> bytes:
    """ExportTraceServiceRequest.resource_spans 1 -> ResourceSpans {resource 1,
    scope_spans 2 -> ScopeSpans {scope 1, spans 2}}."""
    scope_spans = _field(b"\x0a", scope) + b"".join(_field(b"\x12", encode_span(s)) for s in spans)
    return _field(b"\x0a", _field(b"\x0a", resource) + _field(b"\x12", scope_spans))


def encode_scope(name: str, version: str) -> bytes:
    """InstrumentationScope: name 1, version 2."""
    return _field(b"\x0a", name.encode()) + _field(b"\x12", version.encode())


# -- the export thread --------------------------------------------------------------------------


EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def otlp_exporter(endpoint: str | None, resource: bytes, scope: bytes) -> OTLPSpanExporter:
    """The OTLP/gRPC exporter, sending the requests encoded here as they are."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    class _BytesStub:
        """TraceServiceStub's Export, taking the request already serialised."""

        def __init__(self, channel: Any) -> None:
            self.Export = channel.unary_unary(EXPORT_METHOD, request_serializer=bytes,
                                              response_deserializer=ExportTraceServiceResponse.FromString)

    class _Exporter(OTLPSpanExporter):
        def __init__(self) -> None:
            super().__init__(endpoint=endpoint)
            # The exporter builds its stub from _stub, here and when it reconnects.
            self._stub = _BytesStub
            self._client = _BytesStub(self._channel)  # type: ignore[assignment]

        def _translate_data(self, data: Sequence[Any]) -> Any:
            return encode_request(resource, scope, data)

    return _Exporter()


class BatchExport:
    """Finished spans queue here (bounded: past max_queue they are dropped
    and counted, never blocking a call); a daemon thread exports them in
    batches every schedule_delay_s, or at once when a batch is full."""

    def __init__(self, exporter: Any, *, max_queue: int = 2048, max_batch: int = 512,
                 schedule_delay_s: float = 5.0) -> None:
        self._exporter = exporter
        self._queue: collections.deque[SpanData] = collections.deque()
        self._max_queue = max_queue
        self._max_batch = max_batch
        self._delay = schedule_delay_s
        self._wake = threading.Condition()
        self._flushes: list[threading.Event] = []
        self._stopping = False
        self.dropped = 0
        self.exported = 0
        self._thread = threading.Thread(target=self._run, name="otlp-export", daemon=True)
        self._thread.start()

    def add(self, span: SpanData) -> None:
        if len(self._queue) >= self._max_queue:
            self.dropped += 1
            return
        self._queue.append(span)  # deque.append is atomic: no lock on the request path
        if len(self._queue) == self._max_batch:
            with self._wake:
                self._wake.notify()

    def force_flush(self, timeout_s: float = 30.0) -> bool:
        done = threading.Event()
        with self._wake:
            self._flushes.append(done)
            self._wake.notify()
        return done.wait(timeout_s)

    def shutdown(self, timeout_s: float = 30.0) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()
        self._thread.join(timeout_s)
        self._exporter.shutdown()

    def _run(self) -> None:
        while True:
            with self._wake:
                notified = True
                if not (self._stopping or self._flushes or len(self._queue) >= self._max_batch):
                    notified = self._wake.wait(self._delay)
                flushes, self._flushes = self._flushes, []
                stopping = self._stopping
            # Full batches only, unless the delay is up or someone waits for
            # everything: spans arriving during an export must not turn into
            # a stream of tiny exports (each costs a gRPC call).
            self._export(everything=not notified or bool(flushes) or stopping)
            for done in flushes:
                done.set()
            if stopping:
                return

    def _export(self, *, everything: bool) -> None:
        left = len(self._queue)  # what is queued now; later spans wait for their turn
        while left >= self._max_batch or (everything and left > 0):
            batch: list[SpanData] = []
            while left > 0 and len(batch) < self._max_batch:
                batch.append(self._queue.popleft())
                left -= 1
            try:
                result = self._exporter.export(batch)
            except Exception:  # never let the thread die
                log.warning("span export failed", exc_info=True)
                continue
            if getattr(result, "name", "") == "SUCCESS":  # failures: the exporter logged why
                self.exported += len(batch)
