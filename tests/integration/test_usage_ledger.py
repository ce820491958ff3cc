"""The usage ledger on config_svc with real Postgres: RecordUsage stores
each record once (by id), keeps the daily roll-up and the period totals in
the same transaction, pushes the totals to watchers; SummarizeUsage
answers from the roll-up for whole days and from the records at the edges,
and shows members only their own usage."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from collections import Counter
from typing import Any

import grpc
import pytest
from google.protobuf import timestamp_pb2

from modelplane_server.domain.types import Role
from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import resources_pb2 as pb
from tests.harness import ConfigHarness, Metadata
from tests.integration.helpers import audit_count, fails, raw, revision

pytestmark = pytest.mark.integration

Code = grpc.StatusCode
UTC = dt.timezone.utc
USER_KEY, CENTRAL = cs.CREDENTIAL_SOURCE_USER_KEY, cs.CREDENTIAL_SOURCE_CENTRAL_KEY
DIM = cs.UsageDimension


def ts(t: dt.datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(t)
    return out


def record(id: str, end: dt.datetime, *, user: str = "alice", model: str = "opus", provider: str = "anthropic",
           source: int = CENTRAL, cost: int | None = 100, input_tokens: int = 10, output_tokens: int = 5,
           **fields: Any) -> cs.UsageRecord:
    r = cs.UsageRecord(id=id, user=user, model=model, provider=provider, credential_source=source,  # type: ignore[arg-type]
                       input_tokens=input_tokens, output_tokens=output_tokens, end_time=ts(end),
                       start_time=ts(end - dt.timedelta(seconds=2)), outcome=cs.USAGE_OUTCOME_FINISHED,
                       upstream_latency_ms=2000, **fields)
    if cost is not None:
        r.cost_micro_usd = cost
    return r


async def send(cfg: ConfigHarness, service: Metadata, *records: cs.UsageRecord) -> cs.RecordUsageResponse:
    return await cfg.stub.RecordUsage(cs.RecordUsageRequest(records=records), metadata=service)


async def summary(cfg: ConfigHarness, md: Metadata, start: dt.datetime, end: dt.datetime, *group_by: int,
                  **fields: Any) -> cs.SummarizeUsageResponse:
    return await cfg.stub.SummarizeUsage(cs.SummarizeUsageRequest(
        start_time=ts(start), end_time=ts(end), group_by=group_by, **fields), metadata=md)  # type: ignore[arg-type]


async def test_records_are_stored_once_with_rollups_in_the_same_transaction(cfg: ConfigHarness) -> None:
    service = await cfg.md(Role.SERVICE, "resolver")
    now = dt.datetime(2025, 6, 3, 12, tzinfo=UTC)
    before = (await audit_count(cfg), await revision(cfg))
    first = await send(cfg, service, record("r1", now), record("r2", now, source=USER_KEY, cost=40),
                       record("r3", now, cost=None, model="local"), record("r1", now))  # r1 twice in one batch
    assert (first.inserted, first.duplicates) == (3, 1)
    again = await send(cfg, service, record("r1", now), record("r2", now, source=USER_KEY, cost=40),
                       record("r4", now, cost=7))
    assert (again.inserted, again.duplicates) == (1, 2)
    assert (await audit_count(cfg), await revision(cfg)) == before  # usage is not configuration

    ids = [r["id"] for r in await raw(cfg, "SELECT id FROM usage_records ORDER BY id")]
    assert ids == ["r1", "r2", "r3", "r4"]
    daily = {(r["model"], r["credential_source"]): (r["requests"], r["unpriced_requests"], r["cost_micro_usd"])
             for r in await raw(cfg, "SELECT * FROM usage_daily")}
    assert daily == {("opus", "central_key"): (2, 0, 107), ("opus", "user_key"): (1, 0, 40),
                     ("local", "central_key"): (1, 1, 0)}
    spend = {r["period"]: (r["central_micro_usd"], r["own_key_micro_usd"], r["unpriced_requests"])
             for r in await raw(cfg, "SELECT * FROM usage_spend WHERE user_name = 'alice'")}
    assert spend == {"day": (107, 40, 1), "week": (107, 40, 1), "month": (107, 40, 1)}


async def test_bad_records_store_nothing_and_only_services_may_record(cfg: ConfigHarness) -> None:
    service = await cfg.md(Role.SERVICE, "resolver")
    now = dt.datetime.now(UTC)
    cases = [
        (record("", now), "records[1].id"),
        (record("x" * 65, now), "records[1].id"),
        (record("r", now, user=""), "records[1].user"),
        (record("r", now, input_tokens=-1), "records[1].input_tokens"),
        (record("r", now, source=cs.CREDENTIAL_SOURCE_UNAVAILABLE), "records[1].credential_source"),
        (record("r", now, cost=-5), "records[1].cost_micro_usd"),
        (record("r", now, chat_id="a\x00b"), "records[1].chat_id"),
        (cs.UsageRecord(id="r", user="a", provider="p", model="m", credential_source=CENTRAL,
                        outcome=cs.USAGE_OUTCOME_FINISHED), "records[1].end_time"),
    ]
    for bad, field in cases:
        await fails(send(cfg, service, record("good", now), bad), Code.INVALID_ARGUMENT, field=field)
    await fails(send(cfg, service), Code.INVALID_ARGUMENT, field="records")
    await fails(send(cfg, service, *[record(f"r{i}", now) for i in range(1001)]), Code.INVALID_ARGUMENT,
                field="records")
    for role in (Role.ADMIN, Role.MEMBER):
        await fails(send(cfg, await cfg.md(role, "alice"), record("r", now)), Code.PERMISSION_DENIED,
                    "ROLE_FORBIDDEN")
    assert await raw(cfg, "SELECT * FROM usage_records") == []
    assert await raw(cfg, "SELECT * FROM usage_daily") == []


async def test_concurrent_overlapping_batches_store_each_record_once(cfg: ConfigHarness) -> None:
    """Resolvers resend after failures while an earlier attempt may still be
    running: overlapping batches in any order neither deadlock nor double count."""
    service = await cfg.md(Role.SERVICE, "resolver")
    now = dt.datetime.now(UTC)
    records = [record(f"r{i:03d}", now, user=f"u{i % 7}", model=f"m{i % 3}", cost=i) for i in range(300)]
    rng = random.Random(7)
    batches = []
    for _ in range(12):
        batch = rng.sample(records, 80)
        batches.append(batch)
    results = await asyncio.gather(*(send(cfg, service, *b) for b in batches))
    stored = {r["id"] for r in await raw(cfg, "SELECT id FROM usage_records")}
    expected = {r.id for b in batches for r in b}
    assert stored == expected
    assert sum(r.inserted for r in results) == len(expected)
    total = (await raw(cfg, "SELECT sum(requests) AS n, sum(cost_micro_usd) AS c FROM usage_daily"))[0]
    assert (total["n"], total["c"]) == (len(expected), sum(int(i[1:]) for i in expected))


async def test_summaries_use_rollups_for_whole_days_and_records_at_the_edges(cfg: ConfigHarness) -> None:
    service = await cfg.md(Role.SERVICE, "resolver")
    admin = cfg.admin
    base = dt.datetime(2025, 5, 1, tzinfo=UTC)
    rng = random.Random(11)
    records = []
    for i in range(600):
        end = base + dt.timedelta(minutes=rng.randrange(0, 31 * 24 * 60))
        records.append(record(f"s{i}", end, user=rng.choice(["alice", "bob", "carol"]),
                              model=rng.choice(["opus", "haiku"]), source=rng.choice([CENTRAL, USER_KEY]),
                              cost=rng.choice([None, rng.randrange(0, 500)]), input_tokens=rng.randrange(100),
                              output_tokens=rng.randrange(100), cache_read_tokens=rng.randrange(10)))
    for i in range(0, len(records), 200):
        await send(cfg, service, *records[i:i + 200])

    def expected(start: dt.datetime, end: dt.datetime, key: Any) -> dict[Any, tuple[int, int, int, int]]:
        out: dict[Any, list[int]] = {}
        for r in records:
            t = r.end_time.ToDatetime(tzinfo=UTC)
            if start <= t < end:
                acc = out.setdefault(key(r, t), [0, 0, 0, 0])
                acc[0] += 1
                acc[1] += 0 if r.HasField("cost_micro_usd") else 1
                acc[2] += r.input_tokens + r.cache_read_tokens
                acc[3] += r.cost_micro_usd
        return {k: tuple(v) for k, v in out.items()}  # type: ignore[misc]

    def got(rows: Any, key: Any) -> dict[Any, tuple[int, int, int, int]]:
        return {key(r): (r.requests, r.unpriced_requests, r.input_tokens + r.cache_read_tokens, r.cost_micro_usd)
                for r in rows}

    ranges = [
        (base + dt.timedelta(days=3), base + dt.timedelta(days=20)),  # whole days only
        (base + dt.timedelta(days=3, hours=5, minutes=7), base + dt.timedelta(days=20, hours=13)),  # both edges
        (base + dt.timedelta(days=4, hours=1), base + dt.timedelta(days=4, hours=22)),  # inside one day
        (base - dt.timedelta(days=1), base + dt.timedelta(days=40)),
    ]
    for start, end in ranges:
        by_user_model = await summary(cfg, admin, start, end, DIM.USAGE_DIMENSION_USER, DIM.USAGE_DIMENSION_MODEL)
        assert got(by_user_model.rows, lambda r: (r.user, r.model)) == \
            expected(start, end, lambda r, t: (r.user, r.model))
        keys = [(r.user, r.model) for r in by_user_model.rows]
        assert keys == sorted(keys)
        by_day = await summary(cfg, admin, start, end, DIM.USAGE_DIMENSION_DAY,
                               DIM.USAGE_DIMENSION_CREDENTIAL_SOURCE, page_size=500)
        assert got(by_day.rows, lambda r: (r.day, r.credential_source)) == \
            expected(start, end, lambda r, t: (t.date().isoformat(), r.credential_source))
        everything = expected(start, end, lambda r, t: "all").get("all", (0, 0, 0, 0))
        assert got([by_day.total], lambda r: "all")["all"] == everything

    start, end = ranges[1]
    alice = await summary(cfg, await cfg.md(Role.MEMBER, "alice"), start, end, DIM.USAGE_DIMENSION_USER,
                          DIM.USAGE_DIMENSION_PROVIDER)
    assert {r.user for r in alice.rows} == {"alice"}
    assert alice.total.requests == expected(start, end, lambda r, t: r.user)["alice"][0]
    haiku = await summary(cfg, admin, start, end, DIM.USAGE_DIMENSION_MODEL, model="haiku")
    assert [r.model for r in haiku.rows] == ["haiku"]

    pages: list[cs.UsageSummaryRow] = []
    token = ""
    while True:
        page = await summary(cfg, admin, start, end, DIM.USAGE_DIMENSION_DAY, DIM.USAGE_DIMENSION_USER,
                             page_size=7, page_token=token)
        assert page.HasField("total") == (not token)
        pages += page.rows
        token = page.next_page_token
        if not token:
            break
    assert Counter((r.day, r.user) for r in pages) == Counter(expected(start, end, lambda r, t: (
        t.date().isoformat(), r.user)).keys())


async def test_who_sees_which_usage(cfg: ConfigHarness) -> None:
    now = dt.datetime.now(UTC)
    start, end = now - dt.timedelta(days=1), now + dt.timedelta(days=1)
    alice = await cfg.md(Role.MEMBER, "alice")
    await fails(summary(cfg, alice, start, end, user="bob"), Code.PERMISSION_DENIED, "OTHER_USER")
    await fails(summary(cfg, await cfg.md(Role.SERVICE, "svc"), start, end), Code.INVALID_ARGUMENT, field="user")
    await fails(summary(cfg, alice, end, start), Code.INVALID_ARGUMENT, field="end_time")
    await fails(summary(cfg, alice, start, start + dt.timedelta(days=3661)), Code.INVALID_ARGUMENT, field="end_time")
    await fails(summary(cfg, alice, start, end, DIM.USAGE_DIMENSION_DAY, DIM.USAGE_DIMENSION_DAY),
                Code.INVALID_ARGUMENT, field="group_by")
    await fails(summary(cfg, alice, start, end, 99), Code.INVALID_ARGUMENT, field="group_by[0]")
    await fails(cfg.stub.SummarizeUsage(cs.SummarizeUsageRequest(end_time=ts(end)), metadata=alice),
                Code.INVALID_ARGUMENT, field="start_time")
    await fails(summary(cfg, alice, start, end, model="m" * 256), Code.INVALID_ARGUMENT, field="model")
    await fails(summary(cfg, alice, start, end, provider="p\x00"), Code.INVALID_ARGUMENT, field="provider")
    forged = "WyJub3QtYS1kYXkiXQ"  # ["not-a-day"]
    await fails(summary(cfg, alice, start, end, DIM.USAGE_DIMENSION_DAY, page_token=forged),
                Code.INVALID_ARGUMENT, field="page_token")
    empty = await summary(cfg, alice, start, end, DIM.USAGE_DIMENSION_USER)
    assert list(empty.rows) == [] and empty.total.requests == 0


async def test_spend_reaches_every_watcher(cfg: ConfigHarness) -> None:
    """Each batch's new totals are pushed on every open WatchConfig stream,
    after every user's current spend at the start of the stream."""
    service = await cfg.md(Role.SERVICE, "resolver")
    now = dt.datetime.now(UTC)
    await send(cfg, service, record("before", now, cost=5))
    streams = [cfg.stub.WatchConfig(cs.WatchConfigRequest(), metadata=service) for _ in range(2)]
    try:
        for stream in streams:
            first = await stream.read()
            assert first.HasField("snapshot") and not first.spend
            initial = await stream.read()
            assert {(u.user, u.period, u.central_micro_usd) for u in initial.spend} == {
                ("alice", p, 5) for p in (pb.SPEND_PERIOD_DAY, pb.SPEND_PERIOD_WEEK, pb.SPEND_PERIOD_MONTH)}
            assert initial.revision == first.revision and not initial.changes
        await send(cfg, service, record("mine", now, cost=20, source=USER_KEY), record("b", now, user="bob"))
        for stream in streams:
            seen: dict[tuple[str, int], tuple[int, int]] = {}
            while len(seen) < 6:
                event = await asyncio.wait_for(stream.read(), 5)
                for u in event.spend:
                    seen[(u.user, u.period)] = (u.central_micro_usd, u.own_key_micro_usd)
            assert seen[("alice", pb.SPEND_PERIOD_DAY)] == (5, 20)
            assert seen[("bob", pb.SPEND_PERIOD_MONTH)] == (100, 0)
    finally:
        for stream in streams:
            stream.cancel()


async def test_spend_lost_while_the_listener_reconnects_is_pushed_again(cfg: ConfigHarness) -> None:
    """A notification sent while config_svc's LISTEN connection is down never
    arrives; on reconnecting it re-reads what changed meanwhile."""
    service = await cfg.md(Role.SERVICE, "resolver")
    stream = cfg.stub.WatchConfig(cs.WatchConfigRequest(), metadata=service)
    try:
        assert (await stream.read()).HasField("snapshot")
        await asyncio.wait_for(cfg.server.spend.connected.wait(), 5)
        killed = await raw(cfg, "SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity "
                                "WHERE application_name = 'modelplane-spend-feed'")
        assert [r["ok"] for r in killed] == [True]
        while cfg.server.spend.connected.is_set():
            await asyncio.sleep(0.01)
        await send(cfg, service, record("during-outage", dt.datetime.now(UTC), user="dora", cost=33))
        while True:
            event = await asyncio.wait_for(stream.read(), 10)
            found = {(u.user, u.central_micro_usd) for u in event.spend}
            if ("dora", 33) in found:
                break
    finally:
        stream.cancel()
