"""AsyncioBackend: httpcore's network interface on asyncio transports,
against real loopback sockets."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import httpcore
import pytest

from modelplane_server.resolver_svc.upstream.network import AsyncioBackend
from tests.resolver_harness import free_port

Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def server(serve: Serve) -> AsyncIterator[int]:
    async def serve_and_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await serve(reader, writer)
        finally:
            writer.close()

    listening = await asyncio.start_server(serve_and_close, "127.0.0.1", 0)
    try:
        yield listening.sockets[0].getsockname()[1]
    finally:
        listening.close()


async def test_a_refused_connection_says_why_without_the_address() -> None:
    with pytest.raises(httpcore.ConnectError, match="^Connection refused$"):
        await AsyncioBackend().connect_tcp("127.0.0.1", free_port(), timeout=5)


async def test_bytes_arrive_in_order_across_flow_control() -> None:
    sent = bytes(range(256)) * 8192  # 2 MiB: far past the buffer's high-water mark

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(sent)
        await writer.drain()

    async with server(serve) as port:
        stream = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5)
        await asyncio.sleep(0.05)  # let the sender fill the buffer: reading pauses
        got = bytearray()
        while chunk := await stream.read(65536, timeout=5):
            assert len(chunk) <= 65536
            got += chunk
        await stream.aclose()
    assert bytes(got) == sent


async def test_a_silent_peer_times_a_read_out() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # says nothing until the client leaves

    async with server(serve) as port:
        stream = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5)
        with pytest.raises(httpcore.ReadTimeout):
            await stream.read(1024, timeout=0.05)
        await stream.aclose()


async def test_a_closed_peer_reads_as_the_end_and_marks_the_connection_readable() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        pass  # closes at once

    async with server(serve) as port:
        stream = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5)
        assert await stream.read(1024, timeout=5) == b""
        assert stream.get_extra_info("is_readable") is True  # a pool must not reuse it
        with pytest.raises(httpcore.WriteError):
            await asyncio.sleep(0.01)
            await stream.write(b"x", timeout=5)


async def test_a_pool_opens_a_new_connection_when_the_server_closed_the_idle_one() -> None:
    connections = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()  # then closes: keep-alive was not promised away: the client learns only by reading

    async with server(serve) as port, httpcore.AsyncConnectionPool(network_backend=AsyncioBackend()) as pool:
        for _ in range(2):
            response = await pool.request("GET", f"http://127.0.0.1:{port}/")
            assert (response.status, response.content) == (200, b"ok")
            async with asyncio.timeout(5):  # until the server's close reaches the idle connection
                while not all(c.has_expired() for c in pool.connections):
                    await asyncio.sleep(0.01)
    assert connections == 2
