"""The usage ledger: records stored once per id, the daily roll-up and the
per-period spend totals maintained in the same transaction, and the
queries over them.

Concurrent batches (several resolvers, or one resending) touch rows in one
order (records by id, roll-ups and totals by key), so they queue on row
locks instead of deadlocking.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Mapping

import asyncpg

from modelplane_server.domain.spend import PERIODS, Period, PeriodSpend, period_bounds
from modelplane_server.domain.types import CredentialSource
from modelplane_server.domain.usage import Dimension, SummaryRow, Tokens, UsageRecord, whole_days

SPEND_CHANNEL: Final = "modelplane_spend"
# NOTIFY payloads must stay under 8000 bytes.
MAX_PAYLOAD_BYTES: Final = 7000
UTC = dt.timezone.utc

INSERT_RECORDS = """
INSERT INTO usage_records (id, request_id, chat_id, user_name, service, provider, model, model_identifier, context,
    credential_source, input_tokens, cache_read_tokens, cache_write_tokens, output_tokens, reasoning_tokens,
    cost_micro_usd, upstream_latency_ms, time_to_first_token_ms, outcome, streamed, start_time, end_time)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
    $8::text[], $9::text[], $10::text[], $11::bigint[], $12::bigint[], $13::bigint[], $14::bigint[], $15::bigint[],
    $16::bigint[], $17::integer[], $18::integer[], $19::text[], $20::boolean[], $21::timestamptz[],
    $22::timestamptz[]) ORDER BY 1
ON CONFLICT (id) DO NOTHING
RETURNING id
"""

UPSERT_DAILY = """
INSERT INTO usage_daily AS d (day, user_name, model, provider, credential_source, requests, unpriced_requests,
    input_tokens, cache_read_tokens, cache_write_tokens, output_tokens, reasoning_tokens, cost_micro_usd)
SELECT * FROM unnest($1::date[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::bigint[],
    $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[], $13::bigint[]) ORDER BY 1, 2, 3, 4, 5
ON CONFLICT (day, user_name, model, provider, credential_source) DO UPDATE SET
    requests = d.requests + excluded.requests,
    unpriced_requests = d.unpriced_requests + excluded.unpriced_requests,
    input_tokens = d.input_tokens + excluded.input_tokens,
    cache_read_tokens = d.cache_read_tokens + excluded.cache_read_tokens,
    cache_write_tokens = d.cache_write_tokens + excluded.cache_write_tokens,
    output_tokens = d.output_tokens + excluded.output_tokens,
    reasoning_tokens = d.reasoning_tokens + excluded.reasoning_tokens,
    cost_micro_usd = d.cost_micro_usd + excluded.cost_micro_usd
"""

UPSERT_SPEND = """
INSERT INTO usage_spend AS s (user_name, period, period_start, central_micro_usd, own_key_micro_usd,
    unpriced_requests)
SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::bigint[], $5::bigint[], $6::bigint[])
ORDER BY 1, 2, 3
ON CONFLICT (user_name, period, period_start) DO UPDATE SET
    central_micro_usd = s.central_micro_usd + excluded.central_micro_usd,
    own_key_micro_usd = s.own_key_micro_usd + excluded.own_key_micro_usd,
    unpriced_requests = s.unpriced_requests + excluded.unpriced_requests,
    update_time = now()
RETURNING user_name, period, period_start, central_micro_usd, own_key_micro_usd, unpriced_requests
"""

NOTIFY = "SELECT pg_notify($1, $2)"
CURRENT_SPEND = ("SELECT * FROM usage_spend WHERE (period = 'day' AND period_start = $1) "
                 "OR (period = 'week' AND period_start = $2) OR (period = 'month' AND period_start = $3)")
SPEND_SINCE = "SELECT * FROM usage_spend WHERE update_time >= $1"
PRUNE_SPEND = "DELETE FROM usage_spend WHERE period_start < $1"


@dataclass(frozen=True)
class Ingested:
    inserted: int
    duplicates: int
    spend: list[tuple[str, PeriodSpend]]  # the users' totals after this batch


def _day(t: dt.datetime) -> dt.date:
    return t.astimezone(UTC).date()


def _columns(records: Sequence[UsageRecord]) -> list[list[Any]]:
    rows = [(r.id, r.request_id, r.chat_id, r.user, r.service, r.provider, r.model, r.model_identifier,
             r.context.value if r.context else None, r.credential_source.value, r.tokens.input,
             r.tokens.cache_read, r.tokens.cache_write, r.tokens.output, r.tokens.reasoning, r.cost_micro_usd,
             r.upstream_latency_ms, r.time_to_first_token_ms, r.outcome.value, r.streamed, r.start_time,
             r.end_time) for r in records]
    return [list(column) for column in zip(*rows)]


def _daily(records: Sequence[UsageRecord]) -> list[list[Any]]:
    sums: dict[tuple[Any, ...], list[int]] = {}
    for r in records:
        key = (_day(r.end_time), r.user, r.model, r.provider, r.credential_source.value)
        t = r.tokens
        add = (1, r.cost_micro_usd is None, t.input, t.cache_read, t.cache_write, t.output, t.reasoning,
               r.cost_micro_usd or 0)
        acc = sums.setdefault(key, [0] * len(add))
        for i, v in enumerate(add):
            acc[i] += v
    rows = [(*k, *v) for k, v in sums.items()]
    return [list(column) for column in zip(*rows)]


def _spend(records: Sequence[UsageRecord]) -> list[list[Any]]:
    sums: dict[tuple[str, str, dt.datetime], list[int]] = {}
    for r in records:
        own = r.credential_source is CredentialSource.USER_KEY
        cost = r.cost_micro_usd or 0
        add = (0 if own else cost, cost if own else 0, int(r.cost_micro_usd is None))
        for period in PERIODS:
            acc = sums.setdefault((r.user, period.value, period_bounds(period, r.end_time)[0]), [0, 0, 0])
            for i, v in enumerate(add):
                acc[i] += v
    rows = [(*k, *v) for k, v in sums.items()]
    return [list(column) for column in zip(*rows)]


def _period_spend(r: Mapping[str, Any]) -> tuple[str, PeriodSpend]:
    return r["user_name"], PeriodSpend(Period(r["period"]), r["period_start"], r["central_micro_usd"],
                                       r["own_key_micro_usd"], r["unpriced_requests"])


def spend_payloads(spend: Sequence[tuple[str, PeriodSpend]]) -> list[str]:
    """The totals as NOTIFY payloads, each under the size Postgres allows."""
    payloads: list[str] = []
    chunk: list[list[Any]] = []
    size = 2
    for user, s in spend:
        item = [user, s.period.value, int(s.start.timestamp()), s.central_micro_usd, s.own_key_micro_usd,
                s.unpriced_requests]
        item_size = len(json.dumps(item).encode()) + 1
        if chunk and size + item_size > MAX_PAYLOAD_BYTES:
            payloads.append(json.dumps(chunk))
            chunk, size = [], 2
        chunk.append(item)
        size += item_size
    if chunk:
        payloads.append(json.dumps(chunk))
    return payloads


def parse_payload(payload: str) -> list[tuple[str, PeriodSpend]]:
    return [(user, PeriodSpend(Period(period), dt.datetime.fromtimestamp(start, UTC), central, own, unpriced))
            for user, period, start, central, own, unpriced in json.loads(payload)]


async def ingest(conn: asyncpg.Connection, records: Sequence[UsageRecord]) -> Ingested:
    """Store the records not stored yet, roll them up and NOTIFY the new
    totals (delivered on commit). Call inside a transaction."""
    unique = list({r.id: r for r in reversed(records)}.values())  # the first of each id
    inserted_ids = {row["id"] for row in await conn.fetch(INSERT_RECORDS, *_columns(unique))}
    fresh = [r for r in unique if r.id in inserted_ids]
    spend: list[tuple[str, PeriodSpend]] = []
    if fresh:
        await conn.execute(UPSERT_DAILY, *_daily(fresh))
        spend = [_period_spend(row) for row in await conn.fetch(UPSERT_SPEND, *_spend(fresh))]
        for payload in spend_payloads(spend):
            await conn.execute(NOTIFY, SPEND_CHANNEL, payload)
    return Ingested(len(fresh), len(records) - len(fresh), spend)


async def current_spend(conn: asyncpg.Connection, now: dt.datetime) -> list[tuple[str, PeriodSpend]]:
    starts = [period_bounds(p, now)[0] for p in PERIODS]
    return [_period_spend(r) for r in await conn.fetch(CURRENT_SPEND, *starts)]


async def spend_since(conn: asyncpg.Connection, since: dt.datetime) -> list[tuple[str, PeriodSpend]]:
    return [_period_spend(r) for r in await conn.fetch(SPEND_SINCE, since)]


async def prune_spend(conn: asyncpg.Connection, before: dt.datetime) -> None:
    await conn.execute(PRUNE_SPEND, before)


# ---------------------------------------------------------------- summaries

_COLUMN: Final = {Dimension.USER: "user_name", Dimension.MODEL: "model", Dimension.PROVIDER: "provider",
                  Dimension.CREDENTIAL_SOURCE: "credential_source", Dimension.DAY: "day"}
_SUMS: Final = ("requests", "unpriced_requests", "input_tokens", "cache_read_tokens", "cache_write_tokens",
                "output_tokens", "reasoning_tokens", "cost_micro_usd")
_FROM_RECORDS: Final = (
    "SELECT (end_time AT TIME ZONE 'UTC')::date AS day, user_name, model, provider, credential_source, "
    "1 AS requests, (cost_micro_usd IS NULL)::int AS unpriced_requests, input_tokens, cache_read_tokens, "
    "cache_write_tokens, output_tokens, reasoning_tokens, COALESCE(cost_micro_usd, 0) AS cost_micro_usd "
    "FROM usage_records")
_FROM_DAILY: Final = ("SELECT day, user_name, model, provider, credential_source, " + ", ".join(_SUMS)
                      + " FROM usage_daily")


@dataclass(frozen=True)
class SummaryQuery:
    start: dt.datetime
    end: dt.datetime
    group_by: tuple[Dimension, ...]
    user: str = ""
    model: str = ""
    provider: str = ""


class _Sql:
    """SQL text and its parameters, built together so placeholders match."""

    def __init__(self) -> None:
        self.args: list[Any] = []

    def param(self, value: Any) -> str:
        self.args.append(value)
        return f"${len(self.args)}"


def _source(q: SummaryQuery, sql: _Sql) -> str:
    """The rows in range: whole days from the roll-up, the partial days at
    the edges from the records."""
    filters = "".join(f" AND {column} = {sql.param(value)}" for column, value in
                      (("user_name", q.user), ("model", q.model), ("provider", q.provider)) if value)
    parts: list[str] = []
    days = whole_days(q.start, q.end)
    if days is None:
        parts.append(f"{_FROM_RECORDS} WHERE end_time >= {sql.param(q.start)} AND end_time < {sql.param(q.end)}"
                     + filters)
    else:
        first, after_last = days
        parts.append(f"{_FROM_DAILY} WHERE day >= {sql.param(first)} AND day < {sql.param(after_last)}" + filters)
        head_end = dt.datetime.combine(first, dt.time(0), UTC)
        tail_start = dt.datetime.combine(after_last, dt.time(0), UTC)
        if q.start < head_end:
            parts.append(f"{_FROM_RECORDS} WHERE end_time >= {sql.param(q.start)} AND end_time < "
                         f"{sql.param(head_end)}" + filters)
        if tail_start < q.end:
            parts.append(f"{_FROM_RECORDS} WHERE end_time >= {sql.param(tail_start)} AND end_time < "
                         f"{sql.param(q.end)}" + filters)
    return " UNION ALL ".join(parts)


def _row(r: Mapping[str, Any], dims: Sequence[Dimension]) -> SummaryRow:
    keys = {d: r[_COLUMN[d]] for d in dims}
    source = keys.get(Dimension.CREDENTIAL_SOURCE)
    return SummaryRow(
        user=keys.get(Dimension.USER, ""), model=keys.get(Dimension.MODEL, ""),
        provider=keys.get(Dimension.PROVIDER, ""), credential_source=CredentialSource(source) if source else None,
        day=keys.get(Dimension.DAY), requests=r["requests"] or 0, unpriced_requests=r["unpriced_requests"] or 0,
        tokens=Tokens(r["input_tokens"] or 0, r["cache_read_tokens"] or 0, r["cache_write_tokens"] or 0,
                      r["output_tokens"] or 0, r["reasoning_tokens"] or 0),
        cost_micro_usd=r["cost_micro_usd"] or 0)


def position(row: SummaryRow, dims: Sequence[Dimension]) -> list[str]:
    """Where a row sits in the summary's order (the page token)."""
    values = {Dimension.USER: row.user, Dimension.MODEL: row.model, Dimension.PROVIDER: row.provider,
              Dimension.CREDENTIAL_SOURCE: row.credential_source.value if row.credential_source else "",
              Dimension.DAY: row.day.isoformat() if row.day else ""}
    return [values[d] for d in dims]


async def summarize(conn: asyncpg.Connection, q: SummaryQuery, limit: int, after: list[str] | None
                    ) -> tuple[list[SummaryRow], SummaryRow | None]:
    """One row per group, ordered by the grouped fields, after the position
    `after`; on the first page (no `after`) also the total over every group,
    computed in the same pass (a window over the groups), else None."""
    sql = _Sql()
    source = _source(q, sql)
    sums = ", ".join(f"sum({c})::bigint AS {c}" for c in _SUMS)
    keys = ", ".join(_COLUMN[d] for d in q.group_by)
    if not keys:
        (row,) = await conn.fetch(f"SELECT {sums} FROM ({source}) src", *sql.args)
        total = _row(row, ())
        return ([total] if total.requests else []), total
    totals = ""
    where = ""
    if after is None:
        totals = ", " + ", ".join(f"sum(sum({c})) OVER ()::bigint AS total_{c}" for c in _SUMS)
    else:
        bound = ", ".join(sql.param(dt.date.fromisoformat(v) if d is Dimension.DAY else v)
                          for d, v in zip(q.group_by, after))
        where = f" WHERE ({keys}) > ({bound})"
    text = (f"SELECT * FROM (SELECT {keys}, {sums}{totals} FROM ({source}) src GROUP BY {keys}) g{where} "
            f"ORDER BY {keys} LIMIT {sql.param(limit)}")
    found = await conn.fetch(text, *sql.args)
    rows = [_row(r, q.group_by) for r in found]
    if after is not None:
        return rows, None
    if not found:
        return rows, SummaryRow()
    return rows, _row({c: found[0][f"total_{c}"] for c in _SUMS}, ())
