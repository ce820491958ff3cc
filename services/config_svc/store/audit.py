"""The audit log, newest first (store.tx writes one event per write)."""

from __future__ import annotations

import asyncpg

from modelplane_server.domain.types import AuditEvent

LIST_PAGE = ("SELECT * FROM audit_events WHERE ($1 = 0 OR id < $1) AND resource LIKE $2 "
             "ORDER BY id DESC LIMIT $3")


async def list_page(conn: asyncpg.Connection, limit: int, before_id: int, resource_prefix: str) -> list[AuditEvent]:
    rows = await conn.fetch(LIST_PAGE, before_id, _like_prefix(resource_prefix), limit)
    return [AuditEvent(r["id"], r["revision"], r["actor"], r["action"], r["resource"], r["change"],
                       r["create_time"]) for r in rows]


def _like_prefix(prefix: str) -> str:
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"
