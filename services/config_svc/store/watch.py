"""What watchers read: the revision and its epoch, the change records, the
whole configuration in one view, and the NOTIFY wake-ups."""

from __future__ import annotations

import datetime as dt
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import AsyncIterator, Callable, Mapping

import asyncpg

from modelplane_server.config_svc.store import groups, limits, models, overrides, providers, settings
from modelplane_server.config_svc.store.tx import CHANGES_RETAINED, NOTIFY_CHANNEL
from modelplane_server.domain.access import Group
from modelplane_server.domain.spend import SpendLimit
from modelplane_server.domain.types import Model, ModelOverride, Provider, Settings

REVISION = "SELECT revision FROM config_revision"
# The revision and the epoch it counts in: the database's OID (new after a
# restore into a new database) joined with the history's random id (0002).
# Read together, in one statement, so an event never pairs one database's
# revision with another's epoch.
REVISION_AND_EPOCH = (
    "SELECT r.revision, d.oid::text || '.' || r.epoch_id AS epoch "
    "FROM config_revision r JOIN pg_database d ON d.datname = current_database()"
)
CHANGES_AFTER = "SELECT revision, changes, create_time FROM config_changes WHERE revision > $1 ORDER BY revision"

ChangeRecord = Mapping[str, str]  # {"kind": ..., <what names the entity>}
Entity = Provider | Model | Settings | ModelOverride | Group | SpendLimit


@dataclass(frozen=True)
class StoredConfig:
    """The whole configuration resolvers hold, at one revision."""

    revision: int
    providers: list[Provider]
    models: list[Model]
    settings: Settings
    model_overrides: list[ModelOverride]
    epoch: str
    groups: list[Group] = field(default_factory=list)
    spend_limits: list[SpendLimit] = field(default_factory=list)


async def current_revision(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval(REVISION))


async def epoch(conn: asyncpg.Connection) -> str:
    return str((await conn.fetchrow(REVISION_AND_EPOCH))["epoch"])


async def state(conn: asyncpg.Connection) -> StoredConfig:
    """Call inside a repeatable-read transaction, so all of it is one revision."""
    revision, at_epoch = await conn.fetchrow(REVISION_AND_EPOCH)
    return StoredConfig(revision, await providers.list_all(conn), await models.list_all(conn),
                        await settings.get(conn), await overrides.list_admin(conn), at_epoch,
                        await groups.list_all(conn), await limits.list_all(conn))


async def changes_after(conn: asyncpg.Connection, revision: int, at_epoch: str
                        ) -> tuple[int, list[tuple[int, list[ChangeRecord], dt.datetime]]] | None:
    """The current revision and the change records after `revision` of
    `at_epoch` with their commit times, oldest first; None when the watcher cannot resume (another
    epoch, records pruned, or it is ahead of this database, as after a
    restore from backup) and must take the whole state. Revisions that
    changed no configuration (tokens, audit-only writes) have no record.
    Call inside a repeatable-read transaction."""
    current, current_epoch = await conn.fetchrow(REVISION_AND_EPOCH)
    if current_epoch != at_epoch or revision > current or revision < current - CHANGES_RETAINED:
        return None
    rows = await conn.fetch(CHANGES_AFTER, revision)
    return current, [(r["revision"], r["changes"], r["create_time"]) for r in rows]


async def entity(conn: asyncpg.Connection, ref: ChangeRecord) -> Entity | None:
    """The entity a change record names, as it is now; None when it is gone
    and for kinds that carry only the record (user, credential, token)."""
    kind = ref["kind"]
    if kind == "provider":
        return await providers.find(conn, ref["name"])
    if kind == "model":
        return await models.find(conn, ref["name"])
    if kind == "model_override":
        return await overrides.get_admin(conn, ref["context"])
    if kind == "settings":
        return await settings.get(conn)
    if kind == "group":
        return await groups.find(conn, ref["name"])
    if kind == "spend_limit":
        return await limits.find(conn, ref["scope"], ref["subject"], ref["period"])
    return None


@asynccontextmanager
async def listening(dsn: str, on_revision: Callable[[int], None]) -> AsyncIterator[asyncpg.Connection]:
    """A connection of its own that calls on_revision with each committed
    revision (tx.write NOTIFYs it); the wake-up only, the records are the truth."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.add_listener(NOTIFY_CHANNEL, lambda _c, _pid, _channel, payload: on_revision(int(payload)))
        yield conn
    finally:
        if not conn.is_closed():
            await conn.close()
