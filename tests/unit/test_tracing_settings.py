"""When tracing is on: the standard OpenTelemetry variables, read once."""

from __future__ import annotations

import pytest

from modelplane_server.runtime.env import Env, SettingsError, describe
from modelplane_server.runtime.tracing import TracingConfig, tracing_from_env
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
])
def test_what_cannot_work_stops_the_start(environ: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        read(**environ)


@pytest.mark.parametrize("settings", [ConfigServiceSettings, ResolverSettings])
def test_both_services_read_and_list_the_variables(settings: type[ConfigServiceSettings | ResolverSettings]) -> None:
    names = {var.name for var in describe(settings.from_env)}
    assert {"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SERVICE_NAME",
            "OTEL_TRACES_EXPORTER", "OTEL_SDK_DISABLED"} <= names
