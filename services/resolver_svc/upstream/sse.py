"""Incremental Server-Sent Events parser (the WHATWG event-stream format).

Bytes arrive in arbitrary pieces; events come out whole. Comment lines
(": OPENROUTER PROCESSING") are dropped, multi-line `data:` fields are
joined with newlines, and CRLF/LF/CR line endings are all accepted.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SseEvent:
    event: str  # "message" when the server named none
    data: str


class SseParser:
    def __init__(self) -> None:
        self._buffer = ""
        self._decoder_tail = b""
        self._event = ""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[SseEvent]:
        text = self._decode(chunk)
        self._buffer += text
        events: list[SseEvent] = []
        while True:
            line, found = self._take_line()
            if not found:
                break
            event = self._handle_line(line)
            if event is not None:
                events.append(event)
        return events

    def finish(self) -> list[SseEvent]:
        """Flush at end of stream: a final event without its blank line still counts."""
        events: list[SseEvent] = []
        if self._buffer:
            event = self._handle_line(self._buffer)
            self._buffer = ""
            if event is not None:
                events.append(event)
        event = self._handle_line("")
        if event is not None:
            events.append(event)
        return events

    def _decode(self, chunk: bytes) -> str:
        # Keep an incomplete UTF-8 sequence for the next chunk.
        data = self._decoder_tail + chunk
        for cut in range(0, 4):
            try:
                text = data[: len(data) - cut].decode("utf-8")
            except UnicodeDecodeError:
                continue
            self._decoder_tail = data[len(data) - cut :]
            return text
        self._decoder_tail = b""
        return data.decode("utf-8", errors="replace")

    def _take_line(self) -> tuple[str, bool]:
        buf = self._buffer
        for i, ch in enumerate(buf):
            if ch == "\n":
                self._buffer = buf[i + 1 :]
                return buf[:i], True
            if ch == "\r":
                if i + 1 == len(buf):
                    return "", False  # wait: this CR may be half of CRLF
                skip = 2 if buf[i + 1] == "\n" else 1
                self._buffer = buf[i + skip :]
                return buf[:i], True
        return "", False

    def _handle_line(self, line: str) -> SseEvent | None:
        if line == "":
            if not self._data:
                self._event = ""
                return None
            event = SseEvent(self._event or "message", "\n".join(self._data))
            self._event, self._data = "", []
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        return None
