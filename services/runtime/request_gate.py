"""The edge of both servers: every request is decoded and checked against
the bounds table (domain.bounds) before a servicer, a log line or the
database sees it.

- A body that does not decode as the method's request message is
  INVALID_ARGUMENT (gRPC's default is UNKNOWN, with the decoder's exception
  class in the message).
- A string longer than its bound, or a repeated or map field with more
  elements, is INVALID_ARGUMENT with one field violation per field, named by
  its path (`messages[3].text`, `tools[0].parameters.fields["type"]`).

`RequestGate` is a grpc.aio interceptor placed inside the pipeline
(runtime.interceptors.server_interceptors), so the check runs after
authentication and its error is mapped and logged like any other. It
rebuilds a method's handler once and reuses it. The walk reads only the
fields that are set, so its cost is linear in the request's size.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable

import grpc
import grpc.aio
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from modelplane_server.domain import bounds
from modelplane_server.domain.errors import FieldViolation, InvalidArgument
from modelplane_server.runtime.pipeline import behaviour_of

# Enough to fix a request in one round trip without an error the size of the request.
MAX_VIOLATIONS = 20
_KEY_SHOWN = 64  # characters of a map key shown in a field path

_TEXT_TYPES = (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES)


def server_options(max_request_bytes: int, *, share_port: bool = False) -> list[tuple[str, int]]:
    """Options both servers are built with.

    so_reuseport 0: gRPC sets SO_REUSEPORT by default, so a second server on
    the same port starts "fine" and the two share connections at random; with
    it off the second one fails with "address already in use". share_port
    turns it on for the workers of one worker-mode start only, which the
    kernel then balances connections across (runtime.workers says how a
    second start is still refused).
    max_receive_message_length: the whole request's bound, explicit rather
    than gRPC's default (4 MiB)."""
    return [("grpc.so_reuseport", 1 if share_port else 0), ("grpc.max_receive_message_length", max_request_bytes)]


# ------------------------------------------------------------------ the check


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    bound: int
    repeated: bool
    message: bool  # a message (or, for maps, a message value)
    text: bool  # string or bytes (or, for maps, a string value)
    map_entry: bool
    element_bound: int  # repeated strings: each one; maps: each key


_PLANS: dict[str, dict[str, _Field]] = {}


def _plan(descriptor: Any) -> dict[str, _Field]:
    plan = _PLANS.get(descriptor.full_name)
    if plan is not None:
        return plan
    plan = {}
    for fd in descriptor.fields:
        message_type = fd.message_type
        map_entry = message_type is not None and message_type.GetOptions().map_entry
        value = message_type.fields_by_name["value"] if map_entry and message_type is not None else fd
        name = descriptor.full_name
        plan[fd.name] = _Field(
            name=fd.name,
            bound=bounds.bound(name, fd.name, repeated=fd.is_repeated),
            repeated=fd.is_repeated,
            message=value.type == FieldDescriptor.TYPE_MESSAGE,
            text=value.type in _TEXT_TYPES,
            map_entry=bool(map_entry),
            element_bound=bounds.bound(name, fd.name + "[]", repeated=False),
        )
    _PLANS[descriptor.full_name] = plan
    return plan


def _too_long(path: str, size: int, limit: int, what: str) -> FieldViolation:
    verb = "have" if what == "elements" else "be"
    return FieldViolation(path, f"must {verb} at most {limit} {what}, got {size}")


def _key(key: object) -> str:
    if isinstance(key, str):
        shown = key if len(key) <= _KEY_SHOWN else key[:_KEY_SHOWN] + "..."
        return json.dumps(shown)
    return str(key)


def bound_violations(message: Message) -> list[FieldViolation]:
    """Every string and repeated field of `message` over its bound (at most
    MAX_VIOLATIONS of them), by field path."""
    found: list[FieldViolation] = []
    _walk(message, "", found)
    return found


def _walk(message: Message, prefix: str, found: list[FieldViolation]) -> None:
    plan = _plan(message.DESCRIPTOR)
    for fd, value in message.ListFields():
        if len(found) >= MAX_VIOLATIONS:
            return
        f = plan[fd.name]
        path = prefix + f.name
        if not f.repeated:
            if f.message:
                _walk(value, path + ".", found)
            elif f.text and len(value) > f.bound:
                found.append(_too_long(path, len(value), f.bound, "characters"))
            continue
        if len(value) > f.bound:
            found.append(_too_long(path, len(value), f.bound, "elements"))
            continue
        if f.map_entry:
            for key, item in value.items():
                where = f"{path}[{_key(key)}]"
                if isinstance(key, str) and len(key) > f.element_bound:
                    found.append(FieldViolation(where, f"key must be at most {f.element_bound} characters"))
                if f.message:
                    _walk(item, where + ".", found)
                elif f.text and len(item) > f.element_bound:
                    found.append(_too_long(where, len(item), f.element_bound, "characters"))
                if len(found) >= MAX_VIOLATIONS:
                    return
        elif f.message:
            for i, item in enumerate(value):
                _walk(item, f"{path}[{i}].", found)
                if len(found) >= MAX_VIOLATIONS:
                    return
        elif f.text:
            for i, item in enumerate(value):
                if len(item) > f.element_bound:
                    found.append(_too_long(f"{path}[{i}]", len(item), f.element_bound, "characters"))


def check_request(request: Any) -> None:
    """INVALID_ARGUMENT for a body that did not decode or a field over its bound."""
    if isinstance(request, Undecodable):
        why = (f"the request body is not a valid {request.type_name} message; send that message in protobuf "
               "binary encoding")
        raise InvalidArgument([FieldViolation("", why)], why)
    if isinstance(request, Message):
        found = bound_violations(request)
        if found:
            raise InvalidArgument(found)


# ------------------------------------------------------------------ the interceptor


@dataclass(frozen=True, slots=True)
class Undecodable:
    """What the lenient decoder hands on for a body it could not decode."""

    type_name: str


def _lenient(decode: Callable[[bytes], Any] | None, type_name: str) -> Callable[[bytes], Any] | None:
    if decode is None:
        return None

    def lenient(data: bytes) -> Any:
        try:
            return decode(data)
        except Exception:  # DecodeError, invalid UTF-8, nesting too deep: the caller's bytes
            return Undecodable(type_name)

    return lenient


def _type_name(decode: Callable[[bytes], Any] | None) -> str:
    owner = getattr(decode, "__self__", None)  # FromString is a classmethod of the message
    descriptor = getattr(owner, "DESCRIPTOR", None)
    return str(getattr(descriptor, "full_name", "request"))


async def _checked(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """A request stream whose messages are checked as they are read."""
    async for request in requests:
        check_request(request)
        yield request


def _gated(handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
    behaviour, factory = behaviour_of(handler)
    if behaviour is None:  # pragma: no cover - grpc never builds such a handler
        return handler
    streamed_requests = bool(handler.request_streaming)

    def admit(request: Any) -> Any:
        if streamed_requests:
            return _checked(request)
        check_request(request)
        return request

    wrapped: Callable[..., Any]
    if inspect.isasyncgenfunction(behaviour):
        async def gated_stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            async for item in behaviour(admit(request), context):
                yield item

        wrapped = gated_stream
    else:
        async def gated(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            result = behaviour(admit(request), context)
            return await result if inspect.isawaitable(result) else result

        wrapped = gated
    decode = handler.request_deserializer
    return factory(wrapped, request_deserializer=_lenient(decode, _type_name(decode)),
                   response_serializer=handler.response_serializer)


if TYPE_CHECKING:  # generic in the stubs only
    _ServerInterceptor = grpc.aio.ServerInterceptor[Any, Any]
else:
    _ServerInterceptor = grpc.aio.ServerInterceptor


class RequestGate(_ServerInterceptor):
    """Decode leniently and check bounds, for every method (streamed
    requests, such as server reflection's, message by message)."""

    def __init__(self) -> None:
        # method -> (the handler gRPC gave, the gated one): rebuilt only if
        # gRPC hands out another handler for the method.
        self._handlers: dict[str, tuple[Any, grpc.RpcMethodHandler[Any, Any]]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler  # unknown method: gRPC answers UNIMPLEMENTED
        method = handler_call_details.method
        cached = self._handlers.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        gated = _gated(handler)
        self._handlers[method] = (handler, gated)
        return gated
