"""Stored API keys: users' own keys, access to any key in plaintext, and
re-encryption under the keyring's primary key.

Every ciphertext is sealed with its row as associated data, so a blob copied
to another row does not decrypt.
"""

from __future__ import annotations

import asyncpg

from modelplane_server.config_svc.store.providers import key_aad as central_key_aad
from modelplane_server.config_svc.store.tx import WriteTx
from modelplane_server.domain.errors import NotFound
from modelplane_server.domain.types import UserKey
from modelplane_server.runtime import crypto

SAVE_USER_KEY = (
    "INSERT INTO user_keys (user_name, provider, key_id, ciphertext) VALUES ($1,$2,$3,$4) "
    "ON CONFLICT (user_name, provider) DO UPDATE SET key_id = excluded.key_id, "
    "ciphertext = excluded.ciphertext, update_time = now() RETURNING update_time"
)
DELETE_USER_KEY = "DELETE FROM user_keys WHERE user_name=$1 AND provider=$2 RETURNING 1"
LIST_USER_KEYS = "SELECT user_name, provider, update_time FROM user_keys WHERE user_name = $1 ORDER BY provider"
KEY_PROVIDERS_OF_MANY = ("SELECT user_name, provider FROM user_keys WHERE user_name = ANY($1::text[]) "
                         "ORDER BY user_name, provider")
USER_KEY = "SELECT key_id, ciphertext FROM user_keys WHERE user_name = $1 AND provider = $2"
CENTRAL_KEY = ("SELECT api_key_key_id AS key_id, api_key_ciphertext AS ciphertext FROM providers "
               "WHERE name = $1")
STORED_KEY_IDS = ("SELECT api_key_key_id AS k FROM providers WHERE api_key_key_id IS NOT NULL "
                  "UNION SELECT key_id FROM user_keys")
LOCK_CENTRAL_KEYS = ("SELECT name, api_key_key_id, api_key_ciphertext FROM providers "
                     "WHERE api_key_key_id IS NOT NULL FOR UPDATE")
RESEAL_CENTRAL_KEY = "UPDATE providers SET api_key_key_id=$2, api_key_ciphertext=$3 WHERE name=$1"
LOCK_USER_KEYS = "SELECT user_name, provider, key_id, ciphertext FROM user_keys FOR UPDATE"
RESEAL_USER_KEY = "UPDATE user_keys SET key_id=$3, ciphertext=$4 WHERE user_name=$1 AND provider=$2"


def user_key_aad(user: str, provider: str) -> str:
    return crypto.aad_for("user_keys", "api_key", f"{user}\x00{provider}")


async def save_user_key(tx: WriteTx, keyring: crypto.Keyring, user: str, provider: str, api_key: str) -> UserKey:
    sealed = keyring.encrypt(api_key, aad=user_key_aad(user, provider))
    row = await tx.conn.fetchrow(SAVE_USER_KEY, user, provider, sealed.key_id, sealed.blob)
    tx.changed("user", user=user)
    tx.changed("credential", provider=provider, user=user)
    return UserKey(user, provider, row["update_time"])


async def delete_user_key(tx: WriteTx, user: str, provider: str) -> None:
    if await tx.conn.fetchval(DELETE_USER_KEY, user, provider) is None:
        raise NotFound(f"no personal key is saved for provider {provider!r}", reason="USER_KEY_NOT_FOUND")
    tx.changed("user", user=user)
    tx.changed("credential", provider=provider, user=user)


async def list_user_keys(conn: asyncpg.Connection, user: str) -> list[UserKey]:
    return [UserKey(r["user_name"], r["provider"], r["update_time"]) for r in await conn.fetch(LIST_USER_KEYS, user)]


async def key_providers_of_many(conn: asyncpg.Connection, users: list[str]) -> dict[str, list[str]]:
    """The providers each user holds a key for (users without any are absent)."""
    found: dict[str, list[str]] = {}
    for r in await conn.fetch(KEY_PROVIDERS_OF_MANY, users):
        found.setdefault(r["user_name"], []).append(r["provider"])
    return found


async def access(conn: asyncpg.Connection, keyring: crypto.Keyring, provider: str, user: str) -> str:
    """One stored key in plaintext: the user's own (user set) or the provider's central one."""
    if user:
        row = await conn.fetchrow(USER_KEY, user, provider)
        aad = user_key_aad(user, provider)
    else:
        row = await conn.fetchrow(CENTRAL_KEY, provider)
        if row is None:
            raise NotFound(f"provider {provider!r} not found", reason="PROVIDER_NOT_FOUND")
        aad = central_key_aad(provider)
    if row is None or row["ciphertext"] is None:
        raise NotFound("no key is stored for that credential", reason="USER_KEY_NOT_FOUND")
    return keyring.decrypt(crypto.Sealed(row["key_id"], bytes(row["ciphertext"])), aad=aad)


async def stored_key_ids(conn: asyncpg.Connection) -> set[str]:
    """The keyring keys stored ciphertexts need."""
    return {r["k"] for r in await conn.fetch(STORED_KEY_IDS)}


async def rotate(conn: asyncpg.Connection, keyring: crypto.Keyring) -> dict[str, int]:
    """Re-encrypt every stored key that is not sealed with the primary key."""
    counts = {"providers": 0, "user_keys": 0, "already_current": 0}
    for r in await conn.fetch(LOCK_CENTRAL_KEYS):
        resealed = _reseal(keyring, crypto.Sealed(r["api_key_key_id"], bytes(r["api_key_ciphertext"])),
                           central_key_aad(r["name"]))
        if resealed is None:
            counts["already_current"] += 1
            continue
        await conn.execute(RESEAL_CENTRAL_KEY, r["name"], resealed.key_id, resealed.blob)
        counts["providers"] += 1
    for r in await conn.fetch(LOCK_USER_KEYS):
        resealed = _reseal(keyring, crypto.Sealed(r["key_id"], bytes(r["ciphertext"])),
                           user_key_aad(r["user_name"], r["provider"]))
        if resealed is None:
            counts["already_current"] += 1
            continue
        await conn.execute(RESEAL_USER_KEY, r["user_name"], r["provider"], resealed.key_id, resealed.blob)
        counts["user_keys"] += 1
    return counts


def _reseal(keyring: crypto.Keyring, sealed: crypto.Sealed, aad: str) -> crypto.Sealed | None:
    """The key sealed with the primary key, or None when it already is."""
    if not keyring.needs_rotation(sealed):
        return None
    return keyring.encrypt(keyring.decrypt(sealed, aad=aad), aad=aad)
