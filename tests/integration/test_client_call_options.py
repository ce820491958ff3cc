"""Per-call `timeout=` and `metadata=` on the typed clients: what a real gRPC
server sees for each kind of call (unary, every page of a list, stream),
blocking and asyncio, and what a real config_svc does with them.

The blocking client runs in a worker thread: the servers live on this
test's event loop, which must keep turning while it waits.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, AsyncIterator

import grpc
import grpc.aio
import pytest

from modelplane_server.domain.types import Role
from modelplane import errors
from modelplane.client import AsyncModelplaneClient, ModelplaneClient
from modelplane.v1 import config_service_pb2 as cs
from tests.harness import ConfigHarness

pytestmark = pytest.mark.integration

STREAMS = ("/modelplane.v1.ConfigService/WatchConfig", "/modelplane.v1.ResolverService/StreamChat")


@dataclass
class Seen:
    method: str
    remaining: float | None  # the deadline as the server sees it, in seconds
    metadata: dict[str, str]


class Recorder(grpc.GenericRpcHandler):
    """A real gRPC server that records each call's deadline and metadata and
    answers an empty message (ListProviders: two pages; streams: one event)."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []

    def _record(self, method: str, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        metadata = {key: value for key, value in context.invocation_metadata() or () if isinstance(value, str)}
        self.seen.append(Seen(method, context.time_remaining(), metadata))

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[bytes, bytes] | None:
        method = details.method

        async def unary(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
            self._record(method, context)
            if method.endswith("/ListProviders") and not cs.ListProvidersRequest.FromString(request).page_token:
                return cs.ListProvidersResponse(next_page_token="page-2").SerializeToString()
            return b""

        async def stream(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[bytes]:
            self._record(method, context)
            yield b""

        if method in STREAMS:
            return grpc.unary_stream_rpc_method_handler(stream)
        return grpc.unary_unary_rpc_method_handler(unary)


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[str, Recorder]]:
    handler = Recorder()
    server = grpc.aio.server(handlers=(handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield f"127.0.0.1:{port}", handler
    await server.stop(0)


def _about(remaining: float | None, seconds: float) -> bool:
    """grpc sends a deadline as a rounded-up timeout: within half a second of
    what the client asked for, and far from every other timeout used here."""
    return remaining is not None and abs(remaining - seconds) < 0.5


def _check(seen: list[Seen]) -> None:
    """What both clients must have sent for the same sequence of calls."""
    methods = [s.method.rsplit("/", 1)[1] for s in seen]
    assert methods == ["GetSettings", "GetSettings", "ListProviders", "ListProviders", "StreamChat", "WatchConfig"]
    own, default, page_1, page_2, chat, watch = seen
    # The call's timeout and metadata, after the client's own metadata.
    assert _about(own.remaining, 5.0)
    assert own.metadata["x-request-id"] == "call-1"
    assert own.metadata["authorization"] == "Bearer t" and own.metadata["x-client"] == "tests"
    # Without options: the client's timeout, and no request id.
    assert _about(default.remaining, 30.0)
    assert "x-request-id" not in default.metadata and default.metadata["x-client"] == "tests"
    # Every page of a list carries the options of the first.
    for page in (page_1, page_2):
        assert _about(page.remaining, 7.0)
        assert page.metadata["x-request-id"] == "list-1"
    # A stream with a timeout gets a deadline; without one it has none, as before.
    assert _about(chat.remaining, 9.0)
    assert chat.metadata["x-request-id"] == "chat-1"
    assert watch.remaining is None


async def test_async_per_call_timeout_and_metadata_reach_the_server(recorder: tuple[str, Recorder]) -> None:
    address, server = recorder
    async with AsyncModelplaneClient(address, address, token="t", timeout=30.0,
                                     metadata=[("x-client", "tests")]) as mp:
        await mp.get_settings(timeout=5.0, metadata=[("x-request-id", "call-1")])
        await mp.get_settings()
        assert [p async for p in mp.list_providers(timeout=7.0, metadata=[("x-request-id", "list-1")])] == []
        assert len([e async for e in mp.stream_chat("hi", timeout=9.0, metadata=[("x-request-id", "chat-1")])]) == 1
        assert len([e async for e in mp.watch_config()]) == 1
    _check(server.seen)


async def test_blocking_per_call_timeout_and_metadata_reach_the_server(recorder: tuple[str, Recorder]) -> None:
    address, server = recorder

    def blocking() -> None:
        with ModelplaneClient(address, address, token="t", timeout=30.0, metadata=[("x-client", "tests")]) as mp:
            mp.get_settings(timeout=5.0, metadata=[("x-request-id", "call-1")])
            mp.get_settings()
            assert list(mp.list_providers(timeout=7.0, metadata=[("x-request-id", "list-1")])) == []
            assert len(list(mp.stream_chat("hi", timeout=9.0, metadata=[("x-request-id", "chat-1")]))) == 1
            assert len(list(mp.watch_config())) == 1

    await asyncio.to_thread(blocking)
    _check(server.seen)


# -- against a real config_svc -----------------------------------------------------------------------


@pytest.fixture
async def admin_token(cfg: ConfigHarness) -> str:
    return await cfg.token(Role.ADMIN, "ops")


async def test_async_per_call_options_on_config_svc(cfg: ConfigHarness, admin_token: str) -> None:
    async with AsyncModelplaneClient(cfg.address, None, token=admin_token) as mp:
        # The server adopts the caller's request id and sends it back.
        with pytest.raises(errors.NotFound) as missing:
            await mp.get_provider("nope", metadata=[("x-request-id", "trace-async-1")])
        assert missing.value.request_id == "trace-async-1"
        # A watch has no deadline unless the call gives one: then it ends
        # DEADLINE_EXCEEDED after the snapshot, while waiting for changes.
        events = mp.watch_config(timeout=0.5)
        assert (await events.__anext__()).HasField("snapshot")
        with pytest.raises(errors.DeadlineExceeded):
            await events.__anext__()


def _blocking_options(address: str, admin_token: str) -> None:
    with ModelplaneClient(address, None, token=admin_token) as mp:
        with pytest.raises(errors.NotFound) as missing:
            mp.get_model("nope", metadata=[("x-request-id", "trace-sync-1")])
        assert missing.value.request_id == "trace-sync-1"
        events = mp.watch_config(timeout=0.5)
        assert next(events).HasField("snapshot")
        with pytest.raises(errors.DeadlineExceeded):
            next(events)


async def test_blocking_per_call_options_on_config_svc(cfg: ConfigHarness, admin_token: str) -> None:
    await asyncio.to_thread(_blocking_options, cfg.address, admin_token)
