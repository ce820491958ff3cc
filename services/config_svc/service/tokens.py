"""API tokens: mint, list, revoke, and check a bearer token."""

from __future__ import annotations

from modelplane_server.config_svc.store import Store, tokens
from modelplane_server.domain import bounds, validation
from modelplane_server.domain.errors import FieldViolation, InvalidArgument, NotFound, Unauthenticated
from modelplane_server.domain.types import ApiToken, Principal, Role
from modelplane_server.runtime import tokens as token_format


async def create_api_token(store: Store, actor: str, role: Role | None, subject: str,
                           description: str) -> tuple[ApiToken, str]:
    """A new token and its secret, which is shown this once and never stored.
    Role None: the request named none this service knows."""
    violations = []
    if role is None:
        violations.append(FieldViolation("token.role", "is required: ROLE_ADMIN, ROLE_MEMBER or ROLE_SERVICE"))
    violations += validation.user_violations(subject, "token.subject")
    violations += validation.text_violations(description, "token.description", max_length=bounds.DESCRIPTION)
    if violations or role is None:
        raise InvalidArgument(violations)
    minted = token_format.mint()
    token = await store.create_token(actor, minted.token_id, role, subject, description, minted.secret_hash)
    return token, minted.token


async def list_tokens(store: Store, limit: int, after: str, include_revoked: bool) -> list[ApiToken]:
    async with store.connection() as conn:
        return await tokens.list_page(conn, limit, after, include_revoked)


async def live_token(store: Store, token_id: str) -> tuple[Principal, bytes] | None:
    """The live token's principal and stored hash; None when unknown or revoked."""
    async with store.connection() as conn:
        return await tokens.live(conn, token_id)


async def revoke_token(store: Store, actor: str, token_id: str) -> ApiToken:
    async with store.write(actor, "RevokeApiToken", f"tokens/{token_id}") as tx:
        return await tokens.revoke(tx, token_id)


async def authenticate(store: Store, bearer: str) -> Principal:
    """The caller a bearer token stands for, checked against its stored hash."""
    token_id, secret = token_format.parse(bearer)
    async with store.connection() as conn:
        found = await tokens.live(conn, token_id)
        if found is None or not token_format.verify(secret, found[1]):
            raise Unauthenticated("the bearer token is unknown or revoked")
        await tokens.touch(conn, token_id)
    return found[0]


async def introspect(store: Store, bearer: str) -> Principal:
    """Whose token this is; NotFound, not Unauthenticated, when it is unknown,
    malformed or revoked: this is a verdict about the token in the request,
    which must not read as a refusal of the caller."""
    try:
        return await authenticate(store, bearer)
    except Unauthenticated:
        raise NotFound("the token is unknown, malformed or revoked", reason="TOKEN_NOT_FOUND") from None
