"""API tokens: only a hash of each secret is stored."""

from __future__ import annotations

from typing import Any, Mapping

import asyncpg

from modelplane_server.config_svc.store.tx import WriteTx
from modelplane_server.domain.errors import NotFound
from modelplane_server.domain.types import ApiToken, Principal, Role

INSERT = ("INSERT INTO api_tokens (id, role, subject, description, secret_sha256) "
          "VALUES ($1,$2,$3,$4,$5) RETURNING *")
LIST_PAGE = "SELECT * FROM api_tokens WHERE id > $1 AND ($2 OR revoke_time IS NULL) ORDER BY id LIMIT $3"
REVOKE = "UPDATE api_tokens SET revoke_time = coalesce(revoke_time, now()) WHERE id = $1 RETURNING *"
LIVE = "SELECT * FROM api_tokens WHERE id = $1 AND revoke_time IS NULL"
# At most once a minute per token, so authentication stays read-mostly.
TOUCH = ("UPDATE api_tokens SET last_used_time = now() WHERE id = $1 AND (last_used_time IS NULL "
         "OR last_used_time < now() - interval '1 minute')")


def from_row(r: Mapping[str, Any]) -> ApiToken:
    return ApiToken(r["id"], Role(r["role"]), r["subject"], r["description"], r["create_time"],
                    r["revoke_time"], r["last_used_time"])


async def insert(tx: WriteTx, token_id: str, role: Role, subject: str, description: str,
                 secret_hash: bytes) -> ApiToken:
    return from_row(await tx.conn.fetchrow(INSERT, token_id, role.value, subject, description, secret_hash))


async def list_page(conn: asyncpg.Connection, limit: int, after: str, include_revoked: bool) -> list[ApiToken]:
    return [from_row(r) for r in await conn.fetch(LIST_PAGE, after, include_revoked, limit)]


async def revoke(tx: WriteTx, token_id: str) -> ApiToken:
    row = await tx.conn.fetchrow(REVOKE, token_id)
    if row is None:
        raise NotFound(f"token {token_id!r} not found", reason="TOKEN_NOT_FOUND")
    tx.changed("token", id=token_id)
    return from_row(row)


async def live(conn: asyncpg.Connection, token_id: str) -> tuple[Principal, bytes] | None:
    """The live token's principal and stored hash; None when unknown or revoked."""
    row = await conn.fetchrow(LIVE, token_id)
    if row is None:
        return None
    return Principal(Role(row["role"]), row["subject"], row["id"]), bytes(row["secret_sha256"])


async def touch(conn: asyncpg.Connection, token_id: str) -> None:
    """Record that the token was used."""
    await conn.execute(TOUCH, token_id)
