"""build_server(): wires the config_svc client, the snapshot and its watcher,
the caches, caller authentication, the servicer (resolution and the chat
gateway over them), health and reflection into one grpc.aio server.
Nothing happens at import time.

Health is NOT_SERVING until the first snapshot is loaded (and the first
ambient AWS check has run), then SERVING, and it stays SERVING while
config_svc is away: the resolver answers from its last snapshot.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Callable

import grpc
import grpc.aio
import structlog
from prometheus_client import CollectorRegistry

from modelplane_server.runtime import metrics, shutdown, tls
from modelplane_server.runtime.consistency_metrics import ConsistencyMetrics
from modelplane_server.runtime.health import Health, add_health_and_reflection
from modelplane_server.runtime.interceptors import server_interceptors
from modelplane_server.runtime.registration import add_servicer
from modelplane_server.runtime.request_gate import server_options
from modelplane_server.domain.bounds import MAX_REQUEST_BYTES
from modelplane_server.runtime.metrics import ResolverMetrics
from modelplane_server.runtime.tracing import Tracing
from modelplane.v1 import resolver_service_pb2
from modelplane_server.resolver_svc.api.min_revision import DEFAULT_MAX_WAIT_SECONDS, MinRevision
from modelplane_server.resolver_svc.api.memo import AnswerMemo
from modelplane_server.resolver_svc.api.servicer import ResolverServicer
from modelplane_server.resolver_svc.caches.caller_auth import CallerAuth
from modelplane_server.resolver_svc.caches.credentials import CredentialCache
from modelplane_server.resolver_svc.caches.metrics import watch_caches
from modelplane_server.resolver_svc.caches.users import UserCache
from modelplane_server.resolver_svc.chat.gateway import DEFAULT_PROBE_TIMEOUT_S, ChatGateway
from modelplane_server.resolver_svc.resolution.service import ResolutionService
from modelplane_server.resolver_svc.settings import ResolverSettings
from modelplane_server.resolver_svc.state import ambient
from modelplane_server.resolver_svc.state.config_client import ConfigClient
from modelplane_server.resolver_svc.state.reporter import AppliedReporter, this_resolver
from modelplane_server.resolver_svc.state.snapshot import Snapshot
from modelplane_server.resolver_svc.state.watcher import ConfigWatcher
from modelplane_server.resolver_svc.upstream import UpstreamClient
from modelplane_server.resolver_svc.upstream.client import DEFAULT_IDLE_TIMEOUT_S
from modelplane_server.resolver_svc.usage.ledger import UsageLedger

log = structlog.get_logger(__name__)

SERVICE = resolver_service_pb2.DESCRIPTOR.services_by_name["ResolverService"]
SERVICE_NAME = SERVICE.full_name

ServicerFactory = Callable[[Snapshot, UserCache, CredentialCache], ResolverServicer]


def resolver_servicer(snapshot: Snapshot, users: UserCache, credentials: CredentialCache, *,
                      upstream: UpstreamClient, idle_timeout_seconds: float = DEFAULT_IDLE_TIMEOUT_S,
                      probe_timeout_seconds: float = DEFAULT_PROBE_TIMEOUT_S, aws_region: str | None = None,
                      metrics: ResolverMetrics | None = None,
                      min_revision_max_wait_seconds: float = DEFAULT_MAX_WAIT_SECONDS,
                      consistency: ConsistencyMetrics | None = None,
                      tracing: Tracing | None = None, ledger: UsageLedger | None = None) -> ResolverServicer:
    """The one ResolverServicer: resolution over the snapshot and the user
    cache, and the chat gateway over that resolution, the credentials and
    `upstream` (see ChatGateway for the options), recording usage in `ledger`."""
    resolution = ResolutionService(snapshot, users)
    gateway = ChatGateway(resolution, credentials, upstream=upstream, idle_timeout_seconds=idle_timeout_seconds,
                          probe_timeout_seconds=probe_timeout_seconds, aws_region=aws_region, metrics=metrics,
                          tracing=tracing, ledger=ledger)
    min_revision = MinRevision(snapshot.applied, max_wait_seconds=min_revision_max_wait_seconds, metrics=consistency)
    return ResolverServicer(resolution, gateway, min_revision=min_revision)


@dataclass
class ResolverServer:
    server: grpc.aio.Server
    port: int
    health: Health
    config: ConfigClient
    snapshot: Snapshot
    users: UserCache
    credentials: CredentialCache
    auth: CallerAuth
    watcher: ConfigWatcher
    reporter: AppliedReporter
    servicer: ResolverServicer
    upstream: UpstreamClient
    resolver_metrics: metrics.ResolverMetrics
    metrics_endpoint: metrics.MetricsEndpoint | None
    _streams: shutdown.EndlessStreams
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    tracing: Tracing | None = None
    ledger: UsageLedger | None = None
    ledger_drain_seconds: float = 10.0
    owns_upstream: bool = True

    def config_calls(self) -> dict[str, int]:
        """RPCs made to config_svc so far, by method (see ConfigClient.counters)."""
        return self.config.counters()

    async def wait_ready(self, timeout: float | None = None) -> None:
        async with asyncio.timeout(timeout):
            await self.snapshot.ready.wait()

    async def stop(self, grace: float | None = 5.0) -> None:
        """Graceful (see modelplane_server.runtime.shutdown): NOT_SERVING, then in-flight calls and
        chat streams get `grace` seconds; then the upstream client, caches and
        the channel to config_svc close."""
        for task in self._tasks:  # readiness must not flip health back to SERVING
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await shutdown.graceful_stop(self.server, self.health, self._streams, grace)
        if self.ledger is not None:
            # Chats have ended (or were cancelled): deliver their records
            # while the channel to config_svc is still open.
            await self.ledger.drain(self.ledger_drain_seconds)
        if self.owns_upstream:
            await self.upstream.aclose()
        for cache in (self.users, self.credentials, self.auth):
            cache.close()
        await self.config.close()
        if self.metrics_endpoint is not None:
            self.metrics_endpoint.close()
        if self.tracing is not None:
            await self.tracing.shutdown()  # exports what is still buffered


async def build_server(settings: ResolverSettings, *,
                       servicer_factory: ServicerFactory | None = None,
                       upstream: UpstreamClient | None = None) -> ResolverServer:
    """Start serving at once (health NOT_SERVING); the watcher loads the
    snapshot in the background. ``servicer_factory`` builds the servicer
    instead of resolver_servicer's defaults (tests: their own UpstreamClient);
    ``upstream`` keeps the defaults (ledger, metrics) with an UpstreamClient
    the caller owns and closes."""
    tracing = Tracing(settings.tracing) if settings.tracing is not None else None
    config = ConfigClient(settings.config_addresses, settings.service_token,
                          timeout_seconds=settings.config_call_timeout_seconds,
                          reconnect_initial_seconds=settings.reconnect_initial_seconds,
                          reconnect_max_seconds=settings.reconnect_max_seconds,
                          keepalive_seconds=settings.config_keepalive_seconds,
                          keepalive_timeout_seconds=settings.config_keepalive_timeout_seconds,
                          tls=settings.config_tls,
                          interceptors=tracing.client_interceptors() if tracing is not None else ())
    snapshot = Snapshot()
    registry = CollectorRegistry()
    resolver_metrics = metrics.ResolverMetrics(registry)
    consistency = ConsistencyMetrics(registry)
    reporter = AppliedReporter(config, snapshot, this_resolver(), interval_seconds=settings.ack_interval_seconds)
    observe = resolver_metrics.cache_lookup
    users = UserCache(config.get_user_configs, settings.user_cache_size, observe,
                      max_bytes=settings.user_cache_bytes)
    credentials = CredentialCache(config.access_credential, max_entries=settings.credential_cache_size,
                                  ttl_seconds=settings.credential_ttl_seconds,
                                  stale_if_unreachable_seconds=settings.stale_if_unavailable_seconds,
                                  observe=observe, max_bytes=settings.credential_cache_bytes)
    auth = CallerAuth(config.introspect_token, snapshot, max_entries=settings.token_cache_size,
                      ttl_seconds=settings.token_ttl_seconds,
                      stale_if_unreachable_seconds=settings.stale_if_unavailable_seconds, observe=observe,
                      max_bytes=settings.token_cache_bytes)
    watcher = ConfigWatcher(config, snapshot, [users.invalidate, credentials.invalidate, auth.invalidate],
                            reconnect_initial_seconds=settings.reconnect_initial_seconds,
                            reconnect_max_seconds=settings.reconnect_max_seconds,
                            idle_seconds=settings.config_watch_idle_seconds, resolver=reporter.identity,
                            on_applied=[reporter.applied], metrics=consistency)

    resolver_metrics.follow_watch(revision=lambda: snapshot.revision, connected=lambda: watcher.connected)
    # Chat streams end on their own, so only Health/Watch is ended at shutdown.
    streams = shutdown.EndlessStreams([shutdown.HEALTH_WATCH])
    # Tracing outermost: every other stage (and the request's log line) runs inside the RPC's span.
    spans = [tracing.stage()] if tracing is not None else []
    server = grpc.aio.server(interceptors=server_interceptors(
        auth.authenticate, outer=[*spans, metrics.RpcMetricsInterceptor(registry)], inner=[streams]),
        options=server_options(MAX_REQUEST_BYTES["resolver_svc"], share_port=settings.share_port))
    owns_upstream = upstream is None
    if upstream is None:
        upstream = UpstreamClient(max_connections_per_origin=settings.upstream_max_connections,
                                  http2=settings.upstream_http2)
    ledger = UsageLedger(config.record_usage, max_records=settings.ledger_buffer_records,
                         batch_size=settings.ledger_batch_records, interval=settings.ledger_flush_interval_seconds,
                         retry_initial=settings.reconnect_initial_seconds, retry_max=settings.reconnect_max_seconds,
                         registry=registry)
    if servicer_factory is None:
        servicer = resolver_servicer(snapshot, users, credentials, upstream=upstream,
                                     idle_timeout_seconds=settings.stream_idle_timeout_seconds,
                                     metrics=resolver_metrics,
                                     min_revision_max_wait_seconds=settings.min_revision_max_wait_seconds,
                                     consistency=consistency, tracing=tracing, ledger=ledger)
    else:
        servicer = servicer_factory(snapshot, users, credentials)
    servicer.answers = AnswerMemo(snapshot, max_bytes=settings.answer_memo_bytes, observe=observe)
    answers = servicer.answers
    watch_caches(registry, {"users": lambda: users.cache, "tokens": lambda: auth.cache,
                            "credentials": lambda: credentials.cache, "answers": lambda: answers.cache})
    add_servicer(server, SERVICE, servicer)
    health = add_health_and_reflection(server, [SERVICE_NAME])
    await health.set_serving(False)
    try:
        port = tls.add_port(server, settings.listen, settings.tls)
    except tls.ListenError:
        await server.stop(None)
        await config.close()
        raise
    await server.start()
    endpoint = metrics.serve(settings.metrics_listen, registry)

    tasks = [
        asyncio.create_task(watcher.run(), name="config-watch"),
        asyncio.create_task(reporter.run(), name="config-ack"),
        asyncio.create_task(_serve_when_ready(snapshot, health, settings), name="readiness"),
    ]
    ledger.start()
    log.info("resolver_svc started; waiting for the first config snapshot", address=settings.listen, port=port,
             config_svc=",".join(settings.config_addresses), resolver_id=reporter.identity.id)
    return ResolverServer(server, port, health, config, snapshot, users, credentials, auth, watcher, reporter,
                          servicer, upstream, resolver_metrics, endpoint, streams, tasks, tracing, ledger,
                          settings.ledger_drain_seconds, owns_upstream)


async def _serve_when_ready(snapshot: Snapshot, health: Health, settings: ResolverSettings) -> None:
    def record(found: ambient.AmbientAws) -> None:
        snapshot.set_ambient_aws(found.available, found.region, credentials=found.credentials)

    # Without the check, bearer tokens still take the environment's region.
    record(await ambient.check_once() if settings.ambient_aws
           else ambient.AmbientAws(credentials=False, region=ambient.env_region()))
    await snapshot.ready.wait()
    await health.set_serving(True)
    log.info("resolver_svc serving", revision=snapshot.revision)
    if settings.ambient_aws:
        await ambient.keep_checking(record, settings.ambient_aws_refresh_seconds)
