"""Connection pool, migrations and driver-error translation."""

from __future__ import annotations

import contextlib
import json
from importlib import resources
from typing import Iterator

import asyncpg
import structlog

from modelplane_server.domain.errors import Unavailable

log = structlog.get_logger(__name__)

# Any fixed number works; it only has to be the same for every replica.
MIGRATION_LOCK_ID = 0x6D6F64656C706C  # "modelpl"

# Driver errors that mean "the database is not there right now", as opposed
# to a bug in our SQL.
_UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.ConnectionFailureError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.InterfaceError,
    # Raised when connecting, e.g. while a database is being restored.
    asyncpg.exceptions.InvalidCatalogNameError,
    # The driver's own state broke under it, e.g. the server crashed in the
    # middle of a protocol exchange ("cannot switch to state ..."); seen in
    # Postgres crash tests. The connection is discarded either way.
    asyncpg.exceptions.InternalClientError,
)


@contextlib.contextmanager
def driver_errors() -> Iterator[None]:
    """Turn connectivity failures into a domain Unavailable error. The store
    enters the driver only inside this (Store.write, read, connection)."""
    try:
        yield
    except _UNAVAILABLE_ERRORS as exc:
        log.warning("database unavailable", error_type=type(exc).__name__)
        raise Unavailable("the configuration database is unavailable; try again shortly",
                          reason="DATABASE_UNAVAILABLE") from exc


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=_init_connection, command_timeout=30
    )
    assert pool is not None
    return pool


def _migration_files() -> list[tuple[str, str]]:
    folder = resources.files("modelplane_server.config_svc") / "migrations"
    files = sorted(
        (entry.name, entry.read_text(encoding="utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    )
    return files


async def migrate(conn: asyncpg.Connection) -> list[str]:
    """Apply pending migrations in order, under an advisory lock so that
    replicas starting together apply each file once. Returns what it applied."""
    applied: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_ID)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for name, sql in _migration_files():
            if name in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", name)
            applied.append(name)
            log.info("migration applied", migration=name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_ID)
    return applied
