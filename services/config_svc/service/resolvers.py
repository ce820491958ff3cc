"""The live map of resolvers, shared by every config_svc replica through
Postgres.

- A WatchConfig stream that names its resolver registers it for as long as
  the stream is open (`watching`): which replica holds the stream, since
  when, the revision the resolver started from.
- The resolver acknowledges what it applied (`ack`) after applying events
  and at least every few seconds; each ack is its heartbeat.
- A resolver not heard from for `expiry_seconds` is dead: ListResolvers no
  longer shows it and `run` deletes its row. A dead peer's stream is ended
  sooner by the server's HTTP/2 keepalive (config_svc.server), which marks
  it not watching at once.

`run` also keeps `latest`, the map as of its last pass, for the metrics
endpoint (a scrape cannot wait for the database).
"""

from __future__ import annotations

import asyncio
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import AsyncIterator

import structlog

from modelplane_server.config_svc.store import Store, resolvers, watch
from modelplane_server.domain.errors import DomainError
from modelplane_server.domain.resolver_map import ResolverIdentity, ResolverRecord

log = structlog.get_logger(__name__)

# The metrics view holds at most this many resolvers (a scrape stays small).
METRICS_LIMIT = 10_000


@dataclass(frozen=True)
class MapView:
    """The live resolvers and the revision and epoch their lag counts from."""

    records: list[ResolverRecord]
    revision: int
    epoch: str


class ResolverMap:
    def __init__(self, store: Store, *, replica: str, expiry_seconds: float, refresh_seconds: float = 2.0) -> None:
        self._store = store
        self.replica = replica  # this config_svc, as host:port
        self.expiry_seconds = expiry_seconds
        self._refresh = refresh_seconds
        self._cleanups: set[asyncio.Task[None]] = set()
        self.latest: MapView | None = None

    @asynccontextmanager
    async def watching(self, who: ResolverIdentity | None, applied_revision: int, epoch: str) -> AsyncIterator[None]:
        """Registered while the body runs (a watch stream is open); nothing
        for anonymous watchers."""
        if who is None:
            yield
            return
        session = uuid.uuid4().hex
        async with self._store.connection() as conn:
            await resolvers.watching(conn, who, applied_revision, epoch, session, self.replica)
        try:
            yield
        finally:
            # The stream may end by cancellation, where awaiting is unsafe:
            # the clean-up runs as a task of its own (expiry covers a lost one).
            task = asyncio.get_running_loop().create_task(self._stopped(who.id, session))
            self._cleanups.add(task)
            task.add_done_callback(self._cleanups.discard)

    async def _stopped(self, resolver_id: str, session: str) -> None:
        try:
            async with self._store.connection() as conn:
                await resolvers.stopped_watching(conn, resolver_id, session)
        except DomainError as exc:
            log.warning("could not mark a resolver as no longer watching; it expires instead",
                        resolver=resolver_id, error=exc.message)

    async def ack(self, who: ResolverIdentity, applied_revision: int, epoch: str) -> None:
        async with self._store.connection() as conn:
            await resolvers.ack(conn, who, applied_revision, epoch)

    async def page(self, limit: int, after: str) -> MapView:
        """Live resolvers by id after `after`, and the current revision and
        epoch (read after them: a lag is never negative)."""
        async with self._store.connection() as conn:
            records = await resolvers.live_page(conn, limit, after, self.expiry_seconds)
            epoch = await watch.epoch(conn)
            revision = await watch.current_revision(conn)
        return MapView(records, revision, epoch)

    async def refresh(self) -> MapView:
        """Forget the dead, and keep the map for the metrics endpoint."""
        async with self._store.connection() as conn:
            pruned = await resolvers.prune(conn, self.expiry_seconds)
        if pruned:
            log.info("forgot resolvers not heard from", count=pruned, expiry_seconds=self.expiry_seconds)
        self.latest = await self.page(METRICS_LIMIT, "")
        return self.latest

    async def run(self) -> None:
        while True:
            try:
                await self.refresh()
            except DomainError as exc:  # the database is away; try again next time
                log.warning("resolver map refresh failed", error=exc.message)
            await asyncio.sleep(self._refresh)

    async def close(self) -> None:
        """Let pending clean-ups finish (shutdown ends every stream at once)."""
        if self._cleanups:
            await asyncio.gather(*self._cleanups, return_exceptions=True)
