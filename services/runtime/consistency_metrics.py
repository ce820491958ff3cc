"""Metrics of read-your-writes and of the live map of resolvers.

config_svc (`watch_resolver_map`): the live map as of config_svc's last
refresh (every 2 s), read at scrape time. Every config_svc replica exports
the whole map (it is shared through Postgres): aggregate with max by
(resolver). Only live resolvers are exported; a restarted resolver comes
back under a new id.

    modelplane_config_revision                           gauge
    modelplane_resolver_applied_revision{resolver,host}  gauge
    modelplane_resolver_lag_revisions{resolver,host}     gauge

resolver_svc (`ConsistencyMetrics`):

    modelplane_write_to_visible_seconds                  histogram: a change's
        commit (config_svc's database clock) to this resolver applying it
    modelplane_min_revision_requests_total{result}       counter: calls that
        asked for a min_revision, by result: satisfied (already applied),
        waited (applied while waiting), not_reached (REVISION_NOT_REACHED)
    modelplane_min_revision_wait_seconds                 histogram: how long
        the calls that had to wait waited
"""

from __future__ import annotations

from typing import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from modelplane_server.domain.resolver_map import ResolverRecord

# Propagation is milliseconds with NOTIFY; seconds mean a poll or a reconnect.
VISIBLE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class _ResolverMapCollector(Collector):
    def __init__(self, latest: Callable[[], tuple[list[ResolverRecord], int, str] | None]) -> None:
        self._latest = latest

    def collect(self) -> Iterator[Metric]:
        found = self._latest()
        if found is None:  # not read yet
            return
        records, revision, epoch = found
        yield GaugeMetricFamily("modelplane_config_revision",
                                "The current config revision (as of the last resolver map refresh)", value=revision)
        applied = GaugeMetricFamily("modelplane_resolver_applied_revision",
                                    "The config revision each live resolver last acknowledged",
                                    labels=["resolver", "host"])
        lag = GaugeMetricFamily("modelplane_resolver_lag_revisions",
                                "Revisions each live resolver is behind the current one",
                                labels=["resolver", "host"])
        for r in records:
            labels = [r.identity.id, r.identity.host]
            applied.add_metric(labels, r.applied_revision)
            lag.add_metric(labels, r.lag(revision, epoch))
        yield applied
        yield lag


def watch_resolver_map(registry: CollectorRegistry,
                       latest: Callable[[], tuple[list[ResolverRecord], int, str] | None]) -> None:
    """Export the map `latest()` returns (records, revision, epoch) at scrape time."""
    registry.register(_ResolverMapCollector(latest))


class ConsistencyMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.write_to_visible = Histogram(
            "modelplane_write_to_visible_seconds",
            "From a config change's commit (database clock) to this resolver applying it",
            buckets=VISIBLE_BUCKETS, registry=registry)
        self.min_revision = Counter(
            "modelplane_min_revision_requests_total",
            "Calls that asked for a min_revision, by result (satisfied, waited, not_reached)",
            ["result"], registry=registry)
        self.min_revision_wait = Histogram(
            "modelplane_min_revision_wait_seconds",
            "How long calls that asked for a revision not yet applied waited for it",
            buckets=VISIBLE_BUCKETS, registry=registry)
        # Bound once: the satisfied case is on the hot path.
        self._results = {result: self.min_revision.labels(result) for result in ("satisfied", "waited", "not_reached")}

    def visible(self, seconds: float) -> None:
        self.write_to_visible.observe(max(0.0, seconds))

    def asked(self, result: str, waited_seconds: float | None = None) -> None:
        self._results[result].inc()
        if waited_seconds is not None:
            self.min_revision_wait.observe(waited_seconds)
