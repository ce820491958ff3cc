"""HTTP/2 to upstreams that offer it (UpstreamClient(http2=True)): ALPN on
https decides, plain http:// stays HTTP/1.1, and signing, auth and
streaming behave the same on both."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest

from modelplane_server.resolver_svc.upstream import ChatMessage, TextDelta, UpstreamClient, UpstreamTarget
from modelplane_server.resolver_svc.upstream.aws import static_credentials
from modelplane_server.resolver_svc.upstream.pools import REQUESTS_PER_POOL
from tests.certs import CertificateAuthority
from tests.fakes import TEST_AWS_CREDENTIALS, TEST_REGION, Canned, FakeUpstream, server_tls

HI = [ChatMessage("user", "hi")]


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority(Path(tmp_path_factory.mktemp("h2-ca")))


def tls(ca: CertificateAuthority, *, http2: bool) -> ssl.SSLContext:
    pem = ca.issue("fake-upstream", server=True)
    return server_tls(str(pem.cert), str(pem.key), http2=http2)


def client(ca: CertificateAuthority) -> UpstreamClient:
    c = TEST_AWS_CREDENTIALS
    return UpstreamClient(trust_env=False, verify=ssl.create_default_context(cafile=str(ca.cert_file)), http2=True,
                          aws_credentials=static_credentials(c.access_key, c.secret_key, c.token))


def target(fake: FakeUpstream) -> UpstreamTarget:
    key = None if fake.kind == "bedrock" else fake.api_key
    region = TEST_REGION if fake.kind == "bedrock" else None
    return UpstreamTarget(fake.kind, fake.base_url, key, region, "model-a")


@pytest.mark.parametrize("kind", ["openai", "anthropic", "bedrock"])  # bedrock: SigV4 over HTTP/2's :authority
async def test_a_chat_goes_over_http2_when_the_upstream_offers_it(ca: CertificateAuthority, kind: str) -> None:
    upstream = client(ca)
    async with FakeUpstream.start(kind, tls=tls(ca, http2=True),
                                  api_key=None if kind == "bedrock" else "default") as fake:
        fake.default = Canned(text="over h2", chunk_chars=3)
        try:
            reply = await upstream.chat(target(fake), HI)
            streamed = [e async for e in upstream.stream(target(fake), HI)]
        finally:
            await upstream.aclose()
    assert reply.text == "over h2"
    assert "".join(e.text for e in streamed if isinstance(e, TextDelta)) == "over h2"
    assert [r.http_version for r in fake.requests] == ["HTTP/2", "HTTP/2"]


async def test_http1_when_the_upstream_offers_only_http1_or_plain_http(ca: CertificateAuthority) -> None:
    upstream = client(ca)
    try:
        async with FakeUpstream.start("openai", tls=tls(ca, http2=False)) as https_fake, \
                FakeUpstream.start("openai") as http_fake:
            for fake in (https_fake, http_fake):
                assert (await upstream.chat(target(fake), HI)).text == "Hello from the fake."
                assert [e async for e in upstream.stream(target(fake), HI)]
    finally:
        await upstream.aclose()
    assert https_fake.base_url.startswith("https://") and http_fake.base_url.startswith("http://")
    assert [r.http_version for r in https_fake.requests + http_fake.requests] == ["HTTP/1.1"] * 4


async def test_concurrent_streams_share_one_http2_connection(ca: CertificateAuthority) -> None:
    upstream = client(ca)
    async with FakeUpstream.start("openai", tls=tls(ca, http2=True)) as fake:
        fake.default = Canned(text="abcdef", chunk_chars=1, delay_s=0.01)
        try:
            streams = await asyncio.gather(*(_text(upstream, target(fake)) for _ in range(REQUESTS_PER_POOL)))
        finally:
            await upstream.aclose()
    assert streams == ["abcdef"] * REQUESTS_PER_POOL
    assert fake.connections_opened == 1  # over HTTP/1.1 this would be one per stream


async def test_http2_is_off_unless_asked_for(ca: CertificateAuthority) -> None:
    """httpcore does not reset an HTTP/2 stream closed early (encode/httpcore#943),
    so a cancelled chat would not stop the provider: HTTP/2 is opt-in."""
    upstream = UpstreamClient(trust_env=False, verify=ssl.create_default_context(cafile=str(ca.cert_file)))
    async with FakeUpstream.start("openai", tls=tls(ca, http2=True)) as fake:
        try:
            await upstream.chat(target(fake), HI)
        finally:
            await upstream.aclose()
    assert fake.requests[-1].http_version == "HTTP/1.1"


async def _text(upstream: UpstreamClient, t: UpstreamTarget) -> str:
    return "".join([e.text async for e in upstream.stream(t, HI) if isinstance(e, TextDelta)])
