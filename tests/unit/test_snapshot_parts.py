"""A snapshot split into parts (snapshot_parts.split, config_svc's side)
and reassembled (Reassembly, the resolver's side) is the snapshot sent."""

from __future__ import annotations

import pytest

from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import resources_pb2 as pb
from modelplane_server.snapshot_parts import Reassembly, split
from tests.unit.test_snapshot import model, provider


def big_snapshot(models: int = 500) -> cs.ConfigEvent:
    return cs.ConfigEvent(revision=9, epoch="e1", snapshot=cs.ConfigSnapshot(
        providers=[provider(f"p{i}") for i in range(20)],
        models=[model(f"m{i}", f"p{i % 20}") for i in range(models)],
        settings=pb.Settings(byok_enabled=True),
        model_overrides=[pb.ModelOverride(context=pb.OVERRIDE_CONTEXT_GENERAL, model="m1")]))


def test_split_and_reassembled_is_the_same_snapshot() -> None:
    event = big_snapshot()
    parts = split(event, part_bytes=4096)
    assert len(parts) >= 5  # about 30 kB in 4 kB parts
    assert all(p.snapshot.ByteSize() <= 4096 for p in parts)
    assert [p.snapshot_continues for p in parts] == [True] * (len(parts) - 1) + [False]
    assert all((p.revision, p.epoch) == (9, "e1") for p in parts)
    joined = Reassembly()
    out = [joined.add(p) for p in parts]
    assert out[:-1] == [None] * (len(parts) - 1)
    assert out[-1] == event


def test_groups_and_spend_limits_travel_in_parts_too() -> None:
    """Governance's repeated fields split like the others (the split is by descriptor)."""
    event = big_snapshot(50)
    event.snapshot.groups.extend(pb.Group(name=f"g{i}", members=[f"user-{i}-{j}" for j in range(40)])
                                 for i in range(30))
    event.snapshot.spend_limits.extend(pb.SpendLimit(group=f"g{i}", period=pb.SPEND_PERIOD_DAY,
                                                     limit_micro_usd=i) for i in range(30))
    parts = split(event, part_bytes=2048)
    assert sum(len(p.snapshot.groups) > 0 for p in parts) > 1
    joined = Reassembly()
    out = [joined.add(p) for p in parts]
    assert out[-1] == event


def test_small_snapshots_and_changes_travel_whole_and_pass_through() -> None:
    event = big_snapshot(3)
    assert split(event) == [event]
    change = cs.ConfigEvent(revision=10, changes=[cs.ConfigChange(deleted_model="m1")])
    assert split(change, part_bytes=1) == [change]
    joined = Reassembly()
    assert joined.add(event) is event and joined.add(change) is change


def test_an_interrupted_snapshot_is_refused() -> None:
    parts = split(big_snapshot(), part_bytes=4096)
    joined = Reassembly()
    joined.add(parts[0])
    with pytest.raises(ValueError):
        joined.add(cs.ConfigEvent(revision=10, changes=[cs.ConfigChange(deleted_model="m1")]))
