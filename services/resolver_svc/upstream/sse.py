"""Incremental Server-Sent Events parser (the WHATWG event-stream format).

Bytes arrive in arbitrary pieces; events come out whole. Comment lines
(": OPENROUTER PROCESSING") are dropped, multi-line `data:` fields are
joined with newlines, and CRLF/LF/CR line endings are all accepted.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class SseEvent:
    event: str  # "message" when the server named none
    data: str


# A line ends at CRLF, LF or CR; CRLF is tried first so it is one ending.
_LINE_END = re.compile(r"\r\n|\r|\n")


class SseParser:
    def __init__(self) -> None:
        self._buffer = ""
        # Keeps an incomplete UTF-8 sequence for the next chunk.
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._event = ""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[SseEvent]:
        return self._lines(self._decoder.decode(chunk), final=False)

    def finish(self) -> list[SseEvent]:
        """Flush at end of stream: a final event without its blank line still counts."""
        events = self._lines(self._decoder.decode(b"", final=True), final=True)
        if self._buffer:
            self._dispatch(self._buffer, events)
            self._buffer = ""
        self._dispatch("", events)
        return events

    def _lines(self, text: str, *, final: bool) -> list[SseEvent]:
        buffer = self._buffer + text if self._buffer else text
        events: list[SseEvent] = []
        start = 0
        while (end := _LINE_END.search(buffer, start)) is not None:
            if end.end() == len(buffer) and buffer[-1] == "\r" and not final:
                break  # wait: this CR may be half of a CRLF
            self._dispatch(buffer[start:end.start()], events)
            start = end.end()
        self._buffer = buffer[start:]
        return events

    def _dispatch(self, line: str, events: list[SseEvent]) -> None:
        event = self._handle_line(line)
        if event is not None:
            events.append(event)

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
