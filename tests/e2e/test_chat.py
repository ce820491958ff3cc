"""Chat and StreamChat end to end: config_svc on real Postgres, the resolver
with ChatServicer, and a fake upstream on loopback for every provider type.

Each provider case is configured through config_svc exactly as an admin
would (base_url = the fake, key = the fake's), then checked for what the
caller gets back and what the upstream received.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf import field_mask_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from modelplane_server.domain.types import Role
from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import resolver_service_pb2 as rs
from modelplane.v1 import resolver_service_pb2_grpc as rs_grpc
from modelplane.v1 import resources_pb2 as pb
from modelplane_server.resolver_svc.api.servicer import ResolverServicer
from modelplane_server.resolver_svc.caches.credentials import CredentialCache
from modelplane_server.resolver_svc.server import ResolverServer, build_server, resolver_servicer
from modelplane_server.resolver_svc.state.snapshot import Snapshot
from modelplane_server.resolver_svc.upstream import UpstreamClient
from modelplane_server.resolver_svc.caches.users import UserCache
from tests.fakes import TEST_AWS_CREDENTIALS, TEST_REGION, Canned, CannedToolCall, Fail, FakeUpstream, StreamReply
from tests.harness import ConfigHarness, Metadata
from tests.resolver_harness import error_reason, eventually, resolver_settings

pytestmark = pytest.mark.e2e

PROVIDER_TYPES = {
    "anthropic": pb.PROVIDER_TYPE_ANTHROPIC,
    "openai": pb.PROVIDER_TYPE_OPENAI,
    "google": pb.PROVIDER_TYPE_GOOGLE,
    "azure-openai": pb.PROVIDER_TYPE_AZURE_OPENAI,
    "bedrock": pb.PROVIDER_TYPE_BEDROCK,
    "openai-compatible": pb.PROVIDER_TYPE_OPENAI_COMPATIBLE,
    "openrouter": pb.PROVIDER_TYPE_OPENROUTER,
    "vercel-ai-gateway": pb.PROVIDER_TYPE_VERCEL_AI_GATEWAY,
}
# $3 in, $15 out per 1M tokens; the fakes report 12 in, 7 out by default.
PRICING = pb.Pricing(input_per_mtok=3.0, output_per_mtok=15.0)
DEFAULT_COST = (12 * 3.0 + 7 * 15.0) / 1_000_000
WEATHER = rs.ToolDefinition(name="get_weather", description="Current weather for a city")
WEATHER.parameters.update({"type": "object", "properties": {"city": {"type": "string", "maxLength": 64}},
                           "required": ["city"]})
PARIS_CALL = CannedToolCall("call_paris_1", "get_weather", {"city": "Paris"})


# --------------------------------------------------------------------------- the stack


@dataclass
class ChatStack:
    cfg: ConfigHarness
    server: ResolverServer
    stub: rs_grpc.ResolverServiceStub
    upstream: UpstreamClient


@contextlib.asynccontextmanager
async def start_chat_stack(cfg: ConfigHarness, *, idle_timeout_seconds: float = 60.0,
                           **settings: object) -> AsyncIterator[ChatStack]:
    """A resolver serving ChatServicer with its own UpstreamClient (closed here)."""
    service_token = await cfg.token(Role.SERVICE, "resolver")
    upstream = UpstreamClient(trust_env=False)

    def servicer(snapshot: Snapshot, users: UserCache, credentials: CredentialCache) -> ResolverServicer:
        return resolver_servicer(snapshot, users, credentials, upstream=upstream,
                                 idle_timeout_seconds=idle_timeout_seconds)

    server = await build_server(resolver_settings(cfg.address, service_token, **settings),
                                servicer_factory=servicer)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        await server.wait_ready(10)
        yield ChatStack(cfg, server, rs_grpc.ResolverServiceStub(channel), upstream)
    finally:
        await channel.close()
        await server.stop(0)
        await upstream.aclose()


@pytest.fixture
async def chat(cfg: ConfigHarness) -> AsyncIterator[ChatStack]:
    async with start_chat_stack(cfg) as stack:
        yield stack


async def add_provider(cfg: ConfigHarness, fake: FakeUpstream, name: str, *, api_key: str | None = None,
                       **fields: Any) -> None:
    key = fake.api_key if api_key is None else api_key
    provider = pb.Provider(name=name, type=PROVIDER_TYPES[fake.kind], base_url=fake.base_url, **fields)
    if key:
        provider.api_key = key
    await cfg.stub.CreateProvider(cs.CreateProviderRequest(provider=provider), metadata=cfg.admin)


async def add_model(cfg: ConfigHarness, provider: str, name: str, identifier: str, **fields: Any) -> None:
    fields.setdefault("context_limit", 200_000)
    await cfg.stub.CreateModel(cs.CreateModelRequest(model=pb.Model(
        name=name, provider=provider, model_identifier=identifier, display_name=name, **fields)),
        metadata=cfg.admin)


async def set_settings(cfg: ConfigHarness, **flags: bool) -> None:
    await cfg.stub.UpdateSettings(cs.UpdateSettingsRequest(
        settings=pb.Settings(**flags), update_mask=field_mask_pb2.FieldMask(paths=list(flags))),
        metadata=cfg.admin)


async def wait_for_model(stack: ChatStack, md: Metadata, model: str, *, user: str = "") -> rs.ResolvedModel:
    async def check() -> rs.ResolvedModel:
        got = await stack.stub.ResolveModel(
            rs.ResolveModelRequest(user=user, context=pb.OVERRIDE_CONTEXT_ROOT), metadata=md)
        assert got.model.name == model, got.model.name
        return got
    return await eventually(check)


def ask(*messages: rs.ChatMessage, tools: tuple[rs.ToolDefinition, ...] = (), **kw: Any) -> rs.ChatRequest:
    if not messages:
        messages = (rs.ChatMessage(role=rs.CHAT_ROLE_SYSTEM, text="Be terse."),
                    rs.ChatMessage(role=rs.CHAT_ROLE_USER, text="Weather in Paris?"))
    return rs.ChatRequest(messages=messages, tools=tools, chat_id="chat-42", **kw)


@dataclass
class Streamed:
    events: list[rs.ChatEvent] = field(default_factory=list)

    @property
    def kinds(self) -> list[str]:
        return [str(e.WhichOneof("event")) for e in self.events]

    @property
    def text(self) -> str:
        return "".join(e.text_delta for e in self.events if e.HasField("text_delta"))

    @property
    def reasoning(self) -> str:
        return "".join(e.reasoning_delta for e in self.events if e.HasField("reasoning_delta"))

    @property
    def finish(self) -> rs.ChatFinish:
        assert self.events[-1].HasField("finish"), self.kinds
        return self.events[-1].finish

    @property
    def usage(self) -> rs.Usage:
        [usage] = [e.usage for e in self.events if e.HasField("usage")]
        return usage

    def tool_arguments(self, index: int = 0) -> str:
        return "".join(e.tool_call_delta.arguments_delta for e in self.events
                       if e.HasField("tool_call_delta") and e.tool_call_delta.index == index)


async def stream(stack: ChatStack, request: rs.ChatRequest, md: Metadata) -> Streamed:
    out = Streamed()
    async for event in stack.stub.StreamChat(request, metadata=md):
        out.events.append(event)
    return out


async def rpc_error(call: Any) -> grpc.aio.AioRpcError:
    try:
        result = await call
    except grpc.aio.AioRpcError as err:
        return err
    raise AssertionError(f"the call succeeded: {result}")


def violations(err: grpc.aio.AioRpcError) -> list[str]:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    out: list[str] = []
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            out += [v.field for v in bad.field_violations]
    return out


def dig(body: dict[str, Any], path: str) -> Any:
    value: Any = body
    for part in path.split("."):
        value = value[part]
    return value


# --------------------------------------------------------------------------- every provider type


@dataclass(frozen=True)
class Case:
    id: str
    kind: str
    model: dict[str, Any]  # extra pb.Model fields (options)
    expect: dict[str, Any]  # body path -> value the upstream must have received
    absent: tuple[str, ...] = ()  # body paths the upstream must not receive
    sigv4: bool = False


CASES = [
    Case("anthropic", "anthropic",
         {"options": pb.GenerationOptions(max_output_tokens=1000, temperature=0.3, top_k=20),
          "anthropic": pb.AnthropicOptions(effort="high")},
         {"model": "claude-test-1", "max_tokens": 1000, "temperature": 0.3, "top_k": 20,
          "output_config.effort": "high"}),
    Case("openai-responses", "openai",
         {"options": pb.GenerationOptions(max_output_tokens=1000),
          "openai": pb.OpenAIOptions(reasoning_effort="low")},
         {"model": "gpt-test-1", "max_output_tokens": 1000, "reasoning.effort": "low", "store": False,
          "include": ["reasoning.encrypted_content"]},
         absent=("temperature",)),
    Case("openai-chat-completions", "openai",
         {"options": pb.GenerationOptions(max_output_tokens=1000, temperature=0.3, top_k=5),
          "openai": pb.OpenAIOptions(api="chat_completions")},
         {"model": "gpt-test-1", "max_completion_tokens": 1000, "temperature": 0.3},
         absent=("top_k", "max_tokens")),
    Case("google", "google",
         {"options": pb.GenerationOptions(max_output_tokens=1000, presence_penalty=0.5),
          "google": pb.GoogleOptions(thinking_budget=512, include_thoughts=True)},
         {"model": "gemini-test-1", "max_tokens": 1000,
          "extra_body.google.thinking_config.thinking_budget": 512,
          "extra_body.google.thinking_config.include_thoughts": True},
         absent=("presence_penalty",)),
    Case("azure-openai", "azure-openai",
         {"options": pb.GenerationOptions(max_output_tokens=1000, temperature=0.3),
          "openai": pb.OpenAIOptions(max_completion_tokens=2000)},
         {"model": "my-deployment", "max_output_tokens": 2000, "temperature": 0.3}),
    Case("bedrock-bearer", "bedrock",
         {"options": pb.GenerationOptions(max_output_tokens=4000, top_p=0.97),
          "anthropic": pb.AnthropicOptions(thinking_budget_tokens=1024)},
         {"inferenceConfig.maxTokens": 4000,
          "additionalModelRequestFields.thinking.budget_tokens": 1024},
         absent=("inferenceConfig.topP",)),
    Case("bedrock-sigv4", "bedrock",
         {"options": pb.GenerationOptions(max_output_tokens=500, temperature=0.3)},
         {"inferenceConfig.maxTokens": 500, "inferenceConfig.temperature": 0.3}, sigv4=True),
    Case("openai-compatible", "openai-compatible",
         {"options": pb.GenerationOptions(max_output_tokens=1000, top_k=40, frequency_penalty=0.2)},
         {"model": "local/llama-test", "max_tokens": 1000, "top_k": 40, "frequency_penalty": 0.2}),
    Case("openrouter", "openrouter",
         {"options": pb.GenerationOptions(max_output_tokens=1000),
          "openrouter": pb.ReasoningOptions(reasoning_enabled=True, reasoning_effort="medium")},
         {"model": "meta/llama-test", "max_tokens": 1000, "reasoning.enabled": True,
          "reasoning.effort": "medium"}),
    Case("vercel-ai-gateway", "vercel-ai-gateway",
         {"options": pb.GenerationOptions(max_output_tokens=1000, top_k=3),
          "vercel": pb.ReasoningOptions(reasoning_effort="low")},
         {"model": "xai/grok-test", "max_tokens": 1000, "reasoning.effort": "low"},
         absent=("top_k",)),
]
IDENTIFIERS = {"anthropic": "claude-test-1", "openai": "gpt-test-1", "google": "gemini-test-1",
               "azure-openai": "my-deployment", "bedrock": "us.anthropic.claude-test-1:0",
               "openai-compatible": "local/llama-test", "openrouter": "meta/llama-test",
               "vercel-ai-gateway": "xai/grok-test"}


def ambient_aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake's known test credentials as the standard AWS chain's
    environment, and nothing else the chain could find (no files, no IMDS)."""
    creds = TEST_AWS_CREDENTIALS
    for name, value in {"AWS_ACCESS_KEY_ID": creds.access_key, "AWS_SECRET_ACCESS_KEY": creds.secret_key,
                        "AWS_SESSION_TOKEN": creds.token or "", "AWS_REGION": TEST_REGION,
                        "AWS_DEFAULT_REGION": TEST_REGION, "AWS_CONFIG_FILE": "/nonexistent/aws-config",
                        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
                        "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def received(fake: FakeUpstream, case: Case) -> dict[str, Any]:
    """The last chat request's body, after checking the model identifier went where it belongs."""
    request = fake.requests[-1]
    body: dict[str, Any] = request.json()
    if case.kind == "bedrock":
        quoted = IDENTIFIERS["bedrock"].replace(":", "%3A")
        assert request.path.startswith(f"/model/{quoted}/converse"), request.path
    return body


def assert_options(body: dict[str, Any], case: Case) -> None:
    for path, value in case.expect.items():
        assert dig(body, path) == value, (path, body)
    for path in case.absent:
        parent, _, name = path.rpartition(".")
        assert name not in (dig(body, parent) if parent else body), (path, body)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_every_provider_type(case: Case, cfg: ConfigHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    if case.sigv4:
        ambient_aws_env(monkeypatch)
    async with (FakeUpstream.start(case.kind, api_key=None if case.sigv4 else "default") as fake,
                start_chat_stack(cfg, ambient_aws=case.sigv4) as stack):
        await add_provider(cfg, fake, "up", api_key="" if case.sigv4 else None)
        await add_model(cfg, "up", "m1", IDENTIFIERS[case.kind], pricing=PRICING, **case.model)
        alice = await cfg.md(Role.MEMBER, "alice")
        resolved = await wait_for_model(stack, alice, "m1")
        source = cs.CREDENTIAL_SOURCE_AMBIENT_AWS if case.sigv4 else cs.CREDENTIAL_SOURCE_CENTRAL_KEY
        assert resolved.credential == source

        # Unary: text, usage, cost, finish, the resolution, and what went upstream.
        fake.script(Canned(text="Sunny in Paris.", request_id="req-unary-1"))
        reply = await stack.stub.Chat(ask(), metadata=alice)
        assert (reply.text, reply.finish_reason) == ("Sunny in Paris.", rs.FINISH_REASON_STOP)
        assert (reply.usage.input_tokens, reply.usage.output_tokens) == (12, 7)
        assert reply.HasField("cost_usd") and reply.cost_usd == pytest.approx(DEFAULT_COST)
        assert reply.context_usage.ratio == pytest.approx(19 / 200_000)
        assert (reply.context_usage.threshold, reply.context_usage.compaction_due) == (0.7, False)
        assert reply.upstream_request_id
        assert reply.resolution == resolved
        body = received(fake, case)
        assert_options(body, case)
        if case.sigv4:
            assert fake.requests[-1].headers["authorization"].startswith(
                f"AWS4-HMAC-SHA256 Credential={TEST_AWS_CREDENTIALS.access_key}/")

        # Streaming: resolution first, deltas, usage, finish last with the same cost.
        # Deltas apart in time go out apart (deltas already waiting together may be joined).
        fake.script(Canned(text="Sunny in Paris, 18C.", chunk_chars=4, delay_s=0.05))
        streamed = await stream(stack, ask(), alice)
        assert streamed.kinds[0] == "resolution" and streamed.events[0].resolution == resolved
        assert streamed.kinds.count("text_delta") > 1
        assert streamed.text == "Sunny in Paris, 18C."
        assert (streamed.usage.input_tokens, streamed.usage.output_tokens) == (12, 7)
        assert streamed.finish.finish_reason == rs.FINISH_REASON_STOP
        assert streamed.finish.cost_usd == pytest.approx(DEFAULT_COST)
        assert_options(received(fake, case), case)

        # Tools: the call comes back, unary and streamed ...
        tool_turn = Canned(text="", tool_calls=(PARIS_CALL,), finish="tool_calls")
        fake.script(tool_turn, tool_turn)
        reply = await stack.stub.Chat(ask(tools=(WEATHER,)), metadata=alice)
        assert reply.finish_reason == rs.FINISH_REASON_TOOL_CALLS
        [call] = reply.tool_calls
        assert (call.id, call.name, json.loads(call.arguments_json)) == (
            "call_paris_1", "get_weather", {"city": "Paris"})
        assert "get_weather" in fake.requests[-1].body.decode()
        assert '"maxLength": 64' in json.dumps(fake.requests[-1].json())  # an integer, not 64.0
        streamed = await stream(stack, ask(tools=(WEATHER,)), alice)
        assert streamed.finish.finish_reason == rs.FINISH_REASON_TOOL_CALLS
        assert json.loads(streamed.tool_arguments(0)) == {"city": "Paris"}
        first_delta = next(e.tool_call_delta for e in streamed.events if e.HasField("tool_call_delta"))
        assert (first_delta.id, first_delta.name) == ("call_paris_1", "get_weather")

        # ... and the tool result goes back in the next request.
        fake.script(Canned(text="It is 18C."))
        follow_up = ask(
            rs.ChatMessage(role=rs.CHAT_ROLE_USER, text="Weather in Paris?"),
            rs.ChatMessage(role=rs.CHAT_ROLE_ASSISTANT, tool_calls=[call]),
            rs.ChatMessage(role=rs.CHAT_ROLE_TOOL, tool_call_id="call_paris_1", text="18C, sunny"),
            tools=(WEATHER,))
        reply = await stack.stub.Chat(follow_up, metadata=alice)
        assert reply.text == "It is 18C."
        sent = fake.requests[-1].body.decode()
        assert "call_paris_1" in sent and "18C, sunny" in sent


# --------------------------------------------------------------------------- credentials and errors


async def test_user_key_with_byok_and_upstream_auth_failure(cfg: ConfigHarness, chat: ChatStack) -> None:
    """The central key is wrong (401 -> UPSTREAM_AUTH_FAILED, key scrubbed);
    with BYOK on, alice's own key is used instead and works."""
    central = "sk-central-wrong-0123456789abcdef"
    async with FakeUpstream.start("openai-compatible", api_key="user-key-alice-0123456789") as fake:
        await add_provider(cfg, fake, "local", api_key=central)
        await add_model(cfg, "local", "llama", "local/llama-test")
        alice = await cfg.md(Role.MEMBER, "alice")
        await wait_for_model(chat, alice, "llama")

        err = await rpc_error(chat.stub.Chat(ask(), metadata=alice))
        assert (err.code(), error_reason(err)) == (grpc.StatusCode.FAILED_PRECONDITION, "UPSTREAM_AUTH_FAILED")
        assert (err.details() or "").startswith("local: ")
        assert central not in (err.details() or "") and "Incorrect API key" in (err.details() or "")
        assert fake.requests[-1].headers["authorization"] == f"Bearer {central}"
        assert len(fake.requests) == 1  # an auth failure is not retried

        await set_settings(cfg, byok_enabled=True)
        await cfg.stub.SetUserKey(cs.SetUserKeyRequest(provider="local", api_key=fake.api_key or ""),
                                  metadata=alice)

        async def uses_own_key() -> rs.ChatResponse:
            reply = await chat.stub.Chat(ask(), metadata=alice)
            assert reply.resolution.credential == cs.CREDENTIAL_SOURCE_USER_KEY
            return reply
        await eventually(uses_own_key)
        assert fake.requests[-1].headers["authorization"] == f"Bearer {fake.api_key}"

        # A service acting for alice gets alice's key too; bob has none, so the central one.
        service = await cfg.md(Role.SERVICE, "agent-runner")
        streamed = await stream(chat, ask(user="alice"), service)
        assert streamed.events[0].resolution.credential == cs.CREDENTIAL_SOURCE_USER_KEY
        assert fake.requests[-1].headers["authorization"] == f"Bearer {fake.api_key}"
        err = await rpc_error(chat.stub.Chat(ask(user="bob"), metadata=service))
        assert error_reason(err) == "UPSTREAM_AUTH_FAILED"


async def test_rate_limit_retried_then_errors_mapped(cfg: ConfigHarness, chat: ChatStack) -> None:
    async with FakeUpstream.start("anthropic") as fake:
        await add_provider(cfg, fake, "claude")
        await add_model(cfg, "claude", "sonnet", "claude-test-1", context_limit=100,
                        options=pb.GenerationOptions(compression_threshold=15))
        alice = await cfg.md(Role.MEMBER, "alice")
        await wait_for_model(chat, alice, "sonnet")

        # 429 with retry-after, then success: retried inside one Chat call.
        fake.script(Fail(429, "slow down", headers={"retry-after": "0"}), Canned(text="second try"))
        reply = await chat.stub.Chat(ask(), metadata=alice)
        assert reply.text == "second try" and len(fake.requests) == 2
        # Unpriced: no cost at all, not 0. 19 of 100 tokens passes a 15 % threshold.
        assert not reply.HasField("cost_usd")
        assert reply.context_usage.ratio == pytest.approx(0.19)
        assert (reply.context_usage.threshold, reply.context_usage.compaction_due) == (0.15, True)

        # Streams retry before the first byte reaches the caller, too.
        fake.script(Fail(529, "busy", code="overloaded_error"), Canned(text="streamed after 529"))
        assert (await stream(chat, ask(), alice)).text == "streamed after 529"

        cases = [
            (Fail(400, "prompt is too long: 250000 tokens > 200000 maximum"),
             grpc.StatusCode.INVALID_ARGUMENT, "CONTEXT_TOO_LONG"),
            (Fail(404, "model: claude-test-1", code="not_found_error"),
             grpc.StatusCode.NOT_FOUND, "UPSTREAM_MODEL_NOT_FOUND"),
            (Fail(400, "tools.0.name: bad", code="invalid_request_error"),
             grpc.StatusCode.INVALID_ARGUMENT, "UPSTREAM_BAD_REQUEST"),
            (Fail(429, "slow down", headers={"x-should-retry": "false"}),
             grpc.StatusCode.RESOURCE_EXHAUSTED, "UPSTREAM_RATE_LIMITED"),
        ]
        for fail, code, reason in cases:
            fake.script(fail)
            err = await rpc_error(chat.stub.Chat(ask(), metadata=alice))
            assert (err.code(), error_reason(err)) == (code, reason), fail
            assert (err.details() or "").startswith("claude: "), err.details()
            assert violations(err) == []  # the request was well-formed; the provider refused it


async def test_quota_and_in_stream_error(cfg: ConfigHarness, chat: ChatStack) -> None:
    async with FakeUpstream.start("openai") as openai, FakeUpstream.start("openrouter") as router:
        await add_provider(cfg, openai, "oai")
        await add_model(cfg, "oai", "gpt", "gpt-test-1")
        await add_provider(cfg, router, "router")
        await add_model(cfg, "router", "llama", "meta/llama-test")
        alice = await cfg.md(Role.MEMBER, "alice")
        await wait_for_model(chat, alice, "gpt")

        openai.script(Fail(429, "You exceeded your current quota", code="insufficient_quota"))
        err = await rpc_error(chat.stub.Chat(ask(), metadata=alice))
        assert (err.code(), error_reason(err)) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "UPSTREAM_QUOTA_EXHAUSTED")
        assert len(openai.requests) == 1  # never retried

        # OpenRouter reports a failure mid-stream with HTTP 200: the caller
        # keeps what arrived and then gets UNAVAILABLE.
        router.script(Canned(text="partial answer here", chunk_chars=3, error_after=4))
        events: list[rs.ChatEvent] = []
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for event in chat.stub.StreamChat(ask(chat_model="llama"), metadata=alice):
                events.append(event)
        assert (info.value.code(), error_reason(info.value)) == (grpc.StatusCode.UNAVAILABLE,
                                                                 "UPSTREAM_UNAVAILABLE")
        assert (info.value.details() or "").startswith("router: ")
        assert "Provider returned error" in (info.value.details() or "")
        assert events[0].resolution.model.name == "llama"
        assert any(e.HasField("text_delta") for e in events)
        assert not any(e.HasField("finish") for e in events)


SLOW = Canned(text="x" * 400, chunk_chars=1, delay_s=0.02)


async def disconnects(fake: FakeUpstream, count: int) -> None:
    """Until the fake has seen `count` clients hang up mid-reply."""
    async def check() -> None:
        assert fake.disconnects == count, fake.disconnects
    await eventually(check, timeout=2.0)


async def test_cancel_and_deadline_close_the_upstream(cfg: ConfigHarness, chat: ChatStack) -> None:
    async with FakeUpstream.start("openai") as fake:
        await add_provider(cfg, fake, "oai")
        await add_model(cfg, "oai", "gpt", "gpt-test-1")
        alice = await cfg.md(Role.MEMBER, "alice")
        await wait_for_model(chat, alice, "gpt")
        fake.default = SLOW  # 400 events 20 ms apart: 8 s if nobody hangs up

        # The client cancels after the first text.
        call = chat.stub.StreamChat(ask(), metadata=alice)
        async for event in call:
            if event.HasField("text_delta"):
                break
        call.cancel()
        await fake.wait_for_disconnect(timeout=2.0)
        assert fake.disconnects == 1

        # The caller's deadline passes mid-stream.
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in chat.stub.StreamChat(ask(), metadata=alice, timeout=0.5):
                pass
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        await disconnects(fake, 2)

        # A unary reply whose body never finishes: the deadline ends it as well.
        fake.script(StreamReply([b'{"id": "resp_1", ', b'"object": "response"}'], stall_after=1))
        err = await rpc_error(chat.stub.Chat(ask(), metadata=alice, timeout=0.5))
        assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        await disconnects(fake, 3)


async def test_stalled_stream_is_upstream_timeout(cfg: ConfigHarness) -> None:
    async with (FakeUpstream.start("bedrock") as fake,
                start_chat_stack(cfg, idle_timeout_seconds=0.3) as stack):
        await add_provider(cfg, fake, "aws")
        await add_model(cfg, "aws", "claude", "us.anthropic.claude-test-1:0")
        alice = await cfg.md(Role.MEMBER, "alice")
        await wait_for_model(stack, alice, "claude")
        fake.script(Canned(text="abcdefgh", chunk_chars=1, stall_after=4))
        events: list[rs.ChatEvent] = []
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for event in stack.stub.StreamChat(ask(), metadata=alice):
                events.append(event)
        assert (info.value.code(), error_reason(info.value)) == (grpc.StatusCode.DEADLINE_EXCEEDED,
                                                                 "UPSTREAM_TIMEOUT")
        assert "aws: " in (info.value.details() or "")
        assert events[0].HasField("resolution")
        await fake.wait_for_disconnect(timeout=2.0)


# --------------------------------------------------------------------------- before any upstream call


async def test_no_usable_model(cfg: ConfigHarness, chat: ChatStack) -> None:
    alice = await cfg.md(Role.MEMBER, "alice")
    err = await rpc_error(chat.stub.Chat(ask(), metadata=alice))
    assert (err.code(), error_reason(err)) == (grpc.StatusCode.FAILED_PRECONDITION, "NO_USABLE_MODEL")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in chat.stub.StreamChat(ask(), metadata=alice):
            pass
    assert error_reason(info.value) == "NO_USABLE_MODEL"


async def test_bad_requests_name_the_field(cfg: ConfigHarness, chat: ChatStack) -> None:
    alice = await cfg.md(Role.MEMBER, "alice")
    bad_tool = rs.ToolDefinition(name="get weather!")
    request = ask(
        rs.ChatMessage(role=rs.CHAT_ROLE_USER, text="hi"),
        rs.ChatMessage(text="no role"),
        rs.ChatMessage(role=rs.CHAT_ROLE_TOOL, text="18C"),
        rs.ChatMessage(role=rs.CHAT_ROLE_ASSISTANT,
                       tool_calls=[rs.ToolCall(id="c1", name="get_weather", arguments_json="[1]")]),
        tools=(bad_tool, WEATHER, WEATHER))
    err = await rpc_error(chat.stub.Chat(request, metadata=alice))
    assert (err.code(), error_reason(err)) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD")
    assert violations(err) == ["messages[1].role", "messages[2].tool_call_id",
                               "messages[3].tool_calls[0].arguments_json", "tools[0].name", "tools[2].name"]
    err = await rpc_error(chat.stub.Chat(rs.ChatRequest(), metadata=alice))
    assert violations(err) == ["messages"]
    # Bad input fails before resolution: no NO_USABLE_MODEL although nothing is configured.
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in chat.stub.StreamChat(rs.ChatRequest(), metadata=alice):
            pass
    assert error_reason(info.value) == "INVALID_FIELD"



async def test_caller_mistakes_are_invalid_argument_not_internal(cfg: ConfigHarness, chat: ChatStack) -> None:
    """Input config_svc would refuse, or that would crash a parser, is the
    caller's mistake (INVALID_ARGUMENT naming the field), never INTERNAL."""
    service = await cfg.md(Role.SERVICE, "agent-runner")
    for bad in (" bob", "b" * 300, "bo\x07b", "bob\n"):
        err = await rpc_error(chat.stub.Chat(ask(user=bad), metadata=service))
        assert (err.code(), violations(err)) == (grpc.StatusCode.INVALID_ARGUMENT, ["user"]), repr(bad)
        err = await rpc_error(chat.stub.ResolveModel(
            rs.ResolveModelRequest(user=bad, context=pb.OVERRIDE_CONTEXT_ROOT), metadata=cfg.admin))
        assert (err.code(), violations(err)) == (grpc.StatusCode.INVALID_ARGUMENT, ["user"]), repr(bad)
        err = await rpc_error(chat.stub.ListAvailableModels(rs.ListAvailableModelsRequest(user=bad),
                                                            metadata=service))
        assert (err.code(), violations(err)) == (grpc.StatusCode.INVALID_ARGUMENT, ["user"]), repr(bad)

    alice = await cfg.md(Role.MEMBER, "alice")
    deep = "[" * 200_000  # json.loads: RecursionError
    huge = json.dumps({"text": "x" * 1_000_001})
    request = ask(
        rs.ChatMessage(role=rs.CHAT_ROLE_USER, text="hi"),
        rs.ChatMessage(role=rs.CHAT_ROLE_ASSISTANT, tool_calls=[
            rs.ToolCall(id="c1", name="get_weather", arguments_json=deep),
            rs.ToolCall(id="c3", name="get_weather\n", arguments_json="{}")]),
        tools=(rs.ToolDefinition(name="get_weather\n"),))
    err = await rpc_error(chat.stub.Chat(request, metadata=alice))
    assert (err.code(), error_reason(err)) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD")
    assert violations(err) == ["messages[1].tool_calls[0].arguments_json",
                               "messages[1].tool_calls[1].name", "tools[0].name"]
    # Over its bound, a field is refused at the edge, before anything parses it.
    request = ask(rs.ChatMessage(role=rs.CHAT_ROLE_ASSISTANT, tool_calls=[
        rs.ToolCall(id="c2", name="get_weather", arguments_json=huge)]))
    err = await rpc_error(chat.stub.Chat(request, metadata=alice))
    assert violations(err) == ["messages[0].tool_calls[0].arguments_json"]


async def test_ambient_bedrock_uses_the_region_the_check_found(
        cfg: ConfigHarness, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The region only in the AWS profile: the ambient check counts it, so
    the call must sign with it too (not fail as the caller's bad request).
    No region anywhere: bedrock without a key is unusable, never AMBIENT_AWS."""
    region = "eu-west-3"
    ambient_aws_env(monkeypatch)
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    profile = tmp_path / "aws-config"
    profile.write_text(f"[default]\nregion = {region}\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(profile))
    async with (FakeUpstream.start("bedrock", api_key=None, region=region) as fake,
                start_chat_stack(cfg, ambient_aws=True) as stack):
        await add_provider(cfg, fake, "up", api_key="")
        await add_model(cfg, "up", "m1", IDENTIFIERS["bedrock"])
        alice = await cfg.md(Role.MEMBER, "alice")
        resolved = await wait_for_model(stack, alice, "m1")
        assert resolved.credential == cs.CREDENTIAL_SOURCE_AMBIENT_AWS
        fake.script(Canned(text="Bonjour."))
        assert (await stack.stub.Chat(ask(), metadata=alice)).text == "Bonjour."
        assert f"/{region}/bedrock/aws4_request" in fake.requests[-1].headers["authorization"]

    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-such-config"))
    async with (FakeUpstream.start("bedrock", api_key=None) as fake,
                start_chat_stack(cfg, ambient_aws=True) as stack):
        await add_provider(cfg, fake, "up2", api_key="")
        credential = await eventually(lambda: stack.stub.ResolveCredential(
            rs.ResolveCredentialRequest(provider="up2"), metadata=alice))
        assert (credential.source, credential.fixable_by) == (cs.CREDENTIAL_SOURCE_UNAVAILABLE, rs.FIXABLE_BY_ADMIN)
        err = await rpc_error(stack.stub.Chat(ask(), metadata=alice))
        assert (err.code(), error_reason(err)) == (grpc.StatusCode.FAILED_PRECONDITION, "NO_USABLE_MODEL")
        assert not fake.requests
