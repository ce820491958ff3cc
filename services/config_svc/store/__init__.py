"""Postgres store: SQL lives here and nowhere else.

One module per aggregate (providers, models, settings, overrides, keys,
tokens, audit, watch) holds its SQL as named constants and offers plain
reads, locks and saves on a connection; saves take the WriteTx of the one
write transaction (store.tx) and record what they changed for watchers.
Reads return domain dataclasses, and driver errors become domain errors.

`Store` owns the pool and the keyring and opens connections and
transactions; the service layer runs each use case in one of them.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, AsyncIterator, Mapping

import asyncpg

from modelplane_server.config_svc.db import driver_errors
from modelplane_server.config_svc.store import keys, tokens, watch
from modelplane_server.config_svc.store.tx import WriteTx, write
from modelplane_server.domain.types import ApiToken, Role
from modelplane_server.runtime import crypto


class Store:
    def __init__(self, pool: asyncpg.Pool, keyring: crypto.Keyring) -> None:
        self.pool = pool
        self.keyring = keyring

    def write(self, actor: str, action: str, resource: str,
              audit: Mapping[str, Any] | None = None) -> AbstractAsyncContextManager[WriteTx]:
        """The write transaction: a new revision, one audit event by `actor`
        doing `action` to `resource`, and a NOTIFY on commit."""
        return write(self.pool, actor, action, resource, audit)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection in a read-only transaction that sees one revision throughout."""
        with driver_errors():
            async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
                yield conn

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection for reads that need no common view."""
        with driver_errors():
            async with self.pool.acquire() as conn:
                yield conn

    # Whole operations for callers outside a request (the CLI, the watch
    # broadcaster, health checks, tests), each its own transaction.

    async def current_revision(self) -> int:
        async with self.connection() as conn:
            return await watch.current_revision(conn)

    async def epoch(self) -> str:
        """The history revisions count in. Not cached: a process that outlives
        a restore (against the runbook) must not keep the old database's."""
        async with self.connection() as conn:
            return await watch.epoch(conn)

    async def ping(self) -> None:
        async with self.connection() as conn:
            await conn.fetchval("SELECT 1")

    async def stored_key_ids(self) -> set[str]:
        async with self.connection() as conn:
            return await keys.stored_key_ids(conn)

    async def create_token(self, actor: str, token_id: str, role: Role, subject: str, description: str,
                           secret_hash: bytes) -> ApiToken:
        async with self.write(actor, "CreateApiToken", f"tokens/{token_id}",
                              {"role": role.value, "subject": subject}) as tx:
            return await tokens.insert(tx, token_id, role, subject, description, secret_hash)

    async def rotate_keys(self, actor: str) -> dict[str, int]:
        """Re-encrypt every stored key that is not sealed with the primary key."""
        async with self.write(actor, "RotateKeys", "keyring", {"primary": self.keyring.primary_key_id}) as tx:
            return await keys.rotate(tx.conn, self.keyring)
