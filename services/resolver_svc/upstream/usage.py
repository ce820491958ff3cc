"""Cost and context-window arithmetic over normalised Usage."""

from __future__ import annotations

from dataclasses import dataclass

from modelplane_server.resolver_svc.upstream.types import Usage

TOKENS_PER_PRICE_UNIT = 1_000_000


@dataclass(frozen=True)
class Prices:
    """USD per 1M tokens; None means "not priced"."""

    input: float | None = None
    output: float | None = None
    cache_read: float | None = None
    cache_write: float | None = None


def cost_usd(usage: Usage, prices: Prices) -> float | None:
    """The USD cost of one call, or None when it cannot be priced honestly.

    - No price at all: the model is unpriced -> None (never 0.0).
    - A token class with tokens but no price -> None, except cache reads and
      cache writes, which fall back to the input price: they are input
      tokens, and an admin who priced input but not caching should still see
      a cost. (It overstates reads and understates writes slightly.)
    - A missing price for a class with zero tokens does not matter.
    """
    if prices == Prices():
        return None
    classes = (
        (usage.input_tokens, prices.input),
        (usage.output_tokens, prices.output),
        (usage.cache_read_tokens, _or(prices.cache_read, prices.input)),
        (usage.cache_write_tokens, _or(prices.cache_write, prices.input)),
    )
    total = 0.0
    for tokens, price in classes:
        if tokens == 0:
            continue
        if price is None:
            return None
        total += tokens * price
    return total / TOKENS_PER_PRICE_UNIT


def _or(price: float | None, fallback: float | None) -> float | None:
    return price if price is not None else fallback


def context_tokens(usage: Usage) -> int:
    """Tokens the conversation occupies after this reply: the whole prompt
    (plain, cached and cache-written) plus the reply, which becomes part of
    the next prompt."""
    return usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens + usage.output_tokens


def context_usage(usage: Usage, context_limit: int, compression_threshold_pct: float) -> tuple[float, bool]:
    """(ratio of the context window in use, whether compaction is due).

    Compaction is due once the ratio reaches the threshold percentage; a
    threshold of 0 therefore always signals compaction.
    """
    if context_limit <= 0:
        raise ValueError("context_limit must be > 0")
    ratio = context_tokens(usage) / context_limit
    return ratio, ratio * 100 >= compression_threshold_pct
