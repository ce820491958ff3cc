"""Model overrides: the admins' per context, and users' personal ones."""

from __future__ import annotations

from modelplane_server.config_svc.store import Store, models, overrides, settings
from modelplane_server.domain.errors import FailedPrecondition
from modelplane_server.domain.types import ModelOverride, OverrideContext


async def set_model_override(store: Store, actor: str, context: OverrideContext, model: str) -> ModelOverride:
    async with store.write(actor, "SetModelOverride", f"model_overrides/{context}", {"model": model}) as tx:
        await models.require(tx.conn, model)
        return await overrides.set_admin(tx, context, model)


async def clear_model_override(store: Store, actor: str, context: OverrideContext) -> None:
    async with store.write(actor, "ClearModelOverride", f"model_overrides/{context}") as tx:
        await overrides.clear_admin(tx, context)


async def list_model_overrides(store: Store) -> list[ModelOverride]:
    async with store.connection() as conn:
        return await overrides.list_admin(conn)


async def set_personal_override(store: Store, actor: str, user: str, context: OverrideContext,
                                model: str) -> ModelOverride:
    async with store.write(actor, "SetPersonalOverride", f"users/{user}/overrides/{context}",
                           {"model": model}) as tx:
        if not (await settings.get(tx.conn, lock="share")).personal_overrides_enabled:
            raise FailedPrecondition("personal model overrides are switched off for this deployment; "
                                     "an administrator can enable them", reason="PERSONAL_OVERRIDES_DISABLED")
        await models.require(tx.conn, model)
        return await overrides.set_personal(tx, user, context, model)


async def clear_personal_override(store: Store, actor: str, user: str, context: OverrideContext) -> None:
    async with store.write(actor, "ClearPersonalOverride", f"users/{user}/overrides/{context}") as tx:
        await overrides.clear_personal(tx, user, context)


async def list_personal_overrides(store: Store, user: str) -> tuple[list[ModelOverride], bool]:
    """The user's overrides, and whether personal overrides are switched on."""
    async with store.connection() as conn:
        enabled = (await settings.get(conn)).personal_overrides_enabled
        return await overrides.list_personal(conn, user), enabled
