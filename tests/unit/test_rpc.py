"""modelplane_server.runtime's gRPC plumbing against a real grpc.aio server on loopback and a real channel."""

from __future__ import annotations

import asyncio
import io
import json
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

import grpc
import grpc.aio
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from modelplane_server.domain import errors

from modelplane_server.runtime.auth import require, resolve_user
from modelplane_server.runtime.context import REQUEST_ID_KEY, acting_as, current_principal
from modelplane_server.runtime.health import Health, add_health_and_reflection
from modelplane_server.runtime.interceptors import server_interceptors
from modelplane_server.runtime.status import STATUS_CODES, STATUS_DETAILS_KEY, to_status
from modelplane_server.domain.types import Principal, Role
from modelplane_server.runtime.logs import configure_logging
from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import config_service_pb2_grpc as cs_grpc
from modelplane.v1 import resources_pb2 as res

CONFIG_SERVICE = cs.DESCRIPTOR.services_by_name["ConfigService"].full_name
TOKENS = {
    "admin-token": Principal(Role.ADMIN, "root", token_id="t1"),
    "member-token": Principal(Role.MEMBER, "alice", token_id="t2"),
    "service-token": Principal(Role.SERVICE, "resolver", token_id="t3"),
}


async def authenticate(token: str) -> Principal:
    if token == "store-down":
        raise errors.Unavailable("token store unavailable", reason="DATABASE_UNAVAILABLE")
    if token == "explode":
        raise RuntimeError("driver blew up with sk-ant-canary-authsecret")
    try:
        return TOKENS[token]
    except KeyError:
        raise errors.Unauthenticated("unknown or revoked token") from None


@dataclass
class Servicer(cs_grpc.ConfigServiceServicer):
    """Raises `fail` from the unary method; the stream yields `events` then raises `stream_fail`."""

    fail: BaseException | None = None
    events: int = 2
    stream_fail: BaseException | None = None
    seen: list[Principal] = field(default_factory=list)

    async def GetSettings(self, request: cs.GetSettingsRequest, context: Any) -> res.Settings:
        self.seen.append(current_principal())
        if self.fail is not None:
            raise self.fail
        return res.Settings(byok_enabled=True, etag="1")

    async def ListPersonalOverrides(
        self, request: cs.ListPersonalOverridesRequest, context: Any
    ) -> cs.ListPersonalOverridesResponse:
        user = resolve_user(current_principal(), request.user)
        return cs.ListPersonalOverridesResponse(
            overrides=[res.ModelOverride(user=user, model="m")], enabled=True
        )

    async def ListModelOverrides(
        self, request: cs.ListModelOverridesRequest, context: Any
    ) -> cs.ListModelOverridesResponse:
        require(current_principal(), Role.ADMIN, Role.SERVICE)
        return cs.ListModelOverridesResponse()

    async def WatchConfig(self, request: cs.WatchConfigRequest, context: Any) -> AsyncIterator[cs.ConfigEvent]:
        for revision in range(1, self.events + 1):
            yield cs.ConfigEvent(revision=revision)
        if self.stream_fail is not None:
            raise self.stream_fail


@dataclass
class Harness:
    servicer: Servicer
    channel: grpc.aio.Channel
    stub: cs_grpc.ConfigServiceAsyncStub
    logs: io.StringIO
    health: Health

    def log_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.logs.getvalue().splitlines() if line.strip()]

    def rpc_lines(self) -> list[dict[str, Any]]:
        return [line for line in self.log_lines() if line["event"] == "rpc"]

    async def wait_rpc_lines(self, count: int) -> list[dict[str, Any]]:
        """The canonical lines once `count` exist: the server logs after it
        has sent the status, so the client can get there first."""
        for _ in range(200):
            if len(self.rpc_lines()) >= count:
                break
            await asyncio.sleep(0.005)
        return self.rpc_lines()


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    logs = io.StringIO()
    configure_logging("INFO", json=True, stream=logs)
    server = grpc.aio.server(interceptors=server_interceptors(authenticate))
    servicer = Servicer()  # type: ignore[abstract]  # only the methods under test
    cs_grpc.add_ConfigServiceServicer_to_server(servicer, server)
    health = add_health_and_reflection(server, [CONFIG_SERVICE])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Harness(servicer, channel, cs_grpc.ConfigServiceStub(channel), logs, health)
    finally:
        await channel.close(None)
        await server.stop(None)
        configure_logging("INFO", json=True, stream=io.StringIO())


def auth(token: str = "admin-token", **extra: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"), *extra.items())


async def test_grpc_status_library_reads_the_details(harness: Harness) -> None:
    """The stock client helper (which checks code and message agree) parses what we send."""
    harness.servicer.fail = errors.NotFound("no such model", reason="MODEL_NOT_FOUND")
    call = harness.stub.GetSettings(cs.GetSettingsRequest(), metadata=auth())
    with pytest.raises(grpc.aio.AioRpcError):
        await call
    status = await rpc_status.aio.from_call(call)  # type: ignore[attr-defined]
    assert status is not None
    assert (status.code, status.message) == (grpc.StatusCode.NOT_FOUND.value[0], "no such model")


def metadata_dict(metadata: Any) -> dict[str, str | bytes]:
    return {key: value for key, value in metadata or ()}


def rich_status(err: grpc.aio.AioRpcError) -> status_pb2.Status:
    for key, value in metadata_dict(err.trailing_metadata()).items():
        if key == STATUS_DETAILS_KEY:
            assert isinstance(value, bytes)
            status = status_pb2.Status.FromString(value)
            assert status.code == err.code().value[0]
            assert status.message == err.details()
            return status
    raise AssertionError("no grpc-status-details-bin in trailing metadata")


def error_info(err: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    for detail in rich_status(err).details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info
    raise AssertionError("no ErrorInfo")


def bad_request(err: grpc.aio.AioRpcError) -> error_details_pb2.BadRequest | None:
    for detail in rich_status(err).details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            return bad
    return None


def trailing(err: grpc.aio.AioRpcError, key: str) -> str | bytes | None:
    return metadata_dict(err.trailing_metadata()).get(key)


async def call_settings(h: Harness, token: str = "admin-token") -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await h.stub.GetSettings(cs.GetSettingsRequest(), metadata=auth(token))
    return caught.value


async def test_success_returns_the_response_and_the_request_id(harness: Harness) -> None:
    call = harness.stub.GetSettings(cs.GetSettingsRequest(), metadata=auth())
    assert (await call).byok_enabled
    trailer = dict(await call.trailing_metadata())
    assert len(str(trailer[REQUEST_ID_KEY])) == 32
    # Unary calls carry it in trailing metadata only (no extra write).
    assert REQUEST_ID_KEY not in dict(await call.initial_metadata())
    assert harness.servicer.seen == [TOKENS["admin-token"]]


async def test_a_sane_incoming_request_id_is_kept_and_an_insane_one_replaced(harness: Harness) -> None:
    call = harness.stub.GetSettings(cs.GetSettingsRequest(), metadata=auth(**{"x-request-id": "lb-1234.abc"}))
    await call
    assert dict(await call.trailing_metadata())[REQUEST_ID_KEY] == "lb-1234.abc"
    forged = "x\" level=error injected=1"
    call = harness.stub.GetSettings(cs.GetSettingsRequest(), metadata=auth(**{"x-request-id": forged}))
    await call
    assert dict(await call.trailing_metadata())[REQUEST_ID_KEY] != forged


@pytest.mark.parametrize(
    ("error", "code", "reason"),
    [
        (errors.NotFound("provider 'x' not found", reason="PROVIDER_NOT_FOUND"), grpc.StatusCode.NOT_FOUND, "PROVIDER_NOT_FOUND"),
        (errors.AlreadyExists("exists", reason="MODEL_EXISTS"), grpc.StatusCode.ALREADY_EXISTS, "MODEL_EXISTS"),
        (errors.Aborted("etag mismatch"), grpc.StatusCode.ABORTED, "ETAG_MISMATCH"),
        (errors.FailedPrecondition("byok off", reason="BYOK_DISABLED"), grpc.StatusCode.FAILED_PRECONDITION, "BYOK_DISABLED"),
        (errors.PermissionDenied("no"), grpc.StatusCode.PERMISSION_DENIED, "ROLE_FORBIDDEN"),
        (errors.Unavailable("db down", reason="DATABASE_UNAVAILABLE"), grpc.StatusCode.UNAVAILABLE, "DATABASE_UNAVAILABLE"),
        (errors.DeadlineExceeded("slow", reason="UPSTREAM_TIMEOUT"), grpc.StatusCode.DEADLINE_EXCEEDED, "UPSTREAM_TIMEOUT"),
        (errors.ResourceExhausted("429", reason="UPSTREAM_RATE_LIMITED"), grpc.StatusCode.RESOURCE_EXHAUSTED, "UPSTREAM_RATE_LIMITED"),
        (errors.Unauthenticated("upstream said no", reason="UPSTREAM_AUTH_FAILED"), grpc.StatusCode.UNAUTHENTICATED, "UPSTREAM_AUTH_FAILED"),
        (errors.DomainError("odd"), grpc.StatusCode.INTERNAL, "INTERNAL_ERROR"),
    ],
)
async def test_domain_errors_map_to_codes_with_error_info(
    harness: Harness, error: errors.DomainError, code: grpc.StatusCode, reason: str
) -> None:
    harness.servicer.fail = error
    err = await call_settings(harness)
    assert err.code() == code
    assert err.details() == error.message
    info = error_info(err)
    assert (info.reason, info.domain) == (reason, "modelplane.dev")
    assert info.metadata["request_id"] == trailing(err, REQUEST_ID_KEY)
    assert bad_request(err) is None
    [line] = await harness.wait_rpc_lines(1)
    assert (line["code"], line["reason"]) == (code.name, reason)


async def test_invalid_argument_carries_one_field_violation_each(harness: Harness) -> None:
    harness.servicer.fail = errors.InvalidArgument(
        [
            errors.FieldViolation("provider.name", "must be lowercase kebab-case"),
            errors.FieldViolation("provider.base_url", "must be http or https"),
        ]
    )
    err = await call_settings(harness)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(err).reason == "INVALID_FIELD"
    assert err.details() == "provider.name: must be lowercase kebab-case; provider.base_url: must be http or https"
    bad = bad_request(err)
    assert bad is not None
    assert [(v.field, v.description) for v in bad.field_violations] == [
        ("provider.name", "must be lowercase kebab-case"),
        ("provider.base_url", "must be http or https"),
    ]


async def test_unexpected_exceptions_are_internal_and_leak_nothing(harness: Harness) -> None:
    harness.servicer.fail = KeyError("sk-canary-leaked-through-exception")
    err = await call_settings(harness)
    assert err.code() == grpc.StatusCode.INTERNAL
    request_id = trailing(err, REQUEST_ID_KEY)
    assert isinstance(request_id, str)
    assert err.details() == f"internal error (request id {request_id})"
    assert error_info(err).reason == "INTERNAL_ERROR"
    assert "canary" not in repr(err.trailing_metadata())
    [line] = await harness.wait_rpc_lines(1)
    assert (line["code"], line["level"]) == ("INTERNAL", "error")
    # The traceback is logged (scrubbed), under the request id.
    [failure] = [line for line in harness.log_lines() if line["event"] == "unhandled exception in handler"]
    assert failure["request_id"] == request_id
    assert "KeyError" in failure["exception"]
    assert "sk-canary" not in harness.logs.getvalue()


async def test_one_canonical_log_line_per_call(harness: Harness) -> None:
    await harness.stub.GetSettings(cs.GetSettingsRequest(), metadata=auth("member-token"))
    [line] = await harness.wait_rpc_lines(1)
    assert line["method"] == f"/{CONFIG_SERVICE}/GetSettings"
    assert line["actor"] == "member:alice"
    assert line["code"] == "OK"
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    assert len(line["request_id"]) == 32
    assert line["level"] == "info"
    assert line["timestamp"].endswith("Z")


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ((), "missing credentials"),
        ((("authorization", "Basic dXNlcjpwYXNz"),), "malformed authorization"),
        ((("authorization", "Bearer"),), "malformed authorization"),
        ((("authorization", "Bearer nope-canary"),), "unknown or revoked token"),
    ],
)
async def test_calls_without_a_valid_token_are_refused(
    harness: Harness, metadata: tuple[tuple[str, str], ...], message: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await harness.stub.GetSettings(cs.GetSettingsRequest(), metadata=metadata)
    err = caught.value
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert message in (err.details() or "")
    assert "canary" not in (err.details() or "")
    assert error_info(err).reason == "TOKEN_INVALID"
    assert harness.servicer.seen == []
    [line] = await harness.wait_rpc_lines(1)
    assert (line["actor"], line["code"]) == ("anonymous", "UNAUTHENTICATED")


async def test_authenticator_failures_are_mapped_too(harness: Harness) -> None:
    err = await call_settings(harness, "store-down")
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert error_info(err).reason == "DATABASE_UNAVAILABLE"
    err = await call_settings(harness, "explode")
    assert err.code() == grpc.StatusCode.INTERNAL
    assert "authsecret" not in (err.details() or "")
    await harness.wait_rpc_lines(2)
    assert "authsecret" not in harness.logs.getvalue()
    assert "RuntimeError" in harness.logs.getvalue()


async def test_health_and_reflection_need_no_token(harness: Harness) -> None:
    health = health_pb2_grpc.HealthStub(harness.channel)
    overall = await health.Check(health_pb2.HealthCheckRequest(service=""))
    assert overall.status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await health.Check(health_pb2.HealthCheckRequest(service=CONFIG_SERVICE))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND  # not reported until set

    await harness.health.set_serving(True)
    status = await health.Check(health_pb2.HealthCheckRequest(service=CONFIG_SERVICE))
    assert status.status == health_pb2.HealthCheckResponse.SERVING
    await harness.health.set_serving(False, CONFIG_SERVICE)
    status = await health.Check(health_pb2.HealthCheckRequest(service=CONFIG_SERVICE))
    assert status.status == health_pb2.HealthCheckResponse.NOT_SERVING

    stub = reflection_pb2_grpc.ServerReflectionStub(harness.channel)
    responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = {s.name async for r in responses for s in r.list_services_response.service}
    assert names == {CONFIG_SERVICE, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"}
    lines = await harness.wait_rpc_lines(5)
    assert len(lines) == 5
    assert lines[-1]["method"] == "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
    assert lines[-1]["actor"] == "anonymous"


async def test_health_watch_streams_through_the_interceptors(harness: Harness) -> None:
    # Health.Watch writes with context.write() instead of yielding: the other
    # shape of a grpc.aio streaming handler.
    health = health_pb2_grpc.HealthStub(harness.channel)
    watch = health.Watch(health_pb2.HealthCheckRequest(service=CONFIG_SERVICE))
    first = await watch.read()
    assert first.status == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
    await harness.health.set_serving(True)
    second = await watch.read()
    assert second.status == health_pb2.HealthCheckResponse.SERVING
    watch.cancel()


async def test_a_stream_that_fails_midway_gets_the_mapped_status(harness: Harness) -> None:
    harness.servicer.stream_fail = errors.Unavailable("database gone", reason="DATABASE_UNAVAILABLE")
    call = harness.stub.WatchConfig(cs.WatchConfigRequest(), metadata=auth("service-token"))
    received = []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for event in call:
            received.append(event.revision)
    assert received == [1, 2]
    err = caught.value
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert error_info(err).reason == "DATABASE_UNAVAILABLE"
    [line] = await harness.wait_rpc_lines(1)
    assert (line["method"], line["actor"], line["code"]) == (
        f"/{CONFIG_SERVICE}/WatchConfig",
        "service:resolver",
        "UNAVAILABLE",
    )


async def test_a_stream_with_an_unexpected_error_is_internal(harness: Harness) -> None:
    harness.servicer.stream_fail = ValueError("password=hunter2hunter2")
    call = harness.stub.WatchConfig(cs.WatchConfigRequest(), metadata=auth("service-token"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in call:
            pass
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert "hunter2" not in (caught.value.details() or "")
    await harness.wait_rpc_lines(1)
    assert "hunter2" not in harness.logs.getvalue()
    assert "ValueError" in harness.logs.getvalue()


async def test_a_stream_that_ends_normally_is_ok_and_needs_a_token(harness: Harness) -> None:
    events = [e.revision async for e in harness.stub.WatchConfig(cs.WatchConfigRequest(), metadata=auth())]
    assert events == [1, 2]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in harness.stub.WatchConfig(cs.WatchConfigRequest()):
            pass
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert [line["code"] for line in await harness.wait_rpc_lines(2)] == ["OK", "UNAUTHENTICATED"]


async def test_a_client_cancelling_a_stream_is_logged_as_cancelled(harness: Harness) -> None:
    harness.servicer.events = 1000
    call = harness.stub.WatchConfig(cs.WatchConfigRequest(), metadata=auth("service-token"))
    async for _ in call:
        break
    call.cancel()
    [line] = await harness.wait_rpc_lines(1)
    assert line["code"] == "CANCELLED"


async def test_role_checks_and_user_resolution_over_the_wire(harness: Harness) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await harness.stub.ListModelOverrides(cs.ListModelOverridesRequest(), metadata=auth("member-token"))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_info(caught.value).reason == "ROLE_FORBIDDEN"

    mine = await harness.stub.ListPersonalOverrides(cs.ListPersonalOverridesRequest(), metadata=auth("member-token"))
    assert mine.overrides[0].user == "alice"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await harness.stub.ListPersonalOverrides(
            cs.ListPersonalOverridesRequest(user="bob"), metadata=auth("member-token")
        )
    assert error_info(caught.value).reason == "OTHER_USER"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await harness.stub.ListPersonalOverrides(cs.ListPersonalOverridesRequest(), metadata=auth("service-token"))
    bad = bad_request(caught.value)
    assert bad is not None and bad.field_violations[0].field == "user"


# -- pure helpers --------------------------------------------------------------------------------


ALICE = Principal(Role.MEMBER, "alice")
SERVICE = Principal(Role.SERVICE, "resolver")
ADMIN = Principal(Role.ADMIN, "root")


@pytest.mark.parametrize(
    ("principal", "requested", "expected"),
    [(ALICE, "", "alice"), (ALICE, "alice", "alice"), (SERVICE, "bob", "bob"), (ADMIN, "bob", "bob")],
)
def test_resolve_user_allows(principal: Principal, requested: str, expected: str) -> None:
    assert resolve_user(principal, requested) == expected


def test_resolve_user_refuses() -> None:
    with pytest.raises(errors.PermissionDenied) as denied:
        resolve_user(ALICE, "bob")
    assert denied.value.reason == "OTHER_USER"
    for principal in (SERVICE, ADMIN):
        with pytest.raises(errors.InvalidArgument) as invalid:
            resolve_user(principal, "", field="request.user")
        assert invalid.value.violations[0].field == "request.user"


def test_require() -> None:
    assert require(ADMIN, Role.ADMIN) is ADMIN
    with pytest.raises(errors.PermissionDenied) as denied:
        require(ALICE, Role.ADMIN, Role.SERVICE)
    assert denied.value.reason == "ROLE_FORBIDDEN"


def test_every_error_class_has_exactly_one_code() -> None:
    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.DomainError)]
    assert set(classes) == set(STATUS_CODES)


def test_to_status_is_a_grpc_status_with_rich_details() -> None:
    status = to_status(errors.NotFound("gone", reason="MODEL_NOT_FOUND"), request_id="r1")
    assert status.code == grpc.StatusCode.NOT_FOUND
    assert status.details == "gone"
    metadata = dict(status.trailing_metadata)
    proto = status_pb2.Status.FromString(metadata[STATUS_DETAILS_KEY])
    assert proto.code == grpc.StatusCode.NOT_FOUND.value[0]
    assert metadata[REQUEST_ID_KEY] == "r1"


def test_current_principal_outside_a_call() -> None:
    with pytest.raises(errors.Unauthenticated):
        current_principal()
    with acting_as(ALICE):
        assert current_principal() is ALICE
    with pytest.raises(errors.Unauthenticated):
        current_principal()


async def test_a_stream_sends_the_request_id_before_its_first_message(harness: Harness) -> None:
    call = harness.stub.WatchConfig(cs.WatchConfigRequest(), metadata=auth(**{"x-request-id": "lb-stream.1"}))
    assert dict(await call.initial_metadata())[REQUEST_ID_KEY] == "lb-stream.1"
    call.cancel()
