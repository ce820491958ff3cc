"""Spend limits: one row per (scope, subject, period)."""

from __future__ import annotations

from typing import Any, Mapping

import asyncpg

from modelplane_server.config_svc.store.tx import WriteTx
from modelplane_server.domain.errors import NotFound
from modelplane_server.domain.spend import Period, Scope, SpendLimit

# Scopes in the order ListSpendLimits shows them: the default first.
_ORDER = "CASE scope WHEN 'default' THEN 0 WHEN 'group' THEN 1 ELSE 2 END"
_PERIOD_ORDER = "CASE period WHEN 'day' THEN 0 WHEN 'week' THEN 1 ELSE 2 END"
ALL = f"SELECT * FROM spend_limits ORDER BY {_ORDER}, subject, {_PERIOD_ORDER}"
LIST_PAGE = (f"SELECT * FROM (SELECT *, {_ORDER} AS o, {_PERIOD_ORDER} AS p FROM spend_limits) l "
             "WHERE (o, subject, p) > ($1, $2, $3) ORDER BY o, subject, p LIMIT $4")
GET = "SELECT * FROM spend_limits WHERE scope = $1 AND subject = $2 AND period = $3"
UPSERT = ("INSERT INTO spend_limits (scope, subject, period, limit_micro_usd) VALUES ($1, $2, $3, $4) "
          "ON CONFLICT (scope, subject, period) DO UPDATE SET limit_micro_usd = excluded.limit_micro_usd, "
          "update_time = now() RETURNING *")
DELETE = "DELETE FROM spend_limits WHERE scope = $1 AND subject = $2 AND period = $3 RETURNING period"
DELETE_GROUP = "DELETE FROM spend_limits WHERE scope = 'group' AND subject = $1 RETURNING period"

SCOPE_ORDER = {Scope.DEFAULT: 0, Scope.GROUP: 1, Scope.USER: 2}
PERIOD_ORDER = {Period.DAY: 0, Period.WEEK: 1, Period.MONTH: 2}


def from_row(r: Mapping[str, Any]) -> SpendLimit:
    return SpendLimit(Scope(r["scope"]), r["subject"], Period(r["period"]), r["limit_micro_usd"], r["update_time"])


def position(lim: SpendLimit) -> list[Any]:
    """Where a limit sits in list order (the page token's shape)."""
    return [SCOPE_ORDER[lim.scope], lim.subject, PERIOD_ORDER[lim.period]]


def _record(tx: WriteTx, scope: Scope, subject: str, period: str) -> None:
    tx.changed("spend_limit", scope=scope.value, subject=subject, period=period)


async def list_all(conn: asyncpg.Connection) -> list[SpendLimit]:
    return [from_row(r) for r in await conn.fetch(ALL)]


async def list_page(conn: asyncpg.Connection, limit: int, after: list[Any]) -> list[SpendLimit]:
    return [from_row(r) for r in await conn.fetch(LIST_PAGE, after[0], after[1], after[2], limit)]


async def find(conn: asyncpg.Connection, scope: str, subject: str, period: str) -> SpendLimit | None:
    row = await conn.fetchrow(GET, scope, subject, period)
    return from_row(row) if row else None


async def save(tx: WriteTx, lim: SpendLimit) -> SpendLimit:
    row = await tx.conn.fetchrow(UPSERT, lim.scope.value, lim.subject, lim.period.value, lim.limit_micro_usd)
    _record(tx, lim.scope, lim.subject, lim.period.value)
    return from_row(row)


async def delete(tx: WriteTx, scope: Scope, subject: str, period: Period) -> None:
    if await tx.conn.fetchval(DELETE, scope.value, subject, period.value) is None:
        what = "the deployment default" if scope is Scope.DEFAULT else f"{scope.value} {subject!r}"
        raise NotFound(f"no {period.value} spend limit is set for {what}", reason="SPEND_LIMIT_NOT_FOUND")
    _record(tx, scope, subject, period.value)


async def delete_group_limits(tx: WriteTx, group: str) -> None:
    for r in await tx.conn.fetch(DELETE_GROUP, group):
        _record(tx, Scope.GROUP, group, r["period"])
