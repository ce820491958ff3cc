"""Deployment settings (domain Settings): read and update."""

from __future__ import annotations

from modelplane_server.config_svc import patch
from modelplane_server.config_svc.store import Store, settings
from modelplane_server.domain.types import Settings


async def get_settings(store: Store) -> Settings:
    async with store.connection() as conn:
        return await settings.get(conn)


async def update_settings(store: Store, actor: str, update: patch.Update[None]) -> Settings:
    async with store.write(actor, "UpdateSettings", "settings") as tx:
        current = await settings.get(tx.conn, lock="update")
        patch.check_etag(update.etag, current.version, "settings")
        updated, tx.audit = patch.patch_settings(current, update)
        return await settings.save(tx, updated)
