"""Fuzzing both services (issue 9): hypothesis-generated requests for every
RPC of ConfigService and ResolverService, as every role, and raw garbage
bodies for every method. No call may answer INTERNAL or UNKNOWN or hang;
afterwards nothing invalid is stored and both services still answer health.

One stack (config_svc, a resolver, a fake upstream) serves the whole module,
seeded with a provider, models, BYOK, personal overrides and a user key, so
generated requests also reach the code behind the checks. Example counts
are modest: the module runs in about a minute.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import grpc
import grpc.aio
import pytest
from google.protobuf import field_mask_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import resolver_service_pb2 as rs
from modelplane.v1 import resources_pb2 as pb
from modelplane_server.config_svc.store import providers as provider_rows
from modelplane_server.config_svc.store import models as model_rows
from modelplane_server.domain import validation
from modelplane_server.domain.text import has_control_chars
from modelplane_server.domain.types import Role
from tests.e2e.fuzz_requests import describe, requests
from tests.fakes import FakeUpstream
from tests.harness import ConfigHarness, config_settings, start_config
from tests.resolver_harness import ResolverHarness, start_resolver

pytestmark = pytest.mark.e2e

Code = grpc.StatusCode
FORBIDDEN = (Code.INTERNAL, Code.UNKNOWN)
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "12"))
GARBAGE_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
CONFIG = cs.DESCRIPTOR.services_by_name["ConfigService"]
RESOLVER = rs.DESCRIPTOR.services_by_name["ResolverService"]
MESSAGE_CLASSES = {**{m.name: getattr(cs, m.name) for m in cs.DESCRIPTOR.message_types_by_name.values()},
                   **{m.name: getattr(rs, m.name) for m in rs.DESCRIPTOR.message_types_by_name.values()}}
# Resolver calls first and deletes last: a generated delete of the seeded
# provider would leave later calls nothing to reach past their checks.
_LAST = ("DeleteProvider", "DeleteModel", "RevokeApiToken", "DeleteUserKey")
METHODS = [(RESOLVER, m) for m in RESOLVER.methods] + sorted(
    ((CONFIG, m) for m in CONFIG.methods), key=lambda sm: sm[1].name in _LAST)
GENERAL, ROOT = pb.OVERRIDE_CONTEXT_GENERAL, pb.OVERRIDE_CONTEXT_ROOT
_CHAT = rs.ChatRequest(user="alice", chat_model="m", chat_id="fuzz", messages=[
    rs.ChatMessage(role=rs.CHAT_ROLE_SYSTEM, text="terse"), rs.ChatMessage(role=rs.CHAT_ROLE_USER, text="hi")],
    tools=[rs.ToolDefinition(name="t", description="d")])
_CHAT.tools[0].parameters.update({"type": "object", "properties": {"x": {"type": "string"}}})
# A request that succeeds, per method, for the generated requests to start from.
SEEDS: dict[str, Any] = {
    "CreateProvider": cs.CreateProviderRequest(provider=pb.Provider(
        name="fz-p", type=pb.PROVIDER_TYPE_OPENAI_COMPATIBLE, base_url="http://127.0.0.1:1/v1",
        api_key="sk-fuzz-0123456789", key_policy=pb.KeyPolicy(allow_user_keys=False))),
    "UpdateProvider": cs.UpdateProviderRequest(provider=pb.Provider(name="p", display_name="P"),
                                               update_mask=field_mask_pb2.FieldMask(paths=["display_name"])),
    "CreateModel": cs.CreateModelRequest(model=pb.Model(provider="p", model_identifier="x", display_name="X",
                                                        context_limit=1000, options=pb.GenerationOptions(top_k=3))),
    "UpdateModel": cs.UpdateModelRequest(model=pb.Model(name="m", display_name="M"),
                                         update_mask=field_mask_pb2.FieldMask(paths=["display_name"])),
    "SetModelOverride": cs.SetModelOverrideRequest(context=GENERAL, model="m"),
    "SetPersonalOverride": cs.SetPersonalOverrideRequest(user="alice", context=ROOT, model="m"),
    "SetUserKey": cs.SetUserKeyRequest(user="alice", provider="openai", api_key="sk-fuzz-0123456789"),
    "CreateApiToken": cs.CreateApiTokenRequest(token=pb.ApiToken(role=pb.ROLE_MEMBER, subject="fz")),
    "UpdateSettings": cs.UpdateSettingsRequest(settings=pb.Settings(byok_enabled=True),
                                               update_mask=field_mask_pb2.FieldMask(paths=["byok_enabled"])),
    "ListAuditEvents": cs.ListAuditEventsRequest(page_size=2, resource_prefix="providers/"),
    "Chat": _CHAT,
    "StreamChat": _CHAT,
    "ProbeProvider": rs.ProbeProviderRequest(provider="p"),
    "ResolveModel": rs.ResolveModelRequest(user="alice", context=ROOT, chat_model="m"),
    "ResolveCredential": rs.ResolveCredentialRequest(user="alice", provider="openai"),
}
FUZZ_SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None,
                         suppress_health_check=list(HealthCheck))


@dataclass
class FuzzStack:
    cfg: ConfigHarness
    resolver: ResolverHarness
    callers: dict[str, tuple[tuple[str, str], ...]]


@pytest.fixture(scope="module")
async def fuzz_database(pg_server_dsn: str, template_db: str) -> AsyncIterator[str]:
    name = "fuzz_" + uuid.uuid4().hex[:12]
    conn = await asyncpg.connect(pg_server_dsn)
    try:
        await conn.execute(f"CREATE DATABASE {name} TEMPLATE {template_db}")
    finally:
        await conn.close()
    yield urlunsplit(urlsplit(pg_server_dsn)._replace(path="/" + name))
    conn = await asyncpg.connect(pg_server_dsn)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await conn.close()


@pytest.fixture(scope="module")
async def stack(fuzz_database: str) -> AsyncIterator[FuzzStack]:
    async with FakeUpstream.start("openai-compatible") as fake:
        async for cfg in start_config(config_settings(fuzz_database)):
            admin = cfg.admin
            await cfg.stub.UpdateSettings(cs.UpdateSettingsRequest(
                settings=pb.Settings(byok_enabled=True, personal_overrides_enabled=True),
                update_mask=field_mask_pb2.FieldMask(paths=["byok_enabled", "personal_overrides_enabled"])),
                metadata=admin)
            await cfg.stub.CreateProvider(cs.CreateProviderRequest(provider=pb.Provider(
                name="p", type=pb.PROVIDER_TYPE_OPENAI_COMPATIBLE, base_url=fake.base_url, api_key=fake.api_key)),
                metadata=admin)
            await cfg.stub.CreateProvider(cs.CreateProviderRequest(provider=pb.Provider(
                name="openai", type=pb.PROVIDER_TYPE_OPENAI, base_url=fake.base_url)), metadata=admin)
            for name, provider in (("m", "p"), ("gpt", "openai")):
                await cfg.stub.CreateModel(cs.CreateModelRequest(model=pb.Model(
                    name=name, provider=provider, model_identifier="model-a", display_name=name,
                    context_limit=8000)), metadata=admin)
            alice = await cfg.md(Role.MEMBER, "alice")
            await cfg.stub.SetUserKey(cs.SetUserKeyRequest(provider="openai", api_key=fake.api_key), metadata=alice)
            await cfg.stub.SetPersonalOverride(cs.SetPersonalOverrideRequest(
                context=pb.OVERRIDE_CONTEXT_EXPLORE, model="m"), metadata=alice)
            callers = {"admin": admin, "member": alice, "service": await cfg.md(Role.SERVICE, "agent-runner"),
                       "anonymous": (), "forged": (("authorization", "Bearer mp_000000000000_" + "A" * 43),)}
            service_token = await cfg.token(Role.SERVICE, "resolver")
            async for resolver in start_resolver(cfg.address, service_token):
                yield FuzzStack(cfg, resolver, callers)


def _channel(stack: FuzzStack, service: Any) -> grpc.aio.Channel:
    return stack.cfg.channel if service is CONFIG else stack.resolver.channel


async def call(stack: FuzzStack, service: Any, method: Any, body: bytes, md: Any) -> Code:
    """One raw call; its status code (OK for a stream that was still open at its deadline)."""
    path = f"/{service.full_name}/{method.name}"
    channel = _channel(stack, service)
    try:
        if method.server_streaming:
            async for _ in channel.unary_stream(path)(body, metadata=md, timeout=0.3 if method.name ==
                                                     "WatchConfig" else 20.0):
                pass
        else:
            await channel.unary_unary(path)(body, metadata=md, timeout=20.0)
    except grpc.aio.AioRpcError as err:
        if method.name == "WatchConfig" and err.code() == Code.DEADLINE_EXCEEDED:
            return Code.OK  # a watch never ends on its own
        return err.code()
    return Code.OK


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("service", "method"), METHODS, ids=[f"{s.name}.{m.name}" for s, m in METHODS])
@FUZZ_SETTINGS
@given(data=st.data())
async def test_generated_requests_never_fail_as_internal(stack: FuzzStack, service: Any, method: Any,
                                                         data: st.DataObject) -> None:
    cls = MESSAGE_CLASSES[method.input_type.name]
    request = data.draw(requests(cls, SEEDS.get(method.name)), label="request")
    caller = data.draw(st.sampled_from(["admin", "admin", "member", "service", "anonymous", "forged"]),
                       label="caller")
    code = await call(stack, service, method, request.SerializeToString(), stack.callers[caller])
    assert code not in FORBIDDEN, (method.name, caller, describe(request))
    assert code != Code.DEADLINE_EXCEEDED, ("hung", method.name, caller, describe(request))


@pytest.mark.timeout(120)
@settings(max_examples=GARBAGE_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(body=st.one_of(st.binary(max_size=64), st.sampled_from([
    b"\xff" * 8, b"\x0a\xff\xff\xff\xff\x0f", b"\x0a\x02\xc3\x28", b"\x12\x80\x80\x80\x80\x10", b"\x0b", b"\x0c",
    b"\x0a\x10" + b"\x0a\x0e" * 8, b"\x0a" + b"\x7f" + b"x" * 3])), index=st.integers(0, len(METHODS) - 1))
async def test_garbage_bodies_are_invalid_argument_or_handled(stack: FuzzStack, body: bytes, index: int) -> None:
    service, method = METHODS[index]
    code = await call(stack, service, method, body, stack.callers["admin"])
    assert code not in FORBIDDEN, (method.name, body)


@pytest.mark.parametrize("body", [b"\xff\xff\xff", b"\x0a\x02\xc3\x28", b"\x0a\xff\xff\xff\xff\x0f", b""])
async def test_garbage_to_health_and_reflection_is_handled(stack: FuzzStack, body: bytes) -> None:
    """The standard services both servers carry get the same edge."""
    for channel in (stack.cfg.channel, stack.resolver.channel):
        try:
            await channel.unary_unary("/grpc.health.v1.Health/Check")(body, timeout=5)
        except grpc.aio.AioRpcError as err:
            assert err.code() == Code.INVALID_ARGUMENT, err.details()

        async def one() -> AsyncIterator[bytes]:
            yield body
        try:
            reflect = channel.stream_stream("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")
            [item async for item in reflect(one(), timeout=5)]
        except grpc.aio.AioRpcError as err:
            assert err.code() == Code.INVALID_ARGUMENT, err.details()


async def test_afterwards_both_services_answer_and_nothing_invalid_is_stored(stack: FuzzStack) -> None:
    for channel in (stack.cfg.channel, stack.resolver.channel):
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    await stack.resolver.stub.ListUserKeyStatus(rs.ListUserKeyStatusRequest(), metadata=stack.callers["member"])

    pool = stack.cfg.server.store.pool
    settings_ = config_settings("")
    async with pool.acquire() as conn:
        stored_providers = {p.name: p for p in await provider_rows.list_page(conn, 10_000, "")}
        for p in stored_providers.values():
            validation.validate_provider(p, own_addresses=settings_.own_addresses,
                                         allow_metadata_addresses=settings_.allow_metadata_addresses)
        for m in await model_rows.list_page(conn, 10_000, ("", ""), ""):
            validation.validate_model(m, stored_providers[m.provider].type)
        for r in await conn.fetch("SELECT role, subject, description FROM api_tokens"):
            assert validation.user_violations(r["subject"], "subject") == [], r["subject"]
            assert not has_control_chars(r["description"]) and len(r["description"]) <= 500
        for r in await conn.fetch("SELECT user_name, provider FROM user_keys"):
            assert validation.user_violations(r["user_name"], "user") == [] and r["provider"] in stored_providers
        for table in ("model_overrides", "personal_overrides"):
            for r in await conn.fetch(f"SELECT * FROM {table}"):
                assert validation.NAME_PATTERN.fullmatch(r["model"]), dict(r)
        for r in await conn.fetch("SELECT action, change FROM audit_events WHERE action LIKE 'Create%'"):
            assert not {"is_default", "api_key_set", "create_time", "update_time", "etag", "id",
                        "effective_base_url"} & set(r["change"]), dict(r)
