"""Providers: create, read, update and delete."""

from __future__ import annotations

from dataclasses import dataclass

from modelplane_server.config_svc import patch
from modelplane_server.config_svc.store import Store, models, providers
from modelplane_server.domain import validation
from modelplane_server.domain.errors import FailedPrecondition
from modelplane_server.domain.types import Provider


@dataclass(frozen=True)
class BaseUrlPolicy:
    """Where provider base URLs may point (from config_svc's settings)."""

    own_addresses: tuple[str, ...]
    allow_metadata_addresses: bool

    def validate(self, p: Provider) -> None:
        validation.validate_provider(p, own_addresses=self.own_addresses,
                                     allow_metadata_addresses=self.allow_metadata_addresses)


async def create_provider(store: Store, policy: BaseUrlPolicy, actor: str, p: Provider,
                          api_key: str | None) -> Provider:
    policy.validate(p)
    if api_key:
        validation.validate_api_key(api_key, "provider.api_key")
    async with store.write(actor, "CreateProvider", f"providers/{p.name}") as tx:
        created = await providers.insert(tx, store.keyring, p, api_key)
        tx.audit = patch.created_provider(created, api_key)
        return created


async def get_provider(store: Store, name: str) -> Provider:
    async with store.connection() as conn:
        return await providers.get(conn, name)


async def list_providers(store: Store, limit: int, after: str) -> list[Provider]:
    async with store.connection() as conn:
        return await providers.list_page(conn, limit, after)


async def update_provider(store: Store, policy: BaseUrlPolicy, actor: str, update: patch.Update[Provider]) -> Provider:
    async with store.write(actor, "UpdateProvider", f"providers/{update.name}") as tx:
        # Read, check and change under the row lock: a write without an
        # etag is unconditional and must not fail because another landed first.
        current = await providers.get(tx.conn, update.name, lock=True)
        patch.check_etag(update.etag, current.version, f"provider {update.name!r}")
        updated, api_key, tx.audit = patch.patch_provider(current, update)
        policy.validate(updated)
        return await providers.update(tx, store.keyring, updated, api_key)


async def delete_provider(store: Store, actor: str, name: str, etag: str, force: bool) -> None:
    async with store.write(actor, "DeleteProvider", f"providers/{name}", {"force": force}) as tx:
        current = await providers.get(tx.conn, name, lock=True)
        patch.check_etag(etag, current.version, f"provider {name!r}")
        in_use = await models.names_for_provider(tx.conn, name)
        if in_use and not force:
            raise FailedPrecondition(
                f"provider {name!r} still has {len(in_use)} model(s) ({', '.join(in_use[:5])}); "
                "delete them first or pass force", reason="PROVIDER_HAS_MODELS")
        await providers.delete(tx, name)
