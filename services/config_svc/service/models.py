"""Models: create, read, update, delete, and the default star."""

from __future__ import annotations

import dataclasses

import asyncpg

from modelplane_server.config_svc import patch
from modelplane_server.config_svc.store import Store, groups, models, providers
from modelplane_server.domain import validation
from modelplane_server.domain.access import ModelAccess
from modelplane_server.domain.errors import NotFound
from modelplane_server.domain.governance_validation import access_violations
from modelplane_server.domain.types import Model


async def create_model(store: Store, actor: str, m: Model) -> Model:
    if not m.name:
        m = dataclasses.replace(m, name=validation.derive_model_name(m.provider, m.model_identifier))
    async with store.write(actor, "CreateModel", f"models/{m.name}") as tx:
        provider = await providers.get(tx.conn, m.provider)
        validation.raise_if_any(validation.model_violations(m, provider.type) + access_violations(m.access))
        await _check_groups(tx.conn, m.access)
        # The first model (more precisely: a model created while there is no
        # default) becomes the default.
        created = await models.insert(tx, dataclasses.replace(m, is_default=not await models.has_default(tx.conn)))
        tx.audit = patch.created_model(created)
        return created


async def get_model(store: Store, name: str) -> Model:
    async with store.connection() as conn:
        return await models.get(conn, name)


async def list_models(store: Store, limit: int, after: tuple[str, str], provider: str) -> list[Model]:
    async with store.connection() as conn:
        return await models.list_page(conn, limit, after, provider)


async def update_model(store: Store, actor: str, update: patch.Update[Model]) -> Model:
    async with store.write(actor, "UpdateModel", f"models/{update.name}") as tx:
        current = await models.get(tx.conn, update.name, lock=True)
        patch.check_etag(update.etag, current.version, f"model {update.name!r}")
        provider = await providers.get(tx.conn, current.provider)
        updated, tx.audit = patch.patch_model(current, update)
        validation.raise_if_any(validation.model_violations(updated, provider.type)
                                + access_violations(updated.access))
        await _check_groups(tx.conn, updated.access)
        return await models.update(tx, updated)


async def delete_model(store: Store, actor: str, name: str, etag: str) -> None:
    async with store.write(actor, "DeleteModel", f"models/{name}") as tx:
        current = await models.get(tx.conn, name, lock=True)
        patch.check_etag(etag, current.version, f"model {name!r}")
        await models.delete(tx, name)


async def set_default_model(store: Store, actor: str, name: str) -> Model | None:
    """Star `name` (or clear the star when empty). Writers are serialised by
    the revision, and the partial unique index guarantees that no
    interleaving can ever leave two defaults."""
    async with store.write(actor, "SetDefaultModel", f"models/{name}" if name else "models",
                           {"default": name}) as tx:
        if name:
            await models.get(tx.conn, name, lock=True)
        await models.unstar_others(tx, name)
        return await models.star(tx, name) if name else None


async def _check_groups(conn: asyncpg.Connection, access: ModelAccess) -> None:
    """NOT_FOUND (GROUP_NOT_FOUND) for a group that does not exist: a typo
    in an access list would otherwise lock its members out silently."""
    if not access.groups:
        return
    unknown = await groups.missing(conn, access.groups)
    if unknown:
        raise NotFound(f"group {unknown[0]!r} not found (model.access.groups)", reason="GROUP_NOT_FOUND")
