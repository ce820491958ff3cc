"""Deployment settings: one row."""

from __future__ import annotations

from typing import Any, Literal, Mapping

import asyncpg

from modelplane_server.config_svc.store.tx import WriteTx
from modelplane_server.domain.types import Settings

GET = "SELECT * FROM settings"
LOCKS = {"": GET, "update": GET + " FOR UPDATE", "share": GET + " FOR SHARE"}
SAVE = ("UPDATE settings SET byok_enabled=$1, personal_overrides_enabled=$2, byok_spend_counts=$3, "
        "allow_unpriced_under_limit=$4, version=version+1, update_time=now() RETURNING *")


def from_row(r: Mapping[str, Any]) -> Settings:
    return Settings(r["byok_enabled"], r["personal_overrides_enabled"], r["version"], r["update_time"],
                    byok_spend_counts=r["byok_spend_counts"],
                    allow_unpriced_under_limit=r["allow_unpriced_under_limit"])


async def get(conn: asyncpg.Connection, *, lock: Literal["", "update", "share"] = "") -> Settings:
    """The settings; lock "share" keeps them from changing until commit, "update" to change them."""
    return from_row(await conn.fetchrow(LOCKS[lock]))


async def save(tx: WriteTx, s: Settings) -> Settings:
    row = await tx.conn.fetchrow(SAVE, s.byok_enabled, s.personal_overrides_enabled, s.byok_spend_counts,
                                 s.allow_unpriced_under_limit)
    tx.changed("settings")
    return from_row(row)
