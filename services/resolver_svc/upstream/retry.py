"""When and how long to wait before another attempt.

The client asks `retry_delay` after each failed attempt that happened
before any event reached the caller; None means "give up and raise".
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from modelplane_server.resolver_svc.upstream.errors import UpstreamError


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 4
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    # A server asking for a longer pause than this is not worth waiting for.
    max_server_delay_s: float = 60.0


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait per retry-after-ms, else retry-after (seconds or HTTP date)."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return max(float(raw_ms) / 1000.0, 0.0)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(float(raw), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    remaining: float = when.timestamp() - (time.time() if now is None else now)
    return max(remaining, 0.0)


def parse_should_retry(headers: Mapping[str, str]) -> bool | None:
    raw = (headers.get("x-should-retry") or "").strip().lower()
    return {"true": True, "false": False}.get(raw)


def backoff_s(policy: RetryPolicy, attempt: int, rng: random.Random) -> float:
    """Exponential backoff with jitter: between 75% and 100% of the step,
    so concurrent callers hit by the same outage spread out."""
    step: float = min(policy.initial_backoff_s * 2.0**attempt, policy.max_backoff_s)
    return step * (1 - 0.25 * rng.random())


def retry_delay(
    error: UpstreamError,
    attempt: int,
    policy: RetryPolicy,
    rng: random.Random,
    seconds_left: float | None,
) -> float | None:
    """attempt counts from 0 for the first try."""
    if attempt + 1 >= policy.max_attempts or not error.retryable:
        return None
    hint = error.retry_after_s
    if hint is not None and hint > policy.max_server_delay_s:
        return None
    delay = hint if hint is not None else backoff_s(policy, attempt, rng)
    if seconds_left is not None and delay >= seconds_left:
        return None  # the caller's deadline would pass while we wait
    return delay
