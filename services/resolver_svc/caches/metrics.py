"""Size, budget and evictions of the resolver's caches, read on each scrape
(hits and misses are counted as they happen: modelplane_cache_requests_total)."""

from __future__ import annotations

from typing import Any, Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from modelplane_server.resolver_svc.caches.lru import LruCache

# name -> the cache now (a callable: the answer memo starts a new one per view).
Caches = Mapping[str, Callable[[], "LruCache[Any, Any]"]]


class _CacheCollector(Collector):
    def __init__(self, caches: Caches) -> None:
        self._caches = caches

    def collect(self) -> Iterator[Metric]:
        size = GaugeMetricFamily("modelplane_cache_bytes", "Estimated memory held by each cache", labels=["cache"])
        budget = GaugeMetricFamily("modelplane_cache_budget_bytes",
                                   "Memory budget of each cache (RESOLVER_*_BYTES)", labels=["cache"])
        entries = GaugeMetricFamily("modelplane_cache_entries", "Entries held by each cache", labels=["cache"])
        evictions = CounterMetricFamily("modelplane_cache_evictions",
                                        "Entries each cache evicted to stay within its bounds", labels=["cache"])
        for name, current in self._caches.items():
            cache = current()
            size.add_metric([name], cache.bytes)
            budget.add_metric([name], cache.max_bytes or 0)
            entries.add_metric([name], len(cache))
            evictions.add_metric([name], cache.evictions)
        yield from (size, budget, entries, evictions)


def watch_caches(registry: CollectorRegistry, caches: Caches) -> None:
    registry.register(_CacheCollector(caches))
