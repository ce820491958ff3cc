"""AsyncioBackend: httpcore's sockets on asyncio's own transports.

httpcore's default async backend goes through anyio, which wraps every read
of a response body in a cancel scope, looks up the running event loop
several times (each a getpid() system call on Python 3.11) and walks a
stack of stream wrappers. A stream of short SSE events pays that per event.
This backend implements httpcore's public network-backend interface on an
asyncio Protocol: a read takes what the protocol has buffered or waits on
one future, and only a read or write given a timeout arms a timer.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
from collections import deque
from collections.abc import Iterable
from typing import Any, Final

import httpcore

# Buffered response bytes above which the socket stops being read (TCP
# flow control then holds the sender back) until the reader catches up.
_HIGH_WATER: Final = 256 * 1024

# RFC 8305's recommended delay before racing the next address (IPv6, then IPv4).
_HAPPY_EYEBALLS_DELAY_S: Final = 0.25

SocketOption = tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]


class _Socket(asyncio.Protocol):
    """One connection's received bytes and its state, as asyncio reports them."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._received: deque[bytes] = deque()
        self._buffered = 0
        self._reading_paused = False
        self._eof = False
        self._lost: BaseException | None = None
        self._closed = False
        self._readable: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None

    # --- asyncio's side ----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._received.append(data)
        self._buffered += len(data)
        if self._buffered > _HIGH_WATER and not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()
        self._wake_reader()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake_reader()
        return False  # close our side too: httpcore never half-closes

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        self._closed = True
        self._lost = exc
        self._wake_reader()
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def pause_writing(self) -> None:
        if self._writable is None or self._writable.done():
            self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def _wake_reader(self) -> None:
        if self._readable is not None and not self._readable.done():
            self._readable.set_result(None)

    # --- httpcore's side ---------------------------------------------------

    async def read(self, max_bytes: int, timeout: float | None) -> bytes:
        if not self._received and not self._eof:
            self._readable = asyncio.get_running_loop().create_future()
            try:
                if timeout is None:
                    await self._readable
                else:
                    async with asyncio.timeout(timeout):
                        await self._readable
            except TimeoutError:
                raise httpcore.ReadTimeout(f"no data within {timeout} s") from None
            finally:
                self._readable = None
        if not self._received:
            if self._lost is not None:
                raise httpcore.ReadError(str(self._lost) or type(self._lost).__name__)
            return b""
        data = self._received.popleft()
        if len(data) > max_bytes:
            self._received.appendleft(data[max_bytes:])
            data = data[:max_bytes]
        self._buffered -= len(data)
        if self._reading_paused and self._buffered <= _HIGH_WATER // 2 and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()
        return data

    async def write(self, data: bytes, timeout: float | None) -> None:
        if self._closed or self.transport is None or self.transport.is_closing():
            raise httpcore.WriteError("the connection is closed")
        self.transport.write(data)
        writable = self._writable
        if writable is None or writable.done():
            return
        try:
            async with asyncio.timeout(timeout):
                await writable
        except TimeoutError:
            raise httpcore.WriteTimeout(f"could not write within {timeout} s") from None
        if self._closed:
            raise httpcore.WriteError("the connection closed while writing")

    @property
    def readable(self) -> bool:
        """Data or end of stream waiting: on an idle pooled connection, the
        server closed it (or broke protocol), so it must not be reused."""
        return bool(self._received) or self._eof


class AsyncioStream(httpcore.AsyncNetworkStream):
    def __init__(self, transport: asyncio.Transport, protocol: _Socket) -> None:
        self._transport = transport
        self._protocol = protocol

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._protocol.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if buffer:
            await self._protocol.write(buffer, timeout)

    async def aclose(self) -> None:
        self._transport.close()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            transport = await loop.start_tls(self._transport, self._protocol, ssl_context,
                                             server_hostname=server_hostname, ssl_handshake_timeout=timeout)
        except TimeoutError as exc:
            self._transport.close()
            raise httpcore.ConnectTimeout(f"TLS handshake not done within {timeout} s") from exc
        except (OSError, ssl.SSLError, ConnectionError) as exc:
            self._transport.close()
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        if transport is None:  # the peer closed during the handshake
            raise httpcore.ConnectError("the connection closed during the TLS handshake")
        assert isinstance(transport, asyncio.Transport)
        self._protocol.transport = transport
        return AsyncioStream(transport, self._protocol)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            return self._protocol.readable
        name = {"ssl_object": "ssl_object", "client_addr": "sockname", "server_addr": "peername",
                "socket": "socket"}.get(info)
        return None if name is None else self._transport.get_extra_info(name)


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[SocketOption] | None = None) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        local = None if local_address is None else (local_address, 0)
        return await _connect(loop.create_connection(
            _Socket, host, port, local_addr=local, happy_eyeballs_delay=_HAPPY_EYEBALLS_DELAY_S),
            timeout, socket_options)

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[SocketOption] | None = None) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        return await _connect(loop.create_unix_connection(_Socket, path), timeout, socket_options)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


async def _connect(opening: Any, timeout: float | None,
                   socket_options: Iterable[SocketOption] | None) -> AsyncioStream:
    try:
        async with asyncio.timeout(timeout):
            transport, protocol = await opening
    except TimeoutError as exc:
        raise httpcore.ConnectTimeout(f"not connected within {timeout} s") from exc
    except OSError as exc:
        # The reason alone ("Connection refused"): asyncio's text repeats the
        # address, which the caller's error already names as the base URL.
        raise httpcore.ConnectError(os.strerror(exc.errno) if exc.errno else str(exc) or type(exc).__name__) from exc
    sock: socket.socket | None = transport.get_extra_info("socket")
    if sock is not None:
        for option in socket_options or ():
            sock.setsockopt(*option)
    return AsyncioStream(transport, protocol)
