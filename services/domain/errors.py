"""One domain error hierarchy for both services.

Each error carries a reason (an ErrorReason name from the proto) and a message
fit for the caller. No message may contain a secret. modelplane_server.runtime.status maps the classes
to gRPC status codes in one table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence


@dataclass(frozen=True)
class FieldViolation:
    field: str  # the request field path, e.g. "provider.base_url"
    description: str


class DomainError(Exception):
    reason: str = "INTERNAL_ERROR"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason

    def error_metadata(self) -> Mapping[str, str]:
        """Extra ErrorInfo metadata for the caller (never a secret)."""
        return {}


class InvalidArgument(DomainError):
    reason = "INVALID_FIELD"

    def __init__(self, violations: Sequence[FieldViolation], message: str | None = None) -> None:
        self.violations = list(violations)
        if message is None:
            message = "; ".join(f"{v.field}: {v.description}" for v in self.violations)
        super().__init__(message)

    @classmethod
    def one(cls, field: str, description: str) -> "InvalidArgument":
        return cls([FieldViolation(field, description)])


class Unauthenticated(DomainError):
    reason = "TOKEN_INVALID"


class PermissionDenied(DomainError):
    reason = "ROLE_FORBIDDEN"


class NotFound(DomainError):
    pass


class AlreadyExists(DomainError):
    pass


class Aborted(DomainError):
    reason = "ETAG_MISMATCH"


class FailedPrecondition(DomainError):
    pass


class Unavailable(DomainError):
    pass


class DeadlineExceeded(DomainError):
    pass


class ResourceExhausted(DomainError):
    pass


class DataLoss(DomainError):
    """Stored data cannot be read back (e.g. a ciphertext that does not open)."""
