"""HTTP/2 for the fake upstreams (h2 over asyncio streams): one connection,
many concurrent requests, each answered by the same handler as HTTP/1.1.

Just enough for the fakes: request headers and bodies, RawReply and
StreamReply (with delays and stalls), flow control, and a client's reset of
one stream counted as a disconnect mid-stream.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.exceptions

from tests.fakes.http_server import RawReply, RecordedRequest, Reply, StreamReply

Handler = Callable[[RecordedRequest], Awaitable[Reply]]


@dataclass
class _Incoming:
    headers: dict[str, str]
    body: bytearray = field(default_factory=bytearray)
    reset: asyncio.Event = field(default_factory=asyncio.Event)


class H2Connection:
    """One client connection; `serve()` returns when the client goes away.
    on_stream_end(finished): a streamed reply ended, whole or abandoned."""

    def __init__(self, handler: Handler, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 on_stream_end: Callable[[bool], None]) -> None:
        self._handler = handler
        self._reader = reader
        self._writer = writer
        self._on_stream_end = on_stream_end
        self._conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False,
                                                                           header_encoding="utf-8"))
        self._streams: dict[int, _Incoming] = {}
        self._window_opened = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    async def serve(self) -> None:
        self._conn.initiate_connection()
        self._flush()
        try:
            while data := await self._reader.read(65536):
                for event in self._conn.receive_data(data):
                    self._on_event(event)
                self._flush()
                await self._writer.drain()
        finally:
            for task in list(self._tasks):
                task.cancel()
            for task in list(self._tasks):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    def _on_event(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            self._streams[event.stream_id] = _Incoming(dict(event.headers or ()))  # type: ignore[arg-type]
        elif isinstance(event, h2.events.DataReceived):
            self._streams[event.stream_id].body += event.data
            self._conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            task = asyncio.get_running_loop().create_task(self._respond(event.stream_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif isinstance(event, h2.events.StreamReset):
            incoming = self._streams.get(event.stream_id)
            if incoming is not None:
                incoming.reset.set()
        elif isinstance(event, (h2.events.WindowUpdated, h2.events.RemoteSettingsChanged)):
            self._window_opened.set()

    async def _respond(self, stream_id: int) -> None:
        incoming = self._streams[stream_id]
        pseudo = {k: v for k, v in incoming.headers.items() if k.startswith(":")}
        headers = {k: v for k, v in incoming.headers.items() if not k.startswith(":")}
        headers.setdefault("host", pseudo.get(":authority", ""))
        request = RecordedRequest(pseudo[":method"], pseudo[":path"], headers, bytes(incoming.body),
                                  http_version="HTTP/2")
        reply = await self._handler(request)
        try:
            if isinstance(reply, RawReply):
                self._head(stream_id, reply.status, reply.headers, end=not reply.body)
                if reply.body:
                    await self._data(stream_id, reply.body, end=True)
                return
            await self._stream(stream_id, reply, incoming.reset)
        except (h2.exceptions.StreamClosedError, ConnectionError):
            pass
        finally:
            self._streams.pop(stream_id, None)

    async def _stream(self, stream_id: int, reply: StreamReply, reset: asyncio.Event) -> None:
        self._head(stream_id, reply.status, reply.headers, end=False)
        for n, chunk in enumerate(reply.chunks):
            if reply.stall_after is not None and n >= reply.stall_after:
                await reset.wait()
                break
            if n and reply.delay_s:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(reset.wait(), reply.delay_s)
            if reset.is_set():
                break
            await self._data(stream_id, chunk, end=False)
        else:
            self._conn.end_stream(stream_id)
            self._flush()
            self._on_stream_end(True)
            return
        self._on_stream_end(False)

    def _head(self, stream_id: int, status: int, headers: dict[str, str], *, end: bool) -> None:
        self._conn.send_headers(stream_id, [(":status", str(status)), *((k.lower(), v) for k, v in headers.items())],
                                end_stream=end)
        self._flush()

    async def _data(self, stream_id: int, data: bytes, *, end: bool) -> None:
        while data:
            window = min(self._conn.local_flow_control_window(stream_id), self._conn.max_outbound_frame_size)
            if window <= 0:
                self._window_opened.clear()
                await self._window_opened.wait()
                continue
            piece, data = data[:window], data[window:]
            self._conn.send_data(stream_id, piece, end_stream=end and not data)
            self._flush()
            await self._writer.drain()

    def _flush(self) -> None:
        out = self._conn.data_to_send()
        if out:
            self._writer.write(out)
