"""Usage normalisation: one conversation, the same numbers and the same
price on every provider, whatever each one's counters mean."""

from __future__ import annotations

import pytest

from modelplane_server.domain.types import Pricing
from modelplane_server.domain.usage import cost_micro_usd, micro_to_usd
from modelplane_server.resolver_svc.upstream import UpstreamClient, Usage, collect, context_usage
from modelplane_server.resolver_svc.usage.meter import tokens
from tests.fakes import KINDS, Canned, CannedUsage, FakeUpstream
from tests.unit.upstream.conftest import CONVERSATION, target_for

PRICES = Pricing(input_per_mtok=3.0, output_per_mtok=15.0, cache_read_per_mtok=0.3, cache_write_per_mtok=3.75)
# 1000 plain input, 4000 cache reads, 600 output of which 200 reasoning.
CONVERSATION_USAGE = CannedUsage(input=1000, cache_read=4000, output=600, reasoning=200)
EXPECTED_MICRO_USD = 1000 * 3 + 4000 * 3 // 10 + 600 * 15  # a price per 1M tokens is micro-USD per token


def cost_usd(usage: Usage, pricing: Pricing) -> float | None:
    """What the chat answer reports (chat.gateway): the domain's cost in USD."""
    return micro_to_usd(cost_micro_usd(tokens(usage), pricing))



@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("streamed", [False, True])
async def test_same_conversation_costs_the_same_everywhere(
    kind: str, streamed: bool, client: UpstreamClient
) -> None:
    async with FakeUpstream.start(kind) as fake:
        fake.default = Canned(usage=CONVERSATION_USAGE, reasoning="r" * 10)
        target = target_for(fake)
        result = await (
            collect(client.stream(target, CONVERSATION)) if streamed else client.chat(target, CONVERSATION)
        )
    u = result.usage
    assert (u.input_tokens, u.cache_read_tokens, u.cache_write_tokens, u.output_tokens) == (
        1000,
        4000,
        0,
        600,
    )
    assert cost_micro_usd(tokens(u), PRICES) == EXPECTED_MICRO_USD
    # Bedrock reports no reasoning count (thinking is inside outputTokens).
    assert u.reasoning_tokens == (0 if kind == "bedrock" else 200)


@pytest.mark.parametrize("kind", ["anthropic", "bedrock", "openrouter"])
async def test_cache_writes_are_separated(kind: str, client: UpstreamClient) -> None:
    async with FakeUpstream.start(kind) as fake:
        fake.default = Canned(usage=CannedUsage(input=10, cache_read=0, cache_write=2000, output=5))
        u = (await client.chat(target_for(fake), CONVERSATION)).usage
    assert (u.input_tokens, u.cache_write_tokens) == (10, 2000)
    assert cost_usd(u, PRICES) == pytest.approx((10 * 3.0 + 2000 * 3.75 + 5 * 15.0) / 1e6)


def test_unpriced_model_has_no_cost() -> None:
    assert cost_usd(Usage(input_tokens=5, output_tokens=5), Pricing()) is None
    assert cost_usd(Usage(), Pricing()) is None


def test_missing_output_price_with_output_tokens_is_no_cost() -> None:
    assert cost_usd(Usage(input_tokens=5, output_tokens=5), Pricing(input_per_mtok=1.0)) is None
    # ...but it does not matter when there were no output tokens.
    assert cost_usd(Usage(input_tokens=1_000_000), Pricing(input_per_mtok=1.0)) == pytest.approx(1.0)


def test_cache_prices_fall_back_to_input_price() -> None:
    usage = Usage(
        input_tokens=1_000_000, cache_read_tokens=1_000_000, cache_write_tokens=1_000_000, output_tokens=0
    )
    assert cost_usd(usage, Pricing(input_per_mtok=2.0, output_per_mtok=8.0)) == pytest.approx(6.0)
    assert cost_usd(usage, Pricing(input_per_mtok=2.0, output_per_mtok=8.0, cache_read_per_mtok=0.2,
                                   cache_write_per_mtok=2.5)) == pytest.approx(
        4.7
    )


def test_context_usage_counts_whole_prompt_and_reply() -> None:
    usage = Usage(
        input_tokens=30_000, cache_read_tokens=100_000, cache_write_tokens=5_000, output_tokens=5_000
    )
    ratio, due = context_usage(usage, 200_000, 70)
    assert ratio == pytest.approx(0.7)
    assert due is True
    assert context_usage(usage, 200_001, 70)[1] is False
    assert context_usage(Usage(), 1000, 0) == (0.0, True)
    with pytest.raises(ValueError):
        context_usage(usage, 0, 70)


@pytest.mark.parametrize("kind", KINDS)
async def test_every_counter_is_read_and_both_paths_agree(kind: str, client: UpstreamClient) -> None:
    """Cache reads, cache writes (Anthropic's TTL split and flat counter,
    Converse's cacheDetails, Responses' and Chat's cache_write_tokens) and
    reasoning (Anthropic's thinking_tokens, OpenAI's reasoning_tokens) come
    out the same through chat() and stream(). Gemini reports no cache
    writes; Converse no reasoning count."""
    writes = 0 if kind == "google" else 700
    canned = Canned(usage=CannedUsage(input=1000, cache_read=4000, cache_write=writes, output=600, reasoning=200),
                    reasoning="r" * 10)
    async with FakeUpstream.start(kind) as fake:
        fake.default = canned
        unary = await client.chat(target_for(fake), CONVERSATION)
        streamed = await collect(client.stream(target_for(fake), CONVERSATION))
    assert unary.usage == streamed.usage == Usage(
        input_tokens=1000, cache_read_tokens=4000, cache_write_tokens=writes, output_tokens=600,
        reasoning_tokens=0 if kind == "bedrock" else 200)
    assert unary.reasoning == streamed.reasoning == "r" * 10
