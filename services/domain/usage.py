"""The usage ledger's data: one record per upstream chat, its cost in
micro-USD, and usage summaries.

Cost: no price at all is unpriced (None, never 0); a token kind with tokens
but no price makes the chat unpriced, except cache reads and writes, which
fall back to the input price (they are input tokens; an admin who priced
input but not caching should still see a cost). Prices are USD per million
tokens, so a price is exactly micro-USD per token: the cost is
sum(tokens x price) computed in decimal from the prices as written, rounded
up to a whole micro-USD. A priced chat with no priced tokens costs 0. This
is the one cost rule: the chat answer's cost_usd is the same number in USD
(micro_to_usd), so what a caller is shown is what the ledger records.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from modelplane_server.domain import validation
from modelplane_server.domain.errors import FieldViolation
from modelplane_server.domain.text import has_control_chars
from modelplane_server.domain.types import CredentialSource, OverrideContext, Pricing

MAX_RECORDS_PER_CALL: Final = 1000
MAX_RECORD_ID_LENGTH: Final = 64
MAX_TEXT_LENGTH: Final = 255
MAX_SUMMARY_DAYS: Final = 3660  # ten years: whole days come from the roll-up, so long ranges stay cheap
MAX_TOKENS: Final = 10**12  # far above any context window; keeps sums within bigint


class Outcome(enum.StrEnum):
    """Proto UsageOutcome without the USAGE_OUTCOME_ prefix."""

    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Dimension(enum.StrEnum):
    """Proto UsageDimension without the USAGE_DIMENSION_ prefix."""

    USER = "user"
    MODEL = "model"
    PROVIDER = "provider"
    CREDENTIAL_SOURCE = "credential_source"
    DAY = "day"


PAYING_SOURCES: Final = frozenset({CredentialSource.USER_KEY, CredentialSource.CENTRAL_KEY,
                                   CredentialSource.AMBIENT_AWS})


@dataclass(frozen=True, slots=True)
class Tokens:
    input: int = 0  # excludes cache reads and writes
    cache_read: int = 0
    cache_write: int = 0
    output: int = 0  # includes reasoning
    reasoning: int = 0


def _price(value: float | None) -> Decimal | None:
    # repr() is the shortest decimal that round-trips: the price as the admin wrote it.
    return None if value is None else Decimal(repr(value))


@functools.lru_cache(maxsize=1024)
def _prices(pricing: Pricing) -> tuple[Decimal | None, Decimal | None, Decimal | None, Decimal | None]:
    """(input, output, cache read, cache write) in decimal, the cache kinds
    falling back to the input price; once per Pricing (a model's prices)."""
    inp = _price(pricing.input_per_mtok)
    read = _price(pricing.cache_read_per_mtok)
    write = _price(pricing.cache_write_per_mtok)
    return inp, _price(pricing.output_per_mtok), inp if read is None else read, inp if write is None else write


def cost_micro_usd(tokens: Tokens, pricing: Pricing) -> int | None:
    """The chat's cost in micro-USD rounded up, or None when it is unpriced."""
    if pricing == Pricing():
        return None
    total = Decimal(0)
    for count, price in zip((tokens.input, tokens.output, tokens.cache_read, tokens.cache_write), _prices(pricing)):
        if count == 0:
            continue
        if price is None:
            return None
        total += count * price
    return math.ceil(total)


def micro_to_usd(micro_usd: int | None) -> float | None:
    """A cost in micro-USD as USD (None stays None: unpriced)."""
    return None if micro_usd is None else micro_usd / 1_000_000


def priced(pricing: Pricing) -> bool:
    """Whether the model has any price (an unpriced model reports no cost)."""
    return pricing != Pricing()


@dataclass(frozen=True, slots=True)
class UsageRecord:
    id: str  # unique per upstream chat; the ledger stores each id once
    user: str
    provider: str
    model: str
    credential_source: CredentialSource
    tokens: Tokens
    cost_micro_usd: int | None
    outcome: Outcome
    end_time: dt.datetime
    start_time: dt.datetime | None = None
    request_id: str = ""
    chat_id: str = ""
    service: str = ""
    context: OverrideContext | None = None
    model_identifier: str = ""
    upstream_latency_ms: int = 0
    time_to_first_token_ms: int | None = None
    streamed: bool = False


def _text_violations(value: str, field: str, *, required: bool, max_length: int = MAX_TEXT_LENGTH
                     ) -> list[FieldViolation]:
    if not value:
        return [FieldViolation(field, "is required")] if required else []
    if len(value) > max_length:
        return [FieldViolation(field, f"must be at most {max_length} characters")]
    if has_control_chars(value):
        return [FieldViolation(field, "must not contain control characters")]
    return []


def record_violations(r: UsageRecord, prefix: str) -> list[FieldViolation]:
    """What is wrong with one record (`prefix`: e.g. "records[3].")."""
    found = _text_violations(r.id, prefix + "id", required=True, max_length=MAX_RECORD_ID_LENGTH)
    for name in ("user", "provider", "model"):
        found += _text_violations(getattr(r, name), prefix + name, required=True)
    # What a chat may carry is what its record may carry.
    for name, longest in (("request_id", MAX_TEXT_LENGTH), ("chat_id", validation.MAX_CHAT_ID_LENGTH),
                          ("service", MAX_TEXT_LENGTH), ("model_identifier", validation.MAX_MODEL_IDENTIFIER_LENGTH)):
        found += _text_violations(getattr(r, name), prefix + name, required=False, max_length=longest)
    if r.credential_source not in PAYING_SOURCES:
        found.append(FieldViolation(prefix + "credential_source", "must be USER_KEY, CENTRAL_KEY or AMBIENT_AWS"))
    for name in ("input", "cache_read", "cache_write", "output", "reasoning"):
        count = getattr(r.tokens, name)
        if not 0 <= count <= MAX_TOKENS:
            found.append(FieldViolation(f"{prefix}{name}_tokens", f"must be between 0 and {MAX_TOKENS}"))
    if r.cost_micro_usd is not None and not 0 <= r.cost_micro_usd <= MAX_TOKENS * 10**6:
        found.append(FieldViolation(prefix + "cost_micro_usd", f"must be between 0 and {MAX_TOKENS * 10**6}"))
    for name in ("upstream_latency_ms", "time_to_first_token_ms"):
        value = getattr(r, name)
        if value is not None and not 0 <= value < 2**31:
            found.append(FieldViolation(prefix + name, "must be between 0 and 2^31-1"))
    return found


@dataclass(frozen=True, slots=True)
class SummaryRow:
    """Usage of one group of records: the grouped fields set, the others ""/None."""

    user: str = ""
    model: str = ""
    provider: str = ""
    credential_source: CredentialSource | None = None
    day: dt.date | None = None
    requests: int = 0
    unpriced_requests: int = 0
    tokens: Tokens = Tokens()
    cost_micro_usd: int = 0


def whole_days(start: dt.datetime, end: dt.datetime) -> tuple[dt.date, dt.date] | None:
    """The UTC days entirely inside [start, end), as [first, after_last), or
    None when there is none: the daily roll-up answers those, the records
    the partial days at either edge."""
    utc = dt.timezone.utc
    s, e = start.astimezone(utc), end.astimezone(utc)
    first = s.date() if s.time() == dt.time(0) else s.date() + dt.timedelta(days=1)
    after_last = e.date()
    return (first, after_last) if first < after_last else None
