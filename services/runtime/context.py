"""Per-call state: the request id and the authenticated caller.

Each grpc.aio call runs in its own task, hence its own copy of the context:
values set here never leak into another call and need no reset. The
interceptors (runtime.interceptors) set them; servicers read them.
"""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass, field
from typing import Any, Iterator

# One spelling for servers and clients (re-exported for the interceptors).
from modelplane.errors import REQUEST_ID_KEY as REQUEST_ID_KEY
from modelplane_server.domain import errors
from modelplane_server.domain.types import Principal


@dataclass
class CallRecord:
    """What the canonical log line reports about one call."""

    request_id: str
    peer: str = ""
    principal: Principal | None = None
    reason: str = ""  # the ErrorReason the call ended with, if any
    # What the handler adds to the line (say a chat's model and usage), so
    # a call is described by one line rather than one per layer.
    fields: dict[str, Any] = field(default_factory=dict)


_call: contextvars.ContextVar[CallRecord | None] = contextvars.ContextVar("modelplane_call", default=None)
_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "modelplane_principal", default=None
)


def begin_call(request_id: str, peer: str) -> CallRecord:
    record = CallRecord(request_id, peer=peer)
    _call.set(record)
    return record


def current_call() -> CallRecord | None:
    return _call.get()


def annotate_call(**fields: Any) -> bool:
    """Add fields to the current call's log line; False outside a call
    (the caller then logs them on a line of their own)."""
    record = _call.get()
    if record is None:
        return False
    record.fields.update(fields)
    return True


def current_request_id() -> str:
    record = _call.get()
    return record.request_id if record else ""


def set_principal(principal: Principal) -> None:
    """Make `principal` the caller of the current call (authentication did it)."""
    _principal.set(principal)
    record = _call.get()
    if record is not None:
        record.principal = principal


def current_principal() -> Principal:
    """The authenticated caller of the current RPC.

    Raises Unauthenticated when there is none (a public method, or code
    running outside a call), which maps to UNAUTHENTICATED if it escapes.
    """
    principal = _principal.get()
    if principal is None:
        raise errors.Unauthenticated("this call is not authenticated")
    return principal


@contextlib.contextmanager
def acting_as(principal: Principal) -> Iterator[Principal]:
    """Run code as `principal` outside a gRPC call (servicer unit tests, jobs)."""
    token = _principal.set(principal)
    try:
        yield principal
    finally:
        _principal.reset(token)
