"""How an upstream failure becomes a domain error (and so a gRPC status):
UPSTREAM_ERRORS, the one table.

An upstream auth failure is FAILED_PRECONDITION, never UNAUTHENTICATED:
the caller's own token was fine, it is the stored provider credential that
is wrong, and a client that sees UNAUTHENTICATED would throw away a good
token. FAILED_PRECONDITION (not PERMISSION_DENIED) because the fix is a
change of state, a new key, not a different caller.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from modelplane_server.domain.errors import (
    DeadlineExceeded,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
)
from modelplane_server.resolver_svc.upstream import ErrorKind, UpstreamError


class UpstreamInvalidArgument(InvalidArgument):
    """INVALID_ARGUMENT whose reason is the upstream's, with no field
    violations: the request was well-formed, the provider refused it."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__([], message)
        self.reason = reason


# The one mapping from engine error kind to domain error (status code) and reason.
UPSTREAM_ERRORS: Final[Mapping[ErrorKind, tuple[type[DomainError], str]]] = {
    "auth_failed": (FailedPrecondition, "UPSTREAM_AUTH_FAILED"),
    "rate_limited": (ResourceExhausted, "UPSTREAM_RATE_LIMITED"),
    "insufficient_quota": (ResourceExhausted, "UPSTREAM_QUOTA_EXHAUSTED"),
    "context_too_long": (UpstreamInvalidArgument, "CONTEXT_TOO_LONG"),
    "model_not_found": (NotFound, "UPSTREAM_MODEL_NOT_FOUND"),
    "overloaded": (Unavailable, "UPSTREAM_OVERLOADED"),
    "unavailable": (Unavailable, "UPSTREAM_UNAVAILABLE"),
    "protocol_error": (Unavailable, "UPSTREAM_UNAVAILABLE"),
    "timeout": (DeadlineExceeded, "UPSTREAM_TIMEOUT"),
    "stream_stalled": (DeadlineExceeded, "UPSTREAM_TIMEOUT"),
    "bad_request": (UpstreamInvalidArgument, "UPSTREAM_BAD_REQUEST"),
}


def upstream_failure(err: UpstreamError, provider: str, base_url: str = "") -> DomainError:
    """The domain error for an upstream failure. The message is the
    provider's own (the engine already truncated and scrubbed it), prefixed
    with the provider's name so the caller knows whose words they are, and
    followed by the base URL when nothing answered there."""
    cls, reason = UPSTREAM_ERRORS[err.kind]
    return cls(f"{provider}: {err.message}{tried(err, base_url)}", reason=reason)


def tried(err: UpstreamError, base_url: str) -> str:
    """" (base URL tried: ...)" when no HTTP answer came back: the usual
    cause is a wrong base URL or a server that is not running, and the
    caller can only tell which from the URL. Base URLs hold no credentials
    (validation refuses user-info and queries)."""
    if not base_url or err.http_status is not None or err.kind not in ("unavailable", "timeout"):
        return ""
    return f" (base URL tried: {base_url})"
