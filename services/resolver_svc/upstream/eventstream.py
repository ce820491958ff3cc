"""Decoder for the AWS binary event-stream framing (ConverseStream).

Each message: total length (u32), headers length (u32), CRC32 of those
8 bytes, headers, payload, CRC32 of everything before it. Integers are
big-endian. Both CRCs are checked: a corrupt frame is a protocol error,
not something to guess around.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from modelplane_server.resolver_svc.upstream.errors import UpstreamError

_PRELUDE_LEN = 12
_MIN_MESSAGE_LEN = 16
_MAX_MESSAGE_LEN = 16 * 1024 * 1024
_STRING_TYPE = 7

# Fixed payload sizes of the non-string header value types, so we can skip them.
_FIXED_SIZES = {0: 0, 1: 0, 2: 1, 3: 2, 4: 4, 5: 8, 8: 8, 9: 16}


@dataclass(frozen=True)
class EventMessage:
    headers: dict[str, str]
    payload: bytes

    @property
    def message_type(self) -> str:
        return self.headers.get(":message-type", "event")

    @property
    def event_type(self) -> str:
        return self.headers.get(":event-type") or self.headers.get(":exception-type") or ""


class EventStreamDecoder:
    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, chunk: bytes) -> list[EventMessage]:
        self._buffer.extend(chunk)
        messages: list[EventMessage] = []
        while len(self._buffer) >= _PRELUDE_LEN:
            total_len, headers_len, prelude_crc = struct.unpack_from(">III", self._buffer, 0)
            if zlib.crc32(bytes(self._buffer[:8])) != prelude_crc:
                raise _corrupt("prelude CRC mismatch")
            if not _MIN_MESSAGE_LEN <= total_len <= _MAX_MESSAGE_LEN:
                raise _corrupt(f"implausible message length {total_len}")
            if len(self._buffer) < total_len:
                break
            frame = bytes(self._buffer[:total_len])
            del self._buffer[:total_len]
            (message_crc,) = struct.unpack_from(">I", frame, total_len - 4)
            if zlib.crc32(frame[:-4]) != message_crc:
                raise _corrupt("message CRC mismatch")
            headers_end = _PRELUDE_LEN + headers_len
            headers = _parse_headers(frame[_PRELUDE_LEN:headers_end])
            messages.append(EventMessage(headers, frame[headers_end:-4]))
        return messages

    @property
    def pending_bytes(self) -> int:
        return len(self._buffer)


def _parse_headers(raw: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    pos = 0
    while pos < len(raw):
        name_len = raw[pos]
        name = raw[pos + 1 : pos + 1 + name_len].decode("utf-8")
        pos += 1 + name_len
        value_type = raw[pos]
        pos += 1
        if value_type in (6, _STRING_TYPE):  # byte array, string: u16 length prefix
            (value_len,) = struct.unpack_from(">H", raw, pos)
            value = raw[pos + 2 : pos + 2 + value_len]
            pos += 2 + value_len
            if value_type == _STRING_TYPE:
                headers[name] = value.decode("utf-8")
        elif value_type in _FIXED_SIZES:
            pos += _FIXED_SIZES[value_type]
        else:
            raise _corrupt(f"unknown header value type {value_type}")
    return headers


def _corrupt(detail: str) -> UpstreamError:
    return UpstreamError("protocol_error", f"corrupt event stream: {detail}", should_retry=False)
