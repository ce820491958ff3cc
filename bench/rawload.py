"""A cheap unary gRPC load generator over raw HTTP/2, run as a child
process: reads a JSON plan on stdin, prints JSON results on stdout.

Why: grpcio's Python client costs about as much CPU per call as the
resolver spends answering it, so on a small machine the load generator,
not the server, sets the pace (bench/workers.py, on two cores: 1 and 2
workers gave the same ~1,700 calls/s through bench.loadgen). This one
encodes the request's HEADERS and DATA frames once and only patches the
stream id per call, and reads frames without decoding headers: a few
microseconds a call. The server does exactly the work a grpcio client
causes.

A call counts only when its response carried a message of the size a
correct answer has ("expect_bytes", measured beforehand through grpcio):
an error is trailers only, without a message.

Plan: {"address", "path", "authorization", "request" (hex of the
serialized request), "expect_bytes", "connections", "concurrency" (streams
in flight in all), "seconds", "start_at" (Unix time; optional)}.
"""

from __future__ import annotations

import asyncio
import json
import struct
import sys
import time
from typing import Any

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY = 0x0, 0x1, 0x3, 0x4, 0x6, 0x7
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4
MAX_WINDOW = 2**31 - 1
WARMUP_SECONDS = 0.1
_HEAD = struct.Struct(">BHBBI")  # length (24 bits), type, flags, stream id


def _frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes((kind, flags)) + stream.to_bytes(4, "big") + payload


def _integer(value: int, prefix_bits: int, first: int = 0) -> bytes:
    """HPACK integer (RFC 7541 5.1)."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _literal(name: str, value: str) -> bytes:
    """Literal header field without indexing, new name, no Huffman (RFC 7541 6.2.2)."""
    return (b"\x00" + _integer(len(name), 7) + name.encode() + _integer(len(value), 7) + value.encode())


def request_frames(authority: str, path: str, authorization: str, message: bytes) -> tuple[bytes, bytes]:
    """(HEADERS payload, DATA payload) of one unary call."""
    block = (b"\x83\x86"  # :method POST, :scheme http (static table 3, 6)
             + _literal(":path", path) + _literal(":authority", authority)
             + _literal("content-type", "application/grpc") + _literal("te", "trailers")
             + _literal("authorization", authorization))
    return block, b"\x00" + struct.pack(">I", len(message)) + message


class Connection(asyncio.Protocol):
    def __init__(self, run: "Run") -> None:
        self.run = run
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.next_stream = 1
        self.started: dict[int, float] = {}
        self.received: dict[int, int] = {}
        self.unacked = 0
        self.out = bytearray()
        self.ready = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        settings = struct.pack(">HI", 0x4, MAX_WINDOW)  # INITIAL_WINDOW_SIZE: streams never wait for us
        transport.write(PREFACE + _frame(SETTINGS, 0, 0, settings)
                        + _frame(0x8, 0, 0, struct.pack(">I", MAX_WINDOW - 65535)))

    def send(self) -> None:
        """Queue the next call; `flush` writes what is queued in one go."""
        stream, self.next_stream = self.next_stream, self.next_stream + 2
        self.started[stream] = time.perf_counter()
        self.received[stream] = 0
        ids = stream.to_bytes(4, "big")
        self.out += self.run.headers_head + ids + self.run.headers + self.run.data_head + ids + self.run.data

    def flush(self) -> None:
        if self.out and self.transport is not None:
            self.transport.write(bytes(self.out))
            self.out.clear()

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        offset = 0
        while len(buffer) - offset >= 9:
            high, low, kind, flags, stream = _HEAD.unpack_from(buffer, offset)
            end = offset + 9 + (high << 16 | low)
            if end > len(buffer):
                break
            length = end - offset - 9
            stream &= MAX_WINDOW
            if kind == DATA:
                if stream in self.received:
                    self.received[stream] += length
                self.unacked += length
            elif kind == HEADERS and flags & END_STREAM or kind == RST_STREAM:
                self._done(stream, ok=kind == HEADERS)
            elif kind == SETTINGS and not flags & ACK:
                assert self.transport is not None
                self.transport.write(_frame(SETTINGS, ACK, 0, b""))
                if not self.ready.done():
                    self.ready.set_result(None)
            elif kind == PING and not flags & ACK:
                assert self.transport is not None
                self.transport.write(_frame(PING, ACK, 0, bytes(buffer[offset + 9:end])))
            elif kind == GOAWAY:
                self.run.fail(f"GOAWAY from the server: {bytes(buffer[offset + 9:end])!r}")
            offset = end
        del buffer[:offset]
        if self.unacked > 1 << 20:
            self.out += _frame(0x8, 0, 0, struct.pack(">I", self.unacked))
            self.unacked = 0
        self.flush()

    def _done(self, stream: int, ok: bool) -> None:
        began = self.started.pop(stream, None)
        size = self.received.pop(stream, 0)
        if began is None:
            return
        self.run.finished(time.perf_counter() - began, ok and size == self.run.expect)
        if self.run.going:
            self.send()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.run.going:
            self.run.fail(f"connection lost: {exc}")


class Run:
    def __init__(self, plan: dict[str, Any]) -> None:
        host = plan["address"]
        self.headers, self.data = request_frames(host, plan["path"], plan["authorization"],
                                                 bytes.fromhex(plan["request"]))
        # Frame headers up to the stream id, which each call fills in.
        self.headers_head = _frame(HEADERS, END_HEADERS, 0, self.headers)[:5]
        self.data_head = _frame(DATA, END_STREAM, 0, self.data)[:5]
        self.expect = 5 + plan["expect_bytes"]  # the gRPC message prefix and the message
        self.going = True
        self.recording = False
        self.latencies: list[float] = []
        self.errors = 0
        self.failure: str | None = None

    def finished(self, seconds: float, ok: bool) -> None:
        if not self.recording:
            return
        if ok:
            self.latencies.append(seconds)
        else:
            self.errors += 1

    def fail(self, why: str) -> None:
        self.failure = self.failure or why
        self.going = False


async def run(plan: dict[str, Any]) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    state = Run(plan)
    host, _, port = plan["address"].rpartition(":")
    connections = [(await loop.create_connection(lambda: Connection(state), host, int(port)))[1]
                   for _ in range(plan["connections"])]
    await asyncio.gather(*(c.ready for c in connections))
    if "start_at" in plan:
        await asyncio.sleep(max(0.0, plan["start_at"] - time.time()))
    for i in range(plan["concurrency"]):
        connections[i % len(connections)].send()
    for c in connections:
        c.flush()
    await asyncio.sleep(WARMUP_SECONDS)
    state.recording = True
    began, cpu = time.perf_counter(), time.process_time()
    await asyncio.sleep(plan["seconds"])
    state.recording = False
    elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
    state.going = False
    for c in connections:
        if c.transport is not None:
            c.transport.close()
    if state.failure:
        raise SystemExit(f"rawload: {state.failure}")
    latencies = sorted(state.latencies)

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else float("nan")

    return {"calls": len(latencies), "errors": state.errors, "per_second": len(latencies) / elapsed,
            "p50_ms": pct(0.5), "p99_ms": pct(0.99), "cpu_share": cpu / elapsed}


def main() -> int:
    plan = json.load(sys.stdin)
    json.dump(asyncio.run(run(plan)), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
