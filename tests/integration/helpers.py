"""Helpers for integration tests: rich error details from trailing metadata,
and small builders for the resources most tests need."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Awaitable

import asyncpg
import grpc
from google.rpc import error_details_pb2, status_pb2

from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import resources_pb2 as pb
from tests.harness import ConfigHarness

ERROR_DOMAIN = "modelplane.dev"


@dataclass
class RpcFailure:
    code: grpc.StatusCode
    message: str
    reason: str
    domain: str
    violations: dict[str, str] = field(default_factory=dict)  # field -> description
    raw: status_pb2.Status | None = None
    metadata: dict[str, str] = field(default_factory=dict)  # ErrorInfo.metadata


def failure(err: grpc.aio.AioRpcError) -> RpcFailure:
    """Decode google.rpc.Status from grpc-status-details-bin."""
    raw = None
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            raw = status_pb2.Status.FromString(value)
    assert raw is not None, f"no grpc-status-details-bin on {err.code()}: {err.details()}"
    assert raw.code == err.code().value[0]
    reason, domain, violations, metadata = "", "", {}, {}
    for detail in raw.details:
        info = error_details_pb2.ErrorInfo()
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(info):
            reason, domain, metadata = info.reason, info.domain, dict(info.metadata)
        elif detail.Unpack(bad):
            for v in bad.field_violations:
                violations[v.field] = v.description
    return RpcFailure(err.code(), err.details() or "", reason, domain, violations, raw, metadata)


async def fails(call: Awaitable[Any], code: grpc.StatusCode, reason: str | None = None,
                field: str | None = None) -> RpcFailure:
    """Await `call`, which must fail with `code` (and `reason`, and a violation on `field`)."""
    try:
        result = await call
    except grpc.aio.AioRpcError as err:
        f = failure(err)
    else:
        raise AssertionError(f"expected {code.name}, got a response: {result}")
    assert f.code == code, (f.code, f.message)
    assert f.domain == ERROR_DOMAIN
    if reason is not None:
        assert f.reason == reason, (f.reason, f.message)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        assert f.reason == "INVALID_FIELD"
        assert f.violations, f.message
    if field is not None:
        assert field in f.violations, (field, f.violations)
    return f


async def provider(cfg: ConfigHarness, name: str = "anthropic", ptype: int = pb.PROVIDER_TYPE_ANTHROPIC,
                   **fields: Any) -> pb.Provider:
    return await cfg.stub.CreateProvider(cs.CreateProviderRequest(
        provider=pb.Provider(name=name, type=ptype, **fields)), metadata=cfg.admin)


async def model(cfg: ConfigHarness, provider_name: str = "anthropic", identifier: str = "claude-opus-4-6",
                **fields: Any) -> pb.Model:
    fields.setdefault("display_name", identifier)
    fields.setdefault("context_limit", 200_000)
    return await cfg.stub.CreateModel(cs.CreateModelRequest(model=pb.Model(
        provider=provider_name, model_identifier=identifier, **fields)), metadata=cfg.admin)


async def settings(cfg: ConfigHarness, **values: bool) -> pb.Settings:
    return await cfg.stub.UpdateSettings(cs.UpdateSettingsRequest(
        settings=pb.Settings(**values), update_mask={"paths": list(values)}), metadata=cfg.admin)


async def raw(cfg: ConfigHarness, sql: str, *args: Any) -> list[asyncpg.Record]:
    """Read the database directly, bypassing the service."""
    return list(await cfg.server.store.pool.fetch(sql, *args))


async def audit_count(cfg: ConfigHarness) -> int:
    return int(await cfg.server.store.pool.fetchval("SELECT count(*) FROM audit_events"))


async def revision(cfg: ConfigHarness) -> int:
    return int(await cfg.server.store.pool.fetchval("SELECT revision FROM config_revision"))


def unstamped(message: Any) -> Any:
    """A copy without the revision the answer reflects (two answers about the
    same unchanged resource differ in it when other writes came between)."""
    copy = type(message)()
    copy.CopyFrom(message)
    copy.ClearField("revision")
    return copy
