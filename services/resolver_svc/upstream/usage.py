"""Context-window arithmetic over normalised Usage. (Cost is the domain's:
modelplane_server.domain.usage.cost_micro_usd, one rule for the chat answer
and the usage ledger.)"""

from __future__ import annotations

from modelplane_server.resolver_svc.upstream.types import Usage


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
