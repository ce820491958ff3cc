"""structlog events written straight to the log handler's stream.

The stdlib route for a structlog event builds a LogRecord, walks the stack
for its caller, copies it for the ProcessorFormatter and renders it there:
most of what a line costs, for nothing a JSON line shows. Here the event is
rendered (redaction included) by structlog's own chain and written under the
handler's lock, so it never interleaves with the stdlib records (asyncio,
grpc, httpx) that still go through the handler and its formatter.
"""

from __future__ import annotations

import logging
from typing import Any

from structlog._frames import _find_first_app_frame_and_name


class LineSink:
    """The handler whose stream structlog lines go to: the one logging was
    configured with last. Writers ask it on each line, so a logger keeps its
    writer across configurations."""

    handler: logging.StreamHandler  # type: ignore[type-arg]


class LineWriter:
    """The logger structlog wraps: level checks go to the stdlib logger of
    the same name (so LOG_LEVEL and per-library levels hold), lines go to
    the sink's handler's stream."""

    def __init__(self, name: str, sink: LineSink) -> None:
        self.name = name
        self._std = logging.getLogger(name)
        self._sink = sink

    @property
    def disabled(self) -> bool:
        return self._std.disabled

    def isEnabledFor(self, level: int) -> bool:  # noqa: N802 - the stdlib's spelling, which structlog calls
        return self._std.isEnabledFor(level)

    def getEffectiveLevel(self) -> int:  # noqa: N802
        return self._std.getEffectiveLevel()

    def write(self, line: str) -> None:
        handler = self._sink.handler
        handler.acquire()
        try:
            handler.stream.write(line + handler.terminator)
            handler.stream.flush()  # handler.flush() would take the lock held here again
        except Exception:  # as StreamHandler.emit: report on stderr, never fail the caller's code
            handler.handleError(logging.makeLogRecord({"name": self.name, "msg": "a log line could not be written"}))
        finally:
            handler.release()

    debug = info = warning = warn = error = exception = critical = fatal = msg = write


class LineWriterFactory:
    def __init__(self, sink: LineSink) -> None:
        self._sink = sink

    def __call__(self, *args: Any) -> LineWriter:
        if args and isinstance(args[0], str):
            return LineWriter(args[0], self._sink)
        _frame, name = _find_first_app_frame_and_name(["structlog", __name__])
        return LineWriter(name, self._sink)
