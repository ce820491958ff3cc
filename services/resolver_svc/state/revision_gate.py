"""The revision a resolver has fully applied, and waiting for one.

"Fully": the watcher advances the gate only after an event's state is in
the Snapshot *and* the caches have dropped what it invalidated (users' data,
credentials, token verifications), in one synchronous step. So a call that
passes the gate at revision R reads a snapshot at R or later and cached user
data that is valid at R or later: a cached user's data is only ever replaced
by a fetch started after the change, never kept across one (UserCache,
SingleFlight's stale marking), and every change to a user arrives as a
watch event naming them (config_svc's change records).

Waiting is an event, not a poll: each waiter is a future in a heap keyed by
the revision it wants, and `advance` resolves exactly those it reached. A
call whose revision is already applied never gets here (the caller compares
`revision` first), so the satisfied case costs one comparison.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools


class RevisionGate:
    def __init__(self) -> None:
        self.revision = 0  # fully applied; 0 before the first snapshot
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()  # ties: oldest waiter first, never compare futures

    def __len__(self) -> int:
        """Calls waiting now."""
        return len(self._waiters)

    def advance(self, revision: int) -> None:
        """`revision` is fully applied. It may be lower than before: a new
        epoch's snapshot (a restored database) starts another history."""
        self.revision = revision
        while self._waiters and self._waiters[0][0] <= revision:
            _, _, waiter = heapq.heappop(self._waiters)
            if not waiter.done():
                waiter.set_result(None)

    async def wait(self, revision: int, timeout: float) -> bool:
        """Whether `revision` was applied within `timeout` seconds."""
        if self.revision >= revision:
            return True
        if timeout <= 0:
            return False
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (revision, next(self._order), waiter)
        heapq.heappush(self._waiters, entry)
        try:
            async with asyncio.timeout(timeout):  # not wait_for, which can lose a cancellation (Python 3.11)
                await waiter
            return True
        except TimeoutError:
            return False
        finally:
            if not waiter.done() or waiter.cancelled():
                # Timed out or the call was cancelled: take it out now, so a
                # revision that never comes cannot pile up waiters.
                try:
                    self._waiters.remove(entry)
                    heapq.heapify(self._waiters)
                except ValueError:
                    pass
