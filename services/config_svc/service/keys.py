"""Users' own API keys, and what resolvers read per user and per credential."""

from __future__ import annotations

from modelplane_server.config_svc.store import Store, keys, overrides, providers, settings, watch
from modelplane_server.domain import validation
from modelplane_server.domain.errors import FailedPrecondition
from modelplane_server.domain.types import ModelOverride, UserKey


async def set_user_key(store: Store, actor: str, user: str, provider: str, api_key: str) -> UserKey:
    validation.validate_api_key(api_key, "api_key")
    async with store.write(actor, "SetUserKey", f"users/{user}/keys/{provider}", {"api_key": "<set>"}) as tx:
        if not (await settings.get(tx.conn, lock="share")).byok_enabled:
            raise FailedPrecondition("personal API keys are switched off for this deployment "
                                     "(BYOK is disabled)", reason="BYOK_DISABLED")
        if not (await providers.get(tx.conn, provider)).key_policy.allow_user_keys:
            raise FailedPrecondition(f"provider {provider!r} does not accept personal API keys",
                                     reason="USER_KEYS_NOT_ALLOWED")
        return await keys.save_user_key(tx, store.keyring, user, provider, api_key)


async def delete_user_key(store: Store, actor: str, user: str, provider: str) -> None:
    async with store.write(actor, "DeleteUserKey", f"users/{user}/keys/{provider}", {"api_key": "<removed>"}) as tx:
        await keys.delete_user_key(tx, user, provider)


async def list_user_keys(store: Store, user: str) -> list[UserKey]:
    async with store.connection() as conn:
        return await keys.list_user_keys(conn, user)


async def user_config(store: Store, user: str) -> tuple[list[ModelOverride], list[str], int]:
    """The user's personal overrides, the providers they hold keys for, and the revision read at."""
    async with store.read() as conn:
        revision = await watch.current_revision(conn)
        return (await overrides.list_personal(conn, user),
                [k.provider for k in await keys.list_user_keys(conn, user)], revision)


async def user_configs(store: Store, users: list[str]
                       ) -> tuple[list[tuple[str, list[ModelOverride], list[str]]], int]:
    """user_config for each of `users` (distinct), read in one transaction, and the revision read at."""
    async with store.read() as conn:
        revision = await watch.current_revision(conn)
        personal = await overrides.list_personal_of_many(conn, users)
        held = await keys.key_providers_of_many(conn, users)
    return [(user, personal.get(user, []), held.get(user, [])) for user in users], revision


async def access_credential(store: Store, provider: str, user: str) -> tuple[str, int]:
    """One stored key in plaintext (the user's own when user is set, else the
    provider's central one), and the revision read at."""
    async with store.read() as conn:
        revision = await watch.current_revision(conn)
        return await keys.access(conn, store.keyring, provider, user), revision
