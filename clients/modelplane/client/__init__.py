"""Typed Python clients for modelplane: `ModelplaneClient` (blocking) and
`AsyncModelplaneClient` (grpc.aio), with the same methods.

    from modelplane.client import ModelplaneClient, TLS

    with ModelplaneClient(config_address="config:50051", resolver_address="resolver:50052",
                          token=os.environ["MODELPLANE_TOKEN"], tls=TLS(root_certificates="ca.pem")) as mp:
        mp.create_provider("openai", "openai", api_key=key)
        for provider in mp.list_providers():
            print(provider.name)
        alice = mp.acting_for("alice")          # a service token acting for a user
        print(alice.resolve_model("general").model.name)

Every RPC of ConfigService and ResolverService is a method taking plain
keyword arguments (see modelplane.calls for each one's arguments) and
returning the response message; list methods iterate every page. Failures
raise modelplane.errors.ModelplaneError subclasses carrying the ErrorInfo
reason and field violations. Reads (Get*, List*, Resolve*, health) are
retried on UNAVAILABLE with capped exponential backoff; writes and chats
never are.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import random
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import (Any, AsyncIterator, Callable, Concatenate, Coroutine, Generic, Iterator, ParamSpec, Self, Sequence,
                    TypeVar, cast)

import grpc
import grpc.aio
from google.protobuf.message import Message

from modelplane import calls
from modelplane.calls import UNSET, Paged, Stream, Target, Unary, Unset
from modelplane.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    ModelplaneError,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
    error_from_rpc,
)

P = ParamSpec("P")
T = TypeVar("T")
R = TypeVar("R", bound=Message)
C = TypeVar("C")

DEFAULT_CONFIG_ADDRESS = "127.0.0.1:50051"
DEFAULT_RESOLVER_ADDRESS = "127.0.0.1:50052"


@dataclass(frozen=True)
class TLS:
    """TLS for the channels. All PEM file paths.

    root_certificates: the CA to trust; None trusts the system roots.
    certificate_chain and private_key: the client certificate for mutual TLS.
    server_name: the name to expect in the server's certificate when it
    differs from the address (say a certificate for "config_svc" reached at
    127.0.0.1).
    """

    root_certificates: str | None = None
    certificate_chain: str | None = None
    private_key: str | None = None
    server_name: str | None = None

    def __post_init__(self) -> None:
        if (self.certificate_chain is None) != (self.private_key is None):
            raise ValueError("mutual TLS needs both certificate_chain and private_key")

    def credentials(self) -> grpc.ChannelCredentials:
        def read(path: str | None) -> bytes | None:
            return Path(path).read_bytes() if path else None

        return grpc.ssl_channel_credentials(read(self.root_certificates), read(self.private_key),
                                            read(self.certificate_chain))

    def channel_options(self) -> list[tuple[str, Any]]:
        return [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of idempotent reads on UNAVAILABLE: at most max_attempts calls,
    waiting initial_backoff × multiplier^n (capped at max_backoff, jittered)."""

    max_attempts: int = 4
    initial_backoff: float = 0.1
    max_backoff: float = 2.0
    multiplier: float = 2.0

    def should_retry(self, call: Unary[Any], error: grpc.RpcError, attempt: int) -> bool:
        code = cast(grpc.Call, error).code()
        return call.idempotent and code == grpc.StatusCode.UNAVAILABLE and attempt < self.max_attempts

    def delay(self, attempt: int) -> float:
        """Seconds to wait after the attempt-th call failed (1-based)."""
        ceiling = min(self.max_backoff, self.initial_backoff * self.multiplier ** (attempt - 1))
        return ceiling * random.uniform(0.5, 1.0)


NO_RETRY = RetryPolicy(max_attempts=1)


class _ClientBase(Generic[C]):
    def __init__(
        self,
        config_address: str | None = DEFAULT_CONFIG_ADDRESS,
        resolver_address: str | None = DEFAULT_RESOLVER_ADDRESS,
        *,
        token: str,
        tls: TLS | None = None,
        timeout: float | None = 30.0,
        retry: RetryPolicy = RetryPolicy(),
        metadata: Sequence[tuple[str, str]] = (),
        channel_options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        """token: the bearer token. tls: None for plaintext. timeout: seconds
        per unary call (streams have none). metadata: extra metadata on every call."""
        if not token:
            raise ValueError("a bearer token is required")
        self._addresses = {Target.CONFIG: config_address, Target.RESOLVER: resolver_address}
        self._tls = tls
        self._timeout = timeout
        self._retry = retry
        self._metadata = (("authorization", f"Bearer {token}"), *metadata)
        self._channel_options = [*channel_options, *(tls.channel_options() if tls else [])]
        self._acting_for = ""
        self._owns_channels = True
        self._channels: dict[Target, C] = {}  # shared with acting_for() views

    def acting_for(self, user: str) -> Self:
        """A view of this client, on the same channels, that fills the `user`
        field of user-scoped requests (keys, personal overrides, resolution,
        chats) when the call does not name one. For service tokens."""
        if not user:
            raise ValueError("acting_for needs a user")
        view = copy.copy(self)
        view._acting_for = user
        view._owns_channels = False
        return view

    def _address(self, target: Target) -> str:
        address = self._addresses[target]
        if not address:
            raise ValueError(f"no {target.value} address: pass {target.value}_address to the client")
        return address

    def _request(self, call: Unary[Any] | Stream[Any]) -> Message:
        request = call.request
        if self._acting_for and call.user_scoped and not getattr(request, "user"):
            request = copy.deepcopy(request)
            setattr(request, "user", self._acting_for)
        return request


# -- blocking client ------------------------------------------------------------------------------------


def _sync_unary(build: Callable[P, Unary[T]]) -> Callable[Concatenate[ModelplaneClient, P], T]:
    @functools.wraps(build)
    def method(self: ModelplaneClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._run_unary(build(*args, **kwargs))

    return method


def _sync_paged(build: Callable[P, Paged[R, T]]) -> Callable[Concatenate[ModelplaneClient, P], Iterator[T]]:
    @functools.wraps(build)
    def method(self: ModelplaneClient, /, *args: P.args, **kwargs: P.kwargs) -> Iterator[T]:
        return self._run_pages(build(*args, **kwargs))

    return method


def _sync_stream(build: Callable[P, Stream[T]]) -> Callable[Concatenate[ModelplaneClient, P], Iterator[T]]:
    @functools.wraps(build)
    def method(self: ModelplaneClient, /, *args: P.args, **kwargs: P.kwargs) -> Iterator[T]:
        return self._run_stream(build(*args, **kwargs))

    return method


def _raw(data: bytes) -> bytes:
    """grpc's response deserializer: keep the bytes; Unary.decode runs after
    the call, because sync grpc counts a deserializer's None as a failure."""
    return data


class ModelplaneClient(_ClientBase[grpc.Channel]):
    """Blocking client. Channels open on first use; close() (or `with`) closes them."""

    def _channel(self, target: Target) -> grpc.Channel:
        channel = self._channels.get(target)
        if channel is None:
            address = self._address(target)
            if self._tls is None:
                channel = grpc.insecure_channel(address, options=self._channel_options)
            else:
                channel = grpc.secure_channel(address, self._tls.credentials(), options=self._channel_options)
            self._channels[target] = channel
        return channel

    def _run_unary(self, call: Unary[T]) -> T:
        request = self._request(call)
        invoke = self._channel(call.target).unary_unary(call.method, type(request).SerializeToString, _raw)
        attempt = 0
        while True:
            attempt += 1
            try:
                raw = invoke(request, metadata=self._metadata, timeout=self._timeout)
            except grpc.RpcError as err:
                if not self._retry.should_retry(call, err, attempt):
                    raise error_from_rpc(err) from err
            else:
                return call.decode(raw)
            time.sleep(self._retry.delay(attempt))

    def _run_pages(self, paged: Paged[R, T]) -> Iterator[T]:
        call: Unary[R] | None = paged.first
        while call is not None:
            page = self._run_unary(call)
            yield from paged.items(page)
            call = paged.after(page)

    def _run_stream(self, stream: Stream[T]) -> Iterator[T]:
        request = self._request(stream)
        invoke = self._channel(stream.target).unary_stream(stream.method, type(request).SerializeToString,
                                                           stream.decode)
        responses = invoke(request, metadata=self._metadata)
        try:
            for item in responses:
                yield cast(T, item)
        except grpc.RpcError as err:
            raise error_from_rpc(err) from err
        finally:
            cast("grpc.Future[Any]", responses).cancel()  # the caller stopped early: end the call now

    def close(self) -> None:
        if self._owns_channels:
            for channel in self._channels.values():
                channel.close()
            self._channels.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # ConfigService
    create_provider = _sync_unary(calls.create_provider)
    get_provider = _sync_unary(calls.get_provider)
    list_providers = _sync_paged(calls.list_providers)
    update_provider = _sync_unary(calls.update_provider)
    delete_provider = _sync_unary(calls.delete_provider)
    create_model = _sync_unary(calls.create_model)
    get_model = _sync_unary(calls.get_model)
    list_models = _sync_paged(calls.list_models)
    update_model = _sync_unary(calls.update_model)
    delete_model = _sync_unary(calls.delete_model)
    set_default_model = _sync_unary(calls.set_default_model)
    get_model_options_schema = _sync_unary(calls.get_model_options_schema)
    get_settings = _sync_unary(calls.get_settings)
    update_settings = _sync_unary(calls.update_settings)
    set_model_override = _sync_unary(calls.set_model_override)
    clear_model_override = _sync_unary(calls.clear_model_override)
    list_model_overrides = _sync_unary(calls.list_model_overrides)
    set_personal_override = _sync_unary(calls.set_personal_override)
    clear_personal_override = _sync_unary(calls.clear_personal_override)
    list_personal_overrides = _sync_unary(calls.list_personal_overrides)
    set_user_key = _sync_unary(calls.set_user_key)
    delete_user_key = _sync_unary(calls.delete_user_key)
    list_user_keys = _sync_unary(calls.list_user_keys)
    list_audit_events = _sync_paged(calls.list_audit_events)
    create_api_token = _sync_unary(calls.create_api_token)
    list_api_tokens = _sync_paged(calls.list_api_tokens)
    revoke_api_token = _sync_unary(calls.revoke_api_token)
    watch_config = _sync_stream(calls.watch_config)
    get_user_config = _sync_unary(calls.get_user_config)
    access_credential = _sync_unary(calls.access_credential)
    introspect_token = _sync_unary(calls.introspect_token)
    # ResolverService
    resolve_credential = _sync_unary(calls.resolve_credential)
    list_user_key_status = _sync_unary(calls.list_user_key_status)
    list_available_models = _sync_unary(calls.list_available_models)
    resolve_model = _sync_unary(calls.resolve_model)
    chat = _sync_unary(calls.chat)
    stream_chat = _sync_stream(calls.stream_chat)
    probe_provider = _sync_unary(calls.probe_provider)
    # grpc.health.v1 on either server
    health = _sync_unary(calls.health)


# -- asyncio client -----------------------------------------------------------------------------------------


def _async_unary(build: Callable[P, Unary[T]]) -> Callable[Concatenate[AsyncModelplaneClient, P], Coroutine[Any, Any, T]]:
    @functools.wraps(build)
    async def method(self: AsyncModelplaneClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._run_unary(build(*args, **kwargs))

    return method


def _async_paged(build: Callable[P, Paged[R, T]]) -> Callable[Concatenate[AsyncModelplaneClient, P], AsyncIterator[T]]:
    @functools.wraps(build)
    def method(self: AsyncModelplaneClient, /, *args: P.args, **kwargs: P.kwargs) -> AsyncIterator[T]:
        return self._run_pages(build(*args, **kwargs))

    return method


def _async_stream(build: Callable[P, Stream[T]]) -> Callable[Concatenate[AsyncModelplaneClient, P], AsyncIterator[T]]:
    @functools.wraps(build)
    def method(self: AsyncModelplaneClient, /, *args: P.args, **kwargs: P.kwargs) -> AsyncIterator[T]:
        return self._run_stream(build(*args, **kwargs))

    return method


class AsyncModelplaneClient(_ClientBase[grpc.aio.Channel]):
    """asyncio client (grpc.aio). Channels open on first use, inside the
    running loop; `await close()` (or `async with`) closes them."""

    def _channel(self, target: Target) -> grpc.aio.Channel:
        channel = self._channels.get(target)
        if channel is None:
            address = self._address(target)
            if self._tls is None:
                channel = grpc.aio.insecure_channel(address, options=self._channel_options)
            else:
                channel = grpc.aio.secure_channel(address, self._tls.credentials(), options=self._channel_options)
            self._channels[target] = channel
        return channel

    async def _run_unary(self, call: Unary[T]) -> T:
        request = self._request(call)
        invoke = self._channel(call.target).unary_unary(call.method, type(request).SerializeToString, _raw)
        attempt = 0
        while True:
            attempt += 1
            try:
                raw = await invoke(request, metadata=self._metadata, timeout=self._timeout)
            except grpc.RpcError as err:
                if not self._retry.should_retry(call, err, attempt):
                    raise error_from_rpc(err) from err
            else:
                return call.decode(raw)
            await asyncio.sleep(self._retry.delay(attempt))

    async def _run_pages(self, paged: Paged[R, T]) -> AsyncIterator[T]:
        call: Unary[R] | None = paged.first
        while call is not None:
            page = await self._run_unary(call)
            for item in paged.items(page):
                yield item
            call = paged.after(page)

    async def _run_stream(self, stream: Stream[T]) -> AsyncIterator[T]:
        request = self._request(stream)
        invoke = self._channel(stream.target).unary_stream(stream.method, type(request).SerializeToString,
                                                           stream.decode)
        responses = invoke(request, metadata=self._metadata)
        try:
            async for item in responses:
                yield cast(T, item)
        except grpc.RpcError as err:
            raise error_from_rpc(err) from err
        finally:
            responses.cancel()

    async def close(self) -> None:
        if self._owns_channels:
            for channel in self._channels.values():
                await channel.close(None)
            self._channels.clear()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    # ConfigService
    create_provider = _async_unary(calls.create_provider)
    get_provider = _async_unary(calls.get_provider)
    list_providers = _async_paged(calls.list_providers)
    update_provider = _async_unary(calls.update_provider)
    delete_provider = _async_unary(calls.delete_provider)
    create_model = _async_unary(calls.create_model)
    get_model = _async_unary(calls.get_model)
    list_models = _async_paged(calls.list_models)
    update_model = _async_unary(calls.update_model)
    delete_model = _async_unary(calls.delete_model)
    set_default_model = _async_unary(calls.set_default_model)
    get_model_options_schema = _async_unary(calls.get_model_options_schema)
    get_settings = _async_unary(calls.get_settings)
    update_settings = _async_unary(calls.update_settings)
    set_model_override = _async_unary(calls.set_model_override)
    clear_model_override = _async_unary(calls.clear_model_override)
    list_model_overrides = _async_unary(calls.list_model_overrides)
    set_personal_override = _async_unary(calls.set_personal_override)
    clear_personal_override = _async_unary(calls.clear_personal_override)
    list_personal_overrides = _async_unary(calls.list_personal_overrides)
    set_user_key = _async_unary(calls.set_user_key)
    delete_user_key = _async_unary(calls.delete_user_key)
    list_user_keys = _async_unary(calls.list_user_keys)
    list_audit_events = _async_paged(calls.list_audit_events)
    create_api_token = _async_unary(calls.create_api_token)
    list_api_tokens = _async_paged(calls.list_api_tokens)
    revoke_api_token = _async_unary(calls.revoke_api_token)
    watch_config = _async_stream(calls.watch_config)
    get_user_config = _async_unary(calls.get_user_config)
    access_credential = _async_unary(calls.access_credential)
    introspect_token = _async_unary(calls.introspect_token)
    # ResolverService
    resolve_credential = _async_unary(calls.resolve_credential)
    list_user_key_status = _async_unary(calls.list_user_key_status)
    list_available_models = _async_unary(calls.list_available_models)
    resolve_model = _async_unary(calls.resolve_model)
    chat = _async_unary(calls.chat)
    stream_chat = _async_stream(calls.stream_chat)
    probe_provider = _async_unary(calls.probe_provider)
    # grpc.health.v1 on either server
    health = _async_unary(calls.health)


__all__ = [
    "AsyncModelplaneClient",
    "ModelplaneClient",
    "TLS",
    "RetryPolicy",
    "NO_RETRY",
    "UNSET",
    "Unset",
    "ModelplaneError",
    "InvalidArgument",
    "Unauthenticated",
    "PermissionDenied",
    "NotFound",
    "AlreadyExists",
    "Aborted",
    "FailedPrecondition",
    "Unavailable",
]
