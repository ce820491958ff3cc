"""WatchConfig: one LISTEN connection per process fans revisions out to every
open watch stream; each stream reads the change records it has not sent yet.

NOTIFY is only a wake-up: the change records in Postgres are the truth, so a
lost notification (listener reconnecting) costs at most one poll interval.

A quiet stream still carries a heartbeat: every `heartbeat_seconds` without
a change, an event with only the current revision and epoch. Watchers apply
it as a repeat; its absence tells them the stream is dead even where HTTP/2
keepalive cannot (a gRPC proxy answers pings itself).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import contextlib
from dataclasses import dataclass
from typing import AsyncIterator, Sequence

import asyncpg
import structlog

from modelplane_server.config_svc.service.spend_feed import SpendFeed, SpendSubscription, UserSpend, next_wake
from modelplane_server.config_svc.store import Store, watch
from modelplane_server.config_svc.store.watch import ChangeRecord, StoredConfig, Entity

log = structlog.get_logger(__name__)


class Broadcaster:
    """Tracks the newest revision this process has heard of and wakes waiters."""

    def __init__(self, dsn: str, *, poll_interval: float = 2.0, heartbeat_seconds: float = 10.0) -> None:
        self._dsn = dsn
        self._poll_interval = poll_interval
        self.heartbeat_seconds = heartbeat_seconds
        self._latest = 0
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._store: Store | None = None

    async def start(self, store: Store) -> None:
        self._store = store
        self._latest = await store.current_revision()
        self._task = asyncio.create_task(self._run(), name="config-broadcaster")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def publish(self, revision: int) -> None:
        if revision > self._latest:
            self._latest = revision
            async with self._changed:
                self._changed.notify_all()

    async def wait_beyond(self, revision: int) -> int:
        async with self._changed:
            await self._changed.wait_for(lambda: self._latest > revision)
        return self._latest

    def _heard(self, revision: int) -> None:
        asyncio.get_running_loop().create_task(self.publish(revision))

    async def _run(self) -> None:
        """Keep a LISTEN connection up; poll as a safety net in between."""
        assert self._store is not None
        while True:
            try:
                async with watch.listening(self._dsn, self._heard) as conn:
                    while not conn.is_closed():
                        await self.publish(await self._store.current_revision())
                        await asyncio.sleep(self._poll_interval)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # reconnect on any failure; the database may be restarting
                log.warning("config listener lost its connection; reconnecting", error_type=type(exc).__name__)
                await asyncio.sleep(self._poll_interval)


@dataclass(frozen=True)
class Changed:
    """One entity a revision changed: its change record, and the entity as it
    is now (None when deleted or cleared, and for kinds that carry only the record)."""

    ref: ChangeRecord
    entity: Entity | None


@dataclass(frozen=True)
class WatchEvent:
    """The whole state, or what changed in one revision; neither: the watcher
    is current at `revision` (a heartbeat, or revisions that changed no configuration)."""

    revision: int
    epoch: str
    state: StoredConfig | None = None
    changes: Sequence[Changed] = ()
    commit_time: dt.datetime | None = None  # of the changes, when there are
    spend: Sequence[UserSpend] = ()  # users' spend; not configuration, changes no revision


# Spend entries per event when a stream sends everyone's current spend.
SPEND_CHUNK = 1000


async def watch_config(store: Store, broadcaster: Broadcaster, after_revision: int,
                       after_epoch: str, spend: SpendFeed | None = None) -> AsyncIterator[WatchEvent]:
    """The whole state (or resumed changes), then one event per changed
    revision, forever; every event carries the epoch its revision counts in.
    With a SpendFeed, every user's current spend follows the first event,
    then each spend update as it is recorded (see service.spend_feed).

    A watcher resumes from after_revision only within the current epoch; an
    empty after_epoch (a watcher older than epochs) resumes as before."""
    with contextlib.ExitStack() as stack:
        sub = stack.enter_context(spend.subscribe()) if spend is not None else None
        async for event in _watch(store, broadcaster, after_revision, after_epoch, spend, sub):
            yield event


async def _watch(store: Store, broadcaster: Broadcaster, after_revision: int, after_epoch: str,
                 spend: SpendFeed | None, sub: SpendSubscription | None) -> AsyncIterator[WatchEvent]:
    epoch = await store.epoch()
    last = after_revision
    resume = last > 0 and after_epoch in ("", epoch)
    first = True
    while True:
        resumed = await _changes_after(store, last, epoch) if resume else None
        resume = True
        if resumed is None:  # first event, another epoch, or fell behind the retained records
            async with store.read() as conn:
                state = await watch.state(conn)
            yield WatchEvent(state.revision, state.epoch, state=state)
            last, epoch = state.revision, state.epoch
        else:
            current, records = resumed
            for revision, refs, committed, prefetched in records:
                changed = prefetched if prefetched is not None else await _changed(store, refs)
                yield WatchEvent(revision, epoch, changes=changed, commit_time=committed)
            if current > (records[-1][0] if records else last) or (first and not records):
                # Later revisions changed no configuration (token writes), or a
                # resumed watcher missed nothing: say so, so watchers know
                # they are current.
                yield WatchEvent(current, epoch)
            last = max(last, current)
        if first and spend is not None:
            everyone = await spend.current()
            for i in range(0, len(everyone), SPEND_CHUNK):
                yield WatchEvent(last, epoch, spend=everyone[i:i + SPEND_CHUNK])
        first = False
        while True:
            woke = await next_wake(broadcaster.wait_beyond(last), sub, broadcaster.heartbeat_seconds)
            if woke == "revision":
                break
            if woke == "spend" and sub is not None:
                yield WatchEvent(last, epoch, spend=sub.take())
            else:
                yield WatchEvent(last, epoch)  # heartbeat


# A live watcher is usually a revision or two behind: the entities of the
# first few revisions are read in the records' own transaction (one
# BEGIN/COMMIT round instead of one per revision, which is most of the time
# a change spends in config_svc); a watcher far behind reads the rest one
# revision at a time, as it sends them.
PREFETCHED_REVISIONS = 8

Resumed = tuple[int, list[tuple[int, list[ChangeRecord], dt.datetime, "list[Changed] | None"]]]


async def _changes_after(store: Store, revision: int, epoch: str) -> Resumed | None:
    async with store.read() as conn:
        found = await watch.changes_after(conn, revision, epoch)
        if found is None:
            return None
        current, records = found
        return current, [(rev, refs, committed, await _entities(conn, refs) if n < PREFETCHED_REVISIONS else None)
                         for n, (rev, refs, committed) in enumerate(records)]


async def _changed(store: Store, refs: Sequence[ChangeRecord]) -> list[Changed]:
    async with store.read() as conn:
        return await _entities(conn, refs)


async def _entities(conn: asyncpg.Connection, refs: Sequence[ChangeRecord]) -> list[Changed]:
    """Each entity the records name once, as it is now."""
    unique = list({tuple(sorted(ref.items())): ref for ref in refs}.values())
    return [Changed(ref, await watch.entity(conn, ref)) for ref in unique]
