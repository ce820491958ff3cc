"""The one status codec: a domain error as a google.rpc.Status on the wire.

ErrorInfo (reason, domain, the request id) on every error, BadRequest field
violations for InvalidArgument; grpcio-status puts the Status in the
`grpc-status-details-bin` trailer, which clients read back with
`rpc_status.from_call`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, NoReturn

import grpc
import grpc.aio
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from modelplane_server.domain import errors
from modelplane_server.runtime.context import REQUEST_ID_KEY, current_call, current_request_id

ERROR_DOMAIN = "modelplane.dev"
STATUS_DETAILS_KEY = "grpc-status-details-bin"  # the trailer rpc_status writes and reads

# The one mapping from domain error to status code. Looked up along the
# exception's MRO, so a subclass inherits its parent's code; a DomainError
# subclass not listed here is a server-side fault.
STATUS_CODES: Mapping[type[errors.DomainError], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.Aborted: grpc.StatusCode.ABORTED,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.DataLoss: grpc.StatusCode.DATA_LOSS,
    errors.DomainError: grpc.StatusCode.INTERNAL,
}

Metadata = tuple[tuple[str, str | bytes], ...]


def status_code_for(err: errors.DomainError) -> grpc.StatusCode:
    for cls in type(err).__mro__:
        code = STATUS_CODES.get(cls)
        if code is not None:
            return code
    return grpc.StatusCode.INTERNAL  # unreachable: DomainError is in the table


def status_proto(err: errors.DomainError, *, request_id: str = "") -> status_pb2.Status:
    """google.rpc.Status for a domain error: ErrorInfo always, BadRequest for
    InvalidArgument."""
    code = status_code_for(err)
    info = error_details_pb2.ErrorInfo(reason=err.reason, domain=ERROR_DOMAIN)
    info.metadata.update(err.error_metadata())
    if request_id:
        info.metadata["request_id"] = request_id
    status = status_pb2.Status(code=code.value[0], message=err.message)
    status.details.add().Pack(info)
    if isinstance(err, errors.InvalidArgument) and err.violations:
        bad = error_details_pb2.BadRequest()
        for v in err.violations:
            bad.field_violations.add(field=v.field, description=v.description)
        status.details.add().Pack(bad)
    return status


def internal_error(request_id: str) -> errors.DomainError:
    """What the caller sees for an unexpected exception: nothing about it."""
    return errors.DomainError(f"internal error (request id {request_id or 'unknown'})", reason="INTERNAL_ERROR")


@dataclass(frozen=True)
class _Status(grpc.Status):
    code: grpc.StatusCode
    details: str
    trailing_metadata: Metadata


def to_status(err: errors.DomainError, *, request_id: str = "") -> grpc.Status:
    """A grpc.Status (code, details, trailing metadata with the rich status).

    The request id trailer is added here because aborting replaces the
    trailers the request-context stage set at the start of the call."""
    status = rpc_status.to_status(status_proto(err, request_id=request_id))
    trailers: Metadata = tuple(status.trailing_metadata)
    if request_id:
        trailers += ((REQUEST_ID_KEY, request_id),)
    return _Status(status.code, status.details, trailers)


async def abort_with_error(context: grpc.aio.ServicerContext[Any, Any], err: errors.DomainError) -> NoReturn:
    """End the call with the error's status; always raises (grpc.aio.AbortError)."""
    record = current_call()
    if record is not None:
        record.reason = err.reason
    status = to_status(err, request_id=current_request_id())
    await context.abort(status.code, status.details, status.trailing_metadata)
    raise AssertionError("unreachable: context.abort raises")  # for the type checker
