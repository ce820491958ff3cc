"""Spend-limit and billing refusals are quota exhaustion: never retried,
never reported as rate limiting, whatever status they come with. Plain
rate limits stay retryable."""

from __future__ import annotations

import pytest

from modelplane_server.resolver_svc.upstream import UpstreamClient, UpstreamError, collect
from tests.fakes import Canned, Fail, FakeUpstream
from tests.unit.upstream.conftest import CONVERSATION, ManualClock, target_for

QUOTA = [
    # Anthropic: error.details.error_code names the cause (anthropic SDK types/shared/*_error.py).
    ("anthropic", Fail(429, "Your organization reached its monthly spend limit.", error_code="enforced_spend_limit_reached",
                       headers={"x-should-retry": "true"})),
    ("anthropic", Fail(429, "Contract spend limit reached.", error_code="contract_spend_limit_reached")),
    ("anthropic", Fail(402, "Linked organization has no credit.", code="billing_error",
                       error_code="linked_organization_spend_limit_reached")),
    ("anthropic", Fail(402, "Billing unavailable.", error_code="linked_organization_billing_unavailable")),
    # A user-set spend limit and an empty balance come as plain 400s.
    ("anthropic", Fail(400, "You have reached your specified API usage limits. You will regain access on 2026-12-01.")),
    ("anthropic", Fail(400, "Your credit balance is too low to access the Anthropic API.")),
    # OpenAI: type insufficient_quota, code naming which limit (or the type again, in older replies).
    ("openai", Fail(429, "You exceeded your current quota.", code="credit_balance_exhausted",
                    error_type="insufficient_quota")),
    ("openai", Fail(429, "Project spend limit exceeded.", code="project_spend_limit_exceeded",
                    error_type="insufficient_quota")),
    ("azure-openai", Fail(429, "Organization spend limit.", code="organization_spend_limit_exceeded")),
    ("openai-compatible", Fail(429, "quota", code=None, error_type="insufficient_quota")),
    # Gateways and Gemini: HTTP 402 when the credits are gone.
    ("openrouter", Fail(402, "Insufficient credits. Add more using https://openrouter.ai/credits")),
    ("vercel-ai-gateway", Fail(402, "Insufficient funds")),
    ("google", Fail(402, "Your prepayment credits are depleted.", code="RESOURCE_EXHAUSTED")),
    # Bedrock: a Marketplace subscription that cannot be billed.
    ("bedrock", Fail(403, "Model access is denied due to INVALID_PAYMENT_INSTRUMENT:A valid payment instrument "
                          "must be provided.", code="AccessDeniedException")),
]


@pytest.mark.parametrize(("kind", "fail"), QUOTA, ids=[f"{k}-{f.status}-{f.error_code or f.code}" for k, f in QUOTA])
@pytest.mark.parametrize("streamed", [False, True])
async def test_quota_exhaustion_is_not_retried(kind: str, fail: Fail, streamed: bool, client: UpstreamClient,
                                               clock: ManualClock) -> None:
    async with FakeUpstream.start(kind) as fake:
        fake.default = fail
        with pytest.raises(UpstreamError) as info:
            if streamed:
                await collect(client.stream(target_for(fake), CONVERSATION))
            else:
                await client.chat(target_for(fake), CONVERSATION)
        assert len(fake.requests) == 1  # one try: waiting does not bring money back
    assert info.value.kind == "insufficient_quota" and not info.value.retryable
    assert clock.sleeps == []


@pytest.mark.parametrize(("kind", "fail"), [
    ("anthropic", Fail(429, "Number of request tokens has exceeded your per-minute rate limit")),
    ("anthropic", Fail(429, "Ramp limit exceeded.", error_code="ramp_limit_exceeded")),
    ("openai", Fail(429, "Rate limit reached for requests", code="rate_limit_exceeded", error_type="requests")),
    ("bedrock", Fail(429, "Too many tokens, please wait before trying again.", code="ThrottlingException")),
    ("google", Fail(429, "Resource has been exhausted (e.g. check quota).", code="RESOURCE_EXHAUSTED")),
])
async def test_rate_limits_stay_retryable(kind: str, fail: Fail, client: UpstreamClient) -> None:
    async with FakeUpstream.start(kind) as fake:
        fake.script(Fail(fail.status, fail.message, fail.code, {"retry-after": "0"}, fail.error_type,
                         fail.error_code), Canned(text="second try"))
        result = await client.chat(target_for(fake), CONVERSATION)
        assert len(fake.requests) == 2
    assert result.text == "second try"


async def test_quota_failure_inside_a_responses_stream() -> None:
    from modelplane_server.resolver_svc.upstream.openai_responses import _failed
    from modelplane_server.resolver_svc.upstream.openai_common import in_stream_error
    from modelplane_server.resolver_svc.upstream import UpstreamTarget

    target = UpstreamTarget("openai", "https://x", "k", None, "m")
    failed = _failed({"error": {"code": "insufficient_quota", "message": "quota"}}, target)
    event = in_stream_error({"type": "insufficient_quota", "code": "credit_balance_exhausted", "message": "q"}, target)
    assert (failed.kind, failed.retryable) == ("insufficient_quota", False)
    assert (event.kind, event.retryable) == ("insufficient_quota", False)
