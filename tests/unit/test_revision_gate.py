"""The revision gate: waiting for a revision is a future woken by the
watcher's advance, never a poll; a satisfied wait never awaits; a wait that
ends (timeout, cancellation) leaves nothing behind."""

from __future__ import annotations

import asyncio

import pytest

from modelplane_server.resolver_svc.state.revision_gate import RevisionGate


async def test_an_applied_revision_is_answered_at_once() -> None:
    gate = RevisionGate()
    gate.advance(7)
    waiter = gate.wait(7, timeout=0)  # no time to wait at all: it must not need any
    assert await waiter is True
    assert len(gate) == 0


async def test_waiters_wake_exactly_when_their_revision_is_applied() -> None:
    gate = RevisionGate()
    gate.advance(3)
    five = asyncio.ensure_future(gate.wait(5, timeout=10))
    six = asyncio.ensure_future(gate.wait(6, timeout=10))
    other_five = asyncio.ensure_future(gate.wait(5, timeout=10))
    await asyncio.sleep(0)
    assert len(gate) == 3
    gate.advance(4)
    await asyncio.sleep(0)
    assert not (five.done() or six.done() or other_five.done())
    gate.advance(5)
    assert await five is True and await other_five is True
    assert not six.done() and len(gate) == 1
    gate.advance(9)
    assert await six is True and len(gate) == 0


async def test_a_revision_not_reached_in_time_is_false_and_leaves_no_waiter() -> None:
    gate = RevisionGate()
    gate.advance(1)
    assert await gate.wait(2, timeout=0.05) is False
    assert await gate.wait(2, timeout=0) is False
    assert await gate.wait(2, timeout=-1) is False
    assert len(gate) == 0
    gate.advance(2)  # nothing left to wake


async def test_a_cancelled_wait_leaves_no_waiter() -> None:
    gate = RevisionGate()
    task = asyncio.ensure_future(gate.wait(10, timeout=10))
    await asyncio.sleep(0)
    assert len(gate) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(gate) == 0


async def test_the_revision_may_go_back_with_a_new_history() -> None:
    """A restored database's snapshot starts another epoch at a lower revision:
    what was applied is what counts, so waits for the old numbers wait again."""
    gate = RevisionGate()
    gate.advance(50)
    gate.advance(12)
    assert gate.revision == 12
    assert await gate.wait(50, timeout=0.01) is False
