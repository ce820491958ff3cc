"""The one write transaction every change runs in.

It first bumps the config revision (serialising writers, so revisions commit
in order); the caller then changes rows and records what changed for
watchers; at the end it writes one audit event and the change record and
NOTIFYs, which Postgres delivers on commit.
"""

from __future__ import annotations

import contextlib
import contextvars
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Iterator, Mapping

import asyncpg

from modelplane_server.config_svc.db import driver_errors

NOTIFY_CHANNEL = "modelplane_config"
# How many revisions of change records WatchConfig can resume from.
CHANGES_RETAINED = 10_000

BUMP_REVISION = "UPDATE config_revision SET revision = revision + 1 RETURNING revision"
INSERT_AUDIT_EVENT = ("INSERT INTO audit_events (revision, actor, action, resource, change) "
                      "VALUES ($1, $2, $3, $4, $5)")
# clock_timestamp(), not the default now() (the transaction's start): as close
# to the commit as SQL gets, so resolvers measure write-to-visible from it.
INSERT_CHANGES = "INSERT INTO config_changes (revision, changes, create_time) VALUES ($1, $2, clock_timestamp())"
PRUNE_CHANGES = "DELETE FROM config_changes WHERE revision <= $1"
NOTIFY = "SELECT pg_notify($1, $2)"


@dataclass
class WriteTx:
    conn: asyncpg.Connection
    revision: int
    # The audit event's change: what the caller asked for. Updates set it
    # once the patch is known, inside the transaction.
    audit: Mapping[str, Any]
    # What changed, for watchers: one {"kind": ..., <what names it>} per entity.
    changes: list[dict[str, str]] = field(default_factory=list)

    def changed(self, kind: str, **ref: str) -> None:
        self.changes.append({"kind": kind, **ref})


@dataclass
class CallRevision:
    """The revisions one call committed (see recording())."""

    committed: int = 0


_call_revision: contextvars.ContextVar[CallRevision | None] = contextvars.ContextVar(
    "modelplane_call_revision", default=None)


@contextlib.contextmanager
def recording() -> Iterator[CallRevision]:
    """Within it, every write that commits records its revision in the
    yielded CallRevision (the highest, if several), so the caller (the
    ConfigService revision stage) can report it without the use cases
    passing it up. A holder, not the value: a write in a child task still
    reaches it."""
    holder = CallRevision()
    token = _call_revision.set(holder)
    try:
        yield holder
    finally:
        _call_revision.reset(token)


@asynccontextmanager
async def write(pool: asyncpg.Pool, actor: str, action: str, resource: str,
                audit: Mapping[str, Any] | None = None) -> AsyncIterator[WriteTx]:
    with driver_errors():
        async with pool.acquire() as conn, conn.transaction():
            tx = WriteTx(conn, await conn.fetchval(BUMP_REVISION), audit or {})
            yield tx
            await conn.execute(INSERT_AUDIT_EVENT, tx.revision, actor, action, resource, dict(tx.audit))
            if tx.changes:
                await conn.execute(INSERT_CHANGES, tx.revision, tx.changes)
                await conn.execute(PRUNE_CHANGES, tx.revision - CHANGES_RETAINED)
            await conn.execute(NOTIFY, NOTIFY_CHANNEL, str(tx.revision))
    holder = _call_revision.get()
    if holder is not None:  # committed: the transaction block ended without raising
        holder.committed = max(holder.committed, tx.revision)
