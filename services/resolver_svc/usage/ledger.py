"""The resolver's side of the usage ledger: a bounded in-memory buffer of
usage records, sent to config_svc (RecordUsage) in small batches.

- A record is added when its chat ends; adding never waits and never fails.
- A sender task sends a batch every `interval` seconds (at once when a
  batch is full). config_svc stores each record once per id, so a batch
  whose answer was lost is simply sent again.
- While config_svc or its database is away, batches are retried with
  exponential backoff and jitter; records keep accumulating in the buffer.
- The buffer holds at most `max_records`: when full, the oldest record is
  dropped, counted (modelplane_usage_records_total{outcome="dropped"}) and
  logged.
- On shutdown (`drain`), open chats are given time to end, then everything
  buffered is sent, retrying until the drain deadline.

Loss bound: a resolver that is killed (SIGKILL, OOM, power) loses what it
had not sent: the records of chats that ended in the last `interval`
seconds (plus the batch in flight, if config_svc had not committed it),
and, while config_svc was unreachable, everything buffered since, at most
`max_records`. Chats still running when it dies never end, so they are not
recorded either. A SIGTERM loses nothing unless config_svc stays
unreachable for the whole drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge

from modelplane_server import governance_pb
from modelplane_server.domain.errors import DomainError
from modelplane_server.domain.usage import UsageRecord
from modelplane_server.resolver_svc.state.config_client import RecordsRejected
from modelplane_server.resolver_svc.state.watcher import backoff_delay
from modelplane.v1 import config_service_pb2 as cs

log = structlog.get_logger(__name__)

Send = Callable[[list[cs.UsageRecord]], Awaitable[cs.RecordUsageResponse]]
# At most one overflow warning per this many seconds; the metric counts them all.
DROP_LOG_SECONDS = 10.0


class LedgerMetrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.registry = registry
        self.records = Counter("modelplane_usage_records_total",
                               "Usage records by what became of them: sent (stored), duplicate (stored "
                               "before), dropped (buffer full, oldest first), rejected (refused as malformed)",
                               ["outcome"], registry=registry)
        self.send_failures = Counter("modelplane_usage_send_failures_total",
                                     "RecordUsage batches that failed and will be sent again", registry=registry)
        self.buffered = Gauge("modelplane_usage_buffered_records",
                              "Usage records waiting to be sent to config_svc", registry=registry)


class UsageLedger:
    def __init__(self, send: Send, *, max_records: int = 50_000, batch_size: int = 200, interval: float = 0.25,
                 retry_initial: float = 0.2, retry_max: float = 5.0, registry: CollectorRegistry | None = None
                 ) -> None:
        self._send = send
        self._max = max_records
        self._batch = batch_size
        self._interval = interval
        self._retry = (retry_initial, retry_max)
        self._buffer: deque[tuple[int, UsageRecord]] = deque()
        self._seq = itertools.count(1)
        self._full = asyncio.Event()
        self._added = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._open = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._last_drop_log = 0.0
        self._dropped_since_log = 0
        self.metrics = LedgerMetrics(registry)
        self.metrics.buffered.set_function(lambda: len(self._buffer))

    def __len__(self) -> int:
        return len(self._buffer)

    # ------------------------------------------------------------ chats

    def chat_started(self) -> None:
        """A chat reached the upstream; its record will follow (drain waits for it)."""
        self._open += 1
        self._idle.clear()

    def chat_ended(self, record: UsageRecord | None) -> None:
        """The chat's record, or None when it produced nothing to record."""
        self._open -= 1
        if self._open <= 0:
            self._open = 0
            self._idle.set()
        if record is not None:
            self.add(record)

    def add(self, record: UsageRecord) -> None:
        if len(self._buffer) >= self._max:
            self._buffer.popleft()
            self.metrics.records.labels("dropped").inc()
            self._dropped_since_log += 1
            now = time.monotonic()
            if now - self._last_drop_log >= DROP_LOG_SECONDS:
                log.warning("usage buffer full; dropping the oldest records", dropped=self._dropped_since_log,
                            buffer_records=self._max)
                self._last_drop_log, self._dropped_since_log = now, 0
        self._buffer.append((next(self._seq), record))
        self._added.set()
        if len(self._buffer) >= self._batch:
            self._full.set()

    # ------------------------------------------------------------ sending

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="usage-ledger")

    async def _run(self) -> None:
        attempt = 0
        while True:
            if not self._buffer:
                self._added.clear()
                await self._added.wait()
            if len(self._buffer) < self._batch:  # let a batch gather, at most one interval
                # asyncio.timeout: wait_for may swallow drain()'s cancel on 3.11.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._interval):
                        await self._full.wait()
            if await self.send_batch():
                attempt = 0
            else:
                await asyncio.sleep(backoff_delay(attempt, *self._retry))
                attempt += 1

    async def send_batch(self, timeout: float | None = None) -> bool:
        """Send the oldest batch; False when it has to be sent again later."""
        batch = list(itertools.islice(self._buffer, self._batch))
        if not batch:
            return True
        try:
            reply = await self._send_records([r for _, r in batch], timeout)
        except RecordsRejected as exc:
            log.error("config_svc refused a usage batch as malformed; dropping it", records=len(batch),
                      error=exc.message)
            self.metrics.records.labels("rejected").inc(len(batch))
        except DomainError as exc:
            self.metrics.send_failures.inc()
            log.warning("usage batch not delivered; will retry", records=len(batch), reason=exc.reason,
                        error=exc.message, buffered=len(self._buffer))
            return False
        except TimeoutError:
            raise  # drain's deadline: it decides what happens next
        except Exception:
            # Not the transport and not config_svc's verdict: a batch this
            # process cannot even encode. Retrying would block every later
            # record behind it, and a sender that died would silently stop
            # delivering all of them; drop this batch, loudly.
            log.exception("usage batch could not be sent; dropping it", records=len(batch))
            self.metrics.records.labels("rejected").inc(len(batch))
        else:
            self.metrics.records.labels("sent").inc(reply.inserted)
            self.metrics.records.labels("duplicate").inc(reply.duplicates)
        last = batch[-1][0]
        # Overflow may have dropped some of the batch meanwhile: remove by sequence, not by count.
        while self._buffer and self._buffer[0][0] <= last:
            self._buffer.popleft()
        if len(self._buffer) < self._batch:
            self._full.clear()
        return True

    async def _send_records(self, records: Sequence[UsageRecord], timeout: float | None
                            ) -> cs.RecordUsageResponse:
        messages = [governance_pb.record_to_pb(r) for r in records]
        async with asyncio.timeout(timeout):
            return await self._send(messages)

    async def drain(self, deadline_seconds: float) -> int:
        """Shutdown: stop the sender, wait for open chats to record, then send
        everything, retrying until `deadline_seconds` have passed. Returns how
        many records are left unsent (0 on success)."""
        deadline = time.monotonic() + deadline_seconds
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                await self._idle.wait()
        attempt = 0
        while self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                sent = await self.send_batch(timeout=left)
            except TimeoutError:
                sent = False
            if not sent:
                await asyncio.sleep(min(backoff_delay(attempt, *self._retry), max(0.0, deadline - time.monotonic())))
                attempt += 1
        if self._buffer:
            log.error("usage records not delivered before shutdown", records=len(self._buffer))
        elif self._open:
            log.warning("chats still open at shutdown were not recorded", chats=self._open)
        return len(self._buffer)
