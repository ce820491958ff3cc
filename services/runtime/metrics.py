"""Prometheus metrics: one registry and one HTTP endpoint per server.

Each server builds its own CollectorRegistry (never prometheus-client's
global one), so several servers in one test process do not collide.

- `RpcMetricsInterceptor`: per-RPC count by method and status code, and a
  latency histogram. Names follow go-grpc-prometheus
  (grpc_server_handled_total, grpc_server_handling_seconds), so existing
  dashboards work. Put it first in the chain: it then also counts calls
  refused by authentication.
- `watch_pool`: database pool gauges, read at scrape time.
- `ResolverMetrics`: ready-made objects the resolver increments (snapshot,
  caches, upstream latency, tokens, cost).
- `serve`: the HTTP endpoint (a daemon thread of prometheus-client).
- `metrics_listen_from_env`: the *_METRICS_LISTEN setting.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Protocol
from wsgiref.simple_server import WSGIServer

import grpc
import grpc.aio
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from modelplane_server.runtime.env import Env, SettingsError, env_str
# The hook machinery of modelplane_server.runtime.pipeline keeps each handler's shape (coroutine or
# async generator), which grpc.aio relies on.
from modelplane_server.runtime.pipeline import CompletionHooks, HookInterceptor, Hooks

# RPC latencies span sub-millisecond snapshot reads to minute-long streamed chats.
RPC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
               60.0, 120.0, 300.0)
UPSTREAM_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
# Time to first token: fast local servers answer in tens of milliseconds,
# reasoning models can think for minutes before their first visible token.
TTFT_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)
# Token kinds that do not overlap, so their sum is every token of a request.
TOKEN_KINDS = ("input", "cache_read", "cache_write", "output_non_reasoning", "reasoning")

_DISABLED = frozenset({"", "off", "none", "disabled"})


# -- per-RPC metrics ----------------------------------------------------------------------------


def _split_method(full_method: str) -> tuple[str, str]:
    """"/pkg.Service/Method" -> ("pkg.Service", "Method")."""
    service, _, method = full_method.lstrip("/").rpartition("/")
    return service, method


def _rpc_type(handler: grpc.RpcMethodHandler[Any, Any]) -> str:
    if handler.request_streaming:
        return "bidi_stream" if handler.response_streaming else "client_stream"
    return "server_stream" if handler.response_streaming else "unary"


class RpcMetricsInterceptor(HookInterceptor):
    """Counts and times every call, by service, method and final status code."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["grpc_service", "grpc_method", "grpc_type"]
        self.started = Counter("grpc_server_started_total", "RPCs started on the server", labels,
                               registry=registry)
        self.handled = Counter("grpc_server_handled_total", "RPCs completed on the server, by status code",
                               [*labels, "grpc_code"], registry=registry)
        self.latency = Histogram("grpc_server_handling_seconds",
                                 "Time from the start of an RPC to its end (a whole stream for streams)",
                                 labels, buckets=RPC_BUCKETS, registry=registry)

    def hooks_for(self, details: grpc.HandlerCallDetails, handler: grpc.RpcMethodHandler[Any, Any]) -> Hooks:
        service, method = _split_method(details.method)
        return _RpcMetricsHooks(self, (service, method, _rpc_type(handler)))


class _RpcMetricsHooks(CompletionHooks):
    def __init__(self, metrics: RpcMetricsInterceptor, labels: tuple[str, str, str]) -> None:
        self.metrics = metrics
        self.labels = labels

    async def begin(self, context: grpc.aio.ServicerContext[Any, Any], *, streaming: bool) -> float:
        self.metrics.started.labels(*self.labels).inc()
        return time.perf_counter()

    def end(self, context: grpc.aio.ServicerContext[Any, Any], state: Any, code: grpc.StatusCode) -> None:
        self.metrics.handled.labels(*self.labels, code.name).inc()
        self.metrics.latency.labels(*self.labels).observe(time.perf_counter() - state)


# -- database pool -------------------------------------------------------------------------------


class PoolStats(Protocol):
    """What asyncpg.Pool offers; core does not depend on the driver."""

    def get_size(self) -> int: ...
    def get_idle_size(self) -> int: ...
    def get_max_size(self) -> int: ...


class _PoolCollector(Collector):
    """Read on each scrape, so the numbers are never stale."""

    def __init__(self, pool: PoolStats) -> None:
        self._pool = pool

    def collect(self) -> Iterator[Metric]:
        size, idle = self._pool.get_size(), self._pool.get_idle_size()
        connections = GaugeMetricFamily("modelplane_db_pool_connections",
                                        "Open database connections of this process, by state",
                                        labels=["state"])
        connections.add_metric(["in_use"], size - idle)
        connections.add_metric(["idle"], idle)
        yield connections
        yield GaugeMetricFamily("modelplane_db_pool_max_connections",
                                "Upper bound of the database pool (CONFIG_SVC_DB_POOL_SIZE)",
                                value=self._pool.get_max_size())


def watch_pool(registry: CollectorRegistry, pool: PoolStats) -> None:
    registry.register(_PoolCollector(pool))


# -- resolver ---------------------------------------------------------------------------------------


class ResolverMetrics:
    """The resolver's own metrics. Label values are provider and model names
    (bounded: an administrator creates them), never user names.

    Call sites:
      follow_watch(revision=..., connected=...)  once, in build_server: both
          snapshot gauges are then read at scrape time (the lag to within one
          scrape interval)
      cache_lookup(name, hit)                    on each cache lookup (the
          caches' LookupObserver)
      upstream_done(provider, model, status, seconds, tokens={...}, cost_usd=...)
          once per upstream request; tokens by TOKEN_KINDS, which do not
          overlap; cost_usd None for unpriced models
      upstream_attempt(provider, model, outcome)  once per attempt, when it ends
      upstream_retry(provider, model, reason)     once per retry, by the failed attempt's kind
      first_token(provider, model, seconds)       once per stream, at its first content
    """

    def __init__(self, registry: CollectorRegistry, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lost_at: float | None = clock()  # no stream yet: lagging since start
        self._connected: Callable[[], bool] | None = None
        self.snapshot_revision = Gauge("modelplane_snapshot_revision",
                                       "Config revision of the resolver's in-memory snapshot",
                                       registry=registry)
        self.snapshot_lag = Gauge("modelplane_snapshot_lag_seconds",
                                  "How long the snapshot may have been behind config_svc: 0 while the "
                                  "watch stream is open, else seconds since it was lost",
                                  registry=registry)
        self.snapshot_lag.set_function(self._lag)
        # The same as a timestamp: alerts and dashboards compute time() - it,
        # which keeps rising even while no scrape reaches the process.
        self.snapshot_synced = Gauge("modelplane_snapshot_synced_timestamp_seconds",
                                     "Unix time up to which the snapshot is known to match config_svc: now while "
                                     "the watch stream is open, else when it was lost", registry=registry)
        self.snapshot_synced.set_function(lambda: time.time() - self._lag())
        self.cache_requests = Counter("modelplane_cache_requests_total",
                                      "Cache lookups by cache and result (hit ratio = hit / all)",
                                      ["cache", "result"], registry=registry)
        self.upstream = Histogram("modelplane_upstream_request_seconds",
                                  "Upstream provider requests, by provider, model and gRPC status code name",
                                  ["provider", "model", "status"], buckets=UPSTREAM_BUCKETS, registry=registry)
        self.tokens = Counter("modelplane_upstream_tokens_total",
                              "Tokens reported by upstream providers, by kind; the kinds do not overlap "
                              "(input excludes cache reads and writes, reasoning is not in "
                              "output_non_reasoning), so their sum is every token",
                              ["provider", "model", "kind"], registry=registry)
        self.cost_usd = Counter("modelplane_upstream_cost_usd_total",
                                "Cost of upstream requests in USD, from the model's prices",
                                ["provider", "model"], registry=registry)
        self.attempts = Counter("modelplane_upstream_attempts_total",
                                "Upstream HTTP attempts, by outcome: ok, or the error kind that ended the attempt "
                                "(rate_limited, overloaded, unavailable, timeout, cancelled, ...)",
                                ["provider", "model", "outcome"], registry=registry)
        self.retries = Counter("modelplane_upstream_retries_total",
                               "Upstream attempts retried, by the reason (the failed attempt's error kind)",
                               ["provider", "model", "reason"], registry=registry)
        self.time_to_first_token = Histogram("modelplane_upstream_time_to_first_token_seconds",
                                             "Streamed chats: from the call to the upstream until the first "
                                             "text, reasoning or tool-call token (retries included)",
                                             ["provider", "model"], buckets=TTFT_BUCKETS, registry=registry)

    def _lag(self) -> float:
        if self._connected is not None:
            if self._connected():
                self.watch_connected()
            else:
                self.watch_lost()
        lost = self._lost_at
        return 0.0 if lost is None else max(0.0, self._clock() - lost)

    def follow_watch(self, *, revision: Callable[[], int], connected: Callable[[], bool]) -> None:
        """Read the snapshot's revision and the watch's state at scrape time."""
        self.snapshot_revision.set_function(lambda: float(revision()))
        self._connected = connected

    def watch_connected(self) -> None:
        self._lost_at = None

    def watch_lost(self) -> None:
        if self._lost_at is None:
            self._lost_at = self._clock()

    def cache_lookup(self, cache: str, hit: bool) -> None:
        self.cache_requests.labels(cache, "hit" if hit else "miss").inc()

    def upstream_attempt(self, provider: str, model: str, outcome: str) -> None:
        self.attempts.labels(provider, model, outcome).inc()

    def upstream_retry(self, provider: str, model: str, reason: str) -> None:
        self.retries.labels(provider, model, reason).inc()

    def first_token(self, provider: str, model: str, seconds: float) -> None:
        self.time_to_first_token.labels(provider, model).observe(seconds)

    def upstream_done(self, provider: str, model: str, status: str, seconds: float, *,
                      tokens: Mapping[str, int] | None = None, cost_usd: float | None = None) -> None:
        """One upstream request: latency, tokens by kind, cost when priced."""
        self.upstream.labels(provider, model, status).observe(seconds)
        for kind, count in (tokens or {}).items():
            if count:
                self.tokens.labels(provider, model, kind).inc(count)
        if cost_usd:
            self.cost_usd.labels(provider, model).inc(cost_usd)


# -- the HTTP endpoint ----------------------------------------------------------------------------


@dataclass
class MetricsEndpoint:
    """A running /metrics endpoint; `port` is the bound one (useful with :0)."""

    host: str
    port: int
    _httpd: WSGIServer

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def serve(listen: str, registry: CollectorRegistry) -> MetricsEndpoint | None:
    """Serve `registry` over HTTP on host:port; None when `listen` is empty."""
    if not listen:
        return None
    host, port = split_listen(listen)
    httpd, _thread = start_http_server(port, addr=host, registry=registry)
    return MetricsEndpoint(host, int(httpd.server_port), httpd)


def split_listen(listen: str) -> tuple[str, int]:
    """"host:port" or "[v6]:port" -> (host, port); ValueError otherwise."""
    host, sep, port_text = listen.rpartition(":")
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"expected host:port, got {listen!r}")
    return host.strip("[]"), int(port_text)


def metrics_listen_from_env(env: Env, name: str, default: str) -> str:
    """host:port for the metrics endpoint; "" when disabled (set empty or off)."""
    listen = env_str(env, name, default, "host:port of the Prometheus /metrics HTTP endpoint; empty or "
                                         "'off' disables it")
    explicit = None if env.describe_only else env.raw(name)
    if explicit is not None and explicit.strip().lower() in _DISABLED:
        return ""
    try:
        split_listen(listen)
    except ValueError as exc:
        raise SettingsError(f"{name}: {exc}") from None
    return listen
