"""Providers: rows, their sealed central key, and the delete that takes
their models and user keys with them."""

from __future__ import annotations

from typing import Any, Mapping

import asyncpg

from modelplane_server.config_svc.patch import Keep
from modelplane_server.config_svc.store import models
from modelplane_server.config_svc.store.tx import WriteTx
from modelplane_server.domain.errors import AlreadyExists, NotFound
from modelplane_server.domain.types import KeyPolicy, Provider, ProviderType
from modelplane_server.runtime import crypto

# Reads never carry a secret: only whether a key is set leaves the database.
SELECT = (
    "SELECT name, type, display_name, base_url, enabled, central_key_enabled, allow_user_keys, "
    "central_key_fallback, region, api_key_ciphertext IS NOT NULL AS api_key_set, version, create_time, "
    "update_time FROM providers"
)
GET = SELECT + " WHERE name = $1"
LOCK = GET + " FOR UPDATE"
LIST_PAGE = SELECT + " WHERE name > $1 ORDER BY name LIMIT $2"
ALL = SELECT + " ORDER BY name"
INSERT = (
    "INSERT INTO providers (name, type, display_name, base_url, enabled, central_key_enabled, allow_user_keys, "
    "central_key_fallback, region, api_key_key_id, api_key_ciphertext) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)"
)
UPDATE = (
    "UPDATE providers SET display_name=$2, base_url=$3, enabled=$4, central_key_enabled=$5, allow_user_keys=$6, "
    "central_key_fallback=$7, region=$8, version=version+1, update_time=now() WHERE name=$1"
)
SET_KEY = "UPDATE providers SET api_key_key_id=$2, api_key_ciphertext=$3 WHERE name=$1"
USERS_WITH_KEYS = "SELECT user_name FROM user_keys WHERE provider = $1"
DELETE_MODELS = "DELETE FROM models WHERE provider = $1"
DELETE = "DELETE FROM providers WHERE name = $1"  # cascades user_keys


def from_row(r: Mapping[str, Any]) -> Provider:
    return Provider(
        name=r["name"],
        type=ProviderType(r["type"]),
        display_name=r["display_name"],
        base_url=r["base_url"],
        enabled=r["enabled"],
        key_policy=KeyPolicy(r["central_key_enabled"], r["allow_user_keys"], r["central_key_fallback"]),
        api_key_set=r["api_key_set"],
        region=r["region"],
        version=r["version"],
        create_time=r["create_time"],
        update_time=r["update_time"],
    )


def key_aad(name: str) -> str:
    """Binds a sealed central key to its provider row."""
    return crypto.aad_for("providers", "api_key", name)


def _seal(keyring: crypto.Keyring, name: str, api_key: str | None) -> tuple[str | None, bytes | None]:
    if not api_key:
        return None, None
    sealed = keyring.encrypt(api_key, aad=key_aad(name))
    return sealed.key_id, sealed.blob


async def find(conn: asyncpg.Connection, name: str) -> Provider | None:
    row = await conn.fetchrow(GET, name)
    return from_row(row) if row else None


async def get(conn: asyncpg.Connection, name: str, *, lock: bool = False) -> Provider:
    """The provider, or NotFound; lock holds its row until commit, to change it."""
    row = await conn.fetchrow(LOCK if lock else GET, name)
    if row is None:
        raise NotFound(f"provider {name!r} not found", reason="PROVIDER_NOT_FOUND")
    return from_row(row)


async def list_page(conn: asyncpg.Connection, limit: int, after: str) -> list[Provider]:
    return [from_row(r) for r in await conn.fetch(LIST_PAGE, after, limit)]


async def list_all(conn: asyncpg.Connection) -> list[Provider]:
    return [from_row(r) for r in await conn.fetch(ALL)]


async def insert(tx: WriteTx, keyring: crypto.Keyring, p: Provider, api_key: str | None) -> Provider:
    key_id, blob = _seal(keyring, p.name, api_key)
    try:
        await tx.conn.execute(INSERT, p.name, p.type.value, p.display_name, p.base_url, p.enabled,
                              p.key_policy.central_key_enabled, p.key_policy.allow_user_keys,
                              p.key_policy.central_key_fallback, p.region, key_id, blob)
    except asyncpg.UniqueViolationError:
        raise AlreadyExists(f"a provider named {p.name!r} already exists", reason="PROVIDER_EXISTS") from None
    tx.changed("provider", name=p.name)
    if api_key:
        tx.changed("credential", provider=p.name, user="")
    return await get(tx.conn, p.name)


async def update(tx: WriteTx, keyring: crypto.Keyring, p: Provider, api_key: str | None | Keep) -> Provider:
    """Save p's fields and, unless api_key is Keep, set (or with None remove) its key."""
    await tx.conn.execute(UPDATE, p.name, p.display_name, p.base_url, p.enabled, p.key_policy.central_key_enabled,
                          p.key_policy.allow_user_keys, p.key_policy.central_key_fallback, p.region)
    if not isinstance(api_key, Keep):
        await tx.conn.execute(SET_KEY, p.name, *_seal(keyring, p.name, api_key))
        tx.changed("credential", provider=p.name, user="")
    tx.changed("provider", name=p.name)
    return await get(tx.conn, p.name)


async def delete(tx: WriteTx, name: str) -> None:
    """Delete the provider with its models and its users' keys."""
    gone_models = await models.names_for_provider(tx.conn, name)
    users = [r["user_name"] for r in await tx.conn.fetch(USERS_WITH_KEYS, name)]
    await tx.conn.execute(DELETE_MODELS, name)
    await tx.conn.execute(DELETE, name)
    for m in gone_models:
        tx.changed("model", name=m)
    for u in users:
        tx.changed("user", user=u)
        tx.changed("credential", provider=name, user=u)
    tx.changed("credential", provider=name, user="")
    tx.changed("provider", name=name)
