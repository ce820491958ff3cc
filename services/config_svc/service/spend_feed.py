"""Spend pushed to resolvers: RecordUsage NOTIFYs each user's new totals
(store.usage.SPEND_CHANNEL) on commit; every config_svc replica LISTENs
and hands them to its open WatchConfig streams, which send them as spend
events (see service.watch).

A stream subscribes before it reads anything, then sends every user's
current spend once, then what arrives. Totals only grow within a period,
so a subscription keeps the larger value per (user, period start) and a
slow stream never queues more than one entry per user and period.

While the LISTEN connection is down, notifications are lost; on
reconnecting, the totals updated since shortly before the loss are read
and published again, so no stream misses an update for longer than the
outage. Old totals (periods long over) are pruned now and then.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Awaitable, Iterator, Sequence
from typing import Callable, Literal

import asyncpg
import structlog

from modelplane_server.config_svc.store import Store, usage
from modelplane_server.domain.spend import PeriodSpend

log = structlog.get_logger(__name__)

UserSpend = tuple[str, PeriodSpend]
Clock = Callable[[], dt.datetime]
# Rows updated this long before the connection was lost are read again on reconnect.
RESYNC_MARGIN = dt.timedelta(seconds=5)
PRUNE_EVERY = dt.timedelta(hours=1)
KEEP = dt.timedelta(days=70)  # longer than any period, with room for late records
# The LISTEN connection's name in pg_stat_activity.
APPLICATION_NAME = "modelplane-spend-feed"


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class SpendSubscription:
    """What one watch stream has not sent yet."""

    def __init__(self) -> None:
        self._pending: dict[tuple[str, str], PeriodSpend] = {}
        self._ready = asyncio.Event()

    def offer(self, entries: Sequence[UserSpend]) -> None:
        for user, s in entries:
            key = (user, s.period.value)
            held = self._pending.get(key)
            if held is None or s.start > held.start or (s.start == held.start and _at_least(s, held)):
                self._pending[key] = s
        if self._pending:
            self._ready.set()

    def take(self) -> list[UserSpend]:
        taken = [(user, s) for (user, _), s in self._pending.items()]
        self._pending.clear()
        self._ready.clear()
        return taken

    async def wait(self) -> None:
        await self._ready.wait()


def _at_least(a: PeriodSpend, b: PeriodSpend) -> bool:
    return (a.central_micro_usd >= b.central_micro_usd and a.own_key_micro_usd >= b.own_key_micro_usd
            and a.unpriced_requests >= b.unpriced_requests)


class SpendFeed:
    def __init__(self, dsn: str, *, retry_seconds: float = 2.0, clock: Clock = _utcnow) -> None:
        self._dsn = dsn
        self._retry = retry_seconds
        self._clock = clock
        self._subscribers: set[SpendSubscription] = set()
        self._task: asyncio.Task[None] | None = None
        self._store: Store | None = None
        self.connected = asyncio.Event()

    async def start(self, store: Store) -> None:
        self._store = store
        self._task = asyncio.create_task(self._run(), name="spend-feed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[SpendSubscription]:
        sub = SpendSubscription()
        self._subscribers.add(sub)
        try:
            yield sub
        finally:
            self._subscribers.discard(sub)

    def publish(self, entries: Sequence[UserSpend]) -> None:
        for sub in self._subscribers:
            sub.offer(entries)

    async def current(self) -> list[UserSpend]:
        """Every user's spend in the current periods."""
        assert self._store is not None
        async with self._store.connection() as conn:
            return await usage.current_spend(conn, self._clock())

    def _heard(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            self.publish(usage.parse_payload(payload))
        except (ValueError, TypeError, KeyError):  # not ours: ignore, never break the listener
            log.warning("ignoring a malformed spend notification")

    async def _run(self) -> None:
        assert self._store is not None
        lost_at: dt.datetime | None = None
        pruned_at: dt.datetime | None = None
        while True:
            try:
                conn = await asyncpg.connect(self._dsn, server_settings={"application_name": APPLICATION_NAME})
                try:
                    await conn.add_listener(usage.SPEND_CHANNEL, self._heard)
                    if lost_at is not None:
                        async with self._store.connection() as read:
                            self.publish(await usage.spend_since(read, lost_at - RESYNC_MARGIN))
                        lost_at = None
                    self.connected.set()
                    while not conn.is_closed():
                        now = self._clock()
                        if pruned_at is None or now - pruned_at > PRUNE_EVERY:
                            await usage.prune_spend(conn, now - KEEP)
                            pruned_at = now
                        await conn.execute("SELECT 1")  # notices a dead connection
                        await asyncio.sleep(self._retry)
                finally:
                    self.connected.clear()
                    if not conn.is_closed():
                        await conn.close()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # reconnect on any failure; the database may be restarting
                log.warning("spend listener lost its connection; reconnecting", error_type=type(exc).__name__)
            if lost_at is None:
                lost_at = self._clock()
            await asyncio.sleep(self._retry)


Woke = Literal["revision", "spend", "timeout"]


async def next_wake(revision: Awaitable[object], sub: SpendSubscription | None, timeout: float) -> Woke:
    """What a watch stream wakes for first: a new revision, spend to send, or
    `timeout` seconds of neither (a heartbeat is due)."""
    waits: dict[asyncio.Future[object], Woke] = {asyncio.ensure_future(revision): "revision"}
    if sub is not None:
        waits[asyncio.ensure_future(sub.wait())] = "spend"
    try:
        done, _ = await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for future in waits:
            future.cancel()
        await asyncio.gather(*waits, return_exceptions=True)
    for future, woke in waits.items():
        if future in done and not future.cancelled():
            future.result()
            return woke
    return "timeout"
