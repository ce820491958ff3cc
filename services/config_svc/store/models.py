"""Models: rows, the default star, and lookups by provider."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import asyncpg

from modelplane_server.config_svc.store.tx import WriteTx
from modelplane_server.domain.access import ModelAccess
from modelplane_server.domain.errors import AlreadyExists, NotFound
from modelplane_server.domain.types import GenerationOptions, Model, Pricing, ProviderOptions

SELECT = "SELECT * FROM models"
GET = SELECT + " WHERE name = $1"
LOCK = GET + " FOR UPDATE"
LIST_PAGE = (SELECT + " WHERE (provider, name) > ($1, $2) AND ($3 = '' OR provider = $3) "
             "ORDER BY provider, name LIMIT $4")
ALL = SELECT + " ORDER BY provider, name"
EXISTS = "SELECT EXISTS (SELECT 1 FROM models WHERE name = $1)"
HAS_DEFAULT = "SELECT EXISTS (SELECT 1 FROM models WHERE is_default)"
# Models whose access list names a group (jsonb containment uses no index; the table is small).
NAMING_GROUP = "SELECT name FROM models WHERE access->'groups' ? $1 ORDER BY name"
NAMES_FOR_PROVIDER = "SELECT name FROM models WHERE provider = $1 ORDER BY name"
INSERT = (
    "INSERT INTO models (name, provider, model_identifier, display_name, context_limit, enabled, is_default, "
    "options, pricing, provider_options_family, provider_options, access) "
    "VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)"
)
UPDATE = (
    "UPDATE models SET model_identifier=$2, display_name=$3, context_limit=$4, enabled=$5, options=$6, "
    "pricing=$7, provider_options_family=$8, provider_options=$9, access=$10, version=version+1, "
    "update_time=now() WHERE name=$1"
)
DELETE = "DELETE FROM models WHERE name = $1"
UNSTAR_OTHERS = ("UPDATE models SET is_default = false, version = version + 1, update_time = now() "
                 "WHERE is_default AND name <> $1 RETURNING name")
STAR = ("UPDATE models SET is_default = true, version = version + 1, update_time = now() "
        "WHERE name = $1 AND NOT is_default")


def from_row(r: Mapping[str, Any]) -> Model:
    family = r["provider_options_family"]
    return Model(
        name=r["name"],
        provider=r["provider"],
        model_identifier=r["model_identifier"],
        display_name=r["display_name"],
        context_limit=r["context_limit"],
        enabled=r["enabled"],
        is_default=r["is_default"],
        options=GenerationOptions(**r["options"]),
        pricing=Pricing(**r["pricing"]),
        provider_options=ProviderOptions(family, dict(r["provider_options"])) if family else None,
        version=r["version"],
        create_time=r["create_time"],
        update_time=r["update_time"],
        access=access_from_column(r["access"]),
    )


def access_from_column(value: Mapping[str, Any]) -> ModelAccess:
    return ModelAccess(tuple(value.get("users", ())), tuple(value.get("groups", ())))


def access_column(a: ModelAccess) -> dict[str, list[str]]:
    return {} if a.open else {"users": list(a.users), "groups": list(a.groups)}


def _set_fields(obj: Any) -> dict[str, Any]:
    return {k: v for k, v in dataclasses.asdict(obj).items() if v is not None}


def _options_columns(m: Model) -> tuple[dict[str, Any], dict[str, Any], str | None, dict[str, Any]]:
    po = m.provider_options
    return _set_fields(m.options), _set_fields(m.pricing), po.family if po else None, dict(po.values) if po else {}


async def find(conn: asyncpg.Connection, name: str) -> Model | None:
    row = await conn.fetchrow(GET, name)
    return from_row(row) if row else None


async def get(conn: asyncpg.Connection, name: str, *, lock: bool = False) -> Model:
    """The model, or NotFound; lock holds its row until commit, to change it."""
    row = await conn.fetchrow(LOCK if lock else GET, name)
    if row is None:
        raise NotFound(f"model {name!r} not found", reason="MODEL_NOT_FOUND")
    return from_row(row)


async def require(conn: asyncpg.Connection, name: str) -> None:
    """NotFound unless a model with this name exists."""
    if not await conn.fetchval(EXISTS, name):
        raise NotFound(f"model {name!r} not found", reason="MODEL_NOT_FOUND")


async def list_page(conn: asyncpg.Connection, limit: int, after: tuple[str, str], provider: str) -> list[Model]:
    return [from_row(r) for r in await conn.fetch(LIST_PAGE, after[0], after[1], provider, limit)]


async def list_all(conn: asyncpg.Connection) -> list[Model]:
    return [from_row(r) for r in await conn.fetch(ALL)]


async def has_default(conn: asyncpg.Connection) -> bool:
    return bool(await conn.fetchval(HAS_DEFAULT))


async def names_for_provider(conn: asyncpg.Connection, provider: str) -> list[str]:
    return [r["name"] for r in await conn.fetch(NAMES_FOR_PROVIDER, provider)]


async def insert(tx: WriteTx, m: Model) -> Model:
    try:
        await tx.conn.execute(INSERT, m.name, m.provider, m.model_identifier, m.display_name, m.context_limit,
                              m.enabled, m.is_default, *_options_columns(m), access_column(m.access))
    except asyncpg.UniqueViolationError:
        raise AlreadyExists(f"a model named {m.name!r} already exists", reason="MODEL_EXISTS") from None
    tx.changed("model", name=m.name)
    return await get(tx.conn, m.name)


async def update(tx: WriteTx, m: Model) -> Model:
    await tx.conn.execute(UPDATE, m.name, m.model_identifier, m.display_name, m.context_limit, m.enabled,
                          *_options_columns(m), access_column(m.access))
    tx.changed("model", name=m.name)
    return await get(tx.conn, m.name)


async def delete(tx: WriteTx, name: str) -> None:
    await tx.conn.execute(DELETE, name)
    tx.changed("model", name=name)


async def unstar_others(tx: WriteTx, name: str) -> None:
    """Take the default star from every model but `name` (from all when empty)."""
    for r in await tx.conn.fetch(UNSTAR_OTHERS, name):
        tx.changed("model", name=r["name"])


async def star(tx: WriteTx, name: str) -> Model:
    await tx.conn.execute(STAR, name)
    tx.changed("model", name=name)
    return await get(tx.conn, name)


async def names_granting_group(conn: asyncpg.Connection, group: str) -> list[str]:
    """Models whose access list names `group`."""
    return [r["name"] for r in await conn.fetch(NAMING_GROUP, group)]
