"""Model overrides: the admins' per context, and users' personal ones."""

from __future__ import annotations

from typing import Any, Mapping

import asyncpg

from modelplane_server.config_svc.store.tx import WriteTx
from modelplane_server.domain.errors import NotFound
from modelplane_server.domain.types import ModelOverride, OverrideContext

GET_ADMIN = "SELECT * FROM model_overrides WHERE context = $1"
LIST_ADMIN = "SELECT * FROM model_overrides ORDER BY context"
SET_ADMIN = ("INSERT INTO model_overrides (context, model) VALUES ($1, $2) ON CONFLICT (context) "
             "DO UPDATE SET model = excluded.model, update_time = now() RETURNING *")
CLEAR_ADMIN = "DELETE FROM model_overrides WHERE context = $1 RETURNING 1"
LIST_PERSONAL = "SELECT * FROM personal_overrides WHERE user_name = $1 ORDER BY context"
SET_PERSONAL = ("INSERT INTO personal_overrides (user_name, context, model) VALUES ($1, $2, $3) "
                "ON CONFLICT (user_name, context) DO UPDATE SET model = excluded.model, "
                "update_time = now() RETURNING *")
LIST_PERSONAL_OF_MANY = "SELECT * FROM personal_overrides WHERE user_name = ANY($1::text[]) ORDER BY user_name, context"
CLEAR_PERSONAL = "DELETE FROM personal_overrides WHERE user_name = $1 AND context = $2 RETURNING 1"


def from_row(r: Mapping[str, Any]) -> ModelOverride:
    return ModelOverride(OverrideContext(r["context"]), r["model"], r.get("user_name", ""), r["update_time"])


async def get_admin(conn: asyncpg.Connection, context: str) -> ModelOverride | None:
    row = await conn.fetchrow(GET_ADMIN, context)
    return from_row(row) if row else None


async def list_admin(conn: asyncpg.Connection) -> list[ModelOverride]:
    return [from_row(r) for r in await conn.fetch(LIST_ADMIN)]


async def set_admin(tx: WriteTx, context: OverrideContext, model: str) -> ModelOverride:
    row = await tx.conn.fetchrow(SET_ADMIN, context.value, model)
    tx.changed("model_override", context=context.value)
    return from_row(row)


async def clear_admin(tx: WriteTx, context: OverrideContext) -> None:
    if await tx.conn.fetchval(CLEAR_ADMIN, context.value) is None:
        raise NotFound(f"no admin override is set for {context}", reason="OVERRIDE_NOT_FOUND")
    tx.changed("model_override", context=context.value)


async def list_personal(conn: asyncpg.Connection, user: str) -> list[ModelOverride]:
    return [from_row(r) for r in await conn.fetch(LIST_PERSONAL, user)]


async def list_personal_of_many(conn: asyncpg.Connection, users: list[str]) -> dict[str, list[ModelOverride]]:
    """Each user's personal overrides (users without any are absent)."""
    found: dict[str, list[ModelOverride]] = {}
    for r in await conn.fetch(LIST_PERSONAL_OF_MANY, users):
        found.setdefault(r["user_name"], []).append(from_row(r))
    return found


async def set_personal(tx: WriteTx, user: str, context: OverrideContext, model: str) -> ModelOverride:
    row = await tx.conn.fetchrow(SET_PERSONAL, user, context.value, model)
    tx.changed("user", user=user)
    return from_row(row)


async def clear_personal(tx: WriteTx, user: str, context: OverrideContext) -> None:
    if await tx.conn.fetchval(CLEAR_PERSONAL, user, context.value) is None:
        raise NotFound(f"no personal override is set for {context}", reason="OVERRIDE_NOT_FOUND")
    tx.changed("user", user=user)
