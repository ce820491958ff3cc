"""Canary keys: an upstream that echoes the key it was sent (raw, base64,
base64url, URL-encoded, hex, base64 of `Bearer <key>`, masked keeping its
first or last characters) in error bodies, in-stream errors and response
headers. No fragment of the key may reach a caller (Chat, StreamChat and
ProbeProvider errors and their details), the logs at DEBUG (httpx and
httpcore lines included), /metrics, or the audit log."""

from __future__ import annotations

import asyncio
import io
import urllib.request
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf import field_mask_pb2
from prometheus_client import generate_latest

from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import resolver_service_pb2 as rs
from modelplane.v1 import resources_pb2 as pb
from modelplane_server.domain.types import Role
from modelplane_server.runtime import logs
from tests.fakes.echo import EchoUpstream, fragments
from tests.harness import ConfigHarness, bearer
from tests.resolver_harness import ResolverHarness, eventually, start_resolver

pytestmark = pytest.mark.e2e

TYPES = {"openai-compatible": pb.PROVIDER_TYPE_OPENAI_COMPATIBLE, "openai": pb.PROVIDER_TYPE_OPENAI,
         "anthropic": pb.PROVIDER_TYPE_ANTHROPIC, "azure-openai": pb.PROVIDER_TYPE_AZURE_OPENAI,
         "bedrock": pb.PROVIDER_TYPE_BEDROCK, "openrouter": pb.PROVIDER_TYPE_OPENROUTER}
# Distinctive ends, so a stray "4 leading characters" cannot be a coincidence.
CENTRAL = "cnry-central-9fK2xQ/pL7+vR3mZ-W8tJ"
PERSONAL = "kpsn-alice-4Hq8Zc1YvN0b_T6rM2-eXu5"


class Captured:
    def __init__(self) -> None:
        self.stream = io.StringIO()

    @property
    def text(self) -> str:
        return self.stream.getvalue()


@pytest.fixture
def debug_logs() -> Iterator[Captured]:
    captured = Captured()
    logs.configure_logging("DEBUG", json=True, stream=captured.stream)
    try:
        yield captured
    finally:
        logs.configure_logging("INFO")


@pytest.fixture
async def resolver(cfg: ConfigHarness) -> AsyncIterator[ResolverHarness]:
    token = await cfg.token(Role.SERVICE, "resolver")
    async for harness in start_resolver(cfg.address, token, metrics_listen="127.0.0.1:0"):
        yield harness


def assert_clean(text: str | bytes, key: str, where: str) -> None:
    if isinstance(text, bytes):
        text = text.decode("latin-1")
    leaked = [f for f in fragments(key) if f in text]
    assert not leaked, f"{where} holds {leaked}: {text[:2000]}"


def status_bytes(err: grpc.aio.AioRpcError) -> bytes:
    return b"".join(v for k, v in err.trailing_metadata() or () if isinstance(v, bytes))


async def failed(call: Any) -> grpc.aio.AioRpcError:
    try:
        result = await call
    except grpc.aio.AioRpcError as err:
        return err
    raise AssertionError(f"succeeded: {result}")


async def streamed_failure(stub: Any, request: rs.ChatRequest, md: Any) -> grpc.aio.AioRpcError:
    events = []
    try:
        async for event in stub.StreamChat(request, metadata=md):
            events.append(event)
    except grpc.aio.AioRpcError as err:
        assert all(e.HasField("resolution") for e in events)
        return err
    raise AssertionError(f"stream ended without error: {events}")


async def setup(cfg: ConfigHarness, fake: EchoUpstream, kind: str, *, central: str | None) -> None:
    p = pb.Provider(name=f"p-{kind}", type=TYPES[kind], base_url=fake.base_url(kind))
    if kind == "bedrock":
        p.region = "us-east-1"
    if central:
        p.api_key = central
    await cfg.stub.CreateProvider(cs.CreateProviderRequest(provider=p), metadata=cfg.admin)
    await cfg.stub.CreateModel(cs.CreateModelRequest(model=pb.Model(
        name=f"m-{kind}", provider=p.name, model_identifier="echo-model", display_name="Echo",
        context_limit=8000)), metadata=cfg.admin)


async def scrape(port: int) -> str:
    def fetch() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            return str(reply.read().decode())
    return await asyncio.to_thread(fetch)


@pytest.mark.parametrize(("kind", "status", "in_stream"), [
    ("openai-compatible", 401, False), ("openai-compatible", 400, False), ("openai-compatible", 503, False),
    ("openai-compatible", 200, True), ("openai", 401, False), ("anthropic", 401, False),
    ("azure-openai", 403, False), ("bedrock", 403, False), ("openrouter", 402, False),
])
async def test_a_central_key_echoed_back_reaches_no_one(
        cfg: ConfigHarness, resolver: ResolverHarness, debug_logs: Captured, kind: str, status: int,
        in_stream: bool) -> None:
    async with EchoUpstream.start(status, in_stream=in_stream) as fake:
        await setup(cfg, fake, kind, central=CENTRAL)
        member = bearer(await cfg.token(Role.MEMBER, "bob"))
        request = rs.ChatRequest(chat_model=f"m-{kind}", chat_id="canary-1",
                                 messages=[rs.ChatMessage(role=rs.CHAT_ROLE_USER, text="hello")])

        async def chat_fails() -> grpc.aio.AioRpcError:
            err = await failed(resolver.stub.Chat(request, metadata=member))
            assert fake.requests, f"the chat never reached the upstream: {err.details()}"
            return err
        err = await eventually(chat_fails)
        assert err.code() not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), err.details()
        assert_clean(err.details() or "", CENTRAL, "Chat error")
        assert_clean(status_bytes(err), CENTRAL, "Chat error details")
        assert "Incorrect API key" in (err.details() or ""), err.details()

        err = await streamed_failure(resolver.stub, request, member)
        assert_clean(err.details() or "", CENTRAL, "StreamChat error")
        assert_clean(status_bytes(err), CENTRAL, "StreamChat error details")

        probe = await resolver.stub.ProbeProvider(rs.ProbeProviderRequest(provider=f"p-{kind}"),
                                                  metadata=cfg.admin)
        assert not probe.authenticated and probe.error
        assert_clean(probe.error, CENTRAL, "ProbeProvider error")
        assert all(k == CENTRAL for k in fake.sent_keys if k), "the upstream got another key"

    assert '"httpcore' in debug_logs.text or "httpcore" in debug_logs.text  # DEBUG really was on
    assert_clean(debug_logs.text, CENTRAL, "the logs")
    assert resolver.server.metrics_endpoint is not None
    assert_clean(await scrape(resolver.server.metrics_endpoint.port), CENTRAL, "resolver /metrics")
    assert_clean(generate_latest(cfg.server.registry), CENTRAL, "config_svc metrics")
    audit = await cfg.server.store.pool.fetch("SELECT change::text AS c FROM audit_events")
    assert_clean("\n".join(r["c"] for r in audit), CENTRAL, "the audit log")


async def test_a_personal_key_echoed_back_reaches_no_one(
        cfg: ConfigHarness, resolver: ResolverHarness, debug_logs: Captured) -> None:
    async with EchoUpstream.start(401) as fake:
        await setup(cfg, fake, "openai-compatible", central=None)
        await cfg.stub.UpdateSettings(cs.UpdateSettingsRequest(
            settings=pb.Settings(byok_enabled=True), update_mask=field_mask_pb2.FieldMask(paths=["byok_enabled"])),
            metadata=cfg.admin)
        alice = bearer(await cfg.token(Role.MEMBER, "alice"))
        await cfg.stub.SetUserKey(cs.SetUserKeyRequest(provider="p-openai-compatible", api_key=PERSONAL),
                                  metadata=alice)
        request = rs.ChatRequest(chat_model="m-openai-compatible",
                                 messages=[rs.ChatMessage(role=rs.CHAT_ROLE_USER, text="hello")])

        async def chat_fails() -> grpc.aio.AioRpcError:
            err = await failed(resolver.stub.Chat(request, metadata=alice))
            assert err.code() == grpc.StatusCode.FAILED_PRECONDITION, err.details()
            return err
        err = await eventually(chat_fails)
        assert_clean(err.details() or "", PERSONAL, "Chat error")
        assert_clean(status_bytes(err), PERSONAL, "Chat error details")
        err = await streamed_failure(resolver.stub, request, alice)
        assert_clean(status_bytes(err) + (err.details() or "").encode(), PERSONAL, "StreamChat error")
        probe = await resolver.stub.ProbeProvider(rs.ProbeProviderRequest(provider="p-openai-compatible",
                                                                          use_own_key=True), metadata=alice)
        assert not probe.authenticated
        assert_clean(probe.error, PERSONAL, "ProbeProvider error")
        assert set(fake.sent_keys) == {PERSONAL}

    assert_clean(debug_logs.text, PERSONAL, "the logs")
    assert resolver.server.metrics_endpoint is not None
    assert_clean(await scrape(resolver.server.metrics_endpoint.port), PERSONAL, "resolver /metrics")
    audit = await cfg.server.store.pool.fetch("SELECT change::text AS c FROM audit_events")
    assert_clean("\n".join(r["c"] for r in audit), PERSONAL, "the audit log")


async def test_a_key_echoed_in_a_successful_reply_reaches_no_one(
        cfg: ConfigHarness, resolver: ResolverHarness, debug_logs: Captured) -> None:
    """The upstream's request id header (returned as upstream_request_id) and
    its model listing (returned by the probe) are the upstream's words too."""
    async with EchoUpstream.start(200) as fake:
        await setup(cfg, fake, "openai-compatible", central=CENTRAL)
        member = bearer(await cfg.token(Role.MEMBER, "bob"))
        request = rs.ChatRequest(chat_model="m-openai-compatible",
                                 messages=[rs.ChatMessage(role=rs.CHAT_ROLE_USER, text="hello")])

        async def answered() -> rs.ChatResponse:
            reply: rs.ChatResponse = await resolver.stub.Chat(request, metadata=member)
            return reply
        reply = await eventually(answered)
        assert reply.text == "hi" and reply.upstream_request_id
        assert_clean(str(reply), CENTRAL, "Chat reply")
        events = [e async for e in resolver.stub.StreamChat(request, metadata=member)]
        assert events[-1].finish.upstream_request_id
        assert_clean("".join(str(e) for e in events), CENTRAL, "StreamChat events")
        probe = await resolver.stub.ProbeProvider(rs.ProbeProviderRequest(provider="p-openai-compatible"),
                                                  metadata=cfg.admin)
        assert probe.authenticated and "model-a" in probe.upstream_models
        assert_clean(str(probe), CENTRAL, "ProbeProvider reply")
    assert_clean(debug_logs.text, CENTRAL, "the logs")
