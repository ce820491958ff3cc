"""A WatchConfig event sent as several events, and put back together.

One message is bounded by the largest message the channel accepts (gRPC's
default receive limit, 4 MiB, is reached by a snapshot of about 40,000
models, by the changes of one revision that deletes a provider with as
many, or by the spend of some 100,000 users). To a watcher that asks for it
(WatchConfigRequest.accept_parts), config_svc sends a large event in parts
of about PART_BYTES each, all with the event's revision and epoch: the
first part carries every field that is not repeated and the first elements
of the repeated ones, the rest continue the repeated fields in order. A
snapshot event is split inside its snapshot; any other event, across its
own repeated fields (changes, spend). The split is generic over the
messages' fields, so fields added later travel without changes here.

Every part but the last has `continues` set. The watcher merges parts
(protobuf MergeFrom appends repeated fields) and applies the whole, so a
revision is applied at once or not at all, whatever its size.
"""

from __future__ import annotations

from typing import Any, Final, TypeVar

from google.protobuf.message import Message

from modelplane.v1 import config_service_pb2 as cs

PART_BYTES: Final = 1024 * 1024

M = TypeVar("M", bound=Message)


def _splittable(fd: Any) -> bool:  # Any: a descriptor of protobuf's Python or upb implementation
    """Repeated fields other than maps (a map travels whole in the first part)."""
    if not fd.is_repeated:
        return False
    return not (fd.message_type is not None and fd.message_type.GetOptions().map_entry)


def _parts(whole: M, part_bytes: int) -> list[M]:
    """`whole` as messages of about `part_bytes` each that merge back into it
    (an element larger than that travels alone)."""
    first = type(whole)()
    first.CopyFrom(whole)
    splittable = [fd for fd in whole.DESCRIPTOR.fields if _splittable(fd)]
    for fd in splittable:
        first.ClearField(fd.name)
    parts = [first]
    size, count = first.ByteSize(), 0  # of the last part: bytes, and elements of repeated fields
    for fd in splittable:
        for item in getattr(whole, fd.name):
            n = (item.ByteSize() if isinstance(item, Message) else len(str(item))) + 8  # with tag and length
            if size + n > part_bytes and count > 0:
                parts.append(type(whole)())
                size, count = 0, 0
            getattr(parts[-1], fd.name).append(item)
            size, count = size + n, count + 1
    return parts


def split(event: cs.ConfigEvent, part_bytes: int | None = None) -> list[cs.ConfigEvent]:
    """`event` as events of at most about `part_bytes` (default PART_BYTES)
    each; the event itself when it fits (heartbeats always do)."""
    part_bytes = part_bytes or PART_BYTES
    if event.ByteSize() <= part_bytes:
        return [event]
    if event.HasField("snapshot"):
        inner = _parts(event.snapshot, part_bytes)
        first = cs.ConfigEvent()
        first.CopyFrom(event)
        first.snapshot.CopyFrom(inner[0])
        parts = [first] + [cs.ConfigEvent(revision=event.revision, epoch=event.epoch, snapshot=s) for s in inner[1:]]
    else:
        parts = _parts(event, part_bytes)
        for part in parts[1:]:
            part.revision, part.epoch = event.revision, event.epoch
    for part in parts[:-1]:
        part.continues = True
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
        pending.MergeFrom(event)
        if event.continues:
            return None
        self._pending = None
        pending.continues = False
        return pending
