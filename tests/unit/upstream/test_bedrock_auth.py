"""Bedrock auth: SigV4 recomputed and checked by the fake, bearer mode, and
the control-plane host used for probing."""

from __future__ import annotations

import pytest

from modelplane_server.resolver_svc.upstream import ChatMessage, UpstreamClient, UpstreamError, UpstreamTarget
from modelplane_server.resolver_svc.upstream.aws import static_credentials
from modelplane_server.resolver_svc.upstream.bedrock_converse import control_plane_base
from tests.fakes import TEST_AWS_CREDENTIALS, Canned, FakeUpstream
from tests.unit.upstream.conftest import CONVERSATION, ManualClock

MODEL = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"


def sigv4_target(fake: FakeUpstream, region: str = "us-east-1") -> UpstreamTarget:
    return UpstreamTarget("bedrock", fake.base_url, None, region, MODEL)


async def test_sigv4_request_verified_by_fake(client: UpstreamClient) -> None:
    async with FakeUpstream.start("bedrock", api_key=None) as fake:
        fake.default = Canned(text="signed ok")
        result = await client.chat(sigv4_target(fake), CONVERSATION)
        [request] = fake.requests
    assert result.text == "signed ok"
    assert request.headers["authorization"].startswith(
        f"AWS4-HMAC-SHA256 Credential={TEST_AWS_CREDENTIALS.access_key}/"
    )
    assert "/us-east-1/bedrock/aws4_request" in request.headers["authorization"]
    assert request.headers["x-amz-security-token"] == TEST_AWS_CREDENTIALS.token
    assert request.path == "/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse"


async def test_sigv4_stream_and_models(client: UpstreamClient) -> None:
    async with FakeUpstream.start("bedrock", api_key=None) as fake:
        from modelplane_server.resolver_svc.upstream import collect

        assert (await collect(client.stream(sigv4_target(fake), CONVERSATION))).finish_reason == "stop"
        assert await client.list_models(sigv4_target(fake)) == fake.models


async def test_wrong_secret_is_rejected(clock: ManualClock) -> None:
    wrong = UpstreamClient(
        sleep=clock.sleep,
        clock=clock,
        trust_env=False,
        aws_credentials=static_credentials(
            TEST_AWS_CREDENTIALS.access_key, "not-the-secret", TEST_AWS_CREDENTIALS.token
        ),
    )
    try:
        async with FakeUpstream.start("bedrock", api_key=None) as fake:
            with pytest.raises(UpstreamError) as info:
                await wrong.chat(sigv4_target(fake), CONVERSATION)
            assert len(fake.requests) == 1
    finally:
        await wrong.aclose()
    assert info.value.kind == "auth_failed"
    assert info.value.provider_code == "InvalidSignatureException"
    assert "not-the-secret" not in str(info.value)


async def test_region_mismatch_is_refused(client: UpstreamClient) -> None:
    async with FakeUpstream.start("bedrock", api_key=None, region="eu-central-1") as fake:
        with pytest.raises(UpstreamError) as info:
            await client.chat(sigv4_target(fake, region="us-east-1"), CONVERSATION)
    assert info.value.kind == "auth_failed"


async def test_bearer_mode(client: UpstreamClient) -> None:
    async with FakeUpstream.start("bedrock") as fake:
        target = UpstreamTarget("bedrock", fake.base_url, fake.api_key, "us-west-2", MODEL)
        await client.chat(target, [ChatMessage("user", "hi")])
        [request] = fake.requests
    assert request.headers["authorization"] == f"Bearer {fake.api_key}"
    assert "x-amz-date" not in request.headers


async def test_wrong_bearer_token(client: UpstreamClient) -> None:
    async with FakeUpstream.start("bedrock") as fake:
        target = UpstreamTarget("bedrock", fake.base_url, "ABSKwrongwrongwrong", "us-west-2", MODEL)
        with pytest.raises(UpstreamError) as info:
            await client.chat(target, [ChatMessage("user", "hi")])
    assert info.value.kind == "auth_failed"
    assert "ABSKwrongwrongwrong" not in str(info.value)


def test_sigv4_without_region_is_refused() -> None:
    from modelplane_server.resolver_svc.upstream import protocol_for

    target = UpstreamTarget("bedrock", "https://bedrock-runtime.us-east-1.amazonaws.com", None, None, MODEL)
    with pytest.raises(UpstreamError, match="region"):
        protocol_for(target).build_request(target, CONVERSATION, [], stream=False)


@pytest.mark.parametrize(
    ("runtime", "control"),
    [
        ("https://bedrock-runtime.eu-west-1.amazonaws.com", "https://bedrock.eu-west-1.amazonaws.com"),
        (
            "https://bedrock-runtime-fips.us-east-1.amazonaws.com/",
            "https://bedrock-fips.us-east-1.amazonaws.com",
        ),
        (
            "https://vpce-123.bedrock-runtime.us-east-1.vpce.amazonaws.com",
            "https://vpce-123.bedrock-runtime.us-east-1.vpce.amazonaws.com",
        ),
        ("http://127.0.0.1:9999", "http://127.0.0.1:9999"),
    ],
)
def test_control_plane_base(runtime: str, control: str) -> None:
    assert control_plane_base(runtime) == control


def test_fake_verifier_detects_a_tampered_body() -> None:
    from modelplane_server.resolver_svc.upstream.aws import sign
    from modelplane_server.resolver_svc.upstream.protocol import WireRequest
    from tests.fakes import RecordedRequest
    from tests.fakes.bedrock_wire import verify_sigv4
    from botocore.credentials import ReadOnlyCredentials

    c = TEST_AWS_CREDENTIALS
    wire = WireRequest(
        "POST",
        "http://127.0.0.1:8080/model/m%3A0/converse",
        {"Content-Type": "application/json"},
        b'{"messages":[]}',
        sigv4=("bedrock", "us-east-1"),
    )
    signed = sign(wire, ReadOnlyCredentials(c.access_key, c.secret_key, c.token))
    headers = {k.lower(): v for k, v in signed.headers.items()} | {"host": "127.0.0.1:8080"}

    def check(body: bytes) -> str | None:
        request = RecordedRequest("POST", "/model/m%3A0/converse", headers, body)
        return verify_sigv4(request, c.access_key, c.secret_key, c.token, "us-east-1")

    assert check(b'{"messages":[]}') is None
    assert check(b'{"messages":[1]}') == "InvalidSignatureException"
