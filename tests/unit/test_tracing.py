"""Tracing's pure parts: when it is on (the standard OpenTelemetry
variables, read once), W3C trace context, sampling, and the OTLP encoding."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from modelplane_server.runtime.env import Env, SettingsError, describe
from modelplane_server.runtime.tracing import TracingConfig, _root_sampler, parse_traceparent, tracing_from_env
from modelplane_server.config_svc.settings import ConfigServiceSettings
from modelplane_server.resolver_svc.settings import ResolverSettings


def read(**environ: str) -> TracingConfig | None:
    return tracing_from_env(Env(environ=environ), "resolver_svc")


@pytest.mark.parametrize("environ, expected", [
    ({}, None),
    ({"OTEL_SERVICE_NAME": "x"}, None),  # naming a service asks for nothing
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"},
     TracingConfig("resolver_svc", "http://collector:4317")),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4317", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://b:4317"},
     TracingConfig("resolver_svc", "http://b:4317")),
    # Any OTLP variable turns it on; the exporter then uses its default endpoint.
    ({"OTEL_EXPORTER_OTLP_HEADERS": "api-key=x"}, TracingConfig("resolver_svc", None)),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": ""}, None),  # set but empty counts as unset
    ({"OTEL_TRACES_EXPORTER": "otlp"}, TracingConfig("resolver_svc", None)),
    ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SERVICE_NAME": "resolver-eu"}, TracingConfig("resolver-eu", None)),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_TRACES_EXPORTER": "none"}, None),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_SDK_DISABLED": "true"}, None),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
     TracingConfig("resolver_svc", "http://c:4317")),
])
def test_tracing_is_on_only_when_otlp_is_asked_for(environ: dict[str, str], expected: TracingConfig | None) -> None:
    assert read(**environ) == expected


@pytest.mark.parametrize("environ, message", [
    ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER must be otlp or none"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"},
     "only grpc is supported"),
    ({"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"}, "only grpc is supported"),
    ({"OTEL_SDK_DISABLED": "maybe"}, "OTEL_SDK_DISABLED must be one of"),
    ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_TRACES_SAMPLER": "jaeger_remote"}, "OTEL_TRACES_SAMPLER must be one of"),
    ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"},
     "between 0 and 1"),
])
def test_what_cannot_work_stops_the_start(environ: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        read(**environ)


@pytest.mark.parametrize("settings", [ConfigServiceSettings, ResolverSettings])
def test_both_services_read_and_list_the_variables(settings: type[ConfigServiceSettings | ResolverSettings]) -> None:
    names = {var.name for var in describe(settings.from_env)}
    assert {"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SERVICE_NAME",
            "OTEL_TRACES_EXPORTER", "OTEL_SDK_DISABLED"} <= names


# -- W3C trace context and sampling ---------------------------------------------------------


TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


@pytest.mark.parametrize("header, expected", [
    (f"00-{TRACE}-{SPAN}-01", (TRACE, SPAN, True)),
    (f"00-{TRACE}-{SPAN}-00", (TRACE, SPAN, False)),
    (f" 00-{TRACE}-{SPAN}-03 ", (TRACE, SPAN, True)),  # other flag bits are ignored
    (f"01-{TRACE}-{SPAN}-01-future-fields", (TRACE, SPAN, True)),  # a later version: its first four fields
    (f"00-{TRACE}-{SPAN}-01-extra", None),  # version 00 has exactly four fields
    (f"ff-{TRACE}-{SPAN}-01", None),
    (f"00-{'0' * 32}-{SPAN}-01", None),
    (f"00-{TRACE}-{'0' * 16}-01", None),
    (f"00-{TRACE.upper()}-{SPAN}-01", None),  # lower-case hex only
    ("00-abc-def-01", None),
    ("", None),
    (None, None),
])
def test_traceparent_is_parsed_as_w3c_says(header: str | None, expected: tuple[str, str, bool] | None) -> None:
    parent = parse_traceparent(header, "vendor=1")
    if expected is None:
        assert parent is None
    else:
        assert parent is not None
        assert (parent.trace_id.hex(), parent.span_id.hex(), parent.sampled) == expected
        assert parent.tracestate == "vendor=1"


def test_traceidratio_keeps_the_same_traces_everywhere() -> None:
    keep_half = _root_sampler("traceidratio", 0.5)
    low = bytes(8) + (1 << 62).to_bytes(8, "big")
    high = bytes(8) + (3 << 62).to_bytes(8, "big")
    assert keep_half(low) and not keep_half(high)
    assert not _root_sampler("parentbased_always_off", 1.0)(low)
    assert _root_sampler("parentbased_always_on", 0.0)(high)


def test_spans_encode_to_what_an_otlp_reader_parses() -> None:
    """runtime.otlp writes the wire format by hand; protobuf's own parser reads it back."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from modelplane_server.runtime import otlp

    @dataclass
    class Done:
        trace_id: bytes = bytes.fromhex(TRACE)
        span_id: bytes = bytes.fromhex(SPAN)
        parent_id: bytes = b"\x01" * 8
        remote_parent: bool = True
        name: str = "chat gpt-5 ✓"
        kind: int = otlp.SPAN_KIND_CLIENT
        start_ns: int = 1_700_000_000_000_000_000
        end_ns: int = 1_700_000_000_250_000_000
        attributes: dict[str, Any] = field(default_factory=lambda: {
            "s": "text", "i": 7, "neg": -3, "big": 2**62, "f": 0.25, "b": True, "no": False,
            "arr": ("stop", "length"), "error.type": "rate_limited"})
        error_type: str | None = "rate_limited"

    resource = otlp.encode_attributes(b"\x0a", {"service.name": "resolver_svc"})
    request = ExportTraceServiceRequest.FromString(
        otlp.encode_request(resource, otlp.encode_scope("modelplane", "1.2"), [Done(), Done(error_type=None)]))
    [resource_spans] = request.resource_spans
    assert resource_spans.resource.attributes[0].value.string_value == "resolver_svc"
    [scope_spans] = resource_spans.scope_spans
    assert (scope_spans.scope.name, scope_spans.scope.version) == ("modelplane", "1.2")
    first, second = scope_spans.spans
    assert first.trace_id.hex() == TRACE and first.span_id.hex() == SPAN and first.parent_span_id == b"\x01" * 8
    assert first.name == "chat gpt-5 ✓" and first.kind == otlp.SPAN_KIND_CLIENT
    assert (first.start_time_unix_nano, first.end_time_unix_nano) == (Done.start_ns, Done.end_ns)
    values = {kv.key: kv.value for kv in first.attributes}
    assert values["s"].string_value == "text" and values["i"].int_value == 7
    assert values["neg"].int_value == -3 and values["big"].int_value == 2**62
    assert values["f"].double_value == 0.25 and values["b"].bool_value is True and values["no"].bool_value is False
    assert [v.string_value for v in values["arr"].array_value.values] == ["stop", "length"]
    assert first.status.code == 2 and second.status.code == 0
    assert first.flags == 0x301  # sampled, remote parent known and remote
