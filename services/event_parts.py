"""A WatchConfig event sent as several events, and put back together.

One message is bounded by the largest message the channel accepts (gRPC's
default receive limit, 4 MiB, is reached by a snapshot of about 40,000
models, or by the changes of one revision that deletes a provider with as
many). To a watcher that asks for it (WatchConfigRequest.accept_parts),
config_svc sends a large event in parts of about PART_BYTES each, all with
the event's revision and epoch:

- a snapshot: the first part carries every field that is not repeated and
  the first elements of the repeated ones, the rest continue the repeated
  fields in order (generic over ConfigSnapshot's fields, so fields added
  later travel without changes here);
- changes: each part carries the next changes in order, and the commit time.

Every part but the last has `continues` set. The watcher merges parts
(protobuf MergeFrom appends repeated fields) and applies the whole, so a
revision is applied at once or not at all, whatever its size.
"""

from __future__ import annotations

from typing import Final, TypeVar

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from modelplane.v1 import config_service_pb2 as cs

PART_BYTES: Final = 1024 * 1024

M = TypeVar("M", bound=Message)


def _splittable(fd: FieldDescriptor) -> bool:
    """Repeated fields other than maps (a map travels whole in the first part)."""
    if not fd.is_repeated:
        return False
    return not (fd.message_type is not None and fd.message_type.GetOptions().map_entry)


def _chunks(items: list[M], part_bytes: int) -> list[list[M]]:
    """`items` in order, in lists of about `part_bytes` each (an item
    larger than that travels alone)."""
    chunks: list[list[M]] = [[]]
    size = 0
    for item in items:
        n = item.ByteSize() + 8  # tag and length prefix, at most
        if size + n > part_bytes and size > 0:
            chunks.append([])
            size = 0
        chunks[-1].append(item)
        size += n
    return chunks


def split(event: cs.ConfigEvent, part_bytes: int | None = None) -> list[cs.ConfigEvent]:
    """`event` as events of at most about `part_bytes` (default PART_BYTES)
    each; the event itself when it fits (heartbeats always do)."""
    part_bytes = part_bytes or PART_BYTES
    if event.ByteSize() <= part_bytes:
        return [event]
    if event.HasField("snapshot"):
        parts = [cs.ConfigEvent(revision=event.revision, epoch=event.epoch, snapshot=s)
                 for s in _snapshot_parts(event.snapshot, part_bytes)]
    else:
        parts = [cs.ConfigEvent(revision=event.revision, epoch=event.epoch, changes=chunk,
                                commit_time=event.commit_time if event.HasField("commit_time") else None)
                 for chunk in _chunks(list(event.changes), part_bytes)]
    for part in parts[:-1]:
        part.continues = True
    return parts


def _snapshot_parts(snap: cs.ConfigSnapshot, part_bytes: int) -> list[cs.ConfigSnapshot]:
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
    return parts


class Reassembly:
    """Feed every event in order; `add` returns the event to apply (a whole
    event once its last part arrived, any other event as it is), or None
    while parts are still coming."""

    def __init__(self) -> None:
        self._pending: cs.ConfigEvent | None = None

    def add(self, event: cs.ConfigEvent) -> cs.ConfigEvent | None:
        if self._pending is None and not event.continues:
            return event
        if self._pending is None:
            self._pending = event
            return None
        pending = self._pending
        if event.revision != pending.revision or event.HasField("snapshot") != pending.HasField("snapshot"):
            self._pending = None
            raise ValueError(f"a part of revision {pending.revision} interrupted by another event")
        if event.HasField("snapshot"):
            pending.snapshot.MergeFrom(event.snapshot)
        else:
            pending.changes.extend(event.changes)
        if event.continues:
            return None
        self._pending = None
        pending.continues = False
        return pending
