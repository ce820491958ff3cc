"""Postgres store: SQL lives here and nowhere else.

Every write runs in `_write`: one transaction that first bumps the config
revision (serialising writers, so revisions commit in order), then changes
rows, records what changed for watchers and one audit event, and NOTIFYs,
which Postgres delivers on commit. Reads return domain dataclasses.
"""

from __future__ import annotations

import dataclasses
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Mapping, Sequence

import asyncpg

from modelplane_server.runtime import crypto
from modelplane_server.domain.types import (
    ApiToken,
    AuditEvent,
    GenerationOptions,
    KeyPolicy,
    Model,
    ModelOverride,
    OverrideContext,
    Pricing,
    Principal,
    Provider,
    ProviderOptions,
    ProviderType,
    Role,
    Settings,
    UserKey,
)
from modelplane_server.domain.errors import AlreadyExists, Aborted, FailedPrecondition, NotFound
from modelplane_server.config_svc.db import wrap_driver_errors

NOTIFY_CHANNEL = "modelplane_config"
# How many revisions of change records WatchConfig can resume from.
CHANGES_RETAINED = 10_000

# The revision and the epoch it counts in: the database's OID (new after a
# restore into a new database) joined with the history's random id (0002).
# Read together, in one statement, so an event never pairs one database's
# revision with another's epoch.
REVISION_AND_EPOCH = (
    "SELECT r.revision, d.oid::text || '.' || r.epoch_id AS epoch "
    "FROM config_revision r JOIN pg_database d ON d.datname = current_database()"
)


class _Unset:
    """Marks "leave as is" where None means "remove"."""


UNSET: Any = _Unset()


def _check_etag(expected: str, version: int, what: str) -> None:
    if expected and expected != str(version):
        raise Aborted(f"{what} was changed by someone else (etag {expected} is stale, current "
                      f"is {version}); read it again and retry")


@dataclass
class WriteTx:
    conn: asyncpg.Connection
    revision: int
    changes: list[dict[str, str]] = field(default_factory=list)

    def changed(self, kind: str, **ref: str) -> None:
        self.changes.append({"kind": kind, **ref})


@dataclass(frozen=True)
class Snapshot:
    revision: int
    providers: list[Provider]
    models: list[Model]
    settings: Settings
    model_overrides: list[ModelOverride]
    epoch: str


# ---------------------------------------------------------------- row mapping

def _provider(r: Mapping[str, Any]) -> Provider:
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


def _model(r: Mapping[str, Any]) -> Model:
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
    )


def _settings(r: Mapping[str, Any]) -> Settings:
    return Settings(r["byok_enabled"], r["personal_overrides_enabled"], r["version"], r["update_time"])


def _override(r: Mapping[str, Any]) -> ModelOverride:
    return ModelOverride(OverrideContext(r["context"]), r["model"], r.get("user_name", ""), r["update_time"])


def _token(r: Mapping[str, Any]) -> ApiToken:
    return ApiToken(r["id"], Role(r["role"]), r["subject"], r["description"], r["create_time"],
                    r["revoke_time"], r["last_used_time"])


def _set_fields(obj: Any) -> dict[str, Any]:
    return {k: v for k, v in dataclasses.asdict(obj).items() if v is not None}


# Reads never carry a secret: only whether a key is set leaves the database.
PROVIDER_SELECT = (
    "SELECT name, type, display_name, base_url, enabled, central_key_enabled, allow_user_keys, "
    "central_key_fallback, region, api_key_ciphertext IS NOT NULL AS api_key_set, version, create_time, "
    "update_time FROM providers"
)
MODEL_SELECT = "SELECT * FROM models"


class Store:
    def __init__(self, pool: asyncpg.Pool, keyring: crypto.Keyring) -> None:
        self.pool = pool
        self.keyring = keyring

    # ------------------------------------------------------------ write path

    @asynccontextmanager
    async def _write(self, actor: str, action: str, resource: str,
                     change: Mapping[str, Any]) -> AsyncIterator[WriteTx]:
        async with self.pool.acquire() as conn, conn.transaction():
            revision = await conn.fetchval(
                "UPDATE config_revision SET revision = revision + 1 RETURNING revision")
            tx = WriteTx(conn, revision)
            yield tx
            await conn.execute(
                "INSERT INTO audit_events (revision, actor, action, resource, change) "
                "VALUES ($1, $2, $3, $4, $5)", revision, actor, action, resource, dict(change))
            if tx.changes:
                await conn.execute("INSERT INTO config_changes (revision, changes) VALUES ($1, $2)",
                                   revision, tx.changes)
                await conn.execute("DELETE FROM config_changes WHERE revision <= $1",
                                   revision - CHANGES_RETAINED)
            await conn.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, str(revision))

    def _seal(self, plaintext: str, aad: str) -> tuple[str, bytes]:
        sealed = self.keyring.encrypt(plaintext, aad=aad)
        return sealed.key_id, sealed.blob

    # ------------------------------------------------------------ providers

    @wrap_driver_errors
    async def create_provider(self, actor: str, p: Provider, api_key: str | None,
                              audit: Mapping[str, Any]) -> Provider:
        key_id, blob = self._seal(api_key, crypto.aad_for("providers", "api_key", p.name)) \
            if api_key else (None, None)
        try:
            async with self._write(actor, "CreateProvider", f"providers/{p.name}", audit) as tx:
                await tx.conn.execute(
                    "INSERT INTO providers (name, type, display_name, base_url, enabled, "
                    "central_key_enabled, allow_user_keys, central_key_fallback, region, "
                    "api_key_key_id, api_key_ciphertext) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)",
                    p.name, p.type.value, p.display_name, p.base_url, p.enabled,
                    p.key_policy.central_key_enabled, p.key_policy.allow_user_keys,
                    p.key_policy.central_key_fallback, p.region, key_id, blob)
                tx.changed("provider", name=p.name)
                if api_key:
                    tx.changed("credential", provider=p.name, user="")
                created = await self._get_provider(tx.conn, p.name)
        except asyncpg.UniqueViolationError:
            raise AlreadyExists(f"a provider named {p.name!r} already exists",
                                reason="PROVIDER_EXISTS") from None
        return created

    async def _get_provider(self, conn: asyncpg.Connection, name: str, *,
                            for_update: bool = False) -> Provider:
        row = await conn.fetchrow(PROVIDER_SELECT + " WHERE name = $1" +
                                  (" FOR UPDATE" if for_update else ""), name)
        if row is None:
            raise NotFound(f"provider {name!r} not found", reason="PROVIDER_NOT_FOUND")
        return _provider(row)

    @wrap_driver_errors
    async def get_provider(self, name: str) -> Provider:
        async with self.pool.acquire() as conn:
            return await self._get_provider(conn, name)

    @wrap_driver_errors
    async def list_providers(self, limit: int, after: str) -> list[Provider]:
        rows = await self.pool.fetch(PROVIDER_SELECT + " WHERE name > $1 ORDER BY name LIMIT $2",
                                     after, limit)
        return [_provider(r) for r in rows]

    @wrap_driver_errors
    async def update_provider(
        self, actor: str, name: str, etag: str,
        mutate: Callable[[Provider], tuple[Provider, str | None | _Unset, Mapping[str, Any]]],
    ) -> Provider:
        """mutate(current) -> (updated, api_key change (UNSET: keep, None: remove), audit change);
        it runs inside the transaction with the row locked, so validation sees current state."""
        audit: dict[str, Any] = {}
        async with self._write(actor, "UpdateProvider", f"providers/{name}", audit) as tx:
            # Read, check and change under the row lock: a write without an
            # etag is unconditional and must not fail because another landed first.
            current = await self._get_provider(tx.conn, name, for_update=True)
            _check_etag(etag, current.version, f"provider {name!r}")
            updated, api_key, change = mutate(current)
            audit.update(change)
            await tx.conn.execute(
                "UPDATE providers SET display_name=$2, base_url=$3, enabled=$4, central_key_enabled=$5, "
                "allow_user_keys=$6, central_key_fallback=$7, region=$8, version=version+1, "
                "update_time=now() WHERE name=$1",
                name, updated.display_name, updated.base_url, updated.enabled,
                updated.key_policy.central_key_enabled, updated.key_policy.allow_user_keys,
                updated.key_policy.central_key_fallback, updated.region)
            if not isinstance(api_key, _Unset):
                key_id, blob = self._seal(api_key, crypto.aad_for("providers", "api_key", name)) \
                    if api_key else (None, None)
                await tx.conn.execute(
                    "UPDATE providers SET api_key_key_id=$2, api_key_ciphertext=$3 WHERE name=$1",
                    name, key_id, blob)
                tx.changed("credential", provider=name, user="")
            tx.changed("provider", name=name)
            return await self._get_provider(tx.conn, name)

    @wrap_driver_errors
    async def delete_provider(self, actor: str, name: str, etag: str, force: bool) -> None:
        async with self._write(actor, "DeleteProvider", f"providers/{name}", {"force": force}) as tx:
            current = await self._get_provider(tx.conn, name, for_update=True)
            _check_etag(etag, current.version, f"provider {name!r}")
            models = [r["name"] for r in await tx.conn.fetch(
                "SELECT name FROM models WHERE provider = $1 ORDER BY name", name)]
            if models and not force:
                raise FailedPrecondition(
                    f"provider {name!r} still has {len(models)} model(s) ({', '.join(models[:5])}); "
                    "delete them first or pass force", reason="PROVIDER_HAS_MODELS")
            users = [r["user_name"] for r in await tx.conn.fetch(
                "SELECT user_name FROM user_keys WHERE provider = $1", name)]
            await tx.conn.execute("DELETE FROM models WHERE provider = $1", name)
            await tx.conn.execute("DELETE FROM providers WHERE name = $1", name)  # cascades user_keys
            for m in models:
                tx.changed("model", name=m)
            for u in users:
                tx.changed("user", user=u)
                tx.changed("credential", provider=name, user=u)
            tx.changed("credential", provider=name, user="")
            tx.changed("provider", name=name)

    # ------------------------------------------------------------ models

    async def _get_model(self, conn: asyncpg.Connection, name: str, *,
                         for_update: bool = False) -> Model:
        row = await conn.fetchrow(MODEL_SELECT + " WHERE name = $1" +
                                  (" FOR UPDATE" if for_update else ""), name)
        if row is None:
            raise NotFound(f"model {name!r} not found", reason="MODEL_NOT_FOUND")
        return _model(row)

    @wrap_driver_errors
    async def create_model(self, actor: str, m: Model, audit: Mapping[str, Any]) -> Model:
        po = m.provider_options
        try:
            async with self._write(actor, "CreateModel", f"models/{m.name}", audit) as tx:
                await self._get_provider(tx.conn, m.provider)
                # The first model (more precisely: a model created while there
                # is no default) becomes the default.
                has_default = await tx.conn.fetchval("SELECT EXISTS (SELECT 1 FROM models WHERE is_default)")
                await tx.conn.execute(
                    "INSERT INTO models (name, provider, model_identifier, display_name, context_limit, "
                    "enabled, is_default, options, pricing, provider_options_family, provider_options) "
                    "VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)",
                    m.name, m.provider, m.model_identifier, m.display_name, m.context_limit, m.enabled,
                    not has_default, _set_fields(m.options), _set_fields(m.pricing),
                    po.family if po else None, dict(po.values) if po else {})
                tx.changed("model", name=m.name)
                return await self._get_model(tx.conn, m.name)
        except asyncpg.UniqueViolationError:
            raise AlreadyExists(f"a model named {m.name!r} already exists", reason="MODEL_EXISTS") from None

    @wrap_driver_errors
    async def get_model(self, name: str) -> Model:
        async with self.pool.acquire() as conn:
            return await self._get_model(conn, name)

    @wrap_driver_errors
    async def list_models(self, limit: int, after: tuple[str, str], provider: str) -> list[Model]:
        rows = await self.pool.fetch(
            MODEL_SELECT + " WHERE (provider, name) > ($1, $2) AND ($3 = '' OR provider = $3) "
            "ORDER BY provider, name LIMIT $4", after[0], after[1], provider, limit)
        return [_model(r) for r in rows]

    @wrap_driver_errors
    async def update_model(self, actor: str, name: str, etag: str,
                           mutate: Callable[[Model, Provider], tuple[Model, Mapping[str, Any]]]) -> Model:
        audit: dict[str, Any] = {}
        async with self._write(actor, "UpdateModel", f"models/{name}", audit) as tx:
            current = await self._get_model(tx.conn, name, for_update=True)
            _check_etag(etag, current.version, f"model {name!r}")
            provider = await self._get_provider(tx.conn, current.provider)
            updated, change = mutate(current, provider)
            audit.update(change)
            po = updated.provider_options
            await tx.conn.execute(
                "UPDATE models SET model_identifier=$2, display_name=$3, context_limit=$4, enabled=$5, "
                "options=$6, pricing=$7, provider_options_family=$8, provider_options=$9, "
                "version=version+1, update_time=now() WHERE name=$1",
                name, updated.model_identifier, updated.display_name, updated.context_limit,
                updated.enabled, _set_fields(updated.options), _set_fields(updated.pricing),
                po.family if po else None, dict(po.values) if po else {})
            tx.changed("model", name=name)
            return await self._get_model(tx.conn, name)

    @wrap_driver_errors
    async def delete_model(self, actor: str, name: str, etag: str) -> None:
        async with self._write(actor, "DeleteModel", f"models/{name}", {}) as tx:
            current = await self._get_model(tx.conn, name, for_update=True)
            _check_etag(etag, current.version, f"model {name!r}")
            await tx.conn.execute("DELETE FROM models WHERE name = $1", name)
            tx.changed("model", name=name)

    @wrap_driver_errors
    async def set_default_model(self, actor: str, name: str) -> Model | None:
        """Star `name` (or clear the star when empty). Writers are serialised
        by the revision row, and the partial unique index guarantees that no
        interleaving can ever leave two defaults."""
        async with self._write(actor, "SetDefaultModel", f"models/{name}" if name else "models",
                               {"default": name}) as tx:
            if name:
                await self._get_model(tx.conn, name, for_update=True)
            previous = await tx.conn.fetch(
                "UPDATE models SET is_default = false, version = version + 1, update_time = now() "
                "WHERE is_default AND name <> $1 RETURNING name", name)
            for r in previous:
                tx.changed("model", name=r["name"])
            if not name:
                return None
            await tx.conn.execute(
                "UPDATE models SET is_default = true, version = version + 1, update_time = now() "
                "WHERE name = $1 AND NOT is_default", name)
            tx.changed("model", name=name)
            return await self._get_model(tx.conn, name)

    # ------------------------------------------------------------ settings

    @wrap_driver_errors
    async def get_settings(self) -> Settings:
        return _settings(await self.pool.fetchrow("SELECT * FROM settings"))

    @wrap_driver_errors
    async def update_settings(self, actor: str, etag: str, values: Mapping[str, bool]) -> Settings:
        async with self._write(actor, "UpdateSettings", "settings", dict(values)) as tx:
            current = _settings(await tx.conn.fetchrow("SELECT * FROM settings FOR UPDATE"))
            _check_etag(etag, current.version, "settings")
            merged = dataclasses.replace(current, **values)  # type: ignore[arg-type]  # only bool fields
            row = await tx.conn.fetchrow(
                "UPDATE settings SET byok_enabled=$1, personal_overrides_enabled=$2, "
                "version=version+1, update_time=now() RETURNING *",
                merged.byok_enabled, merged.personal_overrides_enabled)
            tx.changed("settings")
            return _settings(row)

    # ------------------------------------------------------------ overrides

    async def _require_model(self, conn: asyncpg.Connection, name: str) -> None:
        if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM models WHERE name = $1)", name):
            raise NotFound(f"model {name!r} not found", reason="MODEL_NOT_FOUND")

    @wrap_driver_errors
    async def set_model_override(self, actor: str, context: OverrideContext, model: str) -> ModelOverride:
        async with self._write(actor, "SetModelOverride", f"model_overrides/{context}",
                               {"model": model}) as tx:
            await self._require_model(tx.conn, model)
            row = await tx.conn.fetchrow(
                "INSERT INTO model_overrides (context, model) VALUES ($1, $2) ON CONFLICT (context) "
                "DO UPDATE SET model = excluded.model, update_time = now() RETURNING *",
                context.value, model)
            tx.changed("model_override", context=context.value)
            return _override(row)

    @wrap_driver_errors
    async def clear_model_override(self, actor: str, context: OverrideContext) -> None:
        async with self._write(actor, "ClearModelOverride", f"model_overrides/{context}", {}) as tx:
            if await tx.conn.fetchval("DELETE FROM model_overrides WHERE context = $1 RETURNING 1",
                                      context.value) is None:
                raise NotFound(f"no admin override is set for {context}", reason="OVERRIDE_NOT_FOUND")
            tx.changed("model_override", context=context.value)

    @wrap_driver_errors
    async def list_model_overrides(self) -> list[ModelOverride]:
        rows = await self.pool.fetch("SELECT * FROM model_overrides ORDER BY context")
        return [_override(r) for r in rows]

    @wrap_driver_errors
    async def set_personal_override(self, actor: str, user: str, context: OverrideContext,
                                    model: str) -> ModelOverride:
        async with self._write(actor, "SetPersonalOverride", f"users/{user}/overrides/{context}",
                               {"model": model}) as tx:
            if not await tx.conn.fetchval("SELECT personal_overrides_enabled FROM settings FOR SHARE"):
                raise FailedPrecondition("personal model overrides are switched off for this deployment; "
                                         "an administrator can enable them",
                                         reason="PERSONAL_OVERRIDES_DISABLED")
            await self._require_model(tx.conn, model)
            row = await tx.conn.fetchrow(
                "INSERT INTO personal_overrides (user_name, context, model) VALUES ($1, $2, $3) "
                "ON CONFLICT (user_name, context) DO UPDATE SET model = excluded.model, "
                "update_time = now() RETURNING *", user, context.value, model)
            tx.changed("user", user=user)
            return _override(row)

    @wrap_driver_errors
    async def clear_personal_override(self, actor: str, user: str, context: OverrideContext) -> None:
        async with self._write(actor, "ClearPersonalOverride", f"users/{user}/overrides/{context}", {}) as tx:
            if await tx.conn.fetchval(
                    "DELETE FROM personal_overrides WHERE user_name = $1 AND context = $2 RETURNING 1",
                    user, context.value) is None:
                raise NotFound(f"no personal override is set for {context}", reason="OVERRIDE_NOT_FOUND")
            tx.changed("user", user=user)

    @wrap_driver_errors
    async def list_personal_overrides(self, user: str) -> list[ModelOverride]:
        rows = await self.pool.fetch(
            "SELECT * FROM personal_overrides WHERE user_name = $1 ORDER BY context", user)
        return [_override(r) for r in rows]

    # ------------------------------------------------------------ user keys

    @wrap_driver_errors
    async def set_user_key(self, actor: str, user: str, provider: str, api_key: str) -> UserKey:
        key_id, blob = self._seal(api_key, crypto.aad_for("user_keys", "api_key", f"{user}\x00{provider}"))
        async with self._write(actor, "SetUserKey", f"users/{user}/keys/{provider}",
                               {"api_key": "<set>"}) as tx:
            if not await tx.conn.fetchval("SELECT byok_enabled FROM settings FOR SHARE"):
                raise FailedPrecondition("personal API keys are switched off for this deployment "
                                         "(BYOK is disabled)", reason="BYOK_DISABLED")
            p = await self._get_provider(tx.conn, provider)
            if not p.key_policy.allow_user_keys:
                raise FailedPrecondition(f"provider {provider!r} does not accept personal API keys",
                                         reason="USER_KEYS_NOT_ALLOWED")
            row = await tx.conn.fetchrow(
                "INSERT INTO user_keys (user_name, provider, key_id, ciphertext) VALUES ($1,$2,$3,$4) "
                "ON CONFLICT (user_name, provider) DO UPDATE SET key_id = excluded.key_id, "
                "ciphertext = excluded.ciphertext, update_time = now() RETURNING update_time",
                user, provider, key_id, blob)
            tx.changed("user", user=user)
            tx.changed("credential", provider=provider, user=user)
            return UserKey(user, provider, row["update_time"])

    @wrap_driver_errors
    async def delete_user_key(self, actor: str, user: str, provider: str) -> None:
        async with self._write(actor, "DeleteUserKey", f"users/{user}/keys/{provider}",
                               {"api_key": "<removed>"}) as tx:
            if await tx.conn.fetchval("DELETE FROM user_keys WHERE user_name=$1 AND provider=$2 RETURNING 1",
                                      user, provider) is None:
                raise NotFound(f"no personal key is saved for provider {provider!r}",
                               reason="USER_KEY_NOT_FOUND")
            tx.changed("user", user=user)
            tx.changed("credential", provider=provider, user=user)

    @wrap_driver_errors
    async def list_user_keys(self, user: str) -> list[UserKey]:
        rows = await self.pool.fetch(
            "SELECT user_name, provider, update_time FROM user_keys WHERE user_name = $1 ORDER BY provider",
            user)
        return [UserKey(r["user_name"], r["provider"], r["update_time"]) for r in rows]

    @wrap_driver_errors
    async def user_config(self, user: str) -> tuple[list[ModelOverride], list[str], int]:
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            revision = await conn.fetchval("SELECT revision FROM config_revision")
            overrides = [_override(r) for r in await conn.fetch(
                "SELECT * FROM personal_overrides WHERE user_name = $1 ORDER BY context", user)]
            providers = [r["provider"] for r in await conn.fetch(
                "SELECT provider FROM user_keys WHERE user_name = $1 ORDER BY provider", user)]
        return overrides, providers, revision

    @wrap_driver_errors
    async def access_credential(self, provider: str, user: str) -> tuple[str, int]:
        """Decrypt one stored key: the user's own (user set) or the central one."""
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            revision = await conn.fetchval("SELECT revision FROM config_revision")
            if user:
                row = await conn.fetchrow(
                    "SELECT key_id, ciphertext FROM user_keys WHERE user_name = $1 AND provider = $2",
                    user, provider)
                aad = crypto.aad_for("user_keys", "api_key", f"{user}\x00{provider}")
            else:
                row = await conn.fetchrow(
                    "SELECT api_key_key_id AS key_id, api_key_ciphertext AS ciphertext FROM providers "
                    "WHERE name = $1", provider)
                if row is None:
                    raise NotFound(f"provider {provider!r} not found", reason="PROVIDER_NOT_FOUND")
                aad = crypto.aad_for("providers", "api_key", provider)
        if row is None or row["ciphertext"] is None:
            raise NotFound("no key is stored for that credential", reason="USER_KEY_NOT_FOUND")
        return self.keyring.decrypt(crypto.Sealed(row["key_id"], bytes(row["ciphertext"])), aad=aad), revision

    # ------------------------------------------------------------ keyring maintenance

    @wrap_driver_errors
    async def stored_key_ids(self) -> set[str]:
        rows = await self.pool.fetch(
            "SELECT api_key_key_id AS k FROM providers WHERE api_key_key_id IS NOT NULL "
            "UNION SELECT key_id FROM user_keys")
        return {r["k"] for r in rows}

    @wrap_driver_errors
    async def rotate_keys(self, actor: str) -> dict[str, int]:
        """Re-encrypt every stored key that is not sealed with the primary key."""
        counts = {"providers": 0, "user_keys": 0, "already_current": 0}
        primary = self.keyring.primary_key_id
        async with self._write(actor, "RotateKeys", "keyring", {"primary": primary}) as tx:
            for r in await tx.conn.fetch("SELECT name, api_key_key_id, api_key_ciphertext FROM providers "
                                         "WHERE api_key_key_id IS NOT NULL FOR UPDATE"):
                sealed = crypto.Sealed(r["api_key_key_id"], bytes(r["api_key_ciphertext"]))
                if not self.keyring.needs_rotation(sealed):
                    counts["already_current"] += 1
                    continue
                aad = crypto.aad_for("providers", "api_key", r["name"])
                plain = self.keyring.decrypt(sealed, aad=aad)
                key_id, blob = self._seal(plain, aad)
                await tx.conn.execute("UPDATE providers SET api_key_key_id=$2, api_key_ciphertext=$3 "
                                      "WHERE name=$1", r["name"], key_id, blob)
                counts["providers"] += 1
            for r in await tx.conn.fetch("SELECT user_name, provider, key_id, ciphertext FROM user_keys "
                                         "FOR UPDATE"):
                sealed = crypto.Sealed(r["key_id"], bytes(r["ciphertext"]))
                if not self.keyring.needs_rotation(sealed):
                    counts["already_current"] += 1
                    continue
                aad = crypto.aad_for("user_keys", "api_key", f"{r['user_name']}\x00{r['provider']}")
                plain = self.keyring.decrypt(sealed, aad=aad)
                key_id, blob = self._seal(plain, aad)
                await tx.conn.execute("UPDATE user_keys SET key_id=$3, ciphertext=$4 "
                                      "WHERE user_name=$1 AND provider=$2",
                                      r["user_name"], r["provider"], key_id, blob)
                counts["user_keys"] += 1
        return counts

    # ------------------------------------------------------------ tokens

    @wrap_driver_errors
    async def create_token(self, actor: str, token_id: str, role: Role, subject: str,
                           description: str, secret_hash: bytes) -> ApiToken:
        async with self._write(actor, "CreateApiToken", f"tokens/{token_id}",
                               {"role": role.value, "subject": subject}) as tx:
            row = await tx.conn.fetchrow(
                "INSERT INTO api_tokens (id, role, subject, description, secret_sha256) "
                "VALUES ($1,$2,$3,$4,$5) RETURNING *", token_id, role.value, subject, description, secret_hash)
            return _token(row)

    @wrap_driver_errors
    async def list_tokens(self, limit: int, after: str, include_revoked: bool) -> list[ApiToken]:
        rows = await self.pool.fetch(
            "SELECT * FROM api_tokens WHERE id > $1 AND ($2 OR revoke_time IS NULL) ORDER BY id LIMIT $3",
            after, include_revoked, limit)
        return [_token(r) for r in rows]

    @wrap_driver_errors
    async def revoke_token(self, actor: str, token_id: str) -> ApiToken:
        async with self._write(actor, "RevokeApiToken", f"tokens/{token_id}", {}) as tx:
            row = await tx.conn.fetchrow(
                "UPDATE api_tokens SET revoke_time = coalesce(revoke_time, now()) WHERE id = $1 RETURNING *",
                token_id)
            if row is None:
                raise NotFound(f"token {token_id!r} not found", reason="TOKEN_NOT_FOUND")
            tx.changed("token", id=token_id)
            return _token(row)

    @wrap_driver_errors
    async def token_for_auth(self, token_id: str) -> tuple[Principal, bytes] | None:
        """The live token's principal and stored hash; None when unknown or revoked."""
        row = await self.pool.fetchrow(
            "SELECT * FROM api_tokens WHERE id = $1 AND revoke_time IS NULL", token_id)
        if row is None:
            return None
        return Principal(Role(row["role"]), row["subject"], row["id"]), bytes(row["secret_sha256"])

    # ------------------------------------------------------------ audit

    @wrap_driver_errors
    async def touch_token(self, token_id: str) -> None:
        """Record use, at most once a minute per token so auth stays read-mostly."""
        await self.pool.execute(
            "UPDATE api_tokens SET last_used_time = now() WHERE id = $1 AND (last_used_time IS NULL "
            "OR last_used_time < now() - interval '1 minute')", token_id)

    @wrap_driver_errors
    async def list_audit_events(self, limit: int, before_id: int, resource_prefix: str) -> list[AuditEvent]:
        rows = await self.pool.fetch(
            "SELECT * FROM audit_events WHERE ($1 = 0 OR id < $1) AND resource LIKE $2 "
            "ORDER BY id DESC LIMIT $3",
            before_id, _like_prefix(resource_prefix), limit)
        return [AuditEvent(r["id"], r["revision"], r["actor"], r["action"], r["resource"], r["change"],
                           r["create_time"]) for r in rows]

    # ------------------------------------------------------------ watch support

    @wrap_driver_errors
    async def current_revision(self) -> int:
        return int(await self.pool.fetchval("SELECT revision FROM config_revision"))

    @wrap_driver_errors
    async def epoch(self) -> str:
        """The history revisions count in. Not cached: a process that outlives
        a restore (against the runbook) must not keep the old database's."""
        return str((await self.pool.fetchrow(REVISION_AND_EPOCH))["epoch"])

    @wrap_driver_errors
    async def snapshot(self) -> Snapshot:
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            revision, epoch = await conn.fetchrow(REVISION_AND_EPOCH)
            providers = [_provider(r) for r in await conn.fetch(PROVIDER_SELECT + " ORDER BY name")]
            models = [_model(r) for r in await conn.fetch(MODEL_SELECT + " ORDER BY provider, name")]
            settings = _settings(await conn.fetchrow("SELECT * FROM settings"))
            overrides = [_override(r) for r in await conn.fetch("SELECT * FROM model_overrides ORDER BY context")]
        return Snapshot(revision, providers, models, settings, overrides, epoch)

    @wrap_driver_errors
    async def changes_after(self, revision: int, epoch: str
                            ) -> tuple[int, list[tuple[int, list[dict[str, str]]]]] | None:
        """The current revision and the change records after `revision` of
        `epoch`, oldest first; None when the watcher cannot resume (another
        epoch, records pruned, or it is ahead of this database, as after a
        restore from backup) and must take a fresh snapshot. Revisions that
        changed no configuration (tokens, audit-only writes) have no record."""
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            current, current_epoch = await conn.fetchrow(REVISION_AND_EPOCH)
            if current_epoch != epoch or revision > current or revision < current - CHANGES_RETAINED:
                return None
            rows = await conn.fetch("SELECT revision, changes FROM config_changes WHERE revision > $1 "
                                    "ORDER BY revision", revision)
        return current, [(r["revision"], r["changes"]) for r in rows]

    @wrap_driver_errors
    async def load_changed(self, refs: Sequence[Mapping[str, str]]) -> dict[str, Any]:
        """Current state of the entities named by change records."""
        out: dict[str, Any] = {"providers": {}, "models": {}, "overrides": {}, "settings": None}
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            for ref in refs:
                kind = ref["kind"]
                if kind == "provider":
                    row = await conn.fetchrow(PROVIDER_SELECT + " WHERE name = $1", ref["name"])
                    out["providers"][ref["name"]] = _provider(row) if row else None
                elif kind == "model":
                    row = await conn.fetchrow(MODEL_SELECT + " WHERE name = $1", ref["name"])
                    out["models"][ref["name"]] = _model(row) if row else None
                elif kind == "model_override":
                    row = await conn.fetchrow("SELECT * FROM model_overrides WHERE context = $1", ref["context"])
                    out["overrides"][ref["context"]] = _override(row) if row else None
                elif kind == "settings":
                    out["settings"] = _settings(await conn.fetchrow("SELECT * FROM settings"))
        return out

    @wrap_driver_errors
    async def ping(self) -> None:
        await self.pool.fetchval("SELECT 1")


def _like_prefix(prefix: str) -> str:
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"

