"""Keeps the snapshot current: one WatchConfig stream at a time, reopened
with exponential backoff and jitter whenever it ends, resuming after the last
applied revision of the last applied epoch (config_svc answers with a fresh
snapshot when it cannot resume, or its database has another epoch, e.g.
after a restore). A change event from another epoch than the applied state's
is never applied: the watcher reopens the stream asking for a snapshot.

A stream is also given up when it delivers nothing for `idle_seconds`:
config_svc sends a heartbeat on a quiet stream, so silence means it is
hung or the path to it is broken (HTTP/2 keepalive on the channel catches
most such cases sooner, but not a hung config_svc behind a gRPC proxy).

`connected` is true while a stream is open and has delivered an event; the
snapshot lag metric reads it, so it must turn false as soon as a stream is
known lost.

Between streams nothing changes: resolution keeps answering from the last
snapshot (static stability).
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import AsyncIterator, Callable, Sequence

import structlog

from modelplane_server.domain.errors import DomainError
from modelplane.v1 import config_service_pb2 as cs
from modelplane_server.resolver_svc.state.config_client import ConfigClient, ConfigUnreachable
from modelplane_server.resolver_svc.state.config_state import EpochChanged, Invalidations
from modelplane_server.resolver_svc.state.snapshot import Snapshot

log = structlog.get_logger(__name__)

InvalidationListener = Callable[[Invalidations], None]


def backoff_delay(attempt: int, initial: float, maximum: float, rand: Callable[[], float] = random.random) -> float:
    """Exponential, capped, with "equal jitter": half fixed, half random, so
    resolvers that lost config_svc together do not all return at once yet
    none retries immediately."""
    ceiling = min(maximum, initial * (2 ** min(attempt, 30)))
    return float(ceiling / 2 + rand() * ceiling / 2)


class WatchIdle(ConfigUnreachable):
    """The watch stream delivered nothing, not even a heartbeat, for too long."""


async def _events(stream: AsyncIterator[cs.ConfigEvent], idle_seconds: float) -> AsyncIterator[cs.ConfigEvent]:
    """`stream`'s events; WatchIdle when the next one takes longer than
    `idle_seconds` (0: wait forever)."""
    if not idle_seconds:
        async for event in stream:
            yield event
        return
    while True:
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a
            # cancellation that lands as the event arrives, and the watcher
            # then never stops (seen once spend events made the stream busy).
            async with asyncio.timeout(idle_seconds):
                event = await anext(stream)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise WatchIdle(f"no event or heartbeat from config_svc for {idle_seconds:g} s") from None
        yield event


class ConfigWatcher:
    def __init__(self, client: ConfigClient, snapshot: Snapshot, listeners: Sequence[InvalidationListener], *,
                 reconnect_initial_seconds: float, reconnect_max_seconds: float,
                 idle_seconds: float = 0.0) -> None:
        self._client = client
        self._snapshot = snapshot
        self._listeners = list(listeners)
        self._initial = reconnect_initial_seconds
        self._max = reconnect_max_seconds
        self._idle = idle_seconds
        self.connected = False  # a stream is open and has delivered at least one event
        self.streams_opened = 0

    async def run(self) -> None:
        attempt = 0
        need_snapshot = False
        while True:
            after = 0 if need_snapshot else self._snapshot.revision
            epoch = self._snapshot.epoch
            need_snapshot = False
            opened = time.monotonic()
            self.streams_opened += 1
            stream = self._client.watch(after, epoch)
            try:
                async for event in _events(stream, self._idle):
                    self._apply(event)
                    if not self.connected:
                        self.connected = True
                        log.info("config watch connected", revision=self._snapshot.revision,
                                 address=self._client.address)
                log.warning("config watch ended by the server; reconnecting")
            except asyncio.CancelledError:
                raise
            except ConfigUnreachable as exc:
                if self._snapshot.revision:
                    log.warning("config watch lost; answering from the last snapshot",
                                revision=self._snapshot.revision, error=exc.message)
                else:
                    log.warning("config_svc unreachable; no snapshot yet, not serving", error=exc.message)
            except DomainError as exc:  # e.g. the service token was revoked: needs an operator
                log.error("config watch refused", reason=exc.reason, error=exc.message)
            except EpochChanged as exc:
                log.warning("config history changed (new epoch); resyncing from a snapshot", error=str(exc))
                need_snapshot = True
            except Exception:
                # An event we could not apply: start over from a full snapshot
                # rather than run on state that may have skipped a change.
                log.exception("config watch event could not be applied; resyncing from a snapshot")
                need_snapshot = True
            self.connected = False
            await _close(stream)
            if time.monotonic() - opened > self._max:
                attempt = 0  # the stream was healthy for a while: this is a fresh outage
            delay = backoff_delay(attempt, self._initial, self._max)
            attempt += 1
            await asyncio.sleep(delay)

    def _apply(self, event: cs.ConfigEvent) -> None:
        invalidations = self._snapshot.apply(event)
        if invalidations is None or invalidations.empty:
            return
        for listener in self._listeners:
            listener(invalidations)


async def _close(stream: AsyncIterator[cs.ConfigEvent]) -> None:
    """End the stream's call (an idle stream is left open by _events)."""
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:  # already failed; only the call's cleanup matters here
            log.debug("closing the config watch failed", exc_info=True)
