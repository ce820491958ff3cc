"""What the UpstreamClient tells an observer about the attempts of one call.

The client makes every attempt in one place (`_open`) and decides about
retries in one place (`_delay`); those two places, and the bytes of the
reply, are all an observer sees. It is how spans and attempt metrics
(resolver_svc.chat.telemetry) learn about attempts without the engine
knowing about either. The engine's own result (usage, finish reason) is
reported by whoever called the engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from modelplane_server.resolver_svc.upstream.errors import UpstreamError


class AttemptObserver(Protocol):
    def attempt(self) -> Mapping[str, str]:
        """An attempt is about to be sent; returns headers to add to it
        (the trace context). Never key material: the request is signed
        before these are added."""

    def responded(self, status: int) -> None:
        """The current attempt got a successful HTTP status; its body follows."""

    def failed(self, error: UpstreamError, retry_in_s: float | None) -> None:
        """The current attempt failed; another follows after retry_in_s
        seconds, or none when it is None."""

    def received(self, data: bytes) -> None:
        """Bytes of the current attempt's reply body, as they arrive."""
