"""The asyncio client (grpc.aio): each call description becomes a coroutine
method, or an async iterator for lists and streams."""

from __future__ import annotations

import asyncio
import functools
from types import TracebackType
from typing import Any, AsyncIterator, Callable, Concatenate, Coroutine, ParamSpec, Self, TypeVar, cast

import grpc
import grpc.aio
from google.protobuf.message import Message

from modelplane import calls
from modelplane.calls import Joined, Paged, Stream, Target, Unary
from modelplane.client._base import ClientBase, raw
from modelplane.errors import error_from_rpc

P = ParamSpec("P")
T = TypeVar("T")
R = TypeVar("R", bound=Message)


def _unary(build: Callable[P, Unary[T]]) -> Callable[Concatenate[AsyncModelplaneClient, P], Coroutine[Any, Any, T]]:
    @functools.wraps(build)
    async def method(self: AsyncModelplaneClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._run_unary(build(*args, **kwargs))

    return method


def _paged(build: Callable[P, Paged[R, T]]) -> Callable[Concatenate[AsyncModelplaneClient, P], AsyncIterator[T]]:
    @functools.wraps(build)
    def method(self: AsyncModelplaneClient, /, *args: P.args, **kwargs: P.kwargs) -> AsyncIterator[T]:
        return self._run_pages(build(*args, **kwargs))

    return method


def _joined(build: Callable[P, Joined[R]]) -> Callable[Concatenate[AsyncModelplaneClient, P], Coroutine[Any, Any, R]]:
    @functools.wraps(build)
    async def method(self: AsyncModelplaneClient, /, *args: P.args, **kwargs: P.kwargs) -> R:
        joined = build(*args, **kwargs)
        return joined.join([page async for page in self._run_pages(joined.pages)])

    return method


def _stream(build: Callable[P, Stream[T]]) -> Callable[Concatenate[AsyncModelplaneClient, P], AsyncIterator[T]]:
    @functools.wraps(build)
    def method(self: AsyncModelplaneClient, /, *args: P.args, **kwargs: P.kwargs) -> AsyncIterator[T]:
        return self._run_stream(build(*args, **kwargs))

    return method


class AsyncModelplaneClient(ClientBase[grpc.aio.Channel]):
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
        invoke = self._channel(call.target).unary_unary(call.method, type(request).SerializeToString, raw)
        attempt = 0
        while True:
            attempt += 1
            try:
                rpc = invoke(request, metadata=self._call_metadata(call), timeout=self._deadline(call))
                data = await rpc
                trailers = await rpc.trailing_metadata()
            except grpc.RpcError as err:
                if not self._retry.should_retry(call, err, attempt):
                    raise error_from_rpc(err) from err
            else:
                self._answered(call, tuple(trailers))
                return call.decode(data)
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
        responses = invoke(request, metadata=self._call_metadata(stream), timeout=self._deadline(stream))
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
    create_provider = _unary(calls.create_provider)
    get_provider = _unary(calls.get_provider)
    list_providers = _paged(calls.list_providers)
    update_provider = _unary(calls.update_provider)
    delete_provider = _unary(calls.delete_provider)
    create_model = _unary(calls.create_model)
    get_model = _unary(calls.get_model)
    list_models = _paged(calls.list_models)
    update_model = _unary(calls.update_model)
    delete_model = _unary(calls.delete_model)
    set_default_model = _unary(calls.set_default_model)
    get_model_options_schema = _unary(calls.get_model_options_schema)
    get_settings = _unary(calls.get_settings)
    update_settings = _unary(calls.update_settings)
    set_model_override = _unary(calls.set_model_override)
    clear_model_override = _unary(calls.clear_model_override)
    list_model_overrides = _unary(calls.list_model_overrides)
    set_personal_override = _unary(calls.set_personal_override)
    clear_personal_override = _unary(calls.clear_personal_override)
    list_personal_overrides = _unary(calls.list_personal_overrides)
    set_user_key = _unary(calls.set_user_key)
    delete_user_key = _unary(calls.delete_user_key)
    list_user_keys = _unary(calls.list_user_keys)
    list_audit_events = _paged(calls.list_audit_events)
    create_api_token = _unary(calls.create_api_token)
    list_api_tokens = _paged(calls.list_api_tokens)
    revoke_api_token = _unary(calls.revoke_api_token)
    list_resolvers = _paged(calls.list_resolvers)
    list_resolvers_page = _unary(calls.list_resolvers_page)
    ack_config = _unary(calls.ack_config)
    watch_config = _stream(calls.watch_config)
    get_user_config = _unary(calls.get_user_config)
    get_user_configs = _unary(calls.get_user_configs)
    access_credential = _unary(calls.access_credential)
    introspect_token = _unary(calls.introspect_token)
    create_group = _unary(calls.create_group)
    get_group = _unary(calls.get_group)
    list_groups = _paged(calls.list_groups)
    update_group = _unary(calls.update_group)
    delete_group = _unary(calls.delete_group)
    add_group_members = _unary(calls.add_group_members)
    remove_group_members = _unary(calls.remove_group_members)
    set_spend_limit = _unary(calls.set_spend_limit)
    clear_spend_limit = _unary(calls.clear_spend_limit)
    list_spend_limits = _paged(calls.list_spend_limits)
    record_usage = _unary(calls.record_usage)
    summarize_usage = _unary(calls.summarize_usage)
    # ResolverService
    resolve_credential = _unary(calls.resolve_credential)
    list_user_key_status = _unary(calls.list_user_key_status)
    list_available_models = _joined(calls.list_available_models)
    resolve_model = _unary(calls.resolve_model)
    chat = _unary(calls.chat)
    stream_chat = _stream(calls.stream_chat)
    probe_provider = _unary(calls.probe_provider)
    # grpc.health.v1 on either server
    health = _unary(calls.health)
