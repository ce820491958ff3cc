"""A tiny HTTP/1.1 server on asyncio streams, just enough for fake upstreams;
with TLS, HTTP/2 as well for clients that ask for it by ALPN (h2_server).

Keep-alive, Content-Length and chunked request bodies, Content-Length and
chunked responses. Streaming replies can be slow or stall, and the server
notices when a client goes away mid-stream (that is what cancellation tests
assert on).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class RecordedRequest:
    method: str
    target: str  # the raw request-target, path plus query, as sent
    headers: dict[str, str]  # lower-case names
    body: bytes
    http_version: str = "HTTP/1.1"  # or "HTTP/2"

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.target).query)

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class RawReply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class StreamReply:
    """A chunked response. Each item of `chunks` is written (and flushed) as
    one HTTP chunk, `delay_s` apart. With `stall_after` set, the server stops
    sending after that many chunks and holds the connection open."""

    chunks: list[bytes]
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    stall_after: int | None = None


Reply = RawReply | StreamReply
Handler = Callable[[RecordedRequest], Awaitable[Reply]]

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    409: "Conflict",
    413: "Payload Too Large",
    424: "Failed Dependency",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    529: "Overloaded",
}


class FakeHttpServer:
    """tls: serve https with this context; its ALPN protocols decide whether
    HTTP/2 is offered (see server_tls)."""

    def __init__(self, handler: Handler, tls: ssl.SSLContext | None = None) -> None:
        self._handler = handler
        self._tls = tls
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0
        self.connections_opened = 0
        self.disconnects_mid_stream = 0
        self.client_disconnected = asyncio.Event()
        self.streams_finished = 0

    async def start(self) -> None:
        # backlog: asyncio's default (100) drops connection attempts past the
        # hundredth of a burst, and each dropped SYN costs the client a 1 s,
        # then 3 s, retransmit; a provider's edge takes bursts of thousands.
        self._server = await asyncio.start_server(self._on_connection, "127.0.0.1", 0, ssl=self._tls,
                                                  backlog=4096)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            await self._server.wait_closed()

    def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.get_running_loop().create_task(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections_opened += 1
        tls = writer.get_extra_info("ssl_object")
        if tls is not None and tls.selected_alpn_protocol() == "h2":
            from tests.fakes.h2_server import H2Connection

            try:
                await H2Connection(self._handler, reader, writer, self._stream_ended).serve()
            except ConnectionError:
                pass
            finally:
                writer.close()
            return
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    return
                reply = await self._handler(request)
                if isinstance(reply, StreamReply):
                    if not await self._write_stream(reply, reader, writer):
                        return
                else:
                    await _write_raw(reply, writer)
                if request.headers.get("connection", "").lower() == "close":
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _stream_ended(self, finished: bool) -> None:
        if finished:
            self.streams_finished += 1
        else:
            self.disconnects_mid_stream += 1
            self.client_disconnected.set()

    async def _write_stream(
        self, reply: StreamReply, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Returns False when the client went away."""
        head = _head(reply.status, {**reply.headers, "Transfer-Encoding": "chunked"})
        writer.write(head)
        # The client sends nothing while reading a response, so any EOF on
        # the read side means it hung up.
        eof = asyncio.get_running_loop().create_task(reader.read(1))
        try:
            for n, chunk in enumerate(reply.chunks):
                if reply.stall_after is not None and n >= reply.stall_after:
                    await eof
                    break
                if n and reply.delay_s:
                    done, _ = await asyncio.wait({eof}, timeout=reply.delay_s)
                    if done:
                        break
                if eof.done():
                    break
                writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                await writer.drain()
            else:
                writer.write(b"0\r\n\r\n")
                await writer.drain()
                self.streams_finished += 1
                return True
        except ConnectionError:
            pass
        finally:
            if not eof.done():
                eof.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await eof
        self.disconnects_mid_stream += 1
        self.client_disconnected.set()
        return False


def server_tls(cert: str, key: str, *, http2: bool) -> ssl.SSLContext:
    """A server context for a fake: HTTP/2 offered by ALPN, or only HTTP/1.1."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["h2", "http/1.1"] if http2 else ["http/1.1"])
    return context


async def _read_request(reader: asyncio.StreamReader) -> RecordedRequest | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = b""
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            data = await reader.readexactly(size + 2)
            if size == 0:
                break
            parts.append(data[:-2])
        body = b"".join(parts)
    return RecordedRequest(method, target, headers, body)


def _head(status: int, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _write_raw(reply: RawReply, writer: asyncio.StreamWriter) -> None:
    headers = {**reply.headers, "Content-Length": str(len(reply.body))}
    writer.write(_head(reply.status, headers) + reply.body)
    await writer.drain()
