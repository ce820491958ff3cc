"""gRPC plumbing shared by both services (grpc.aio, server side).

- One table from domain error class to status code, and the conversion of a
  domain error to a rich google.rpc.Status (ErrorInfo, BadRequest).
- Three interceptors, outer to inner: request context (request id, one
  canonical log line per call), authentication (bearer token -> Principal),
  error mapping (domain errors -> status; anything else -> INTERNAL with a
  generic message while the traceback is logged).
- Authorisation helpers for servicers: `require`, `resolve_user`.
- Standard health and reflection services.

Wire it up with `server_interceptors(authenticate)`; see that function.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import re
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping, NoReturn, Sequence, cast

import grpc
import grpc.aio
import structlog
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
# grpc.aio's health servicer; grpc_health.v1.health re-exports it as `aio`
# at runtime, which the type checker cannot see.
from grpc_health.v1 import _async as health_aio
from grpc_reflection.v1alpha import reflection

from modelplane_server.domain import errors
from modelplane_server.domain.types import Principal, Role
from modelplane_server.runtime.logs import get_logger

log = get_logger(__name__)

ERROR_DOMAIN = "modelplane.dev"
REQUEST_ID_KEY = "x-request-id"
STATUS_DETAILS_KEY = "grpc-status-details-bin"
AUTHORIZATION_KEY = "authorization"

# Methods callable without a token; an entry ending in "/" covers a whole service.
PUBLIC_METHODS: frozenset[str] = frozenset(
    {
        "/grpc.health.v1.Health/",
        "/grpc.reflection.v1alpha.ServerReflection/",
        "/grpc.reflection.v1.ServerReflection/",
    }
)

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

# Codes that mean the server (not the caller) is at fault: logged at error level.
_SERVER_FAULTS = frozenset({grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS})

# Opaque ids from proxies and clients: short, printable, no separators that
# could forge structure in a log line.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

Authenticate = Callable[[str], Awaitable[Principal]]
Metadata = tuple[tuple[str, str | bytes], ...]


# -- per-call state ------------------------------------------------------------
# Each grpc.aio call runs in its own task, hence its own copy of the context:
# values set here never leak into another call and need no reset.


@dataclass
class _CallRecord:
    request_id: str
    peer: str = ""
    principal: Principal | None = None
    reason: str = ""


_call: contextvars.ContextVar[_CallRecord | None] = contextvars.ContextVar("modelplane_call", default=None)
_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "modelplane_principal", default=None
)


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


def current_request_id() -> str:
    record = _call.get()
    return record.request_id if record else ""


# -- errors -> status --------------------------------------------------------------


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


def to_status(err: errors.DomainError, *, request_id: str = "") -> grpc.Status:
    """A grpc.Status (code, details, trailing metadata with the rich status)."""
    proto = status_proto(err, request_id=request_id)
    return _Status(status_code_for(err), proto.message, _trailers(proto, request_id))


@dataclass(frozen=True)
class _Status(grpc.Status):
    code: grpc.StatusCode
    details: str
    trailing_metadata: Metadata


def _trailers(proto: status_pb2.Status, request_id: str) -> Metadata:
    trailers: list[tuple[str, str | bytes]] = [(STATUS_DETAILS_KEY, proto.SerializeToString())]
    if request_id:
        trailers.append((REQUEST_ID_KEY, request_id))
    return tuple(trailers)


async def abort_with_error(context: grpc.aio.ServicerContext[Any, Any], err: errors.DomainError) -> NoReturn:
    """End the call with the error's status; always raises (grpc.aio.AbortError)."""
    request_id = current_request_id()
    record = _call.get()
    if record is not None:
        record.reason = err.reason
    status = to_status(err, request_id=request_id)
    await context.abort(status.code, status.details, status.trailing_metadata)
    raise AssertionError("unreachable: context.abort raises")  # for the type checker


# -- wrapping handler behaviours ----------------------------------------------------
# A grpc.aio RpcMethodHandler carries one behaviour for its kind. Unary
# responses are coroutines; streaming responses are either async generators
# or coroutines that call context.write(), and the wrapper must keep the
# same shape, because grpc.aio decides how to drive a behaviour by its type.

class Hooks:
    """What an interceptor does around one call. `call` runs the rest of the
    chain (and the handler) and returns its result; for async-generator
    behaviours the items pass through `stream` instead."""

    async def around(
        self, context: grpc.aio.ServicerContext[Any, Any], call: Callable[[], Awaitable[Any]]
    ) -> Any:
        return await call()

    def stream(
        self, context: grpc.aio.ServicerContext[Any, Any], items: Callable[[], AsyncIterator[Any]]
    ) -> AsyncIterator[Any]:
        return items()


class CompletionHooks(Hooks):
    """Hooks that need only a call's start and the status code it ended
    with (the request log line, RPC metrics): `begin` runs first, `end` runs
    whatever happens, with the code the caller will see."""

    async def begin(self, context: grpc.aio.ServicerContext[Any, Any], *, streaming: bool) -> Any:
        return None

    def end(self, context: grpc.aio.ServicerContext[Any, Any], state: Any, code: grpc.StatusCode) -> None:
        pass

    async def around(
        self, context: grpc.aio.ServicerContext[Any, Any], call: Callable[[], Awaitable[Any]]
    ) -> Any:
        state = await self.begin(context, streaming=False)
        code = grpc.StatusCode.OK
        try:
            return await call()
        except grpc.aio.AbortError:
            code = final_code(context)
            raise
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except BaseException:
            code = grpc.StatusCode.UNKNOWN
            raise
        finally:
            self.end(context, state, code)

    async def stream(
        self, context: grpc.aio.ServicerContext[Any, Any], items: Callable[[], AsyncIterator[Any]]
    ) -> AsyncIterator[Any]:
        state = await self.begin(context, streaming=True)
        code = grpc.StatusCode.OK
        try:
            async for item in items():
                yield item
        except grpc.aio.AbortError:
            code = final_code(context)
            raise
        except (asyncio.CancelledError, GeneratorExit):
            # GeneratorExit: grpc closed the stream because the client went away.
            code = grpc.StatusCode.CANCELLED
            raise
        except BaseException:
            code = grpc.StatusCode.UNKNOWN
            raise
        finally:
            self.end(context, state, code)


def _wrap(handler: grpc.RpcMethodHandler[Any, Any], hooks: Hooks) -> grpc.RpcMethodHandler[Any, Any]:
    behaviour: object
    factory: Callable[..., grpc.RpcMethodHandler[Any, Any]]
    if handler.unary_unary:
        behaviour, factory = handler.unary_unary, grpc.unary_unary_rpc_method_handler
    elif handler.unary_stream:
        behaviour, factory = handler.unary_stream, grpc.unary_stream_rpc_method_handler
    elif handler.stream_unary:
        behaviour, factory = handler.stream_unary, grpc.stream_unary_rpc_method_handler
    elif handler.stream_stream:
        behaviour, factory = handler.stream_stream, grpc.stream_stream_rpc_method_handler
    else:  # pragma: no cover - grpc never builds such a handler
        return handler
    # The stubs type behaviours with the sync ServicerContext; ours are aio.
    inner = cast(Callable[..., Any], behaviour)

    wrapped: Callable[..., Any]
    if inspect.isasyncgenfunction(inner):

        async def wrapped_gen(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            async for item in hooks.stream(context, lambda: inner(request, context)):
                yield item

        wrapped = wrapped_gen
    else:

        async def wrapped_coro(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            async def call() -> Any:
                result = inner(request, context)
                return await result if inspect.isawaitable(result) else result

            return await hooks.around(context, call)

        wrapped = wrapped_coro

    return factory(
        wrapped,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


if TYPE_CHECKING:  # generic in the stubs only
    _ServerInterceptor = grpc.aio.ServerInterceptor[Any, Any]
else:
    _ServerInterceptor = grpc.aio.ServerInterceptor


class HookInterceptor(_ServerInterceptor):
    """One stage of the pipeline: the hooks it runs around a call, or None to
    stay out of it. Usable alone as a grpc.aio interceptor too."""

    def hooks_for(self, details: grpc.HandlerCallDetails,
                  handler: grpc.RpcMethodHandler[Any, Any]) -> Hooks | None:
        raise NotImplementedError

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        if handler is None:  # unknown method: grpc answers UNIMPLEMENTED itself
            return handler
        hooks = self.hooks_for(handler_call_details, handler)
        return handler if hooks is None else _wrap(handler, hooks)


class _Chained(Hooks):
    """Several stages' hooks run as one, outer first."""

    def __init__(self, hooks: Sequence[Hooks]) -> None:
        self.hooks = hooks

    async def around(
        self, context: grpc.aio.ServicerContext[Any, Any], call: Callable[[], Awaitable[Any]]
    ) -> Any:
        for hooks in reversed(self.hooks):
            call = functools.partial(hooks.around, context, call)
        return await call()

    def stream(
        self, context: grpc.aio.ServicerContext[Any, Any], items: Callable[[], AsyncIterator[Any]]
    ) -> AsyncIterator[Any]:
        for hooks in reversed(self.hooks):
            items = functools.partial(hooks.stream, context, items)
        return items()


class Pipeline(_ServerInterceptor):
    """The stages as ONE grpc.aio interceptor: the handler is wrapped once
    per call instead of once per stage (each wrap rebuilds the method
    handler; with five stages that was ~40 us a call, profiled)."""

    def __init__(self, stages: Sequence[HookInterceptor]) -> None:
        self.stages = tuple(stages)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        hooks = [h for stage in self.stages if (h := stage.hooks_for(handler_call_details, handler)) is not None]
        if not hooks:
            return handler
        return _wrap(handler, hooks[0] if len(hooks) == 1 else _Chained(hooks))


def _metadata_value(details: grpc.HandlerCallDetails, key: str) -> str | None:
    for k, v in details.invocation_metadata or ():
        if k == key:
            return v if isinstance(v, str) else None
    return None


# -- (1) request context and the canonical log line ----------------------------------------


class RequestContextInterceptor(HookInterceptor):
    """Outermost: request id in, request id out, one log line per call."""

    def hooks_for(self, details: grpc.HandlerCallDetails, handler: grpc.RpcMethodHandler[Any, Any]) -> Hooks:
        return _RequestContextHooks(details.method, _metadata_value(details, REQUEST_ID_KEY))


class _RequestContextHooks(CompletionHooks):
    def __init__(self, method: str, incoming_id: str | None) -> None:
        self.method = method
        self.incoming_id = incoming_id

    async def begin(self, context: grpc.aio.ServicerContext[Any, Any], *,
                    streaming: bool) -> tuple[_CallRecord, float]:
        ok = self.incoming_id is not None and _SANE_REQUEST_ID.fullmatch(self.incoming_id)
        request_id = self.incoming_id if ok and self.incoming_id else uuid.uuid4().hex
        # peer() is read now: on a call the client has cancelled, grpc.aio
        # 1.85 can crash the process when it is read (seen in tests).
        record = _CallRecord(request_id, peer=context.peer())
        _call.set(record)
        structlog.contextvars.bind_contextvars(request_id=request_id, method=self.method)
        # Streams: initial metadata now, so a client can read the id before
        # the first message. Unary calls carry it in trailing metadata only:
        # sending initial metadata on its own costs an extra write per call
        # (about 0.1 ms at one caller, measured with bench/gateway.py).
        if streaming:
            await context.send_initial_metadata(((REQUEST_ID_KEY, request_id),))
        context.set_trailing_metadata(((REQUEST_ID_KEY, request_id),))
        return record, time.perf_counter()

    def end(self, context: grpc.aio.ServicerContext[Any, Any], state: Any, code: grpc.StatusCode) -> None:
        record, start = state
        principal = record.principal
        fields: dict[str, Any] = {
            "method": self.method,
            "actor": principal.actor if principal else "anonymous",
            "code": code.name,
            "duration_ms": round((time.perf_counter() - start) * 1000, 3),
            "request_id": record.request_id,
            "peer": record.peer,
        }
        if record.reason:
            fields["reason"] = record.reason
        if code in _SERVER_FAULTS:
            log.error("rpc", **fields)
        else:
            log.info("rpc", **fields)


def final_code(context: grpc.aio.ServicerContext[Any, Any]) -> grpc.StatusCode:
    code = context.code()
    # grpc.aio reports the code as the enum, or as its integer in some versions.
    if isinstance(code, grpc.StatusCode):
        return code
    for candidate in grpc.StatusCode:
        if candidate.value[0] == code:
            return candidate
    return grpc.StatusCode.UNKNOWN


# -- (2) authentication ---------------------------------------------------------------------


class AuthInterceptor(HookInterceptor):
    """Reads `authorization: Bearer <token>`, asks `authenticate` for the
    Principal, and makes it `current_principal()` for the handler.

    authenticate raises errors.Unauthenticated for unknown or revoked tokens;
    any other DomainError (say Unavailable while the token store is down) is
    mapped as usual.
    """

    def __init__(self, authenticate: Authenticate, public_methods: Iterable[str] = PUBLIC_METHODS) -> None:
        self._authenticate = authenticate
        self._public = frozenset(public_methods)

    def is_public(self, method: str) -> bool:
        service = method[: method.rfind("/") + 1]
        return method in self._public or service in self._public

    def hooks_for(self, details: grpc.HandlerCallDetails,
                  handler: grpc.RpcMethodHandler[Any, Any]) -> Hooks | None:
        if self.is_public(details.method):
            return None
        return _AuthHooks(self._authenticate, _metadata_value(details, AUTHORIZATION_KEY))


class _AuthHooks(Hooks):
    def __init__(self, authenticate: Authenticate, header: str | None) -> None:
        self.authenticate = authenticate
        self.header = header

    async def _login(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        try:
            principal = await self.authenticate(bearer_token(self.header))
        except errors.DomainError as err:
            await abort_with_error(context, err)
        except Exception:
            await _abort_internal(context, "authentication failed unexpectedly")
        _principal.set(principal)
        record = _call.get()
        if record is not None:
            record.principal = principal
        structlog.contextvars.bind_contextvars(actor=principal.actor)

    async def around(
        self, context: grpc.aio.ServicerContext[Any, Any], call: Callable[[], Awaitable[Any]]
    ) -> Any:
        await self._login(context)
        return await call()

    async def stream(
        self, context: grpc.aio.ServicerContext[Any, Any], items: Callable[[], AsyncIterator[Any]]
    ) -> AsyncIterator[Any]:
        await self._login(context)
        async for item in items():
            yield item


def bearer_token(header: str | None) -> str:
    """The token of an `authorization: Bearer <token>` value, or Unauthenticated."""
    if not header:
        raise errors.Unauthenticated("missing credentials: send metadata 'authorization: Bearer <token>'")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise errors.Unauthenticated("malformed authorization metadata: expected 'Bearer <token>'")
    return token


# -- (3) error mapping ---------------------------------------------------------------------------


class ErrorMappingInterceptor(HookInterceptor):
    """Innermost: turns what handlers raise into statuses.

    translate: optional hook that converts other exception types (say the
    resolver's upstream errors) to domain errors; return None to leave one
    unexpected.
    """

    def __init__(self, translate: Callable[[Exception], errors.DomainError | None] | None = None) -> None:
        self._hooks = _ErrorHooks(translate)

    def hooks_for(self, details: grpc.HandlerCallDetails, handler: grpc.RpcMethodHandler[Any, Any]) -> Hooks:
        return self._hooks


class _ErrorHooks(Hooks):
    def __init__(self, translate: Callable[[Exception], errors.DomainError | None] | None) -> None:
        self.translate = translate

    async def _handle(self, context: grpc.aio.ServicerContext[Any, Any], exc: Exception) -> None:
        err = exc if isinstance(exc, errors.DomainError) else None
        if err is None and self.translate is not None:
            err = self.translate(exc)
        if err is not None:
            await abort_with_error(context, err)
        # Unexpected: the traceback goes to the log under the request id, the
        # caller gets nothing that could leak internals or data.
        log.error("unhandled exception in handler", exc_info=exc)
        await _abort_internal(context, None)

    async def around(
        self, context: grpc.aio.ServicerContext[Any, Any], call: Callable[[], Awaitable[Any]]
    ) -> Any:
        try:
            return await call()
        except grpc.aio.AbortError:
            raise  # the handler ended the call itself
        except Exception as exc:
            await self._handle(context, exc)

    async def stream(
        self, context: grpc.aio.ServicerContext[Any, Any], items: Callable[[], AsyncIterator[Any]]
    ) -> AsyncIterator[Any]:
        try:
            async for item in items():
                yield item
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await self._handle(context, exc)


async def _abort_internal(context: grpc.aio.ServicerContext[Any, Any], what: str | None) -> NoReturn:
    if what is not None:
        log.error(what, exc_info=True)
    await abort_with_error(context, internal_error(current_request_id()))


def server_interceptors(
    authenticate: Authenticate,
    *,
    public_methods: Iterable[str] = PUBLIC_METHODS,
    translate: Callable[[Exception], errors.DomainError | None] | None = None,
    outer: Sequence[HookInterceptor] = (),
    inner: Sequence[HookInterceptor] = (),
) -> list[grpc.aio.ServerInterceptor[Any, Any]]:
    """For grpc.aio.server(interceptors=...): one Pipeline running, outer to
    inner, `outer` (e.g. metrics, which then also counts refused calls),
    request context, authentication, error mapping, then `inner`."""
    return [Pipeline([
        *outer,
        RequestContextInterceptor(),
        AuthInterceptor(authenticate, public_methods),
        ErrorMappingInterceptor(translate),
        *inner,
    ])]


# -- authorisation helpers for servicers ------------------------------------------------------


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


# -- health and reflection -------------------------------------------------------------------------


class Health:
    """The standard grpc.health.v1 service, reporting per service name and
    overall ("")."""

    def __init__(self, servicer: health_aio.HealthServicer, service_names: Sequence[str]) -> None:
        self.servicer = servicer
        self.service_names = tuple(service_names)

    async def set_serving(self, serving: bool, *service_names: str) -> None:
        """Set the named services (default: all of them and overall "")."""
        status = (
            health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in service_names or ("", *self.service_names):
            await self.servicer.set(name, status)

    async def shutting_down(self) -> None:
        """Report NOT_SERVING for everything from now on (graceful shutdown)."""
        await self.servicer.enter_graceful_shutdown()


def add_health_and_reflection(server: grpc.aio.Server, service_names: Sequence[str]) -> Health:
    """Add health and reflection for `service_names` (full names, e.g.
    "modelplane.v1.ConfigService"), so grpcurl works without proto files.

    Health starts as SERVING for "" only (grpc's default); call
    `await health.set_serving(...)` once the service is ready.
    """
    servicer = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    reflected = [
        *service_names,
        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        reflection.SERVICE_NAME,
    ]
    reflection.enable_server_reflection(reflected, server)
    return Health(servicer, service_names)
