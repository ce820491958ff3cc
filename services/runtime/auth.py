"""Who may make a call: the bearer token in, and the checks servicers make on the caller."""

from __future__ import annotations

from modelplane_server.domain import errors
from modelplane_server.domain.types import Principal, Role


def bearer_token(header: str | None) -> str:
    """The token of an `authorization: Bearer <token>` value, or Unauthenticated."""
    if not header:
        raise errors.Unauthenticated("missing credentials: send metadata 'authorization: Bearer <token>'")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise errors.Unauthenticated("malformed authorization metadata: expected 'Bearer <token>'")
    return token


def require(principal: Principal, *roles: Role) -> Principal:
    """PermissionDenied (ROLE_FORBIDDEN) unless the caller has one of `roles`."""
    if principal.role not in roles:
        allowed = " or ".join(str(r) for r in roles)
        raise errors.PermissionDenied(f"this call needs role {allowed}; the caller is {principal.role}")
    return principal


def resolve_user(principal: Principal, requested_user: str, field: str = "user") -> str:
    """The user a call is about.

    Members act for themselves: empty or their own name; anyone else is
    PermissionDenied (OTHER_USER). Services and admins act for someone else,
    so they must say whom: empty is InvalidArgument on `field`.
    """
    if principal.role is Role.MEMBER:
        if requested_user in ("", principal.subject):
            return principal.subject
        raise errors.PermissionDenied("members may only act for themselves", reason="OTHER_USER")
    if not requested_user:
        raise errors.InvalidArgument.one(field, f"required: name the user this {principal.role} call is for")
    return requested_user
