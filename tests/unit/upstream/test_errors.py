"""Error mapping per provider, in-stream errors, and credential scrubbing."""

from __future__ import annotations

import json

import pytest

from modelplane_server.resolver_svc.upstream import UpstreamClient, UpstreamError, UpstreamTarget, collect, scrub
from modelplane_server.resolver_svc.upstream.openai_responses import OpenAIResponsesProtocol
from tests.fakes import Canned, Fail, FakeUpstream
from tests.unit.upstream.conftest import CONVERSATION, target_for

CANARY = "sk-canary-DO-NOT-LEAK-4242424242424242"


@pytest.mark.parametrize(
    ("kind", "fail", "expected"),
    [
        ("openai", Fail(401), "auth_failed"),
        ("openai", Fail(404, "The model `nope` does not exist"), "model_not_found"),
        (
            "openai",
            Fail(400, "This model's maximum context length is 128000 tokens", code="context_length_exceeded"),
            "context_too_long",
        ),
        (
            "openai",
            Fail(429, "You exceeded your current quota", code="insufficient_quota"),
            "insufficient_quota",
        ),
        ("azure-openai", Fail(429, "Rate limit is exceeded."), "rate_limited"),
        (
            "google",
            Fail(400, "The input token count exceeds the maximum number of tokens allowed"),
            "context_too_long",
        ),
        ("openrouter", Fail(402, "Insufficient credits"), "insufficient_quota"),
        ("anthropic", Fail(529, "Overloaded"), "overloaded"),
        ("anthropic", Fail(400, "prompt is too long: 210000 tokens > 200000 maximum"), "context_too_long"),
        ("anthropic", Fail(403), "auth_failed"),
        ("anthropic", Fail(413), "context_too_long"),
        (
            "bedrock",
            Fail(400, "Input is too long for requested model.", code="ValidationException"),
            "context_too_long",
        ),
        ("bedrock", Fail(403, code="AccessDeniedException"), "auth_failed"),
        ("bedrock", Fail(404, code="ResourceNotFoundException"), "model_not_found"),
        ("bedrock", Fail(400, code="ServiceQuotaExceededException"), "insufficient_quota"),
        ("bedrock", Fail(408, code="ModelTimeoutException"), "timeout"),
    ],
)
async def test_error_kinds(kind: str, fail: Fail, expected: str, client: UpstreamClient) -> None:
    async with FakeUpstream.start(kind) as fake:
        fake.default = fail
        with pytest.raises(UpstreamError) as info:
            await client.chat(target_for(fake), CONVERSATION)
    assert info.value.kind == expected
    assert info.value.http_status == fail.status


@pytest.mark.parametrize("kind", ["openai", "openrouter", "vercel-ai-gateway", "google", "openai-compatible"])
async def test_echoed_key_is_scrubbed(kind: str, client: UpstreamClient) -> None:
    async with FakeUpstream.start(kind) as fake:
        target = target_for(fake, api_key=CANARY)
        with pytest.raises(UpstreamError) as info:
            await client.chat(target, CONVERSATION)
        assert CANARY in fake.requests[0].headers["authorization"]  # it did travel...
    error = info.value
    assert error.kind == "auth_failed"
    assert "Incorrect API key provided" in error.message  # ...the rest of the message survives...
    for text in (error.message, str(error), repr(error), repr(error.args)):
        assert CANARY not in text  # ...but never the key
        assert "4242424242" not in text


async def test_key_in_anthropic_stream_error_is_scrubbed(client: UpstreamClient) -> None:
    key = "anthropic-canary-key-777777777"
    async with FakeUpstream.start("anthropic", api_key=key) as fake:
        fake.default = Canned(
            error_after=2, error={"type": "api_error", "message": f"upstream said x-api-key: {key}!"}
        )
        with pytest.raises(UpstreamError) as info:
            await collect(client.stream(target_for(fake), CONVERSATION))
    assert key not in str(info.value)
    assert info.value.kind == "unavailable"


def test_scrub_shapes_and_truncation() -> None:
    text = (
        "Authorization: Bearer abcdefghijklmnop123 key sk-proj-abcdef1234567890 "
        "google AIzaSyA1234567890abcdefghijklmnopqrs aws AKIAABCDEFGHIJKLMNOP "
        'and {"api_key": "hunter2hunter2"} '
    ) + "x" * 1000
    cleaned = scrub(text, ("hunter2hunter2",))
    for secret in ("abcdefghijklmnop123", "sk-proj", "AIzaSy", "AKIAABCDEFGHIJKLMNOP", "hunter2"):
        assert secret not in cleaned
    assert len(cleaned) == 500


async def test_openrouter_in_stream_error_with_status_200(client: UpstreamClient) -> None:
    async with FakeUpstream.start("openrouter") as fake:
        fake.default = Canned(
            text="abcdef",
            chunk_chars=1,
            error_after=4,
            error={"code": 429, "message": "Rate limit exceeded upstream"},
        )
        with pytest.raises(UpstreamError) as info:
            await collect(client.stream(target_for(fake), CONVERSATION))
    assert info.value.kind == "rate_limited"
    assert "Rate limit exceeded upstream" in info.value.message


async def test_openrouter_in_stream_server_error(client: UpstreamClient) -> None:
    async with FakeUpstream.start("openrouter") as fake:
        fake.default = Canned(
            text="abcdef",
            chunk_chars=1,
            error_after=4,
            error={"code": "server_error", "message": "Provider disconnected"},
        )
        with pytest.raises(UpstreamError) as info:
            await collect(client.stream(target_for(fake), CONVERSATION))
    assert info.value.kind == "unavailable"


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        ({"type": "overloaded_error", "message": "Overloaded"}, "overloaded"),
        ({"type": "rate_limit_error", "message": "slow"}, "rate_limited"),
        ({"type": "invalid_request_error", "message": "bad"}, "bad_request"),
    ],
)
async def test_anthropic_error_event(error: dict[str, str], kind: str, client: UpstreamClient) -> None:
    async with FakeUpstream.start("anthropic") as fake:
        fake.default = Canned(text="hello world", error_after=6, error=error)
        with pytest.raises(UpstreamError) as info:
            await collect(client.stream(target_for(fake), CONVERSATION))
    assert info.value.kind == kind


async def test_bedrock_exception_frame(client: UpstreamClient) -> None:
    async with FakeUpstream.start("bedrock") as fake:
        fake.default = Canned(
            text="hello world", error_after=2, error={"message": "Too many tokens per minute"}
        )
        with pytest.raises(UpstreamError) as info:
            await collect(client.stream(target_for(fake), CONVERSATION))
    assert info.value.kind == "rate_limited"
    assert info.value.provider_code == "throttlingException"


async def test_responses_error_event(client: UpstreamClient) -> None:
    async with FakeUpstream.start("openai") as fake:
        fake.default = Canned(text="hello world", error_after=4, error={"message": "The server had an error"})
        with pytest.raises(UpstreamError) as info:
            await collect(client.stream(target_for(fake), CONVERSATION))
    assert info.value.kind == "unavailable"
    assert "server had an error" in info.value.message


AZURE_KEY = "0123456789abcdef0123456789abcdef"  # 32 hex: no credential pattern knows this shape


def _azure_target() -> UpstreamTarget:
    return UpstreamTarget(provider_type="azure-openai", base_url="https://x.openai.azure.com/openai/v1",
                          api_key=AZURE_KEY, region=None, model_identifier="dep")


@pytest.mark.parametrize(
    ("code", "message", "kind", "retryable"),
    [
        ("invalid_prompt", "Your prompt was flagged", "bad_request", False),
        ("invalid_image", "The image could not be read", "bad_request", False),
        ("context_length_exceeded", "Input exceeds the context window", "context_too_long", False),
        ("rate_limit_exceeded", "Slow down", "rate_limited", False),
        ("server_error", "The server had an error", "unavailable", True),
        ("overloaded", "Try again later", "overloaded", True),
        (None, "response failed", "bad_request", False),
    ],
)
def test_a_failed_responses_reply_is_classed_by_its_code_and_scrubbed(
    code: str | None, message: str, kind: str, retryable: bool
) -> None:
    """status "failed" in a 200 reply (unary) and response.failed (stream)
    alike: classed by error.code, and the request's own key scrubbed from the
    message even when it has no credential-shaped prefix."""
    protocol = OpenAIResponsesProtocol()
    target = _azure_target()
    error = {"code": code, "message": f"{message} (key {AZURE_KEY})"}
    body = json.dumps({"id": "resp_1", "status": "failed", "error": error, "output": []}).encode()
    with pytest.raises(UpstreamError) as unary:
        protocol.parse_response(body, None, target)
    event = json.dumps({"type": "response.failed", "response": {"status": "failed", "error": error}})
    with pytest.raises(UpstreamError) as streamed:
        protocol.stream_parser(target).feed(f"data: {event}\n\n".encode())
    for info in (unary, streamed):
        assert (info.value.kind, info.value.retryable) == (kind, retryable)
        assert AZURE_KEY not in info.value.message and AZURE_KEY not in str(info.value)
        assert info.value.message.startswith(message)


def test_targets_and_wire_requests_never_print_the_key() -> None:
    target = _azure_target()
    assert AZURE_KEY not in repr(target) and AZURE_KEY not in str(target)
    wire = OpenAIResponsesProtocol().build_request(target, CONVERSATION, [], stream=False)
    assert wire.headers["api-key"] == AZURE_KEY
    assert AZURE_KEY not in repr(wire)
