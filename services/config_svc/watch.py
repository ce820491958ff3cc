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
from typing import AsyncIterator, Callable

import asyncpg
import structlog

from modelplane_server.config_svc.store import NOTIFY_CHANNEL, Snapshot, Store
from modelplane_server import convert
from modelplane_server.domain.types import OverrideContext, Provider
from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import resources_pb2 as pb

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

    async def _run(self) -> None:
        """Keep a LISTEN connection up; poll as a safety net in between."""
        assert self._store is not None
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self._dsn)

                def on_notify(_c: object, _pid: int, _channel: str, payload: str) -> None:
                    asyncio.get_running_loop().create_task(self.publish(int(payload)))

                await conn.add_listener(NOTIFY_CHANNEL, on_notify)
                while not conn.is_closed():
                    await self.publish(await self._store.current_revision())
                    await asyncio.sleep(self._poll_interval)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # reconnect on any failure; the database may be restarting
                log.warning("config listener lost its connection; reconnecting", error_type=type(exc).__name__)
                await asyncio.sleep(self._poll_interval)
            finally:
                if conn is not None and not conn.is_closed():
                    await conn.close()


def _snapshot_event(snap: Snapshot, provider_pb: Callable[[Provider], pb.Provider]) -> cs.ConfigEvent:
    return cs.ConfigEvent(
        revision=snap.revision,
        epoch=snap.epoch,
        snapshot=cs.ConfigSnapshot(
            providers=[provider_pb(p) for p in snap.providers],
            models=[convert.model_to_pb(m) for m in snap.models],
            settings=convert.settings_to_pb(snap.settings),
            model_overrides=[convert.override_to_pb(o) for o in snap.model_overrides],
        ),
    )


async def _change_event(store: Store, revision: int, epoch: str, refs: list[dict[str, str]],
                        provider_pb: Callable[[Provider], pb.Provider]) -> cs.ConfigEvent:
    state = await store.load_changed(refs)
    changes: list[cs.ConfigChange] = []
    seen: set[tuple[tuple[str, str], ...]] = set()
    for ref in refs:
        key = tuple(sorted(ref.items()))
        if key in seen:
            continue
        seen.add(key)
        kind = ref["kind"]
        if kind == "provider":
            p = state["providers"][ref["name"]]
            changes.append(cs.ConfigChange(provider=provider_pb(p)) if p else
                           cs.ConfigChange(deleted_provider=ref["name"]))
        elif kind == "model":
            m = state["models"][ref["name"]]
            changes.append(cs.ConfigChange(model=convert.model_to_pb(m)) if m else
                           cs.ConfigChange(deleted_model=ref["name"]))
        elif kind == "settings":
            changes.append(cs.ConfigChange(settings=convert.settings_to_pb(state["settings"])))
        elif kind == "model_override":
            o = state["overrides"][ref["context"]]
            changes.append(cs.ConfigChange(model_override=convert.override_to_pb(o)) if o else
                           cs.ConfigChange(cleared_model_override=convert.CONTEXT_TO_PB[
                               OverrideContext(ref["context"])]))
        elif kind == "user":
            changes.append(cs.ConfigChange(user=ref["user"]))
        elif kind == "credential":
            changes.append(cs.ConfigChange(credential=convert.credential_ref(ref["provider"], ref["user"])))
        elif kind == "token":
            changes.append(cs.ConfigChange(revoked_token=ref["id"]))
    return cs.ConfigEvent(revision=revision, epoch=epoch, changes=changes)


async def watch_events(store: Store, broadcaster: Broadcaster, after_revision: int, after_epoch: str,
                       provider_pb: Callable[[Provider], pb.Provider]) -> AsyncIterator[cs.ConfigEvent]:
    """Snapshot (or resumed changes), then one event per changed revision,
    forever; every event carries the epoch its revision counts in.

    A watcher resumes from after_revision only within the current epoch; an
    empty after_epoch (a watcher older than epochs) resumes as before."""
    epoch = await store.epoch()
    last = after_revision
    resume = last > 0 and after_epoch in ("", epoch)
    first = True
    while True:
        resumed = await store.changes_after(last, epoch) if resume else None
        resume = True
        if resumed is None:  # first event, another epoch, or fell behind the retained records
            snap = await store.snapshot()
            yield _snapshot_event(snap, provider_pb)
            last, epoch = snap.revision, snap.epoch
        else:
            current, records = resumed
            for revision, refs in records:
                yield await _change_event(store, revision, epoch, refs, provider_pb)
            if current > (records[-1][0] if records else last) or (first and not records):
                # Later revisions changed no configuration (token writes), or a
                # resumed watcher missed nothing: say so, so watchers know
                # they are current.
                yield cs.ConfigEvent(revision=current, epoch=epoch)
            last = max(last, current)
        first = False
        while True:
            try:
                await asyncio.wait_for(broadcaster.wait_beyond(last), broadcaster.heartbeat_seconds)
                break
            except TimeoutError:
                yield cs.ConfigEvent(revision=last, epoch=epoch)  # heartbeat
