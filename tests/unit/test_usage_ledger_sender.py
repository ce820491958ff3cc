"""The usage ledger's sender survives a batch it cannot send for a reason
that is neither the transport nor config_svc's verdict: that batch is
dropped and counted, and the records after it are still delivered."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from prometheus_client import CollectorRegistry

from modelplane.v1 import config_service_pb2 as cs
from modelplane_server.domain.types import CredentialSource
from modelplane_server.domain.usage import Outcome, Tokens, UsageRecord
from modelplane_server.resolver_svc.usage.ledger import UsageLedger
from tests.resolver_harness import eventually


def record(i: int) -> UsageRecord:
    return UsageRecord(id=f"r{i}", user="alice", provider="local", model="gpt",
                       credential_source=CredentialSource.CENTRAL_KEY, tokens=Tokens(1, 0, 0, 1, 0),
                       cost_micro_usd=18, outcome=Outcome.FINISHED, end_time=dt.datetime.now(dt.timezone.utc))


async def test_an_unsendable_batch_is_dropped_and_the_sender_goes_on() -> None:
    delivered: list[str] = []
    calls = 0

    async def send(messages: Sequence[cs.UsageRecord]) -> cs.RecordUsageResponse:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("cannot encode this batch")  # a bug, not config_svc's answer
        delivered.extend(m.id for m in messages)
        return cs.RecordUsageResponse(inserted=len(messages))

    registry = CollectorRegistry()
    ledger = UsageLedger(send, batch_size=2, interval=0.01, retry_initial=0.01, retry_max=0.01, registry=registry)
    ledger.start()
    try:
        async def tried() -> None:
            assert calls

        async def sent() -> None:
            assert delivered

        ledger.add(record(1))
        ledger.add(record(2))
        await eventually(tried)
        ledger.add(record(3))
        ledger.add(record(4))
        await eventually(sent)
        assert delivered == ["r3", "r4"]
        assert registry.get_sample_value("modelplane_usage_records_total", {"outcome": "rejected"}) == 2
    finally:
        assert await ledger.drain(1.0) == 0
