"""Distributed tracing end to end: the operator CLI sends a traceparent, the
resolver and config_svc export their spans over OTLP/gRPC to a real
loopback collector (tests.fakes.otlp), and the fake upstream receives the
context as an HTTP header. One trace id from the CLI to the upstream, the
GenAI attributes on every attempt, trace ids in the log lines, and no secret
anywhere in what was exported."""

from __future__ import annotations

import asyncio
import cProfile
import io
import json
import os
import pstats
import secrets
import sys
from typing import Any, AsyncIterator

import pytest

from modelplane_server.domain.types import Role
from modelplane_server.runtime import logs
from modelplane_server.runtime.tracing import Tracing, TracingConfig
from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import resolver_service_pb2 as rs
from modelplane.v1 import resources_pb2 as pb
from modelplane_server.resolver_svc.chat.telemetry import UpstreamTelemetry
from modelplane_server.resolver_svc.upstream import UpstreamTarget, Usage
from tests.fakes import Fail, FakeUpstream
from tests.fakes.http_server import RawReply
from tests.fakes.otlp import OtlpReceiver, ReceivedSpan
from tests.harness import ConfigHarness, bearer, config_settings, start_config
from tests.resolver_harness import ResolverHarness, eventually, start_resolver

pytestmark = pytest.mark.e2e

# A provider key the test can look for in everything exported: it must never appear.
CANARY_KEY = "sk-canary-" + secrets.token_hex(16)
MODEL_ID = "llama-test"
REPLY_MODEL = "llama-test-2025-01-15"  # what the upstream says it ran: gen_ai.response.model
CONFIG_CALLS = ("IntrospectToken", "GetUserConfigs", "AccessCredential")


def reply_body() -> bytes:
    """An OpenAI Chat Completions reply naming a dated model, with reasoning and cached tokens."""
    return json.dumps({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": REPLY_MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello from the fake."},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 55, "completion_tokens": 9, "total_tokens": 64,
                  "prompt_tokens_details": {"cached_tokens": 5},
                  "completion_tokens_details": {"reasoning_tokens": 4}},
    }).encode()


@pytest.fixture
async def otlp() -> AsyncIterator[OtlpReceiver]:
    async with OtlpReceiver.start() as receiver:
        yield receiver


@pytest.fixture
def log_lines() -> Any:
    stream = io.StringIO()
    logs.configure_logging("INFO", json=True, stream=stream)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]
    logs.configure_logging("INFO", json=True, stream=io.StringIO())


async def _stack(database_url: str, endpoint: str | None) -> AsyncIterator[tuple[ConfigHarness, ResolverHarness]]:
    def traced(name: str) -> TracingConfig | None:
        return TracingConfig(name, endpoint) if endpoint else None

    async for cfg in start_config(config_settings(database_url, tracing=traced("config_svc"))):
        service_token = await cfg.token(Role.SERVICE, "resolver")
        async for resolver in start_resolver(cfg.address, service_token, tracing=traced("resolver_svc")):
            yield cfg, resolver


async def _configure(cfg: ConfigHarness, resolver: ResolverHarness, fake: FakeUpstream) -> None:
    await cfg.stub.CreateProvider(cs.CreateProviderRequest(provider=pb.Provider(
        name="local", type=pb.PROVIDER_TYPE_OPENAI_COMPATIBLE, base_url=fake.base_url, api_key=CANARY_KEY)),
        metadata=cfg.admin)
    await cfg.stub.CreateModel(cs.CreateModelRequest(model=pb.Model(
        name="llama", provider="local", model_identifier=MODEL_ID, display_name="Llama", context_limit=8000)),
        metadata=cfg.admin)
    revision = await cfg.server.store.current_revision()

    async def caught_up() -> None:
        assert resolver.server.snapshot.revision >= revision

    await eventually(caught_up)


async def _cli(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "modelplane.cli", *args, env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await child.communicate()
    return child.returncode or 0, out.decode(), err.decode()


async def _flush(*tracers: Tracing | None) -> None:
    for tracing in tracers:
        assert tracing is not None
        # Blocking (the exporter's own thread sends to our receiver on this loop): run it in a thread.
        assert await asyncio.to_thread(tracing.force_flush)
        assert tracing.export.dropped == 0


def _one(spans: list[ReceivedSpan], service: str, name: str) -> ReceivedSpan:
    found = [s for s in spans if s.service == service and s.name == name]
    assert len(found) == 1, (service, name, [(s.service, s.name) for s in spans])
    return found[0]


async def test_one_trace_from_the_cli_through_both_services_to_the_upstream(
        database_url: str, otlp: OtlpReceiver, log_lines: Any) -> None:
    async with FakeUpstream.start("openai-compatible", api_key=CANARY_KEY) as fake:
        async for cfg, resolver in _stack(database_url, otlp.endpoint):
            await _configure(cfg, resolver, fake)
            alice = await cfg.token(Role.MEMBER, "alice")
            # Rate limited once (retry at once), then a reply naming a dated model.
            fake.script(Fail(429, headers={"retry-after": "0"}),
                        RawReply(200, reply_body(), {"Content-Type": "application/json"}))
            trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)
            code, out, err = await _cli("chat", "hello", env={
                "MODELPLANE_TOKEN": alice, "MODELPLANE_RESOLVER_ADDR": resolver.address,
                "MODELPLANE_CONFIG_ADDR": cfg.address, "TRACEPARENT": f"00-{trace_id}-{caller_span}-01"})
            assert code == 0, err
            assert "Hello from the fake." in out
            await _flush(resolver.server.tracing, cfg.server.tracing)
            secrets_seen = [CANARY_KEY, alice, resolver.server.config._metadata[0][1].split()[-1],
                            cfg.admin[0][1].split()[-1]]

    spans = otlp.in_trace(trace_id)
    # The resolver's RPC span continues the CLI's trace.
    chat = _one(spans, "resolver_svc", "modelplane.v1.ResolverService/Chat")
    assert chat.is_server and chat.parent_span_id == caller_span
    assert chat.attributes["rpc.system"] == "grpc" and chat.attributes["rpc.grpc.status_code"] == 0
    request_id = chat.attributes["modelplane.request_id"]

    # Each call the resolver made to config_svc for this chat: a client span
    # under the chat, and config_svc's server span under that.
    for method in CONFIG_CALLS:
        client = _one(spans, "resolver_svc", f"modelplane.v1.ConfigService/{method}")
        server = _one(spans, "config_svc", f"modelplane.v1.ConfigService/{method}")
        assert client.is_client and client.parent_span_id == chat.span_id
        assert server.is_server and server.parent_span_id == client.span_id

    # Every upstream attempt: a GenAI client span under the chat, its context sent as traceparent.
    attempts = sorted((s for s in spans if s.name == f"chat {MODEL_ID}"),
                      key=lambda s: s.attributes["modelplane.attempt"])
    assert [s.attributes["modelplane.attempt"] for s in attempts] == [1, 2]
    for span in attempts:
        assert span.is_client and span.service == "resolver_svc" and span.parent_span_id == chat.span_id
        a = span.attributes
        assert a["gen_ai.operation.name"] == "chat"
        assert a["gen_ai.provider.name"] == a["gen_ai.system"] == "openai-compatible"
        assert a["gen_ai.request.model"] == MODEL_ID and a["gen_ai.request.stream"] is False
        assert a["modelplane.provider"] == "local" and a["modelplane.model"] == "llama"
        assert a["server.address"] == "127.0.0.1"
    first, second = attempts
    assert first.attributes["error.type"] == "rate_limited"
    assert first.attributes["http.response.status_code"] == 429
    assert first.status_code == 2  # STATUS_CODE_ERROR
    assert "modelplane.retry_reason" not in first.attributes
    assert second.attributes["modelplane.retry_reason"] == "rate_limited"
    assert "error.type" not in second.attributes and second.attributes["http.response.status_code"] == 200
    assert second.attributes["gen_ai.response.model"] == REPLY_MODEL
    assert second.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    # GenAI counts every input token (cached ones too); output includes reasoning.
    assert second.attributes["gen_ai.usage.input_tokens"] == 55
    assert second.attributes["gen_ai.usage.cache_read.input_tokens"] == 5
    assert second.attributes["gen_ai.usage.output_tokens"] == 9
    assert second.attributes["gen_ai.usage.reasoning.output_tokens"] == 4
    sent = [r.headers.get("traceparent") for r in fake.requests if r.method == "POST"]
    assert sent == [f"00-{trace_id}-{s.span_id}-01" for s in attempts]

    # Log lines of the call carry its trace: the canonical rpc line (which
    # carries the chat's outcome) and the retry.
    lines = [line for line in log_lines() if line.get("request_id") == request_id]
    events = {line["event"] for line in lines}
    assert {"rpc", "upstream.retry"} <= events, events
    assert all(line.get("trace_id") == trace_id and len(line.get("span_id", "")) == 16 for line in lines)
    config_lines = [line for line in log_lines() if line.get("event") == "rpc"
                    and line.get("method", "").rsplit("/", 1)[-1] in CONFIG_CALLS]
    assert config_lines and all(line.get("trace_id") == trace_id for line in config_lines)

    # Nothing secret in anything exported, from either service: no provider key, no token.
    assert otlp.raw_requests
    for raw in otlp.raw_requests:
        for secret in secrets_seen:
            for piece in (secret, secret[4:20], secret[-12:]):
                assert piece.encode() not in raw


async def test_a_stream_and_its_cancelled_attempt_are_spans_too(database_url: str, otlp: OtlpReceiver) -> None:
    async with FakeUpstream.start("openai-compatible", api_key=CANARY_KEY) as fake:
        async for cfg, resolver in _stack(database_url, otlp.endpoint):
            await _configure(cfg, resolver, fake)
            alice = bearer(await cfg.token(Role.MEMBER, "alice"))
            request = rs.ChatRequest(messages=[rs.ChatMessage(role=rs.CHAT_ROLE_USER, text="hi")])
            events = [e async for e in resolver.stub.StreamChat(request, metadata=alice)]
            assert events[-1].HasField("finish")
            # No traceparent from the caller: the resolver starts the trace.
            await _flush(resolver.server.tracing, cfg.server.tracing)
    stream = _one(otlp.spans, "resolver_svc", "modelplane.v1.ResolverService/StreamChat")
    assert stream.parent_span_id == ""
    attempt = _one(otlp.in_trace(stream.trace_id), "resolver_svc", f"chat {MODEL_ID}")
    assert attempt.attributes["gen_ai.request.stream"] is True
    assert attempt.attributes["gen_ai.response.model"] == MODEL_ID  # the fake echoes the request's model
    assert attempt.attributes["gen_ai.response.time_to_first_chunk"] > 0
    assert attempt.attributes["gen_ai.response.finish_reasons"] == ("stop",)


async def test_attempt_spans_read_the_model_the_reply_names(otlp: OtlpReceiver) -> None:
    tracing = Tracing(TracingConfig("resolver_svc", otlp.endpoint))
    target = UpstreamTarget("anthropic", "https://api.anthropic.com", CANARY_KEY, None, "claude-x")
    seen = UpstreamTelemetry(None, tracing).chat("claude", "claude", target, stream=True)
    headers = seen.attempt()
    assert set(headers) == {"traceparent"}
    # Anthropic's stream names the model in message_start, its first event.
    seen.received(b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1",'
                  b'"model":"claude-x-20250101","content":[]}}\n\n')
    seen.received(b'data: {"model": "not-this-one"}\n\n')
    seen.succeeded(Usage(input_tokens=3, output_tokens=2), "stop")
    seen.close()  # after the verdict: changes nothing
    await asyncio.to_thread(tracing.force_flush)
    span = _one(otlp.spans, "resolver_svc", "chat claude-x")
    assert span.attributes["gen_ai.response.model"] == "claude-x-20250101"
    assert span.attributes["gen_ai.provider.name"] == "anthropic"
    assert span.attributes["server.address"] == "api.anthropic.com" and span.attributes["server.port"] == 443
    await tracing.shutdown()


async def test_tracing_off_exports_nothing_and_runs_no_tracing_code(
        database_url: str, otlp: OtlpReceiver) -> None:
    async for cfg, resolver in _stack(database_url, None):
        assert resolver.server.tracing is None and cfg.server.tracing is None
        alice = bearer(await cfg.token(Role.MEMBER, "alice"))
        await cfg.stub.CreateProvider(cs.CreateProviderRequest(provider=pb.Provider(
            name="openai", type=pb.PROVIDER_TYPE_OPENAI, api_key="sk-" + "x" * 24)), metadata=cfg.admin)
        await cfg.stub.CreateModel(cs.CreateModelRequest(model=pb.Model(
            name="gpt", provider="openai", model_identifier="gpt-x", display_name="GPT", context_limit=8000)),
            metadata=cfg.admin)
        traced = (*alice, ("traceparent", f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"))

        async def resolves() -> None:
            assert (await resolver.resolve_model(traced)).model.name == "gpt"

        await eventually(resolves)
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(50):
            await resolver.resolve_model(traced)
        profile.disable()
    files = {key[0] for key in pstats.Stats(profile).stats}  # type: ignore[attr-defined]
    assert any("resolver_svc" in f for f in files), "the profile did not see the resolver's hot path"
    assert not [f for f in files if "opentelemetry" in f or f.endswith(("runtime/tracing.py", "runtime/otlp.py"))]
    assert otlp.requests == 0
