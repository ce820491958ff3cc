"""Spend limits: set, clear, list. Each write is configuration: audited,
a new revision, pushed to resolvers with the rest of the snapshot."""

from __future__ import annotations

from typing import Any

from modelplane_server.config_svc.store import Store, groups, limits
from modelplane_server.domain.governance_validation import limit_violations
from modelplane_server.domain.spend import Period, Scope, SpendLimit
from modelplane_server.domain.validation import raise_if_any


def resource(scope: Scope, subject: str, period: Period) -> str:
    owner = "default" if scope is Scope.DEFAULT else f"{scope.value}s/{subject}"
    return f"spend_limits/{owner}/{period.value}"


async def set_limit(store: Store, actor: str, lim: SpendLimit) -> SpendLimit:
    raise_if_any(limit_violations(lim))
    audit: dict[str, Any] = {"limit_micro_usd": lim.limit_micro_usd, "unlimited": lim.limit_micro_usd is None}
    async with store.write(actor, "SetSpendLimit", resource(lim.scope, lim.subject, lim.period), audit) as tx:
        if lim.scope is Scope.GROUP:
            await groups.lock(tx.conn, lim.subject)  # NOT_FOUND, and no concurrent delete
        return await limits.save(tx, lim)


async def clear_limit(store: Store, actor: str, scope: Scope, subject: str, period: Period) -> None:
    async with store.write(actor, "ClearSpendLimit", resource(scope, subject, period)) as tx:
        await limits.delete(tx, scope, subject, period)


async def list_limits(store: Store, limit: int, after: list[Any]) -> list[SpendLimit]:
    async with store.connection() as conn:
        return await limits.list_page(conn, limit, after)
