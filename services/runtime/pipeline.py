"""The interceptor machinery: stages written as hooks around a call, run as ONE grpc.aio interceptor.

A stage (`HookInterceptor`) says per call which `Hooks` it runs; `Pipeline`
chains the hooks of all stages and wraps the method handler once. The
standard stages are in runtime.interceptors; metrics and shutdown add theirs.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable, Sequence, cast

import grpc
import grpc.aio


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


HandlerFactory = Callable[..., "grpc.RpcMethodHandler[Any, Any]"]  # generic in the stubs only

_FACTORIES: dict[tuple[bool, bool], HandlerFactory] = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def handler_factory(request_streaming: bool, response_streaming: bool) -> HandlerFactory:
    """grpc's builder of a method handler of that kind."""
    return _FACTORIES[(request_streaming, response_streaming)]


def behaviour_of(handler: grpc.RpcMethodHandler[Any, Any]) -> tuple[Callable[..., Any] | None, HandlerFactory]:
    """A handler's behaviour (None in a handler without one), and the builder
    of a handler of its kind: what a wrapper needs to rebuild it."""
    given = handler.unary_unary or handler.unary_stream or handler.stream_unary or handler.stream_stream
    # The stubs type behaviours with the sync ServicerContext; ours are aio.
    return cast("Callable[..., Any] | None", given), handler_factory(bool(handler.request_streaming),
                                                                    bool(handler.response_streaming))


def _wrap(handler: grpc.RpcMethodHandler[Any, Any], hooks: Hooks) -> grpc.RpcMethodHandler[Any, Any]:
    inner, factory = behaviour_of(handler)
    if inner is None:  # pragma: no cover - grpc never builds such a handler
        return handler

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


def final_code(context: grpc.aio.ServicerContext[Any, Any]) -> grpc.StatusCode:
    code = context.code()
    # grpc.aio reports the code as the enum, or as its integer in some versions.
    if isinstance(code, grpc.StatusCode):
        return code
    for candidate in grpc.StatusCode:
        if candidate.value[0] == code:
            return candidate
    return grpc.StatusCode.UNKNOWN
