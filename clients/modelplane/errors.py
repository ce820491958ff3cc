"""Exceptions for failed modelplane calls, one class per gRPC status code.

modelplane servers put a google.rpc.Status in the trailing metadata
(`grpc-status-details-bin`): ErrorInfo (domain "modelplane.dev", reason an
ErrorReason name) on every error, BadRequest field violations on bad input.
`error_from_rpc` reads both (the Status itself through grpcio-status), so
callers can branch on `.reason` instead of parsing messages:

    try:
        client.set_user_key("openai", key)
    except FailedPrecondition as err:
        if err.reason == "BYOK_DISABLED": ...
"""

from __future__ import annotations

from typing import Iterable, Mapping, cast

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

ERROR_DOMAIN = "modelplane.dev"
REQUEST_ID_KEY = "x-request-id"


class ModelplaneError(Exception):
    """A modelplane call failed.

    code: the gRPC status code. reason: the ErrorReason name from ErrorInfo
    ("" when the server sent none, e.g. the connection failed).
    field_violations: (field, description) pairs for INVALID_ARGUMENT.
    request_id: the server's id for the call, to find it in the logs.
    """

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode | None = None,
        reason: str = "",
        field_violations: Iterable[tuple[str, str]] = (),
        request_id: str = "",
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.reason = reason
        self.field_violations = list(field_violations)
        self.request_id = request_id
        self.metadata = dict(metadata or {})

    def __str__(self) -> str:
        head = f"{self.code.name} {self.reason}" if self.reason else self.code.name
        lines = [f"{head}: {self.message}"]
        lines += [f"  {field}: {description}" for field, description in self.field_violations]
        return "\n".join(lines)


class Cancelled(ModelplaneError):
    code = grpc.StatusCode.CANCELLED


class InvalidArgument(ModelplaneError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class DeadlineExceeded(ModelplaneError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class NotFound(ModelplaneError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(ModelplaneError):
    code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(ModelplaneError):
    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(ModelplaneError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(ModelplaneError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(ModelplaneError):
    code = grpc.StatusCode.ABORTED


class Unimplemented(ModelplaneError):
    code = grpc.StatusCode.UNIMPLEMENTED


class Internal(ModelplaneError):
    code = grpc.StatusCode.INTERNAL


class Unavailable(ModelplaneError):
    code = grpc.StatusCode.UNAVAILABLE


class Unauthenticated(ModelplaneError):
    code = grpc.StatusCode.UNAUTHENTICATED


ERRORS_BY_CODE: Mapping[grpc.StatusCode, type[ModelplaneError]] = {
    cls.code: cls
    for cls in (Cancelled, InvalidArgument, DeadlineExceeded, NotFound, AlreadyExists, PermissionDenied,
                ResourceExhausted, FailedPrecondition, Aborted, Unimplemented, Internal, Unavailable,
                Unauthenticated)
}


def _rich_status(call: grpc.Call) -> status_pb2.Status | None:
    """The google.rpc.Status in the trailers, decoded by grpcio-status. None
    when there is none (the connection failed, a proxy answered) or when
    grpcio-status refuses it for contradicting the call's own code or
    message: the caller still gets the error for the code, not a ValueError.

    rpc_status.from_call serves both clients: a failed call raises an
    exception whose accessors answer at once, grpc.aio.AioRpcError included
    (rpc_status.aio.from_call is for a live grpc.aio.Call, awaited instead).
    """
    try:
        return rpc_status.from_call(call)
    except ValueError:
        return None


def error_from_rpc(error: grpc.RpcError) -> ModelplaneError:
    """The ModelplaneError subclass for a failed call, with the rich status read."""
    call = cast(grpc.Call, error)
    code = call.code()
    reason = ""
    info_metadata: dict[str, str] = {}
    violations: list[tuple[str, str]] = []
    status = _rich_status(call)
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
            info_metadata = dict(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations += [(v.field, v.description) for v in bad.field_violations]
    metadata = [*(call.initial_metadata() or ()), *(call.trailing_metadata() or ())]
    request_id = next((str(v) for k, v in metadata if k == REQUEST_ID_KEY), "")
    request_id = request_id or info_metadata.get("request_id", "")
    cls = ERRORS_BY_CODE.get(code, ModelplaneError)
    return cls(call.details() or "", code=code, reason=reason, field_violations=violations, request_id=request_id,
               metadata=info_metadata)
