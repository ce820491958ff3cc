"""Helpers to write Server-Sent Events bytes."""

from __future__ import annotations

import json
from typing import Any


def data(payload: Any) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def named(event: str, payload: Any) -> bytes:
    return f"event: {event}\n".encode() + data(payload)


def comment(text: str) -> bytes:
    return f": {text}\n\n".encode()


DONE = b"data: [DONE]\n\n"
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
