"""An event split into parts (event_parts.split, config_svc's side) and
reassembled (Reassembly, the resolver's side) is the event sent: a snapshot,
or the changes of one revision."""

from __future__ import annotations

import pytest

from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import resources_pb2 as pb
from google.protobuf.timestamp_pb2 import Timestamp

from modelplane_server.event_parts import Reassembly, split
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
    assert [p.continues for p in parts] == [True] * (len(parts) - 1) + [False]
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


def test_many_users_spend_travels_in_parts() -> None:
    """A stream's first spend event lists every user's current spend."""
    event = cs.ConfigEvent(revision=11, epoch="e1", spend=[
        cs.SpendUpdate(user=f"user-{i:05d}", period=pb.SPEND_PERIOD_DAY, central_micro_usd=i) for i in range(2000)])
    parts = split(event, part_bytes=4096)
    assert len(parts) >= 5 and all(p.revision == 11 and p.epoch == "e1" for p in parts)
    joined = Reassembly()
    assert [joined.add(p) for p in parts][-1] == event


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


def big_change(models: int = 500) -> cs.ConfigEvent:
    """One revision deleting many models (a provider deleted with force)."""
    return cs.ConfigEvent(revision=11, epoch="e1", commit_time=Timestamp(seconds=1_800_000_000),
                          changes=[cs.ConfigChange(deleted_model=f"model-{i:04d}") for i in range(models)])


def test_one_revisions_changes_split_and_reassembled_in_order() -> None:
    event = big_change()
    parts = split(event, part_bytes=1024)
    assert len(parts) >= 5  # about 10 kB of changes in 1 kB parts
    assert all(p.ByteSize() <= 1024 + 64 for p in parts)  # a part, plus its revision, epoch and time
    assert [p.continues for p in parts] == [True] * (len(parts) - 1) + [False]
    assert all((p.revision, p.epoch) == (11, "e1") for p in parts)
    assert parts[0].commit_time.seconds == 1_800_000_000
    joined = Reassembly()
    out = [joined.add(p) for p in parts]
    assert out[:-1] == [None] * (len(parts) - 1)
    assert out[-1] == event


def test_parts_of_two_revisions_do_not_mix() -> None:
    parts = split(big_change(), part_bytes=1024)
    joined = Reassembly()
    joined.add(parts[0])
    with pytest.raises(ValueError):
        joined.add(cs.ConfigEvent(revision=12, changes=[cs.ConfigChange(deleted_model="m1")]))
    snapshot_part = split(big_snapshot(), part_bytes=4096)[0]
    snapshot_part.revision = 11
    joined.add(parts[0])
    with pytest.raises(ValueError):
        joined.add(snapshot_part)
