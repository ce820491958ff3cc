"""The reporter (acks to config_svc) ends when cancelled, even when the
cancellation lands in the same loop step as an applied event: on Python
3.11 asyncio.wait_for would lose that cancellation, and the resolver's stop
would wait for the reporter forever."""

from __future__ import annotations

import asyncio

import pytest

from modelplane_server.resolver_svc.state.config_client import ConfigClient
from modelplane_server.resolver_svc.state.reporter import AppliedReporter, this_resolver
from modelplane_server.resolver_svc.state.snapshot import Snapshot
from tests.resolver_harness import free_port


async def test_cancelled_as_an_event_lands_the_reporter_ends() -> None:
    client = ConfigClient(f"127.0.0.1:{free_port()}", "mp_x_y", timeout_seconds=0.2)  # nothing listens there
    try:
        reporter = AppliedReporter(client, Snapshot(), this_resolver(), interval_seconds=30, min_gap_seconds=0)
        task = asyncio.create_task(reporter.run())
        for _ in range(3):
            await asyncio.sleep(0)  # now waiting for an applied event
        reporter.applied()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)
    finally:
        await client.close()


def test_each_resolver_process_names_itself_afresh() -> None:
    first, second = this_resolver(), this_resolver()
    assert first.id != second.id and first.host == second.host
    assert first.version  # the installed server's version
