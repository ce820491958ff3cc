"""The usage ledger's use cases: store a batch of records (idempotent by
record id), and summarize usage over a time range.

Recording usage is not a configuration write: it bumps no revision and
writes no audit event (the ledger is its own record); its spend totals
reach resolvers through SpendFeed, not the change records.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Sequence

import asyncpg
import structlog

from modelplane_server.config_svc.db import driver_errors
from modelplane_server.config_svc.store import Store, usage
from modelplane_server.config_svc.store.usage import Ingested, SummaryQuery
from modelplane_server.domain.errors import FieldViolation, InvalidArgument
from modelplane_server.domain.usage import (
    MAX_RECORDS_PER_CALL,
    MAX_SUMMARY_DAYS,
    SummaryRow,
    UsageRecord,
    record_violations,
)
from modelplane_server.domain.validation import raise_if_any

log = structlog.get_logger(__name__)

# Concurrent batches queue on row locks in one order, so deadlocks should
# not happen; if Postgres still reports one (or a serialization failure),
# the batch is simply run again.
_RETRYABLE = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
ATTEMPTS = 3


def validate_records(records: Sequence[UsageRecord]) -> None:
    if not records:
        raise InvalidArgument.one("records", "is required: at least one record")
    if len(records) > MAX_RECORDS_PER_CALL:
        raise InvalidArgument.one("records", f"must have at most {MAX_RECORDS_PER_CALL} records, got {len(records)}")
    found: list[FieldViolation] = []
    for i, r in enumerate(records):
        found += record_violations(r, f"records[{i}].")
    raise_if_any(found)


async def record_usage(store: Store, records: Sequence[UsageRecord]) -> Ingested:
    validate_records(records)
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with driver_errors():
                async with store.pool.acquire() as conn, conn.transaction():
                    return await usage.ingest(conn, records)
        except _RETRYABLE as exc:
            if attempt == ATTEMPTS:
                raise
            log.warning("usage batch conflicted; running it again", error_type=type(exc).__name__)
            await asyncio.sleep(0.01 * attempt)
    raise AssertionError("unreachable")


def validated(q: SummaryQuery) -> SummaryQuery:
    """The query once its range and grouping are sound (INVALID_ARGUMENT otherwise)."""
    if q.end <= q.start:
        raise InvalidArgument.one("end_time", "must be after start_time")
    if q.end - q.start > dt.timedelta(days=MAX_SUMMARY_DAYS):
        raise InvalidArgument.one("end_time", f"must be at most {MAX_SUMMARY_DAYS} days after start_time")
    if len(set(q.group_by)) != len(q.group_by):
        raise InvalidArgument.one("group_by", "must not name a field twice")
    return q


async def summarize(store: Store, q: SummaryQuery, limit: int, after: list[str] | None
                    ) -> tuple[list[SummaryRow], SummaryRow | None]:
    """A page of rows (ordered by the grouped fields), and on the first page
    (no `after`) the total over everything in range."""
    async with store.read() as conn:
        return await usage.summarize(conn, q, limit, after)
