"""A WatchConfig snapshot sent as several events, and put back together.

A snapshot in one message is bounded by the largest message the channel
accepts (gRPC's default receive limit, 4 MiB, is reached at about 40,000
models). To a watcher that asks for it (WatchConfigRequest.
accept_snapshot_parts), config_svc sends the snapshot in parts of about
PART_BYTES each: the first carries every field that is not repeated and the
first elements of the repeated ones, the rest continue the repeated fields
in order. Every event but the last has snapshot_continues set. The watcher
merges parts (protobuf MergeFrom appends repeated fields) and applies the
whole. The split is generic over ConfigSnapshot's fields, so fields added
later travel without changes here.
"""

from __future__ import annotations

from typing import Final

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from modelplane.v1 import config_service_pb2 as cs

PART_BYTES: Final = 1024 * 1024


def _splittable(fd: FieldDescriptor) -> bool:
    """Repeated fields other than maps (a map travels whole in the first part)."""
    if not fd.is_repeated:
        return False
    return not (fd.message_type is not None and fd.message_type.GetOptions().map_entry)


def split(event: cs.ConfigEvent, part_bytes: int | None = None) -> list[cs.ConfigEvent]:
    """`event` as events of at most about `part_bytes` (default PART_BYTES)
    each (one element larger than that travels alone); the event itself when
    it is a change or a snapshot that fits."""
    part_bytes = part_bytes or PART_BYTES
    if not event.HasField("snapshot") or event.snapshot.ByteSize() <= part_bytes:
        return [event]
    snap = event.snapshot
    first = cs.ConfigSnapshot()
    first.CopyFrom(snap)
    splittable = [fd for fd in snap.DESCRIPTOR.fields if _splittable(fd)]
    for fd in splittable:
        first.ClearField(fd.name)  # type: ignore[arg-type]  # any repeated field, by descriptor
    parts = [first]
    size = first.ByteSize()
    for fd in splittable:
        for item in getattr(snap, fd.name):
            n = (item.ByteSize() if isinstance(item, Message) else len(str(item))) + 8
            if size + n > part_bytes and size > 0:
                parts.append(cs.ConfigSnapshot())
                size = 0
            getattr(parts[-1], fd.name).append(item)
            size += n
    return [cs.ConfigEvent(revision=event.revision, epoch=event.epoch, snapshot=part,
                           snapshot_continues=i < len(parts) - 1) for i, part in enumerate(parts)]


class Reassembly:
    """Feed every event in order; `add` returns the event to apply (a whole
    snapshot once its last part arrived, any other event as it is), or None
    while parts are still coming."""

    def __init__(self) -> None:
        self._pending: cs.ConfigEvent | None = None

    def add(self, event: cs.ConfigEvent) -> cs.ConfigEvent | None:
        if self._pending is None and not event.snapshot_continues:
            return event
        if self._pending is None:
            self._pending = event
            return None
        if event.revision != self._pending.revision or not event.HasField("snapshot"):
            self._pending = None
            raise ValueError(f"snapshot part for revision {event.revision} interrupted by another event")
        self._pending.snapshot.MergeFrom(event.snapshot)
        if event.snapshot_continues:
            return None
        whole, self._pending = self._pending, None
        whole.snapshot_continues = False
        return whole
