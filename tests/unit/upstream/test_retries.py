"""Retries: only when allowed, honouring the server's headers, never after
the first event, and never past the caller's deadline."""

from __future__ import annotations

import email.utils
import time

import pytest

from modelplane_server.resolver_svc.upstream import TextDelta, UpstreamClient, UpstreamError, collect
from tests.fakes import Canned, Fail, FakeUpstream
from tests.unit.upstream.conftest import CONVERSATION, ManualClock, target_for


async def test_429_with_retry_after_then_success(client: UpstreamClient, clock: ManualClock) -> None:
    async with FakeUpstream.start("openai") as fake:
        fake.script(Fail(429, headers={"retry-after": "3"}), Canned(text="ok"))
        result = await client.chat(target_for(fake), CONVERSATION)
        assert len(fake.requests) == 2
    assert result.text == "ok"
    assert clock.sleeps == [3.0]


async def test_retry_after_ms_wins_over_retry_after(client: UpstreamClient, clock: ManualClock) -> None:
    async with FakeUpstream.start("anthropic") as fake:
        fake.script(Fail(529, headers={"retry-after-ms": "250", "retry-after": "9"}), Canned())
        await client.chat(target_for(fake), CONVERSATION)
    assert clock.sleeps == [0.25]


async def test_retry_after_http_date(client: UpstreamClient, clock: ManualClock) -> None:
    when = email.utils.formatdate(time.time() + 20, usegmt=True)
    async with FakeUpstream.start("openrouter") as fake:
        fake.script(Fail(503, headers={"retry-after": when}), Canned())
        await client.chat(target_for(fake), CONVERSATION)
    assert len(clock.sleeps) == 1
    assert 17 <= clock.sleeps[0] <= 20


async def test_backoff_grows_with_jitter_then_gives_up(client: UpstreamClient, clock: ManualClock) -> None:
    async with FakeUpstream.start("bedrock") as fake:
        fake.script(*[Fail(429, code="ThrottlingException")] * 4)
        with pytest.raises(UpstreamError) as info:
            await client.chat(target_for(fake), CONVERSATION)
        assert len(fake.requests) == 4
    assert info.value.kind == "rate_limited"
    assert len(clock.sleeps) == 3
    for attempt, delay in enumerate(clock.sleeps):
        step = 0.5 * 2**attempt
        assert 0.75 * step <= delay <= step


@pytest.mark.parametrize(
    ("kind", "fail"),
    [
        ("openai", Fail(429, "You exceeded your current quota", code="insufficient_quota")),
        ("openai", Fail(400, "bad schema")),
        ("anthropic", Fail(401)),
        ("bedrock", Fail(400, "Malformed input request", code="ValidationException")),
        ("openai", Fail(500, headers={"x-should-retry": "false"})),
        ("openai", Fail(429, code="insufficient_quota", headers={"x-should-retry": "true"})),
    ],
)
async def test_no_retry(kind: str, fail: Fail, client: UpstreamClient, clock: ManualClock) -> None:
    async with FakeUpstream.start(kind) as fake:
        fake.script(fail, Canned())
        with pytest.raises(UpstreamError):
            await client.chat(target_for(fake), CONVERSATION)
        assert len(fake.requests) == 1
    assert clock.sleeps == []


@pytest.mark.parametrize("status", [408, 409, 500, 502, 503, 529])
async def test_retry_on_transient_status(status: int, client: UpstreamClient) -> None:
    async with FakeUpstream.start("anthropic") as fake:
        fake.script(Fail(status, headers={"retry-after": "0"}), Canned(text="ok"))
        assert (await client.chat(target_for(fake), CONVERSATION)).text == "ok"
        assert len(fake.requests) == 2


async def test_x_should_retry_true_forces_retry_of_a_400(client: UpstreamClient) -> None:
    async with FakeUpstream.start("anthropic") as fake:
        fake.script(Fail(400, headers={"x-should-retry": "true", "retry-after": "0"}), Canned(text="ok"))
        assert (await client.chat(target_for(fake), CONVERSATION)).text == "ok"


@pytest.mark.parametrize(
    "code",
    [
        "ServiceUnavailableException",
        "ModelNotReadyException",
        "ThrottlingException",
        "InternalServerException",
    ],
)
async def test_bedrock_throttling_family_retries(code: str, client: UpstreamClient) -> None:
    async with FakeUpstream.start("bedrock") as fake:
        fake.script(Fail(503 if "Unavailable" in code else 429, code=code), Canned(text="ok"))
        assert (await client.chat(target_for(fake), CONVERSATION)).text == "ok"
        assert len(fake.requests) == 2


async def test_stream_retries_before_first_event(client: UpstreamClient, clock: ManualClock) -> None:
    async with FakeUpstream.start("openai-compatible") as fake:
        fake.script(Fail(503, headers={"retry-after": "1"}), Canned(text="streamed"))
        result = await collect(client.stream(target_for(fake), CONVERSATION))
        assert len(fake.requests) == 2
    assert result.text == "streamed"
    assert clock.sleeps == [1.0]


async def test_in_stream_overload_before_any_event_is_retried(client: UpstreamClient) -> None:
    async with FakeUpstream.start("anthropic") as fake:
        # message_start and ping reach the client, but neither is an event for the caller.
        fake.script(Canned(error_after=2), Canned(text="second try"))
        result = await collect(client.stream(target_for(fake), CONVERSATION))
        assert len(fake.requests) == 2
    assert result.text == "second try"


@pytest.mark.parametrize("kind", ["openrouter", "anthropic", "bedrock"])
async def test_no_retry_after_first_event(kind: str, client: UpstreamClient) -> None:
    after = {"openrouter": 4, "anthropic": 5, "bedrock": 3}[kind]
    async with FakeUpstream.start(kind) as fake:
        fake.script(Canned(text="partial text here", chunk_chars=2, error_after=after), Canned(text="never"))
        seen: list[str] = []
        with pytest.raises(UpstreamError) as info:
            async for event in client.stream(target_for(fake), CONVERSATION):
                if isinstance(event, TextDelta):
                    seen.append(event.text)
        assert len(fake.requests) == 1
    assert seen  # the caller did get text before the failure
    assert info.value.kind in ("unavailable", "overloaded", "rate_limited")


async def test_deadline_bounds_retries(client: UpstreamClient, clock: ManualClock) -> None:
    async with FakeUpstream.start("openai") as fake:
        fake.script(Fail(429, headers={"retry-after": "5"}), Canned())
        with pytest.raises(UpstreamError) as info:
            await client.chat(target_for(fake), CONVERSATION, deadline=clock.now + 2)
        assert len(fake.requests) == 1
    assert info.value.kind == "rate_limited"
    assert clock.sleeps == []


async def test_server_delay_beyond_cap_is_not_waited_for(client: UpstreamClient, clock: ManualClock) -> None:
    async with FakeUpstream.start("openai") as fake:
        fake.script(Fail(429, headers={"retry-after": "3600"}), Canned())
        with pytest.raises(UpstreamError):
            await client.chat(target_for(fake), CONVERSATION)
    assert clock.sleeps == []


async def test_connection_refused_is_retried_then_unavailable(clock: ManualClock) -> None:
    from modelplane_server.resolver_svc.upstream import UpstreamTarget

    async with FakeUpstream.start("openai") as fake:
        dead_url = fake.base_url
    client = UpstreamClient(sleep=clock.sleep, clock=clock, trust_env=False)
    try:
        with pytest.raises(UpstreamError) as info:
            await client.chat(UpstreamTarget("openai", dead_url, "k", None, "m"), CONVERSATION)
    finally:
        await client.aclose()
    assert info.value.kind == "unavailable"
    assert len(clock.sleeps) == 3
