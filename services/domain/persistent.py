"""An immutable mapping whose updates copy only what they touch.

The resolver keeps its configuration as immutable values (a request reads
one revision throughout, without locks), so a change makes a new mapping.
Copying a 10,000-entry dict for each changed model made every write cost the
size of the deployment; here the keys are spread over SHARDS small dicts
and an update copies the shards it touches and the tuple that holds them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Final, Generic, Hashable, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

SHARDS: Final = 256
_EMPTY: Final[dict[object, object]] = {}


class ShardedMap(Mapping[K, V], Generic[K, V]):
    __slots__ = ("_shards", "_len")

    def __init__(self, items: Iterable[tuple[K, V]] = ()) -> None:
        shards: list[dict[K, V]] = [{} for _ in range(SHARDS)]
        for key, value in items:
            shards[hash(key) % SHARDS][key] = value
        self._shards: tuple[dict[K, V], ...] = tuple(shards)
        self._len = sum(len(s) for s in shards)

    def __getitem__(self, key: K) -> V:
        return self._shards[hash(key) % SHARDS][key]

    def get(self, key: K, default: V | None = None) -> V | None:  # type: ignore[override]
        return self._shards[hash(key) % SHARDS].get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._shards[hash(key) % SHARDS]

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[K]:
        for shard in self._shards:
            yield from shard

    def __repr__(self) -> str:
        return f"ShardedMap({len(self)} entries)"

    def updated(self, put: Mapping[K, V] | None = None, remove: Iterable[K] = ()) -> ShardedMap[K, V]:
        """A new map with `put` set and `remove` gone; this one is unchanged."""
        touched: dict[int, dict[K, V]] = {}
        size = self._len

        def shard(key: K) -> dict[K, V]:
            index = hash(key) % SHARDS
            found = touched.get(index)
            if found is None:
                found = touched[index] = dict(self._shards[index])
            return found

        for key in remove:
            target = shard(key)
            if key in target:
                del target[key]
                size -= 1
        for key, value in (put or {}).items():
            target = shard(key)
            if key not in target:
                size += 1
            target[key] = value
        out: ShardedMap[K, V] = ShardedMap.__new__(ShardedMap)
        shards = list(self._shards)
        for index, replaced in touched.items():
            shards[index] = replaced
        out._shards = tuple(shards)
        out._len = size
        return out
