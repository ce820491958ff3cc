"""The live map of resolvers (0003_resolvers.sql). Plain statements outside
the write transaction: the map is not configuration, so writing it bumps no
revision and notifies no one. Times are the database's, so every replica
judges expiry by one clock."""

from __future__ import annotations

from typing import Any, Mapping

import asyncpg

from modelplane_server.domain.resolver_map import ResolverIdentity, ResolverRecord

WATCHING = (
    "INSERT INTO resolvers (id, host, version, applied_revision, epoch, session, config_svc, connect_time, "
    "heartbeat_time) VALUES ($1, $2, $3, $4, $5, $6, $7, now(), now()) "
    "ON CONFLICT (id) DO UPDATE SET host = EXCLUDED.host, version = EXCLUDED.version, "
    "applied_revision = EXCLUDED.applied_revision, epoch = EXCLUDED.epoch, session = EXCLUDED.session, "
    "config_svc = EXCLUDED.config_svc, connect_time = now(), heartbeat_time = now()"
)
# Only the stream that registered clears it: the resolver may already watch
# through another replica (failover), which registered a session of its own.
STOPPED_WATCHING = ("UPDATE resolvers SET session = NULL, config_svc = '', connect_time = NULL "
                    "WHERE id = $1 AND session = $2")
ACK = (
    "INSERT INTO resolvers (id, host, version, applied_revision, epoch, heartbeat_time) "
    "VALUES ($1, $2, $3, $4, $5, now()) "
    "ON CONFLICT (id) DO UPDATE SET host = EXCLUDED.host, version = EXCLUDED.version, "
    "applied_revision = EXCLUDED.applied_revision, epoch = EXCLUDED.epoch, heartbeat_time = now()"
)
LIVE_PAGE = ("SELECT * FROM resolvers WHERE id > $1 AND heartbeat_time > now() - make_interval(secs => $2) "
             "ORDER BY id LIMIT $3")
PRUNE = "DELETE FROM resolvers WHERE heartbeat_time <= now() - make_interval(secs => $1)"


def from_row(r: Mapping[str, Any]) -> ResolverRecord:
    return ResolverRecord(ResolverIdentity(r["id"], r["host"], r["version"]), r["config_svc"],
                          r["session"] is not None, r["applied_revision"], r["epoch"], r["connect_time"],
                          r["heartbeat_time"])


async def watching(conn: asyncpg.Connection, who: ResolverIdentity, applied_revision: int, epoch: str,
                   session: str, config_svc: str) -> None:
    await conn.execute(WATCHING, who.id, who.host, who.version, applied_revision, epoch, session, config_svc)


async def stopped_watching(conn: asyncpg.Connection, resolver_id: str, session: str) -> None:
    await conn.execute(STOPPED_WATCHING, resolver_id, session)


async def ack(conn: asyncpg.Connection, who: ResolverIdentity, applied_revision: int, epoch: str) -> None:
    await conn.execute(ACK, who.id, who.host, who.version, applied_revision, epoch)


async def live_page(conn: asyncpg.Connection, limit: int, after: str, expiry_seconds: float) -> list[ResolverRecord]:
    """Resolvers heard from within `expiry_seconds`, by id, after `after`."""
    return [from_row(r) for r in await conn.fetch(LIVE_PAGE, after, expiry_seconds, limit)]


async def prune(conn: asyncpg.Connection, expiry_seconds: float) -> int:
    """Forget resolvers not heard from for `expiry_seconds`; how many."""
    status = await conn.execute(PRUNE, expiry_seconds)
    return int(status.split()[-1])
