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

With several config_svc addresses, a stream that breaks or is ended by its
server moves the client to the next replica (ConfigClient.fail_over), and
the next stream opens there after the initial delay only (0.1-0.2 s by
default) when the lost one had been delivering: a failover, not an outage.
It resumes after the applied revision, so within one epoch the new replica
sends only what changed, never a full snapshot.

After each event, in one synchronous step: the Snapshot applies it, the
caches drop what it invalidates, and only then does the revision gate
advance (waking calls that asked for it), the reporter learn of it, and the
write-to-visible histogram observe it.

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
from modelplane_server.domain.resolver_map import ResolverIdentity
from modelplane_server.runtime.consistency_metrics import ConsistencyMetrics
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
                 idle_seconds: float = 0.0, resolver: ResolverIdentity | None = None,
                 on_applied: Sequence[Callable[[], None]] = (), metrics: ConsistencyMetrics | None = None) -> None:
        self._client = client
        self._snapshot = snapshot
        self._listeners = list(listeners)
        self._initial = reconnect_initial_seconds
        self._max = reconnect_max_seconds
        self._idle = idle_seconds
        self._resolver = resolver
        self._on_applied = list(on_applied)
        self._metrics = metrics
        self.connected = False  # a stream is open and has delivered at least one event
        self.streams_opened = 0
        self.address = ""  # of the replica the current (or last) stream is on

    async def run(self) -> None:
        attempt = 0
        need_snapshot = False
        while True:
            after = 0 if need_snapshot else self._snapshot.revision
            epoch = self._snapshot.epoch
            need_snapshot = False
            opened = time.monotonic()
            self.streams_opened += 1
            self.address = address = self._client.address
            stream = self._client.watch(after, epoch, self._resolver)
            delivered = False
            lost = True  # the replica is gone (or going): try the next one
            try:
                async for event in _events(stream, self._idle):
                    self._apply(event)
                    delivered = True
                    if not self.connected:
                        self.connected = True
                        log.info("config watch connected", revision=self._snapshot.revision, address=address)
                log.warning("config watch ended by the server; reconnecting", address=address)
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
                need_snapshot, lost = True, False
            except Exception:
                # An event we could not apply: start over from a full snapshot
                # rather than run on state that may have skipped a change.
                log.exception("config watch event could not be applied; resyncing from a snapshot")
                need_snapshot, lost = True, False
            self.connected = False
            await _close(stream)
            if lost and self._client.fail_over(address) != address and delivered:
                attempt = 0  # a working replica went away: fail over now, this is no outage (yet)
            if time.monotonic() - opened > self._max:
                attempt = 0  # the stream was healthy for a while: this is a fresh outage
            delay = backoff_delay(attempt, self._initial, self._max)
            attempt += 1
            await asyncio.sleep(delay)

    def _apply(self, event: cs.ConfigEvent) -> None:
        invalidations = self._snapshot.apply(event)
        if invalidations is not None and not invalidations.empty:
            for listener in self._listeners:
                listener(invalidations)
        # Only now is the revision fully applied (see the module docstring).
        self._snapshot.applied.advance(self._snapshot.revision)
        for applied in self._on_applied:
            applied()
        if self._metrics is not None and invalidations is not None and event.HasField("commit_time"):
            self._metrics.visible(time.time() - event.commit_time.ToNanoseconds() / 1e9)


async def _close(stream: AsyncIterator[cs.ConfigEvent]) -> None:
    """End the stream's call (an idle stream is left open by _events)."""
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:  # already failed; only the call's cleanup matters here
            log.debug("closing the config watch failed", exc_info=True)
