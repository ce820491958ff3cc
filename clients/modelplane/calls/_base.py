"""What a call description is, and the helpers the descriptions share.

A description says which server and method, the request, how to decode the
answer, whether it is safe to retry, whether it is about a user, and the
caller's per-call options. The clients run descriptions; nothing here does I/O.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import Any, Callable, Final, Generic, Iterable, Mapping, Sequence, TypedDict, TypeVar

from google.protobuf import empty_pb2, field_mask_pb2, json_format
from google.protobuf.message import Message

from modelplane.calls._names import did_you_mean

T = TypeVar("T")
R = TypeVar("R", bound=Message)

CONFIG_SERVICE = "modelplane.v1.ConfigService"
RESOLVER_SERVICE = "modelplane.v1.ResolverService"


class Target(enum.Enum):
    """Which server a call goes to."""

    CONFIG = "config"
    RESOLVER = "resolver"


class CallOptions(TypedDict, total=False):
    """Per-call options every client method takes, as google-cloud-python's
    clients do. A key left out takes the client's default.

    timeout: seconds for this call; None waits forever. Unary calls default
    to the client's timeout, streams to none; a retried read gets the whole
    timeout on every attempt, as with the client's own.
    metadata: sent after the client's (authorization, then its own extras),
    e.g. [("x-request-id", "checkout-42")], which the servers adopt and echo.
    """

    timeout: float | None
    metadata: Sequence[tuple[str, str]]


def _no_options() -> CallOptions:
    return {}


@dataclass(frozen=True)
class Unary(Generic[T]):
    target: Target
    method: str  # full path, e.g. /modelplane.v1.ConfigService/GetProvider
    request: Message
    decode: Callable[[bytes], T]
    # Safe to send again after UNAVAILABLE: reads only, never writes or chats.
    idempotent: bool = False
    # The request has a `user` field that acting_for() may fill.
    user_scoped: bool = False
    per_call: CallOptions = dataclasses.field(default_factory=_no_options)


@dataclass(frozen=True)
class Stream(Generic[T]):
    target: Target
    method: str
    request: Message
    decode: Callable[[bytes], T]
    user_scoped: bool = False
    per_call: CallOptions = dataclasses.field(default_factory=_no_options)


@dataclass(frozen=True)
class Paged(Generic[R, T]):
    """A list RPC whose pages the clients walk until next_page_token is empty.
    Every page is fetched with the first page's options."""

    first: Unary[R]
    items: Callable[[R], Iterable[T]]

    def after(self, page: R) -> Unary[R] | None:
        token: str = getattr(page, "next_page_token")
        if not token:
            return None
        request = type(self.first.request)()
        request.CopyFrom(self.first.request)
        setattr(request, "page_token", token)
        return dataclasses.replace(self.first, request=request)


@dataclass(frozen=True)
class Joined(Generic[R]):
    """A list RPC whose pages the clients fetch and join into one answer."""

    pages: Paged[R, R]
    join: Callable[[list[R]], R]


class _Unset(enum.Enum):
    UNSET = "UNSET"


# Default of update arguments: the field is left out of the update mask.
UNSET: Final = _Unset.UNSET
Unset = _Unset


def config_call(method: str, request: Message, decode: Callable[[bytes], T], *, read: bool = False,
                user_scoped: bool = False, per_call: CallOptions) -> Unary[T]:
    return Unary(Target.CONFIG, f"/{CONFIG_SERVICE}/{method}", request, decode, read, user_scoped, per_call)


def resolver_call(method: str, request: Message, decode: Callable[[bytes], T], *, read: bool = False,
                  user_scoped: bool = True, per_call: CallOptions) -> Unary[T]:
    return Unary(Target.RESOLVER, f"/{RESOLVER_SERVICE}/{method}", request, decode, read, user_scoped, per_call)


def nothing(data: bytes) -> None:
    """Decode google.protobuf.Empty: the caller gets None. The clients apply
    decoders after the call, never as grpc's deserializer, because sync grpc
    treats a deserializer's None as a failure."""
    empty_pb2.Empty.FromString(data)
    return None


# -- messages from keyword arguments ------------------------------------------------------------

OPTION_FAMILIES: Final = ("anthropic", "openai", "google", "openrouter", "vercel")
MessageOrFields = Message | Mapping[str, Any]


def parse(fields: MessageOrFields, into: Message, what: str) -> None:
    if isinstance(fields, Message):
        into.CopyFrom(fields)
        return
    present = {k: v for k, v in fields.items() if v is not None}
    known = [f.name for f in into.DESCRIPTOR.fields]
    for key in fields:
        if key not in known and key not in (f.json_name for f in into.DESCRIPTOR.fields):
            close = did_you_mean(key, known)
            hint = f"did you mean {what}.{close}? " if close else ""
            raise ValueError(f"{what}.{key} is not a field: {hint}{what} has {', '.join(known)}")
    try:
        json_format.ParseDict(present, into)
    except json_format.ParseError as exc:
        raise ValueError(f"{what}: {exc}") from None


def masked(target: Message, field: str, value: MessageOrFields, paths: list[str]) -> None:
    """Put a sub-message into an update: a message replaces the whole field,
    a mapping changes only its keys (a key mapped to None clears that field)."""
    parse(value, getattr(target, field), field)
    if isinstance(value, Message):
        paths.append(field)
    else:
        paths.extend(f"{field}.{key}" for key in value)


def mask(paths: Sequence[str]) -> field_mask_pb2.FieldMask:
    if not paths:
        raise ValueError("nothing to update: pass at least one field")
    return field_mask_pb2.FieldMask(paths=list(paths))
